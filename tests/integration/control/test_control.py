"""Remote control and inspection with two real workers, on SQLite, Redis and RabbitMQ."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Project
from tests.integration.control.conftest import _on

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _two_workers(project: Project) -> list[str]:
    for name in ("w1", "w2"):
        project.worker("tasks", "-c", "1", "-n", f"{name}@%h")
    import socket

    return [f"w1@{socket.gethostname()}", f"w2@{socket.gethostname()}"]


def test_ping_status_and_destination(any_broker: Project) -> None:
    w1, w2 = _two_workers(any_broker)
    from tasks import app  # type: ignore[import-not-found]

    replies = app.control.inspect(timeout=2).ping()
    assert replies == {w1: {"ok": "pong"}, w2: {"ok": "pong"}}
    only = app.control.inspect(timeout=2, destination=[w2]).ping()
    assert only == {w2: {"ok": "pong"}}
    status = any_broker.run("-A", "tasks", "status", "-t", "2")
    assert status.returncode == 0, status.stderr
    assert f"->  {w1}: OK" in status.stdout and f"->  {w2}: OK" in status.stdout
    assert "2 nodes online." in status.stdout


def test_the_seeds_rate_limit_command(any_broker: Project) -> None:
    w1, w2 = _two_workers(any_broker)
    done = any_broker.run("-A", "tasks", "control", "rate_limit", "tasks.add", "10/m", "-t", "2")
    assert done.returncode == 0, done.stderr
    for node in (w1, w2):
        assert f"->  {node}: OK" in done.stdout
    assert done.stdout.count("        new rate limit set successfully") == 2
    registered = any_broker.run("-A", "tasks", "inspect", "registered", "-d", w1, "-j")
    assert json.loads(registered.stdout) == {w1: ["tasks.add [rate_limit=10/m]", "tasks.sleepy"]}
    bad = any_broker.run("-A", "tasks", "control", "rate_limit", "tasks.nope", "1/s", "-d", w1)
    assert "->  " in bad.stdout and ": ERROR" in bad.stdout and "unknown task" in bad.stdout
    unknown = any_broker.run("-A", "tasks", "control", "rate_limit_please")
    assert unknown.returncode == 2 and "not recognized" in unknown.stderr


def test_inspect_while_a_task_runs_and_terminate(any_broker: Project) -> None:
    w1, w2 = _two_workers(any_broker)
    from tasks import app, sleepy  # type: ignore[import-not-found]

    long = sleepy.delay(60)
    deadline = time.time() + 30
    active: dict[str, list[dict[str, object]]] = {}
    while time.time() < deadline:
        active = app.control.inspect(timeout=1).active() or {}
        if any(active.values()):
            break
        time.sleep(0.2)
    running = [(node, tasks) for node, tasks in active.items() if tasks]
    assert len(running) == 1 and running[0][1][0]["id"] == long.id and running[0][1][0]["args"] == [60]
    node = running[0][0]
    queried = app.control.inspect(timeout=1, destination=[node]).query_task(long.id)
    assert queried and queried[node][long.id][0] == "active"
    stats = app.control.inspect(timeout=1, destination=[node]).stats()
    assert stats and stats[node]["pool"]["max-concurrency"] == 1 and stats[node]["pid"] > 0
    queues = app.control.inspect(timeout=1, destination=[node]).active_queues()
    assert queues and queues[node][0]["name"] == "celery"
    replies = app.control.terminate(long.id, signal="SIGKILL", reply=True, timeout=2)
    assert {node: {"ok": f"terminate: {long.id}"}} in (replies or [])
    with pytest.raises(Exception) as info:
        long.get(timeout=30)
    assert type(info.value).__name__ == "TaskRevokedError"
    revoked = app.control.inspect(timeout=1).revoked() or {}
    assert all(long.id in ids for ids in revoked.values()) and len(revoked) == 2


def test_revoke_before_it_runs_and_while_a_worker_is_down(storing_broker: Project) -> None:
    any_broker = storing_broker
    from tasks import add, app  # type: ignore[import-not-found]

    later = add.apply_async((1, 1), countdown=2)
    app.control.revoke(later.id)  # no worker is running at all
    worker = any_broker.worker("tasks", "-c", "1")
    with pytest.raises(Exception) as info:
        later.get(timeout=30)
    assert type(info.value).__name__ == "TaskRevokedError"
    # Logged just before the state the client read is stored: wait for the worker's line to be read.
    worker.wait_for(f"Discarding revoked task: tasks.add[{later.id}]", timeout=10)
    assert add.delay(2, 2).get(timeout=30) == 4
    assert worker.stop() == 0


def test_queues_pool_events_and_shutdown(any_broker: Project) -> None:
    w1, w2 = _two_workers(any_broker)
    from tasks import add, app  # type: ignore[import-not-found]

    reply = app.control.add_consumer("extra", reply=True, destination=[w1], timeout=2)
    assert reply == [{w1: {"ok": "add consumer extra"}}]
    assert add.apply_async((3, 4), queue="extra").get(timeout=30) == 7
    names = [q["name"] for q in (app.control.inspect(destination=[w1], timeout=1).active_queues() or {})[w1]]
    assert names == ["celery", "extra"]
    assert app.control.cancel_consumer("extra", reply=True, destination=[w1], timeout=2) == [
        {w1: {"ok": "no longer consuming from extra"}}
    ]
    assert app.control.pool_grow(1, reply=True, destination=[w2], timeout=2) == [{w2: {"ok": "pool will grow"}}]
    stats = app.control.inspect(destination=[w2], timeout=1).stats() or {}
    assert stats[w2]["pool"]["max-concurrency"] == 2 and stats[w2]["prefetch_count"] == 8
    assert app.control.pool_shrink(1, reply=True, destination=[w2], timeout=2) == [{w2: {"ok": "pool will shrink"}}]
    assert app.control.enable_events(reply=True, destination=[w1], timeout=2) == [{w1: {"ok": "task events enabled"}}]
    assert app.control.disable_events(reply=True, destination=[w1], timeout=2) == [{w1: {"ok": "task events disabled"}}]
    assert app.control.time_limit("tasks.add", soft=10, hard=20, reply=True, destination=[w1], timeout=2) == [
        {w1: {"ok": "time limits set successfully"}}
    ]
    assert (app.control.inspect(destination=[w1], timeout=1).clock() or {})[w1]["clock"] > 0
    assert "celeriac" in (app.control.inspect(destination=[w1], timeout=1).report() or {})[w1]["ok"]
    assert "MiB" in (app.control.inspect(destination=[w1], timeout=1).memdump() or {})[w1]
    down = any_broker.run("-A", "tasks", "control", "shutdown", "-d", w1, "-t", "2")
    assert down.returncode == 0 and f"->  {w1}: OK" in down.stdout
    time.sleep(0.5)
    alive = app.control.inspect(timeout=2).ping() or {}
    assert list(alive) == [w2]
    nobody = any_broker.run("-A", "tasks", "inspect", "ping", "-d", "nobody@nowhere", "-t", "0.5")
    assert nobody.returncode == 69 and "No nodes replied within time constraint" in nobody.stderr


def test_replies_come_back_after_redis_lost_the_reply_binding(request: pytest.FixtureRequest, project: Project) -> None:
    """Redis restarted without persistence (or flushed) forgets the binding of a client's reply
    queue: the next request declares it again, so the workers' replies reach the client."""
    import socket

    import redis

    on_redis = _on("redis", request, project)
    on_redis.worker("tasks", "-c", "1", "-n", "w1@%h")
    from tasks import app  # type: ignore[import-not-found]

    node = f"w1@{socket.gethostname()}"
    assert app.control.inspect(timeout=2).ping() == {node: {"ok": "pong"}}
    redis.Redis.from_url(on_redis.broker_url).flushdb()
    assert app.control.inspect(timeout=2).ping() == {node: {"ok": "pong"}}
