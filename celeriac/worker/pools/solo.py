"""Solo pool: runs each task in the worker's main thread, one at a time.

Good for debugging and for tasks that must not share a process. Time limits use
SIGALRM: ``SoftTimeLimitExceeded`` then ``TimeLimitExceeded`` are raised inside the
task (the worker can't replace its own process; a task that catches them and goes
on can't be stopped).
"""

from __future__ import annotations

from typing import ClassVar

from .base import Job, OnDone, Pool, run_job

__all__ = ["SoloPool"]


class SoloPool(Pool):
    name: ClassVar[str] = "solo"
    runs_in_main_thread: ClassVar[bool] = True

    def start(self) -> None:
        self._busy = False

    def submit(self, job: Job, on_done: OnDone) -> None:
        self._busy = True
        try:
            outcome = run_job(self.app, job, hard_limit_in_process=True)
        finally:
            self._busy = False
        on_done(outcome.without_objects())

    def free_slots(self) -> int:
        return 0 if self._busy else 1

    def stop(self, *, graceful: bool, timeout: float | None = None) -> None:
        pass
