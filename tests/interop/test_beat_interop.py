"""celeriac beat's messages are run by a real Celery 5 worker (Redis)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Project
from tests.integration.beat.conftest import BeatProcess
from tests.interop.conftest import celery_worker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BEAT_APP = """
import os
from celeriac import Celery

app = Celery("beatapp", broker=os.environ["TEST_REDIS_URL"])
app.conf.beat_schedule = {
    "touch": {"task": "tasks.touch", "schedule": 0.5, "args": ("from-beat",), "options": {"expires": 30}},
}
"""


def test_celery_worker_runs_what_celeriac_beat_sends(mixed: Project) -> None:
    mixed.write("beatapp.py", BEAT_APP)
    worker = celery_worker(mixed, "ctasks", "-P", "threads", "-c", "2")
    beat = BeatProcess(mixed.path, [], mixed.env(TEST_REDIS_URL=mixed.broker_url), app="beatapp")
    mixed.workers.append(beat)
    beat.start()
    target = mixed.path / "from-beat"
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.exists(), f"beat:\n{beat.output}\nworker:\n{worker.output}"
    assert "Sending due task touch (tasks.touch)" in beat.output
    # The file is written inside the task; the worker logs "succeeded" just after it returns.
    worker.wait_for("succeeded", timeout=10)
    assert "tasks.touch[" in worker.output
    assert beat.stop() == 0
    assert worker.stop() == 0
