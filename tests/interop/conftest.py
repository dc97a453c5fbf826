"""Real Celery 5 on the same Redis as celeriac."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.conftest import Project, WorkerProcess
from tests.integration.redis.conftest import rclient, redis_project, redis_url  # noqa: F401 - fixtures

CELERY_TASKS = """
import os
from celery import Celery

app = Celery("tasks", broker=os.environ["TEST_REDIS_URL"], backend=os.environ["TEST_REDIS_URL"])


class Oops(Exception):
    pass


@app.task(name="tasks.add")
def add(x, y):
    return x + y


@app.task(name="tasks.mul")
def mul(x, y):
    return x * y


@app.task(name="tasks.div")
def div(x, y):
    return x / y


@app.task(name="tasks.fail")
def fail():
    raise Oops("from celery")


@app.task(name="tasks.xsum")
def xsum(numbers):
    return sum(numbers)


@app.task(name="tasks.touch", ignore_result=True)
def touch(name):
    open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), "w").close()
"""

CELERIAC_TASKS = CELERY_TASKS.replace("from celery import Celery", "from celeriac import Celery").replace(
    'Oops("from celery")', 'Oops("from celeriac")'
)


def celery_worker(project: Project, module: str, *args: str) -> WorkerProcess:
    """A real Celery worker process on the project's Redis."""
    worker = WorkerProcess(project.path, module, [], project.env(TEST_REDIS_URL=project.broker_url))
    worker.cmd = [sys.executable, "-m", "celery", "-A", module, "worker", "-l", "info", *args]
    project.workers.append(worker)
    return worker.start(60)


@pytest.fixture
def mixed(redis_project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:  # noqa: F811
    monkeypatch.setenv("TEST_REDIS_URL", redis_project.broker_url)
    redis_project.write("ctasks.py", CELERY_TASKS)
    redis_project.write("tasks.py", CELERIAC_TASKS)
    yield redis_project
    # Celery's AsyncResult.__del__ unsubscribes through its app: let it run now, while the
    # interpreter is whole, rather than at exit (where it prints tracebacks).
    import gc

    gc.collect()
    ctasks = sys.modules.get("ctasks")
    if ctasks is not None:
        ctasks.app.close()
