"""Canvas workflows run by real workers: on the embedded broker, on Redis, and with SQL result stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Project
from tests.integration.database.conftest import Database, database  # noqa: F401 - fixture
from tests.integration.redis.conftest import redis_url  # noqa: F401 - fixture

TASKS = """
import os
from celeriac import Celery, group

app = Celery("tasks")
HERE = os.path.dirname(os.path.abspath(__file__))


def log(name, line):
    # One line per call, appended: the tests count the lines.
    with open(os.path.join(HERE, name), "a") as f:
        f.write(f"{line}\\n")


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task
def collect(values):
    log("body.log", len(values))
    return sum(values)


@app.task
def fail(*args):
    raise ValueError("canvas boom")


@app.task
def errback(request, exc, traceback):
    log("errbacks.log", f"{request.id} {type(exc).__name__}")


@app.task
def on_error_id(task_id):
    log("errback-ids.log", task_id)


@app.task(bind=True)
def ids(self, value):
    return [value, self.request.parent_id, self.request.root_id]


@app.task(bind=True)
def replaced(self, x):
    raise self.replace(add.s(x, 100))


@app.task(bind=True)
def replaced_by_group(self, n):
    raise self.replace(group(add.s(i, i) for i in range(n)))


@app.task
def spawn():
    return add.delay(20, 22).id
"""


def canvas_project(project: Project, kind: str, request: pytest.FixtureRequest) -> Project:
    """The tasks above on ``kind``: 'sqlite' (embedded broker and store), 'redis', or a SQL store."""
    assert project.monkeypatch is not None
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        project.broker_url = project.result_backend = url
    elif kind == "database":
        db: Database = request.getfixturevalue("database")
        project.result_backend = db.url
        settings = "\n".join(f"app.conf.{k} = {v!r}" for k, v in db.settings.items())
        project.write("tasks.py", TASKS + "\n" + settings + "\n")
    if kind != "database":
        project.write("tasks.py", TASKS)
    project.monkeypatch.setenv("CELERIAC_BROKER_URL", project.broker_url)
    if project.result_backend:
        project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", project.result_backend)
    return project


@pytest.fixture(params=["sqlite", "redis"])
def canvas(request: pytest.FixtureRequest, project: Project) -> Project:
    proj = canvas_project(project, request.param, request)
    proj.worker("tasks", "-P", "threads", "-c", "8")
    return proj


def lines(project: Project, name: str) -> list[str]:
    path: Path = project.path / name
    return path.read_text().splitlines() if path.exists() else []


def wait_lines(project: Project, name: str, count: int = 1, timeout: float = 30.0, settle: float = 1.0) -> list[str]:
    """The lines of ``name`` once it has ``count`` of them, after ``settle`` more seconds (so that a
    duplicate, if one were coming, has had the time to show up too)."""
    import time

    deadline = time.monotonic() + timeout
    while len(lines(project, name)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(settle)
    return lines(project, name)
