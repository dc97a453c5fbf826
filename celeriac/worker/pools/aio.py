"""asyncio pool (``-P asyncio``): ``async def`` tasks as coroutines on one event loop.

``-c 1000`` means up to 1,000 tasks awaiting at once, in one thread. The loop is
uvloop's when uvloop is installed. Sync tasks sent to this worker run in a
thread pool beside the loop (``worker_asyncio_threads`` threads, default 10), so
they never block it.

Time limits and revokes reach a coroutine where it is suspended:

* soft limit: ``SoftTimeLimitExceeded`` is raised at the ``await`` the task is
  waiting on; the task may catch it and clean up;
* hard limit: ``TimeLimitExceeded`` is raised the same way and the task fails; a
  task that swallows it is abandoned a second later (recorded as failed, its
  message settled, its slot given back);
* ``revoke(terminate=True)``: ``asyncio.CancelledError`` is raised in the task and
  it is recorded as ``REVOKED``.

The loop also becomes the process's loop for async code called from sync tasks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ... import states
from ..._aio import Interruptible, new_event_loop, use_as_process_loop
from ...exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from ..execute import ACK, Outcome, execute_async
from .base import Job, OnDone, Pool
from .threads import ThreadPool

__all__ = ["AsyncioPool"]

logger = logging.getLogger("celeriac.worker")

# How long a coroutine that ignores its hard time limit keeps its slot before it is abandoned.
HARD_LIMIT_GRACE = 1.0


@dataclass(eq=False)
class _Running:
    job: Job
    on_done: OnDone
    started: float
    box: Interruptible | None = None
    task: asyncio.Task[Any] | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    terminated: bool = False
    finished: bool = False

    def interrupt(self, exc: BaseException) -> None:
        if self.box is not None:
            self.box.interrupt(exc)
        elif self.task is not None and isinstance(exc, asyncio.CancelledError):
            self.task.cancel()


class AsyncioPool(Pool):
    name: ClassVar[str] = "asyncio"

    def start(self) -> None:
        self._lock = threading.Lock()
        self._inflight = 0  # slots taken: submitted and not yet given back by the settler
        self._running: dict[str, _Running] = {}
        self._stopping = False
        # Jobs for the loop, and outcomes for the settler: each side drains all that is waiting
        # when it wakes, so a burst of jobs or of finished tasks costs one wake-up, not one each.
        self._starting: list[tuple[Job, OnDone]] = []
        self._start_scheduled = False
        self._finished: list[tuple[OnDone, Outcome]] = []
        self._settle_wake = threading.Event()
        self._settler_closing = False
        self._loop = new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, args=(started,), name="AsyncioPool", daemon=True)
        self._thread.start()
        started.wait()
        use_as_process_loop(self._loop, self._thread)
        threads = int(self.app.conf.get("worker_asyncio_threads") or 10)
        self._sync = ThreadPool(self.app, max(1, min(threads, self.concurrency)))
        self._sync.start()
        # Outcomes are handed to the consumer from one thread beside the loop: settling a
        # message or storing a late failure is blocking I/O that must not stall the loop.
        self._settler = threading.Thread(target=self._settle_all, name="AsyncioPoolSettle", daemon=True)
        self._settler.start()

    def _run_loop(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(started.set)
        self._loop.run_forever()

    def submit(self, job: Job, on_done: OnDone) -> None:
        with self._lock:
            self._inflight += 1
        self._hand_over(job, on_done)

    def _hand_over(self, job: Job, on_done: OnDone) -> None:
        """Run ``job`` in a slot already counted in ``_inflight``."""
        task = self.app.tasks.get(job.task_name)
        if task is None or not getattr(task, "is_async", False):
            self._sync.submit(job, lambda outcome: self._settle(on_done, outcome))
            return
        with self._lock:
            self._starting.append((job, on_done))
            if self._start_scheduled:
                return  # the loop has a wake-up coming that will start this one too
            self._start_scheduled = True
        self._loop.call_soon_threadsafe(self._start_waiting)

    # -- on the loop ----------------------------------------------------------------------
    def _start_waiting(self) -> None:
        with self._lock:
            starting, self._starting = self._starting, []
            self._start_scheduled = False
        for job, on_done in starting:
            self._start(job, on_done)

    def _start(self, job: Job, on_done: OnDone) -> None:
        entry = _Running(job, on_done, time.monotonic())
        with self._lock:
            self._running[job.task_id] = entry
        entry.task = self._loop.create_task(self._run(entry))
        if job.soft_time_limit:
            entry.timers.append(self._loop.call_later(job.soft_time_limit, self._soft_limit, entry))
        if job.time_limit:
            entry.timers.append(self._loop.call_later(job.time_limit, self._hard_limit, entry))

    async def _run(self, entry: _Running) -> None:
        from ...task import Context

        job = entry.job
        try:
            task = self.app.tasks[job.task_name]
            outcome = await execute_async(self.app, task, Context(**job.request), holder=entry)
        except asyncio.CancelledError:
            if entry.terminated:
                outcome = self._failure(entry, "WorkerLostError", "terminated")
            else:
                outcome = self._failure(entry, "CancelledError", "the task was cancelled")
        except BaseException as exc:
            logger.exception("internal error running %s[%s]", job.task_name, job.task_id)
            outcome = self._failure(entry, type(exc).__name__, repr(exc))
        self._finish(entry, outcome)

    def _failure(self, entry: _Running, exc_type: str, exc_repr: str) -> Outcome:
        job = entry.job
        return Outcome(job.task_id, job.task_name, states.FAILURE, time.monotonic() - entry.started, ACK,
                       exc_repr=exc_repr, exc_type=exc_type, stored=False)  # fmt: skip

    def _finish(self, entry: _Running, outcome: Outcome) -> None:
        if entry.finished:
            return  # already reported (abandoned at its hard time limit)
        entry.finished = True
        for timer in entry.timers:
            timer.cancel()
        with self._lock:
            self._running.pop(entry.job.task_id, None)
            self._finished.append((entry.on_done, outcome.without_objects()))
        self._settle_wake.set()

    def _soft_limit(self, entry: _Running) -> None:
        if not entry.finished:
            entry.interrupt(SoftTimeLimitExceeded())

    def _hard_limit(self, entry: _Running) -> None:
        if entry.finished:
            return
        job = entry.job
        logger.error("Hard time limit (%ss) exceeded for %s[%s]", job.time_limit, job.task_name, job.task_id)
        entry.interrupt(TimeLimitExceeded(job.time_limit))
        entry.timers.append(self._loop.call_later(HARD_LIMIT_GRACE, self._abandon, entry))

    def _abandon(self, entry: _Running) -> None:
        if entry.finished:
            return
        job = entry.job
        logger.error("Task %s[%s] ignored its hard time limit: abandoned", job.task_name, job.task_id)
        self._finish(entry, Outcome(
            job.task_id, job.task_name, states.FAILURE, time.monotonic() - entry.started, ACK,
            exc_repr=repr(TimeLimitExceeded(job.time_limit)), exc_type="TimeLimitExceeded", stored=False,
        ))  # fmt: skip

    def _terminate(self, entry: _Running) -> None:
        if not entry.finished:
            entry.terminated = True
            entry.interrupt(asyncio.CancelledError())

    # -- the settler's thread -----------------------------------------------------------------
    def _settle_all(self) -> None:
        while True:
            self._settle_wake.wait()
            self._settle_wake.clear()
            while True:
                with self._lock:
                    finished, self._finished = self._finished, []
                if not finished:
                    break
                for on_done, outcome in finished:
                    self._settle(on_done, outcome)
            if self._settler_closing:
                return

    def _settle(self, on_done: OnDone, outcome: Outcome) -> None:
        """Hand a finished job's outcome over; then its slot takes the next job straight from the
        consumer, as a thread pool's slot does, or is given back. Called on the settler's thread
        for coroutines, on the sync thread that ran it for a sync task."""
        try:
            on_done(outcome)
        except Exception:
            logger.exception("error handing over the outcome of %s[%s]", outcome.task_name, outcome.task_id)
        item = None if self._stopping else self.take_next_job()
        if item is not None:
            try:
                self._hand_over(*item)
                return
            except Exception:  # the settler must outlive it; the message stays unacked in the broker
                logger.exception("could not start %s[%s]", item[0].task_name, item[0].task_id)
        with self._lock:
            self._inflight -= 1
        if self.on_capacity is not None:
            self.on_capacity()  # the consumer may have found the slot taken meanwhile

    # -- from other threads -------------------------------------------------------------------
    def terminate_job(self, task_id: str, signum: int) -> bool:
        with self._lock:
            entry = self._running.get(task_id)
        if entry is None:
            return self._sync.terminate_job(task_id, signum)
        self._loop.call_soon_threadsafe(self._terminate, entry)
        return True

    def free_slots(self) -> int:
        with self._lock:
            return self.concurrency - self._inflight

    def grow(self, n: int = 1) -> int:
        with self._lock:
            self.concurrency += n
        return n

    def shrink(self, n: int = 1) -> int:
        with self._lock:
            n = max(0, min(n, self.concurrency - 1))
            self.concurrency -= n
        return n

    def stop(self, *, graceful: bool, timeout: float | None = None) -> None:
        self._stopping = True  # finished slots take no new jobs
        deadline = None if timeout is None else time.monotonic() + timeout
        if graceful:
            while deadline is None or time.monotonic() < deadline:
                with self._lock:
                    if not self._inflight:
                        break
                time.sleep(0.02)
        with self._lock:
            leftover = list(self._running.values())
            for entry in leftover:
                entry.finished = True  # stopped: their on_done is not called
        for entry in leftover:
            if entry.task is not None:
                self._loop.call_soon_threadsafe(entry.task.cancel)
        self._sync.stop(graceful=False)
        self._settler_closing = True
        self._settle_wake.set()
        if graceful:
            self._settler.join()
        use_as_process_loop(None)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2)

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {**super().info(), "running": len(self._running)}
