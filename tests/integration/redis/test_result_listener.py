"""Waiting on many Redis results leaves nothing behind: no subscriptions, no waiters, bounded memory."""

from __future__ import annotations

import gc
import threading
import time

import pytest
import redis

from celeriac import Celery
from celeriac.backends import _redis_listener as listener_module
from celeriac.backends._redis_listener import ResultListener


def test_thousands_of_waits_leave_no_subscriptions(redis_url: str, rclient: redis.Redis) -> None:
    app = Celery("leak", broker=redis_url, backend=redis_url)
    backend = app.backend
    ids = [f"wait-{i}" for i in range(1000)]
    listener = backend._listener()  # type: ignore[attr-defined]

    def producer() -> None:
        # Store each result only once its get() is subscribed, so every get() really waits.
        for task_id in ids:
            channel = backend.task_key(task_id).encode()  # type: ignore[attr-defined]
            deadline = time.time() + 10
            while channel not in listener._confirmed and time.time() < deadline:
                time.sleep(0.0002)
            backend.store_result(task_id, task_id, "SUCCESS")

    thread = threading.Thread(target=producer)
    thread.start()
    assert [app.AsyncResult(task_id).get(timeout=10) for task_id in ids] == ids
    thread.join(30)
    deadline = time.time() + 10
    while (listener._waiters or rclient.pubsub_channels(b"celery-task-meta-wait-*")) and time.time() < deadline:
        time.sleep(0.05)
    assert listener._waiters == {} and listener._confirmed == set()
    # Only this test's channels: PUBSUB CHANNELS is server-wide, other databases' clients share it.
    assert rclient.pubsub_channels(b"celery-task-meta-wait-*") == []
    app.close()


def test_reading_100000_results_does_not_grow_memory(redis_url: str, rclient: redis.Redis) -> None:
    app = Celery("leak", broker=redis_url, backend=redis_url)
    # The layout store_result writes, in bulk.
    with rclient.pipeline(transaction=False) as pipe:
        for i in range(100_000):
            pipe.set(f"celery-task-meta-r{i}", b'{"status": "SUCCESS", "result": %d, "traceback": null, '
                     b'"children": [], "date_done": null, "task_id": "r%d"}' % (i, i))  # fmt: skip
        pipe.execute()
    for i in range(1_000):  # warm up caches and pools
        app.AsyncResult(f"r{i}").get(timeout=5)
    gc.collect()
    before = len(gc.get_objects())
    total = 0
    for i in range(100_000):
        total += app.AsyncResult(f"r{i}").get(timeout=5)
    gc.collect()
    kept = len(gc.get_objects()) - before
    assert total == sum(range(100_000))
    assert kept < 1_000, f"{kept} objects kept after reading 100,000 results"
    app.close()


def _wait(listener: ResultListener, key: str, timeout: float = 5) -> bytes:
    """A get() on ``key`` as the backend does it: until a value starting with b"done" is seen."""
    waiter = listener.add(key)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert listener.wait(waiter, deadline=deadline), f"no value for {key} in {timeout}s"
            waiter.event.clear()
            if waiter.error is not None:
                raise waiter.error
            if waiter.data is not None and waiter.data.startswith(b"done"):
                return waiter.data
    finally:
        listener.remove(waiter)


@pytest.mark.parametrize("protocol", [2, 3])
def test_listener_reads_what_was_stored_before_and_hears_what_comes_after(
    redis_url: str, protocol: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_url, protocol=protocol)
    listener = ResultListener(client)
    if protocol == 3:
        # RESP3: the key is read on the listener's own connection, in the write that subscribes.
        monkeypatch.setattr(listener_module, "execute_raw", None)
    client.set("before", "done-before")
    assert _wait(listener, "before") == b"done-before"
    assert listener._resp3 is (protocol == 3)

    def store_later() -> None:
        time.sleep(0.2)
        client.set("after", "done-after")
        client.publish("after", "done-after")

    thread = threading.Thread(target=store_later)
    thread.start()
    assert _wait(listener, "after") == b"done-after"
    thread.join()
    client.rpush("a-list", "x")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        _wait(listener, "a-list")
    time.sleep(0.1)
    assert listener._waiters == {} and client.pubsub_channels("*after*") == []
    listener.close()
    client.close()


def test_listener_resubscribes_and_rereads_after_its_connection_is_cut(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    listener = ResultListener(client)
    waiter = listener.add("cut")
    assert listener.wait(waiter, deadline=time.monotonic() + 5) and waiter.data is None  # read: not there yet
    waiter.event.clear()
    # Cut the listener's connection, then store without a PUBLISH: only the read after resubscribing sees it.
    (own,) = [
        c
        for c in client.client_list()
        if int(c.get("sub", 0)) > 0 and c["db"] == str(client.get_connection_kwargs()["db"])
    ]
    client.client_kill_filter(_id=own["id"])
    client.set("cut", "done-cut")
    deadline = time.monotonic() + 5
    while waiter.data is None:
        assert listener.wait(waiter, deadline=deadline)
        waiter.event.clear()
    assert waiter.data == b"done-cut"
    listener.remove(waiter)
    listener.close()
    client.close()
