"""A real RabbitMQ (127.0.0.1:5672) per test: a vhost of its own, created with rabbitmqctl and deleted after."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project

AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
REDIS_URL = "redis://127.0.0.1:6379/12"

# Several test runs may share this machine's RabbitMQ. Every test holds this lock shared; the
# one that restarts RabbitMQ holds it exclusively, so it never pulls the server from under another.
LOCK_PATH = Path("/tmp/celeriac-tests-rabbitmq.lock")
EXCLUSIVE_WAIT = 60.0

# Deleting a vhost takes rabbitmqctl most of a second: tests start the deletion and move on;
# the session waits for all of them at its end.
_deletions: list[subprocess.Popen[bytes]] = []


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    """Run ``rabbitmqctl`` and return its output (fails the test with rabbitmqctl's own message)."""
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def rabbitmq_available() -> bool:
    try:
        with socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=2):
            return True
    except OSError:
        return False


def queue_counts(vhost: str) -> dict[str, tuple[int, int]]:
    """``{queue: (ready, unacknowledged)}`` as RabbitMQ reports them."""
    out = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", vhost, "name", "messages_ready",
                      "messages_unacknowledged")  # fmt: skip
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            counts[parts[0]] = (int(parts[1]), int(parts[2]))
    return counts


@pytest.fixture(scope="session")
def _vhost_cleanup() -> Iterator[None]:
    yield
    for proc in _deletions:
        proc.wait(120)


def _lock(exclusive: bool) -> int:
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
    if not exclusive:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd
    deadline = time.monotonic() + EXCLUSIVE_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                return fd  # other runs keep RabbitMQ busy: go ahead rather than never run
            time.sleep(0.1)


@pytest.fixture
def vhost(_vhost_cleanup: None, request: pytest.FixtureRequest) -> Iterator[str]:
    if not rabbitmq_available():
        pytest.fail(f"RabbitMQ is not running on {AMQP_HOST}:{AMQP_PORT} (scripts/services starts it)")
    lock = _lock(exclusive="restarts_rabbitmq" in request.fixturenames)
    name = f"celeriac-test-{uuid.uuid4().hex[:12]}"
    try:
        rabbitmqctl("add_vhost", name)
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        _deletions.append(
            subprocess.Popen(
                ["rabbitmqctl", "delete_vhost", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        os.close(lock)  # releases the lock


@pytest.fixture
def restarts_rabbitmq() -> None:
    """Marks a test that stops RabbitMQ: its vhost fixture waits for every other test to let go of it."""


@pytest.fixture
def redis_results() -> Iterator[tuple[str, str]]:
    """A Redis result store URL and a key prefix of this test's own (``result_backend_transport_options``);
    its keys are deleted after. (No FLUSHDB: other test runs may share the database.)"""
    import redis

    prefix = f"celeriac-test-{uuid.uuid4().hex[:12]}:"
    yield REDIS_URL, prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def amqp_url(vhost: str) -> str:
    return f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{vhost}"


@pytest.fixture
def amqp_project(project: Project, amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project whose broker is the test's vhost and whose results go back over it (``rpc://``)."""
    project.broker_url = amqp_url
    project.result_backend = "rpc://"
    monkeypatch.setenv("CELERIAC_BROKER_URL", amqp_url)
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", "rpc://")
    return project


def close_amqp_apps() -> None:
    """Close the AMQP connections of this test's apps, before its vhost goes away."""
    from celeriac._state import all_apps
    from celeriac.brokers.amqp import AMQPBroker

    for app in all_apps():
        if isinstance(app._broker, AMQPBroker):
            app.close()


@pytest.fixture(autouse=True)
def _close_apps() -> Iterator[None]:
    yield
    close_amqp_apps()
