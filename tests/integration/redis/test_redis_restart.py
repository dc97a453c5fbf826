"""A Redis restart under a running worker: it reconnects and carries on (the test restarts the real server)."""

from __future__ import annotations

import socket
import subprocess
import time

import redis

from tests.conftest import Project
from tests.integration.redis.test_redis_broker import TASKS

START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


def _port_open() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def restart_redis() -> None:
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=30)
    deadline = time.time() + 30
    while _port_open() and time.time() < deadline:
        time.sleep(0.1)
    assert not _port_open(), "redis did not stop"
    time.sleep(1.0)  # the worker notices the outage
    subprocess.run(START, check=True, capture_output=True, timeout=30)
    deadline = time.time() + 30
    while not _port_open() and time.time() < deadline:
        time.sleep(0.1)
    assert _port_open(), "redis did not come back"


def test_worker_resumes_after_redis_restart(redis_project: Project, redis_url: str) -> None:
    redis_project.write("tasks.py", TASKS)
    worker = redis_project.worker("tasks", "-c", "2")
    from tasks import add  # type: ignore[import-not-found]

    assert add.delay(1, 1).get(timeout=30) == 2
    restart_redis()
    started = time.time()
    result = add.delay(2, 2)
    assert result.get(timeout=30) == 4
    assert time.time() - started < 30
    assert worker.proc is not None and worker.proc.poll() is None
    assert worker.stop() == 0
    redis.Redis.from_url(redis_url).flushdb()
