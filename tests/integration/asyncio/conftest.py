"""Async tasks and the awaitable client, on the embedded broker, Redis and RabbitMQ."""

from __future__ import annotations

import pytest

from tests.conftest import Project
from tests.integration.amqp.conftest import _vhost_cleanup, vhost  # noqa: F401 - fixtures
from tests.integration.redis.conftest import redis_url  # noqa: F401 - fixture

TASKS = """
import asyncio, os
from celeriac import Celery
from celeriac.exceptions import SoftTimeLimitExceeded
from celeriac.signals import task_postrun

app = Celery("tasks")
HERE = os.path.dirname(os.path.abspath(__file__))
_running = 0
_peak = 0


def mark(name):
    open(os.path.join(HERE, name), "w").close()


@task_postrun.connect
def _after(sender=None, task_id=None, state=None, **kw):
    if sender is not None and sender.name == "tasks.double":
        mark(f"postrun-{task_id}-{state}")


@app.task
async def double(x):
    await asyncio.sleep(0.01)
    return x * 2


@app.task
def add(x, y):
    return x + y


@app.task(bind=True)
async def whoami(self):
    await asyncio.sleep(0)
    return {"id": self.request.id, "retries": self.request.retries}


@app.task(bind=True, max_retries=3, default_retry_delay=0)
async def flaky(self, succeed_on):
    await asyncio.sleep(0)
    if self.request.retries < succeed_on:
        raise self.retry()
    return self.request.retries


@app.task
async def fails():
    await asyncio.sleep(0)
    raise KeyError("async boom")


@app.task(soft_time_limit=0.5)
async def soft():
    try:
        await asyncio.sleep(30)
    except SoftTimeLimitExceeded:
        return "caught soft limit"


@app.task(time_limit=0.5)
async def hard():
    await asyncio.sleep(30)


@app.task
async def cancellable(tag):
    mark("started-" + tag)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        mark("cancelled-" + tag)
        raise


@app.task
async def nap(seconds):
    global _running, _peak
    _running += 1
    _peak = max(_peak, _running)
    try:
        await asyncio.sleep(seconds)
    finally:
        _running -= 1
    return _peak


@app.task
async def child_of():
    # Sent from inside an async task without blocking its loop: parent and root ids follow.
    result = await add.adelay(1, 1)
    return result.id
"""


@pytest.fixture(params=["sqlite", "redis", "amqp"])
def any_broker(request: pytest.FixtureRequest, project: Project) -> Project:
    return on_broker(request.param, request, project)


def on_broker(kind: str, request: pytest.FixtureRequest, project: Project) -> Project:
    """The tasks above on ``kind``: the broker's own result store (RabbitMQ: rpc://)."""
    assert project.monkeypatch is not None
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        project.broker_url = project.result_backend = url
    elif kind == "amqp":
        vhost_name = request.getfixturevalue("vhost")
        project.broker_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost_name}"
        project.result_backend = "rpc://"
    if kind != "sqlite":
        project.monkeypatch.setenv("CELERIAC_BROKER_URL", project.broker_url)
        project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", project.result_backend or "")
    project.write("tasks.py", TASKS)
    return project
