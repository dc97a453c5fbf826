"""The cache+memcached:// backend against real memcached servers (the test command starts one)."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from celeriac import Celery
from celeriac.exceptions import BackendStoreError, OperationalError
from tests.conftest import Project

URL = "cache+memcached://127.0.0.1:11211/"


def _up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def memcached() -> None:
    if not _up(11211):
        pytest.fail("memcached is not running on 127.0.0.1:11211 (scripts/services installs and starts it)")


@pytest.fixture
def second_memcached() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(["memcached", "-l", "127.0.0.1", "-p", str(port), "-m", "16", "-u", "root"])
    deadline = time.time() + 10
    while not _up(port) and time.time() < deadline:
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def _id() -> str:
    return f"mc-{uuid.uuid4()}"


def test_store_get_forget(tmp_path: object) -> None:
    app = Celery("mc", broker="memory://", backend=URL)
    ok, bad = _id(), _id()
    assert app.AsyncResult(ok).state == "PENDING"
    app.backend.store_result(ok, {"sum": 8}, "SUCCESS")
    app.backend.store_result(bad, ValueError("nope"), "FAILURE", traceback="tb")
    assert app.AsyncResult(ok).get(timeout=5) == {"sum": 8}
    with pytest.raises(ValueError, match="nope"):
        app.AsyncResult(bad).get(timeout=5)
    app.AsyncResult(ok).forget()
    assert app.AsyncResult(ok).state == "PENDING"
    assert "MemcachedBackend" in repr(app.backend)
    app.close()


def test_results_expire() -> None:
    app = Celery("mc", broker="memory://", backend=URL, result_expires=1)
    task_id = _id()
    app.backend.store_result(task_id, 1, "SUCCESS")
    assert app.AsyncResult(task_id).state == "SUCCESS"
    time.sleep(2.1)
    assert app.AsyncResult(task_id).state == "PENDING"
    app.close()


def test_too_large_a_result_is_a_clear_error_not_a_silent_loss() -> None:
    app = Celery("mc", broker="memory://", backend=URL)
    with pytest.raises(BackendStoreError, match="too large for memcached: .* bytes, the item limit is 1048576"):
        app.backend.store_result(_id(), "x" * 2_000_000, "SUCCESS")
    app.close()


def test_several_servers_share_the_keys(second_memcached: int) -> None:
    app = Celery("mc", broker="memory://", backend=f"cache+memcached://127.0.0.1:11211;127.0.0.1:{second_memcached}/")
    ids = [_id() for _ in range(50)]
    for i, task_id in enumerate(ids):
        app.backend.store_result(task_id, i, "SUCCESS")
    assert [app.AsyncResult(task_id).get(timeout=5) for task_id in ids] == list(range(50))
    import pymemcache

    second = pymemcache.Client(("127.0.0.1", second_memcached))
    on_second = sum(1 for task_id in ids if second.get(f"celery-task-meta-{task_id}") is not None)
    assert 0 < on_second < 50  # consistent hashing spread them over both servers
    second.close()
    app.close()


def test_unreachable_server_is_an_operational_error() -> None:
    app = Celery("mc", broker="memory://", backend="cache+memcached://127.0.0.1:1/", broker_connection_timeout=1)
    with pytest.raises(OperationalError):
        app.backend.store_result(_id(), 1, "SUCCESS")
    app.close()


def test_the_tutorial_with_memcached_and_an_oversized_result(project: Project) -> None:
    project.write(
        "tasks.py",
        f"""
from celeriac import Celery

app = Celery("tasks", backend={URL!r})


@app.task
def add(x, y):
    return x + y


@app.task
def huge():
    return "x" * 2_000_000
""",
    )
    project.result_backend = URL
    assert project.monkeypatch is not None
    project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", URL)
    worker = project.worker("tasks", "-c", "2")
    from tasks import add, huge  # type: ignore[import-not-found]

    assert add.delay(4, 4).get(timeout=30) == 8
    with pytest.raises(BackendStoreError, match="too large for memcached"):
        huge.delay().get(timeout=30)
    assert worker.stop() == 0
