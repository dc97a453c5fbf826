"""A network cut between the worker and its broker, through a TCP proxy the test controls.

Two kinds of cut, on Redis and on RabbitMQ:

* ``drop``: every connection is reset and new ones are refused (a broker host that went away);
* ``stall``: connections stay open but no byte moves (a cable pulled, a firewall that forgets
  the connection): nothing tells either side, only timeouts and heartbeats notice.

The worker reaches the broker only through the proxy; the test's own client goes straight to the
broker to queue tasks while the worker is cut off, and a second client goes through the proxy to
show that ``delay()`` fails with ``OperationalError`` instead of hanging.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis

from celeriac import Celery
from celeriac.exceptions import OperationalError
from tests.conftest import Project
from tests.reliability.proxy import TCPProxy

CONNECTION_TIMEOUT = 2.0  # broker_connection_timeout for every app in these tests
RESUME_WITHIN = 30.0

TASKS = """
from celeriac import Celery

app = Celery("tasks")
app.conf.broker_connection_timeout = 2.0
app.conf.broker_heartbeat = 4  # RabbitMQ: a stalled connection is noticed within two beats


@app.task
def add(x, y):
    return x + y
"""


def _urls(kind: str, proxy: TCPProxy, request: pytest.FixtureRequest) -> tuple[str, str]:
    """(direct URL, URL through the proxy) of the test's broker."""
    if kind == "redis":
        direct = request.getfixturevalue("redis_url")
        db = direct.rsplit("/", 1)[1]
        return direct, proxy.url("redis", f"/{db}")
    vhost = request.getfixturevalue("vhost")
    return request.getfixturevalue("amqp_url"), proxy.url("amqp", f"/{vhost}", "guest:guest@")


def _timed(fn: Callable[[], object], limit: float) -> tuple[BaseException | None, float]:
    """Run ``fn`` in a thread; (what it raised, seconds taken). Fails the test if it is still
    running after ``limit`` seconds: the point is that it returns."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still blocked after {limit}s: it hangs"
    return outcome[0], time.monotonic() - started


@pytest.mark.parametrize("cut", ["drop", "stall"])
@pytest.mark.parametrize("kind", ["redis", "amqp"])
def test_worker_resumes_after_a_network_cut_and_loses_nothing(
    kind: str,
    cut: str,
    project: Project,
    request: pytest.FixtureRequest,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy: TCPProxy = request.getfixturevalue(f"{kind}_proxy")
    direct, proxied = _urls(kind, proxy, request)
    project.write("tasks.py", TASKS)
    project.broker_url, project.result_backend = proxied, redis_url
    monkeypatch.delenv("CELERIAC_BROKER_URL")  # it would win over the URLs given to the clients below
    worker = project.worker("tasks", "-P", "threads", "-c", "4")
    client = Celery("client", broker=direct, backend=redis_url, broker_connection_timeout=CONNECTION_TIMEOUT,
                    set_as_current=False)  # fmt: skip
    behind = Celery("behind", broker=proxied, backend=redis_url, broker_connection_timeout=CONNECTION_TIMEOUT,
                    set_as_current=False)  # fmt: skip
    try:
        before = [client.send_task("tasks.add", (i, 1)) for i in range(10)]
        assert [r.get(timeout=30) for r in before] == [i + 1 for i in range(10)]
        assert behind.send_task("tasks.add", (0, 0)).get(timeout=30) == 0  # the proxied client works too

        getattr(proxy, cut)()
        worker.wait_for("Cannot reach the broker", timeout=RESUME_WITHIN)
        # delay() through the cut: a clear error, within the documented bound, never a hang.
        bound = CONNECTION_TIMEOUT + (10.0 if kind == "amqp" else 1.0)  # AMQP: + confirm_timeout
        raised, took = _timed(lambda: behind.send_task("tasks.add", (1, 1)), limit=bound + 20)
        assert isinstance(raised, OperationalError), raised
        assert took < bound + 2.0, f"delay() took {took:.1f}s to fail"
        assert "127.0.0.1" in str(raised)
        # Tasks queued while the worker is cut off wait in the broker.
        during = [client.send_task("tasks.add", (i, 100)) for i in range(20)]
        time.sleep(1.0)
        assert all(r.state == "PENDING" for r in during)

        # The cut ends as they usually do: connections open during it are gone. (A stall that resumes
        # is the test below.)
        proxy.restore(reset=True)
        restored = time.monotonic()
        assert [r.get(timeout=RESUME_WITHIN) for r in during] == [i + 100 for i in range(20)]
        assert time.monotonic() - restored < RESUME_WITHIN
        worker.wait_for("Connected to the broker again; resuming", timeout=5)
        # The proxied client recovers on its own too.
        assert behind.send_task("tasks.add", (2, 2)).get(timeout=RESUME_WITHIN) == 4
        after = [client.send_task("tasks.add", (i, 200)) for i in range(10)]
        assert [r.get(timeout=30) for r in after] == [i + 200 for i in range(10)]
        assert worker.proc is not None and worker.proc.poll() is None
        assert worker.stop() == 0
    finally:
        client.close()
        behind.close()


def _wait_until_blocked_in_redis(rclient: redis.Redis, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    db = str(rclient.get_connection_kwargs()["db"])  # CLIENT LIST is server-wide
    while time.monotonic() < deadline:
        clients = rclient.client_list()
        if any(c.get("cmd") == "blmove" and "b" in c.get("flags", "") and c.get("db") == db for c in clients):
            return
        time.sleep(0.01)
    raise AssertionError("the worker never waited in BLMOVE")


def test_redis_message_arriving_during_a_stall_is_not_lost(
    project: Project, redis_proxy: TCPProxy, redis_url: str, rclient: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("tasks.py", TASKS)
    db = redis_url.rsplit("/", 1)[1]
    project.broker_url, project.result_backend = redis_proxy.url("redis", f"/{db}"), redis_url
    monkeypatch.delenv("CELERIAC_BROKER_URL")
    worker = project.worker("tasks", "-P", "threads", "-c", "2")
    client = Celery("client", broker=redis_url, backend=redis_url, set_as_current=False)
    try:
        assert client.send_task("tasks.add", (1, 1)).get(timeout=30) == 2
        _wait_until_blocked_in_redis(rclient)
        redis_proxy.stall()  # the worker is waiting in Redis: the reply announcing a message goes nowhere
        results = [client.send_task("tasks.add", (i, 1)) for i in range(5)]
        worker.wait_for("Cannot reach the broker", timeout=RESUME_WITHIN)
        redis_proxy.restore()
        assert [r.get(timeout=10) for r in results] == [i + 1 for i in range(5)]
        assert worker.stop() == 0
    finally:
        client.close()
