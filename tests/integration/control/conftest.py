"""The same remote-control tests on the embedded SQLite broker, Redis and RabbitMQ."""

from __future__ import annotations

import pytest

from tests.conftest import Project
from tests.integration.amqp.conftest import _vhost_cleanup, vhost  # noqa: F401 - fixtures
from tests.integration.redis.conftest import redis_url  # noqa: F401 - fixture

TASKS = """
import os, time
from celeriac import Celery

app = Celery("tasks")


@app.task
def add(x, y):
    return x + y


@app.task
def sleepy(seconds):
    time.sleep(seconds)
    return seconds
"""


@pytest.fixture(params=["sqlite", "redis", "amqp"])
def any_broker(request: pytest.FixtureRequest, project: Project) -> Project:
    return _on(request.param, request, project)


@pytest.fixture(params=["sqlite", "redis"])
def storing_broker(request: pytest.FixtureRequest, project: Project) -> Project:
    """The brokers that also remember revokes for workers that are down (RabbitMQ can't)."""
    return _on(request.param, request, project)


def _on(kind: str, request: pytest.FixtureRequest, project: Project) -> Project:
    """A project on each broker with fanout; results in the same store (RabbitMQ: SQLite results)."""
    assert project.monkeypatch is not None
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        project.broker_url = project.result_backend = url
    elif kind == "amqp":
        vhost_name = request.getfixturevalue("vhost")
        project.broker_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost_name}"
        project.result_backend = f"sqlite:///{project.path}/results.db"
    if kind != "sqlite":
        project.monkeypatch.setenv("CELERIAC_BROKER_URL", project.broker_url)
        project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", project.result_backend or "")
    project.write("tasks.py", TASKS)
    return project


from tests.integration.redis.conftest import redis_project  # noqa: E402,F401 - fixture
