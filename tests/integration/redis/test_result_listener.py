"""Waiting on many Redis results leaves nothing behind: no subscriptions, no waiters, bounded memory."""

from __future__ import annotations

import gc
import threading
import time

import redis

from celeriac import Celery


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
    while (listener._waiters or rclient.pubsub_channels(b"celery-task-meta-*")) and time.time() < deadline:
        time.sleep(0.05)
    assert listener._waiters == {} and listener._confirmed == set()
    assert rclient.pubsub_channels(b"celery-task-meta-*") == []
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
