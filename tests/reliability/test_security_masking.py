"""Broker and backend passwords never show: banners, logs, ``inspect conf``, ``report``, errors.

Every secret below contains ``s3cret``; each test collects everything a user would see and
checks that the word is not in it (while the surrounding, non-secret text is).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.exceptions import OperationalError
from tests.conftest import Project, free_port

SECRET = "s3cret"

TASKS = """
from celeriac import Celery

app = Celery("tasks")
app.conf.broker_connection_retry_on_startup = False
app.conf.broker_connection_timeout = 3
app.conf.broker_transport_options = {{"password": "s3cret-option", "visibility_timeout": 3600}}
app.conf.security_key_password = "s3cret-key"
app.conf.redis_password = "s3cret-redis"
app.conf.result_backend_transport_options = {{"sentinel_kwargs": {{"password": "s3cret-sentinel"}}}}
{extra}

@app.task
def add(x, y):
    return x + y
"""


def _unused_port() -> int:
    port = free_port()  # nothing listens there once the probe socket is closed
    return port


def _chain(exc: BaseException | None) -> str:
    """What a traceback prints of an exception and its causes (messages, not the test's source)."""
    parts = []
    while exc is not None:
        parts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def _env(project: Project, broker: str, backend: str | None = None) -> dict[str, str]:
    project.broker_url = broker
    project.result_backend = backend
    return project.env()


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--requirepass", "s3cret-pass"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize(
    "broker",
    [
        "redis://:s3cret-pass@127.0.0.1:{port}/0",
        "redis://user:s3cret-pass@127.0.0.1:{port}/0;redis://:s3cret-2@127.0.0.1:{port}/1",
        "amqp://guest:s3cret@127.0.0.1:{port}//",
    ],
    ids=["redis", "redis-failover", "amqp"],
)
def test_unreachable_broker_worker_banner_and_error(project: Project, broker: str) -> None:
    url = broker.format(port=_unused_port())
    project.write("tasks.py", TASKS.format(extra=""))
    backend = f"redis://:s3cret-backend@127.0.0.1:{_unused_port()}/0"
    done = project.run("-A", "tasks", "worker", "-P", "solo", "-l", "debug", env=_env(project, url, backend))
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "127.0.0.1" in output and "**" in output  # the banner and the error name the broker, masked
    assert SECRET not in output, output


def test_wrong_amqp_password_error_is_masked(project: Project) -> None:
    # The shared RabbitMQ is up: this is a refused login, not an unreachable host.
    url = "amqp://guest:s3cret@127.0.0.1:5672//"
    assert project.monkeypatch is not None
    project.monkeypatch.setenv("CELERIAC_BROKER_URL", url)  # the environment wins over broker=
    app = Celery("t", broker=url, broker_connection_timeout=5, set_as_current=False)
    try:
        with pytest.raises(OperationalError) as raised:
            app.send_task("tasks.add", args=(1, 2))
    finally:
        app.close()
    text = _chain(raised.value)
    assert SECRET not in text, text
    project.write("tasks.py", TASKS.format(extra=""))
    done = project.run("-A", "tasks", "call", "tasks.add", "-a", "[1, 2]", env=_env(project, url))
    assert done.returncode != 0
    assert SECRET not in done.stdout + done.stderr, done.stdout + done.stderr


def test_client_errors_from_an_unreachable_redis_are_masked() -> None:
    url = f"redis://:s3cret-pass@127.0.0.1:{_unused_port()}/0"
    app = Celery("t", broker=url, backend=url, broker_connection_timeout=2, set_as_current=False)
    try:
        with pytest.raises(OperationalError) as raised:
            app.send_task("tasks.add", args=(1, 2))
        text = _chain(raised.value)
        with pytest.raises(Exception) as backend_error:
            app.backend.get_meta("an-id")
        text += _chain(backend_error.value)
        text += repr(app.connection_for_write) + repr(app)
    finally:
        app.close()
    assert SECRET not in text, text


def test_report_masks_every_secret(project: Project) -> None:
    broker, backend = "redis://:s3cret-pass@127.0.0.1:6399/0", "db+postgresql://u:s3cret-db@127.0.0.1/x"
    project.write(
        "tasks.py", TASKS.format(extra=f"app.conf.broker_url = {broker!r}\napp.conf.result_backend = {backend!r}")
    )
    done = project.run("-A", "tasks", "report", env=_env(project, broker, backend))
    assert done.returncode == 0, done.stderr
    assert "broker_transport_options" in done.stdout and "127.0.0.1:6399" in done.stdout
    assert SECRET not in done.stdout + done.stderr, done.stdout


def test_running_worker_log_and_inspect_conf_are_masked(project: Project, password_redis: int) -> None:
    url = f"redis://:s3cret-pass@127.0.0.1:{password_redis}/0"
    project.write("tasks.py", TASKS.format(extra=f"app.conf.broker_url = app.conf.result_backend = {url!r}"))
    env = _env(project, url, url)
    worker = project.worker("tasks", "-P", "solo", "-l", "debug", env=env)
    conf = project.run("-A", "tasks", "inspect", "conf", "--timeout", "5", env=env)
    stats = project.run("-A", "tasks", "inspect", "stats", "--timeout", "5", env=env)
    report = project.run("-A", "tasks", "inspect", "report", "--timeout", "5", env=env)
    assert conf.returncode == 0, conf.stderr
    assert "broker_url" in conf.stdout and f"127.0.0.1:{password_redis}" in conf.stdout
    assert worker.stop() == 0
    seen = "\n".join([worker.output, conf.stdout, conf.stderr, stats.stdout, stats.stderr, report.stdout])
    assert SECRET not in seen, seen
