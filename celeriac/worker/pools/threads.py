"""Thread pool: tasks run in threads of the worker process.

Good for I/O-bound tasks. Time limits:

* soft: ``SoftTimeLimitExceeded`` is raised inside the task's thread at the limit
  (at its next Python instruction: a blocking call such as ``time.sleep`` or a
  socket read finishes first);
* hard: at the limit the task is recorded as failed with ``TimeLimitExceeded``, its
  message is settled and its slot is given to a new thread. The old thread is
  abandoned (Python can't kill a thread); ``TimeLimitExceeded`` is raised in it too,
  so pure-Python code stops at its next instruction.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from ... import states
from ...exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from ..execute import ACK, Outcome
from .base import Job, OnDone, Pool, run_job

__all__ = ["ThreadPool"]

logger = logging.getLogger("celeriac.worker")


@dataclass(eq=False)
class _Running:
    job: Job
    on_done: OnDone
    started: float
    soft_deadline: float | None
    hard_deadline: float | None
    soft_fired: bool = False
    abandoned: bool = False


def _raise_in_thread(thread_id: int, exc: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


class ThreadPool(Pool):
    name: ClassVar[str] = "threads"

    def start(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Job, OnDone] | None] = queue.SimpleQueue()
        self._queued = 0
        self._running: dict[int, _Running] = {}
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._serial = 0
        self._limits = False  # a job with a time limit was submitted: the monitor has work
        for _ in range(self.concurrency):
            self._spawn()
        self._monitor = threading.Thread(target=self._watch, name="ThreadPoolTimeLimits", daemon=True)
        self._monitor.start()

    def _spawn(self) -> None:
        self._serial += 1
        thread = threading.Thread(target=self._work, name=f"ThreadPoolWorker-{self._serial}", daemon=True)
        self._threads.add(thread)
        thread.start()

    def submit(self, job: Job, on_done: OnDone) -> None:
        with self._lock:
            self._queued += 1
            if job.time_limit or job.soft_time_limit:
                self._limits = True
        self._jobs.put((job, on_done))

    def _work(self) -> None:
        me = threading.get_ident()
        item = self._jobs.get()
        while item is not None:
            job, on_done = item
            now = time.monotonic()
            entry = _Running(
                job, on_done, now,
                now + job.soft_time_limit if job.soft_time_limit else None,
                now + job.time_limit if job.time_limit else None,
            )  # fmt: skip
            with self._lock:
                self._queued -= 1
                self._running[me] = entry
            try:
                outcome: Outcome = run_job(self.app, job)
            except TimeLimitExceeded:
                outcome = Outcome(job.task_id, job.task_name, states.FAILURE, 0.0, ACK, stored=False)
            with self._lock:
                mine = self._running.pop(me, None) is entry and not entry.abandoned
                pull = mine and self.next_job is not None and not self._stopping
                if pull:
                    self._queued += 1  # this slot stays taken while it asks for its next job
            if not mine:
                return  # abandoned at the hard time limit: a new thread has taken this slot
            on_done(outcome.without_objects())
            item = self._pull() if pull else None
            if item is None:
                item = self._jobs.get()

    def _pull(self) -> tuple[Job, OnDone] | None:
        """The next job straight from the consumer, for the slot _work() kept; frees it if none."""
        item = self.take_next_job()
        if item is None:
            with self._lock:
                self._queued -= 1
            if self.on_capacity is not None:
                self.on_capacity()  # the consumer may have found the slot taken meanwhile
        return item

    def _watch(self) -> None:
        while not self._stopping:
            if not self._limits:
                time.sleep(0.05)
                continue
            now = time.monotonic()
            expired: list[tuple[int, _Running]] = []
            with self._lock:
                for thread_id, entry in list(self._running.items()):
                    if entry.soft_deadline is not None and not entry.soft_fired and now >= entry.soft_deadline:
                        entry.soft_fired = True
                        _raise_in_thread(thread_id, SoftTimeLimitExceeded)
                    if entry.hard_deadline is not None and now >= entry.hard_deadline:
                        entry.abandoned = True
                        del self._running[thread_id]
                        expired.append((thread_id, entry))
                for _ in expired:
                    self._spawn()
            for thread_id, entry in expired:
                job = entry.job
                logger.error("Hard time limit (%ss) exceeded for %s[%s]", job.time_limit, job.task_name, job.task_id)
                _raise_in_thread(thread_id, TimeLimitExceeded)
                entry.on_done(Outcome(
                    job.task_id, job.task_name, states.FAILURE, now - entry.started, ACK,
                    exc_repr=repr(TimeLimitExceeded(job.time_limit)), exc_type="TimeLimitExceeded", stored=False,
                ))  # fmt: skip
            time.sleep(0.05)

    def grow(self, n: int = 1) -> int:
        with self._lock:
            self.concurrency += n
            for _ in range(n):
                self._spawn()
        return n

    def shrink(self, n: int = 1) -> int:
        with self._lock:
            n = max(0, min(n, self.concurrency - 1))
            self.concurrency -= n
        for _ in range(n):
            self._jobs.put(None)  # a thread takes it when idle and exits
        return n

    def free_slots(self) -> int:
        with self._lock:
            return self.concurrency - self._queued - len(self._running)

    def stop(self, *, graceful: bool, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if graceful:
            while deadline is None or time.monotonic() < deadline:
                with self._lock:
                    if not self._running and not self._queued:
                        break
                time.sleep(0.02)
        self._stopping = True
        for _ in list(self._threads):
            self._jobs.put(None)

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {**super().info(), "running": len(self._running)}
