"""A retried task's final state is never overwritten by an earlier run's RETRY.

With ``countdown=0`` the retry message can start in another pool process before the run
that sent it has finished; the RETRY state is stored before that message goes out, so
the last state written is always the last run's.
"""

from __future__ import annotations

import time

from tests.conftest import Project

TASKS = """
import time

from celeriac import Celery
from celeriac.signals import after_task_publish

app = Celery("tasks")


@after_task_publish.connect
def _slow_after_sending_a_retry(sender=None, headers=None, **kwargs):
    # Widens the window between sending the retry and the end of the run that sent it.
    if headers and headers.get("retries"):
        time.sleep(0.5)


@app.task(autoretry_for=(ZeroDivisionError,), max_retries=2, default_retry_delay=0)
def divide(x, y):
    return x / y


@app.task(bind=True, max_retries=3, default_retry_delay=0)
def flaky(self, succeed_on):
    if self.request.retries < succeed_on:
        raise self.retry()
    return self.request.retries
"""


def test_final_states_after_immediate_retries(project: Project) -> None:
    project.write("tasks.py", TASKS)
    worker = project.worker("tasks", "-P", "prefork", "-c", "4")
    from tasks import app, divide, flaky  # type: ignore[import-not-found]

    for _ in range(3):
        # One at a time, so each retry starts at once in a free process.
        result = divide.delay(1, 0)
        assert isinstance(result.get(timeout=60, propagate=False), ZeroDivisionError)
        time.sleep(1.5)  # longer than the runs that sent the retries take to finish
        assert app.AsyncResult(result.id).state == "FAILURE"
        result = flaky.delay(2)
        assert result.get(timeout=60) == 2
        time.sleep(1.5)
        assert app.AsyncResult(result.id).state == "SUCCESS"
    assert worker.stop() == 0
