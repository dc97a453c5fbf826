"""``async def`` tasks on every pool: results, retries, signals, time limits, revokes, concurrency."""

from __future__ import annotations

import time

import pytest

from celeriac.exceptions import TaskRevokedError, TimeLimitExceeded
from tests.conftest import Project
from tests.integration.asyncio.conftest import on_broker

POOLS = ["asyncio", "threads", "solo", "prefork"]


def worker_name(worker: object) -> str:
    import re

    match = re.search(r"(celery@\S+) ready\.", getattr(worker, "output", ""))
    assert match, "no ready line"
    return match.group(1)


@pytest.fixture
def tasks_project(request: pytest.FixtureRequest, project: Project) -> Project:
    return on_broker("sqlite", request, project)


@pytest.mark.parametrize("pool", POOLS)
def test_async_and_sync_tasks_share_a_worker(tasks_project: Project, pool: str) -> None:
    worker = tasks_project.worker("tasks", "-P", pool, "-c", "4")
    from tasks import add, double, fails, flaky, whoami  # type: ignore[import-not-found]

    first = double.delay(21)
    assert first.get(timeout=30) == 42
    assert add.delay(2, 3).get(timeout=30) == 5  # a sync task on the same worker
    who = whoami.delay()
    assert who.get(timeout=30) == {"id": who.id, "retries": 0}  # task.request inside the coroutine
    assert flaky.delay(2).get(timeout=30) == 2  # self.retry() from a coroutine
    with pytest.raises(KeyError, match="async boom"):
        fails.delay().get(timeout=30)
    assert (tasks_project.path / f"postrun-{first.id}-SUCCESS").exists()  # signals fire as for sync tasks
    assert f"({pool})" in worker.output
    assert worker.stop() == 0


@pytest.mark.parametrize("pool", POOLS)
def test_time_limits_reach_the_coroutine(tasks_project: Project, pool: str) -> None:
    worker = tasks_project.worker("tasks", "-P", pool, "-c", "2")
    from tasks import double, hard, soft  # type: ignore[import-not-found]

    # The soft limit is raised at the await the coroutine is suspended on; it can catch it.
    assert soft.delay().get(timeout=30) == "caught soft limit"
    with pytest.raises(TimeLimitExceeded):
        hard.delay().get(timeout=30)
    assert double.delay(1).get(timeout=30) == 2  # the slot came back
    assert worker.stop() == 0


def test_revoke_with_terminate_cancels_the_coroutine(tasks_project: Project) -> None:
    worker = tasks_project.worker("tasks", "-P", "asyncio", "-c", "10")
    from tasks import app, cancellable, double  # type: ignore[import-not-found]

    result = cancellable.delay("one")
    worker.wait_for(f"Task tasks.cancellable[{result.id}] received")
    deadline = time.monotonic() + 10
    while not (tasks_project.path / "started-one").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [t["id"] for t in app.control.inspect(timeout=1).active()[worker_name(worker)]] == [result.id]
    result.revoke(terminate=True)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert result.state == "REVOKED"
    # CancelledError was raised inside the coroutine (its handler may run just after the state is stored).
    deadline = time.monotonic() + 10
    while not (tasks_project.path / "cancelled-one").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (tasks_project.path / "cancelled-one").exists()
    assert double.delay(4).get(timeout=30) == 8
    assert worker.stop() == 0


def test_a_thousand_coroutines_on_one_worker(request: pytest.FixtureRequest, project: Project) -> None:
    on_broker("redis", request, project)
    worker = project.worker("tasks", "-P", "asyncio", "-c", "1000")
    from tasks import nap  # type: ignore[import-not-found]

    started = time.monotonic()
    results = [nap.delay(0.1) for _ in range(1000)]
    peaks = [r.get(timeout=60) for r in results]
    elapsed = time.monotonic() - started
    # Each task reports how many were sleeping at once: hundreds, on one event loop.
    assert max(peaks) >= 200, max(peaks)
    print(f"1000 x asyncio.sleep(0.1) at -c 1000: {elapsed:.2f}s, peak concurrency {max(peaks)}")
    assert worker.stop() == 0


def test_async_task_sends_a_child_without_blocking(tasks_project: Project) -> None:
    worker = tasks_project.worker("tasks", "-P", "asyncio", "-c", "4")
    from tasks import add, child_of  # type: ignore[import-not-found]

    parent = child_of.delay()
    child_id = parent.get(timeout=30)
    assert add.AsyncResult(child_id).get(timeout=30) == 2
    assert worker.stop() == 0
