"""The asyncio pool's hand-offs: jobs reach the loop, and outcomes leave it, in batches; a finished
coroutine's slot takes its next job straight from the consumer."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery
from celeriac.worker.execute import Outcome
from celeriac.worker.pools.aio import AsyncioPool
from celeriac.worker.pools.base import Job, OnDone

WAIT = 10.0  # seconds before a test gives up on something that should happen at once


@pytest.fixture
def pool(app: Celery) -> Iterator[AsyncioPool]:
    @app.task(name="t.double")
    async def double(x: int) -> int:
        return x * 2

    @app.task(name="t.triple")
    def triple(x: int) -> int:
        return x * 3

    running = AsyncioPool(app, 4)
    running.start()
    yield running
    running.stop(graceful=True, timeout=WAIT)


def job(name: str, x: int) -> Job:
    task_id = uuid.uuid4().hex
    return Job(name, task_id, {"id": task_id, "task": name, "args": [x], "kwargs": {}})


class Outcomes:
    """Collects outcomes, with the thread each came from."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[Outcome] = []
        self.threads: set[threading.Thread] = set()
        self.changed = threading.Condition(self.lock)

    def on_done(self, outcome: Outcome) -> None:
        with self.changed:
            self.got.append(outcome)
            self.threads.add(threading.current_thread())
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[Outcome]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.got) >= count, WAIT), f"{len(self.got)} of {count}"
            return list(self.got)


def hold_loop(pool: AsyncioPool) -> threading.Event:
    """Keep the pool's loop busy until the returned event is set (jobs submitted meanwhile wait)."""
    release, held = threading.Event(), threading.Event()

    def block() -> None:
        held.set()
        release.wait(WAIT)

    pool._loop.call_soon_threadsafe(block)
    assert held.wait(WAIT)
    return release


def test_a_burst_of_jobs_wakes_the_loop_once(pool: AsyncioPool, monkeypatch: pytest.MonkeyPatch) -> None:
    wakes: list[Any] = []
    real = pool._loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any) -> Any:
        wakes.append(callback)
        return real(callback, *args)

    release = hold_loop(pool)
    monkeypatch.setattr(pool._loop, "call_soon_threadsafe", counting)
    outcomes = Outcomes()
    jobs = [job("t.double", i) for i in range(4)]
    for each in jobs:
        pool.submit(each, outcomes.on_done)
    release.set()
    got = outcomes.wait_for(4)
    assert sorted(o.task_id for o in got) == sorted(j.task_id for j in jobs)
    assert all(o.state == "SUCCESS" for o in got)
    # One wake-up carried the four jobs submitted while the loop was busy (one each before).
    assert len(wakes) == 1


def test_outcomes_are_handed_over_outside_the_loop(pool: AsyncioPool) -> None:
    outcomes = Outcomes()
    for i in range(3):
        pool.submit(job("t.double", i), outcomes.on_done)
    outcomes.wait_for(3)
    # One thread beside the loop, neither the loop's (the consumer's work there would stall the
    # coroutines) nor the submitter's.
    assert len(outcomes.threads) == 1
    assert outcomes.threads.isdisjoint({pool._thread, threading.current_thread()})


def test_a_finished_slot_takes_its_next_job_from_the_consumer(pool: AsyncioPool) -> None:
    outcomes = Outcomes()
    waiting = [job("t.double", i) for i in range(1, 6)] + [job("t.triple", 7)]
    taken: list[str] = []
    freed = threading.Event()

    def next_job() -> tuple[Job, OnDone] | None:
        if not waiting:
            return None
        taken.append(threading.current_thread().name)
        return waiting.pop(0), outcomes.on_done

    pool.next_job = next_job
    pool.on_capacity = freed.set
    pool.submit(job("t.double", 0), outcomes.on_done)
    got = outcomes.wait_for(7)
    assert sorted((o.retval_repr or "") for o in got) == sorted(["0", "2", "4", "6", "8", "10", "21"])
    # All six came through the slot the first job freed, none through submit().
    assert taken == ["AsyncioPoolSettle"] * 6
    # Once nothing was left to take, the slot was given back and the consumer told.
    assert freed.wait(WAIT)
    assert pool.free_slots() == 4


def test_a_stopping_pool_takes_no_next_job(app: Celery) -> None:
    @app.task(name="t.one")
    async def one() -> int:
        return 1

    pool = AsyncioPool(app, 2)
    pool.start()
    asked: list[int] = []

    def next_job() -> tuple[Job, OnDone] | None:
        asked.append(1)
        return None

    pool.next_job = next_job
    outcomes = Outcomes()
    release = hold_loop(pool)
    task_id = uuid.uuid4().hex
    pool.submit(Job("t.one", task_id, {"id": task_id, "task": "t.one", "args": [], "kwargs": {}}), outcomes.on_done)
    stopper = threading.Thread(target=pool.stop, kwargs={"graceful": True, "timeout": WAIT})
    stopper.start()
    while not pool._stopping:
        threading.Event().wait(0.001)
    release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert [o.state for o in outcomes.got] == ["SUCCESS"]
    assert asked == []
    assert pool.free_slots() == 2


def test_a_next_job_that_cannot_start_leaves_the_settler_working(
    pool: AsyncioPool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = Outcomes()
    broken = job("t.double", 1)
    waiting = [broken]
    real = pool._hand_over

    def hand_over(each: Job, on_done: OnDone) -> None:
        if each is broken:
            raise RuntimeError("the loop is gone")
        real(each, on_done)

    monkeypatch.setattr(pool, "_hand_over", hand_over)
    pool.next_job = lambda: (waiting.pop(), outcomes.on_done) if waiting else None
    pool.submit(job("t.double", 0), outcomes.on_done)
    outcomes.wait_for(1)
    # The slot was given back and the settler still hands outcomes over.
    pool.submit(job("t.double", 2), outcomes.on_done)
    got = outcomes.wait_for(2)
    assert [o.retval_repr for o in got] == ["0", "4"]
    assert "could not start t.double" in caplog.text
    for _ in range(100):
        if pool.free_slots() == 4:
            break
        threading.Event().wait(0.01)
    assert pool.free_slots() == 4
