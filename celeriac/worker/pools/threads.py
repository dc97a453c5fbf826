"""Thread pool: tasks run in threads of the worker process.

Good for I/O-bound tasks. Soft and hard time limits are not enforced in this
pool (Python can't interrupt a thread safely).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from ..execute import Outcome
from .base import Job, OnDone, Pool, run_job

__all__ = ["ThreadPool"]


class ThreadPool(Pool):
    name: ClassVar[str] = "threads"

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="ThreadPoolWorker")
        self._lock = threading.Lock()
        self._running = 0

    def submit(self, job: Job, on_done: OnDone) -> None:
        with self._lock:
            self._running += 1
        self._executor.submit(self._run, job, on_done)

    def _run(self, job: Job, on_done: OnDone) -> None:
        try:
            outcome: Outcome = run_job(self.app, job)
        finally:
            with self._lock:
                self._running -= 1
        on_done(outcome.without_objects())

    def free_slots(self) -> int:
        with self._lock:
            return self.concurrency - self._running

    def stop(self, *, graceful: bool, timeout: float | None = None) -> None:
        self._executor.shutdown(wait=graceful, cancel_futures=True)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "running": self._running}
