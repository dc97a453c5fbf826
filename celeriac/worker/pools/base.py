"""The pool interface: where tasks run (the worker's main process, threads or child processes)."""

from __future__ import annotations

import abc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ... import states
from ...exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from ..execute import ACK, Outcome, execute

if TYPE_CHECKING:
    from ...app import Celery

__all__ = ["Job", "Outcome", "Pool", "run_job"]

logger = logging.getLogger("celeriac.worker")


@dataclass(slots=True)
class Job:
    """One task call handed to a pool; picklable, as it crosses the process boundary in prefork.
    Not changed once made (not frozen: a frozen dataclass costs several times as much to make)."""

    task_name: str
    task_id: str
    request: dict[str, Any]  # the task.request fields (id, args, kwargs, retries, delivery_info, ...)
    time_limit: float | None = None
    soft_time_limit: float | None = None


OnDone = Callable[[Outcome], None]


class Pool(abc.ABC):
    """Runs jobs with bounded concurrency.

    ``submit`` never blocks: the caller checks ``free_slots()`` first. ``on_done``
    is called exactly once per job, from a pool thread, with the outcome (also when
    the process running it died: a ``WorkerLostError`` failure).
    """

    name: ClassVar[str]
    # True when each job runs in this process's main thread (signals-based soft limits work).
    runs_in_main_thread: ClassVar[bool] = False
    # True when tasks run in the worker's own process (not in child processes).
    tasks_in_this_process: ClassVar[bool] = True

    def __init__(
        self,
        app: Celery,
        concurrency: int,
        *,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None:
        self.app = app
        self.concurrency = max(1, concurrency)
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def submit(self, job: Job, on_done: OnDone) -> None: ...

    @abc.abstractmethod
    def free_slots(self) -> int: ...

    @abc.abstractmethod
    def stop(self, *, graceful: bool, timeout: float | None = None) -> None:
        """Graceful: let running jobs finish. Otherwise stop them now (their on_done is not called)."""

    # Called (from a pool thread) when slots free up other than by a job ending, e.g. a new
    # process became ready; the consumer sets it to wake its loop.
    on_capacity: Callable[[], None] | None = None
    # Set by the consumer: the next job for a slot that has just finished one (or None). A pool
    # whose slots can take it themselves (threads) calls it instead of waiting for submit().
    next_job: Callable[[], tuple[Job, OnDone] | None] | None = None

    def take_next_job(self) -> tuple[Job, OnDone] | None:
        """For a slot that has just finished a job: its next job straight from the consumer
        (``next_job``), or None (none waiting, or taking it failed: logged)."""
        if self.next_job is None:
            return None
        try:
            return self.next_job()
        except Exception:
            logger.exception("could not take the next job")
            return None

    def terminate_job(self, task_id: str, signum: int) -> bool:
        return False

    def grow(self, n: int = 1) -> int:
        """Add ``n`` slots (autoscale); returns how many were added."""
        raise NotImplementedError(f"the {self.name} pool can't grow")

    def shrink(self, n: int = 1) -> int:
        """Remove up to ``n`` idle slots (autoscale); returns how many were removed."""
        raise NotImplementedError(f"the {self.name} pool can't shrink")

    def info(self) -> dict[str, Any]:
        return {
            "implementation": type(self).__module__ + ":" + type(self).__name__,
            "max-concurrency": self.concurrency,
        }

    def pids(self) -> list[int]:
        return []


class _Alarms:
    """SIGALRM-based limits for a job run in the main thread: the soft limit raises
    SoftTimeLimitExceeded in the task; with ``hard`` the hard limit raises TimeLimitExceeded
    (for the solo pool; prefork's parent kills the child instead)."""

    def __init__(self, soft: float | None, hard: float | None) -> None:
        self.soft, self.hard = soft, hard
        self.started = time.monotonic()

    def arm(self) -> bool:
        first = self.soft or self.hard
        if not first:
            return False
        signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, first)
        return True

    def _fire(self, signum: int, frame: Any) -> None:
        elapsed = time.monotonic() - self.started
        if self.soft and elapsed < (self.hard or float("inf")) and not getattr(self, "soft_done", False):
            self.soft_done = True
            if self.hard:
                signal.setitimer(signal.ITIMER_REAL, max(0.001, self.hard - elapsed))
            raise SoftTimeLimitExceeded()
        raise TimeLimitExceeded(self.hard)

    @staticmethod
    def disarm() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)


def run_job(app: Celery, job: Job, *, hard_limit_in_process: bool = False) -> Outcome:
    """Execute ``job`` in this thread; arms the time limits when this is the main thread.

    Always returns an outcome (the machinery failing is a failure of that job, reported to
    the parent with ``stored=False``), so a pool can't end up holding a message forever.
    """
    try:
        return _run_job(app, job, hard_limit_in_process)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        logger.exception("internal error running %s[%s]", job.task_name, job.task_id)
        return Outcome(job.task_id, job.task_name, states.FAILURE, 0.0, ACK, exc_repr=repr(exc),
                       exc_type=type(exc).__name__, stored=False)  # fmt: skip


def _run_job(app: Celery, job: Job, hard_limit_in_process: bool) -> Outcome:
    from ...task import Context

    task = app.tasks[job.task_name]
    ctx = Context(**job.request)
    armed = False
    hard = job.time_limit if hard_limit_in_process else None
    if (job.soft_time_limit or hard) and threading.current_thread() is threading.main_thread():
        armed = _Alarms(job.soft_time_limit, hard).arm()
    try:
        return execute(app, task, ctx)
    finally:
        if armed:
            _Alarms.disarm()
