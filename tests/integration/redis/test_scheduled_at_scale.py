"""100,000 countdown tasks cost a worker no memory: they wait in the broker (Redis and SQLite)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis

from celeriac.brokers.base import Envelope
from celeriac.brokers.redis import RedisBroker
from celeriac.brokers.sqlite import SQLiteBroker
from celeriac.protocol import TaskMessage, encode
from tests.conftest import Project

N = 100_000
TASKS = """
from celeriac import Celery

app = Celery("tasks")


@app.task
def add(x, y):
    return x + y
"""


def _tree_rss_kib(pid: int) -> int:
    """VmRSS of a process and its children (the pool)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _envelopes(count: int, eta: datetime) -> list[Envelope]:
    return [
        encode(TaskMessage(id=f"eta-{i}", task="tasks.add", args=(i, i), eta=eta.isoformat())) for i in range(count)
    ]


def test_100000_countdown_tasks_wait_in_redis(redis_project: Project, rclient: redis.Redis, redis_url: str) -> None:
    redis_project.write("tasks.py", TASKS)
    worker = redis_project.worker("tasks", "-c", "2", "--prefetch-multiplier", "100")
    from tasks import add  # type: ignore[import-not-found]

    assert add.delay(1, 1).get(timeout=30) == 2
    before = _tree_rss_kib(worker.pid)
    broker = RedisBroker(redis_url)
    eta = datetime.now(timezone.utc) + timedelta(hours=1)
    items = [json.dumps(broker._payload(env, "", "celery", 0)) for env in _envelopes(N, eta)]
    with rclient.pipeline(transaction=False) as pipe:
        for item in items:
            pipe.lpush("celery", item)
        pipe.execute()
    deadline = time.time() + 240
    while rclient.zcard("celeriac.delayed") < N and time.time() < deadline:
        time.sleep(0.5)
    assert rclient.zcard("celeriac.delayed") == N
    assert rclient.hlen("unacked") == 0  # nothing held by the worker, nothing to time out
    after = _tree_rss_kib(worker.pid)
    assert after - before < 40 * 1024, f"worker RSS grew from {before} KiB to {after} KiB"
    assert add.delay(2, 2).get(timeout=30) == 4  # and it still serves the queue
    assert worker.stop() == 0


def test_100000_countdown_tasks_wait_in_sqlite(project: Project) -> None:
    project.write("tasks.py", TASKS)
    worker = project.worker("tasks", "-c", "2")
    from tasks import add  # type: ignore[import-not-found]

    assert add.delay(1, 1).get(timeout=30) == 2
    before = _tree_rss_kib(worker.pid)
    broker = SQLiteBroker(project.broker_url)
    eta = datetime.now(timezone.utc) + timedelta(hours=1)
    with broker.db.transaction():
        for envelope in _envelopes(N, eta):
            broker.publish(envelope, exchange="", routing_key="celery", not_before=eta)
    assert broker.queue_size("celery") == N
    assert add.delay(2, 2).get(timeout=30) == 4
    time.sleep(2)
    after = _tree_rss_kib(worker.pid)
    assert after - before < 40 * 1024, f"worker RSS grew from {before} KiB to {after} KiB"
    assert "eta-" not in worker.output  # not one of them was handed to the worker
    assert worker.stop() == 0
    broker.close()
