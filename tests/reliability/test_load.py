"""Load: many tasks through one worker and through four, on Redis and on the embedded SQLite broker.
Every result is checked, the queue is empty afterwards, and each worker's memory is recorded.

``CELERIAC_LOAD_TASKS`` sets the number of tasks (the CI default keeps the four runs near a minute on
two cores: 15,000 on Redis, 5,000 on SQLite). docs/reliability.md has the figures of a 100,000-task run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from celeriac.brokers import broker_class
from tests.conftest import Project, WorkerProcess

DEFAULT_TASKS = {"redis": 15_000, "sqlite": 5_000}
DEADLINE = 600.0  # seconds for all results; a guard against hanging, not a performance target

TASKS = """
from celeriac import Celery

app = Celery("tasks")


@app.task
def square(i):
    return i * i
"""


def _count(kind: str) -> int:
    value = os.environ.get("CELERIAC_LOAD_TASKS")
    return int(value) if value else DEFAULT_TASKS[kind]


def _rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children (the pool processes), in KiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for each in pids:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except FileNotFoundError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total


@pytest.mark.parametrize("workers", [1, 4])
def test_load(broker_project: Project, workers: int, record_property: pytest.RecordProperty) -> None:
    project = broker_project
    kind = "redis" if project.broker_url.startswith("redis") else "sqlite"
    n = _count(kind)
    project.write("tasks.py", TASKS)
    from tasks import app, square  # type: ignore[import-not-found]

    args = ("-c", "2") if workers == 1 else ("-c", "1")
    running: list[WorkerProcess] = [project.worker("tasks", *args, "-n", f"w{k}@%h") for k in range(workers)]
    started = time.monotonic()
    ids = [square.delay(i).id for i in range(n)]
    sent = time.monotonic()
    backend = app.backend
    pending = dict(enumerate(ids))
    peak = [0] * workers
    deadline = started + DEADLINE
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} of {n} results missing after {DEADLINE}s"
        for k, worker in enumerate(running):
            peak[k] = max(peak[k], _rss_kib(worker.pid))
        batch = list(pending.items())[:2000]
        metas = backend.load_many([task_id for _, task_id in batch])
        done = 0
        for (i, task_id), meta in zip(batch, metas, strict=True):
            if meta is not None and meta.ready:
                assert meta.status == "SUCCESS" and meta.result == i * i, (task_id, meta)
                del pending[i]
                done += 1
        if not done:
            time.sleep(0.2)
    finished = time.monotonic()
    final = [_rss_kib(w.pid) for w in running]
    for worker in running:
        assert worker.stop() == 0
    # Every task ran, and nothing is left behind.
    assert sum(w.output.count("succeeded in") for w in running) >= n
    broker = broker_class(project.broker_url)(project.broker_url, {})
    assert broker.queue_size("celery") == 0
    broker.close()
    if workers > 1:
        assert all("succeeded in" in w.output for w in running)  # every worker took part
    report = (
        f"{kind}, {workers} worker(s), {n} tasks: sent in {sent - started:.1f}s, all done in "
        f"{finished - started:.1f}s ({n / (finished - started):.0f} tasks/s); worker RSS KiB "
        f"peak {peak}, at end {final}"
    )
    print(report)
    record_property("load", report)
    for k in range(workers):
        record_property(f"worker_{k}_peak_rss_kib", peak[k])
