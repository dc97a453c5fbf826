"""Celery's tools reach celeriac workers and celeriac's reach Celery workers (Redis and RabbitMQ)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.conftest import Project
from tests.integration.amqp.conftest import _vhost_cleanup, vhost  # noqa: F401 - fixtures
from tests.interop.conftest import CELERIAC_TASKS, CELERY_TASKS, celery_worker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(params=["redis", "amqp"])
def fleet(request: pytest.FixtureRequest, project: Project) -> Project:
    assert project.monkeypatch is not None
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = f"amqp://guest:guest@127.0.0.1:5672/{request.getfixturevalue('vhost')}"
    project.broker_url = url
    project.result_backend = f"sqlite:///{project.path}/results.db"
    project.monkeypatch.setenv("CELERIAC_BROKER_URL", url)
    project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", project.result_backend)
    project.monkeypatch.setenv("TEST_REDIS_URL", url)
    project.write("ctasks.py", CELERY_TASKS.replace('backend=os.environ["TEST_REDIS_URL"]', "backend=None"))
    project.write("tasks.py", CELERIAC_TASKS.replace('backend=os.environ["TEST_REDIS_URL"]', "backend=None"))
    return project


def _celery(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "ctasks", *args], cwd=project.path,
                          env=project.env(TEST_REDIS_URL=project.broker_url), capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_celery_inspects_and_controls_a_celeriac_worker(fleet: Project) -> None:
    fleet.worker("tasks", "-c", "1", "-n", "ours@%h")
    node = f"ours@{socket.gethostname()}"
    ping = _celery(fleet, "inspect", "ping", "-t", "3")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert f"{node}: OK" in ping.stdout and "pong" in ping.stdout
    limit = _celery(fleet, "control", "rate_limit", "tasks.add", "10/m", "-t", "3")
    assert limit.returncode == 0, limit.stdout + limit.stderr
    assert f"{node}: OK" in limit.stdout and "new rate limit set successfully" in limit.stdout
    registered = _celery(fleet, "inspect", "registered", "-j", "-t", "3")
    assert json.loads(registered.stdout.strip().splitlines()[-1])[node] == ["tasks.add [rate_limit=10/m]",
        "tasks.div", "tasks.fail", "tasks.mul", "tasks.touch", "tasks.xsum"]  # fmt: skip
    stats = _celery(fleet, "inspect", "stats", "-j", "-t", "3")
    assert json.loads(stats.stdout.strip().splitlines()[-1])[node]["pool"]["max-concurrency"] == 1


def test_celeriac_inspects_and_controls_a_celery_worker(fleet: Project) -> None:
    celery_worker(fleet, "ctasks", "-P", "solo", "-n", "theirs@%h")
    node = f"theirs@{socket.gethostname()}"
    ping = fleet.run("-A", "tasks", "inspect", "ping", "-t", "3")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert f"->  {node}: OK" in ping.stdout and "pong" in ping.stdout
    limit = fleet.run("-A", "tasks", "control", "rate_limit", "tasks.add", "10/m", "-t", "3")
    assert limit.returncode == 0, limit.stdout + limit.stderr
    assert f"->  {node}: OK" in limit.stdout and "new rate limit set successfully" in limit.stdout
    from tasks import app  # type: ignore[import-not-found]

    active_queues = app.control.inspect(timeout=3).active_queues() or {}
    assert active_queues[node][0]["name"] == "celery"
    status = fleet.run("-A", "tasks", "status", "-t", "3")
    assert status.returncode == 0 and "1 node online." in status.stdout
