"""The consumer: takes messages from the broker, turns them into requests and feeds the pool.

One loop, run by the worker's main thread::

    broker.get -> decode -> (unknown / invalid: logged and dead-lettered)
               -> ETA not yet due or rate limited: held in a timer heap
               -> ready -> pool.submit -> on_done -> ack / requeue / dead-letter

At most ``concurrency * prefetch_multiplier`` messages are held at once
(running ones included), so ``worker_prefetch_multiplier = 1`` means one
message per pool slot. A lease thread keeps the broker leases of every held
message, so a task that runs for hours is never handed to a second worker.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import signals, states
from ..brokers.base import Broker, Delivery
from ..exceptions import (
    ContentDisallowed,
    DecodeError,
    InvalidTaskError,
    NotRegistered,
    TimeLimitExceeded,
    WorkerLostError,
)
from ..protocol import decode, saferepr
from ..rate_limits import TokenBucket, parse_rate
from ..serialization import prepare_accept_content
from .execute import ACK, DEAD_LETTER, REQUEUE, Outcome, record_failure
from .pools.base import Job, OnDone, Pool
from .request import Request
from .state import WorkerState

if TYPE_CHECKING:
    from ..app import Celery
    from ..task import Task

__all__ = ["Consumer"]

logger = logging.getLogger("celeriac.worker")

UNKNOWN_TASK = """\
Received unregistered task of type %r.
The message has been dead-lettered (kept by the broker, not executed).

Did you remember to import the module containing this task?
Or maybe you're using relative imports?

The message headers:
%s

The delivery info for this task is:
%s"""

# How often a waiting loop looks for a stop request (signal handlers only set a flag).
STOP_CHECK = 0.2
UNWRITTEN_WINDOWS = 4  # prefetch windows of done tasks whose results may wait to be written

# An ETA closer than this is kept by the worker: handing it back would cost more than it saves.
DEFER_AFTER = 1.0

INVALID_MESSAGE = """\
Received invalid task message: %s
The message has been dead-lettered (kept by the broker, not executed).
Headers: %s"""


class Consumer:
    def __init__(
        self,
        app: Celery,
        broker: Broker,
        pool: Pool,
        *,
        queues: Sequence[str],
        hostname: str,
        prefetch_limit: int,
        state: WorkerState,
        disable_rate_limits: bool = False,
    ) -> None:
        self.app = app
        self.broker = broker
        self.pool = pool
        self.queues = list(queues)
        self.hostname = hostname
        self.prefetch_limit = max(1, prefetch_limit)
        # Brokers that push messages (AMQP) send no more than this many unacked.
        broker.set_prefetch(self.prefetch_limit)
        self.state = state
        self.disable_rate_limits = disable_rate_limits
        self.accept = prepare_accept_content(app.conf.accept_content)
        self.max_message_size = app.conf.task_max_message_size
        self._lock = threading.RLock()
        self._ready: deque[Request] = deque()
        self._timers: list[tuple[float, int, Request]] = []  # (due, seq, request): ETA or rate-limited
        self._unwritten: dict[int, Request] = {}  # done, acked once the backend has written their result
        self._seq = itertools.count()
        self._buckets: dict[str, tuple[float, TokenBucket]] = {}
        self._warned_scope: set[str] = set()
        self._slot_freed = threading.Event()
        pool.on_capacity = self._slot_freed.set
        pool.next_job = self._next_job
        self._stopping = False
        self._stopping_cold = False
        self._failures = 0  # consecutive broker errors, for the reconnect backoff
        self.events: Any = None  # an EventDispatcher, set by the worker when it sends events
        self.last_loop = time.monotonic()  # for health checks: a stuck loop stops moving this

    @property
    def fetch_batch(self) -> int:
        """How much room the loop waits for before it fetches again while requests are waiting."""
        return max(1, self.prefetch_limit // 4)

    # -- the loop ----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """The last broker call succeeded."""
        return self._failures == 0

    def run(self) -> None:
        while not self._stopping:
            self.last_loop = time.monotonic()
            self._dispatch()
            room = self.prefetch_limit - self.outstanding()
            waiting = bool(self._ready)
            # While requests wait for a slot, fetch only once a batch of room has freed: a broker
            # round trip per finished task would cost more than the task at high concurrency.
            if room >= (self.fetch_batch if waiting else 1):
                timeout = 0.0 if waiting else self._idle_timeout()
                try:
                    deliveries = self.broker.get(self.queues, max_messages=room, timeout=timeout)
                except Exception as exc:
                    self._failures += 1
                    backoff = min(10.0, 0.5 * 2 ** (self._failures - 1))
                    logger.error("consumer: Cannot reach the broker: %s. Trying again in %.1f seconds...", exc, backoff)
                    self._pause(backoff)
                    continue
                if self._failures:
                    logger.info("consumer: Connected to the broker again; resuming")
                    self._failures = 0
                self._on_deliveries(deliveries)
                if deliveries or not waiting:
                    continue
            self._pause(self._idle_timeout(), wake=self._slot_freed)

    def _pause(self, seconds: float, wake: threading.Event | None = None) -> None:
        """Sleep up to ``seconds``, in short steps so a stop request is seen within STOP_CHECK."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            step = min(remaining, STOP_CHECK)
            if wake is None:
                time.sleep(step)
            elif wake.wait(step):
                wake.clear()
                return

    def stop(self) -> None:
        """Ask the loop to end. Safe in a signal handler: it only sets a flag (taking a lock there
        could deadlock against the very frame the signal interrupted)."""
        self._stopping = True

    def ready_requests(self) -> list[Request]:
        """Requests received and ready, waiting for a pool slot (``inspect reserved``)."""
        with self._lock:
            return list(self._ready)

    def scheduled_requests(self) -> list[Request]:
        """Requests held for their ETA or rate limit (``inspect scheduled``)."""
        with self._lock:
            return [request for _, _, request in sorted(self._timers)]

    def set_queues(self, queues: Sequence[str]) -> None:
        # A new list, not an in-place change: the loop reads self.queues without a lock.
        self.queues = list(queues)

    def _task_events(self) -> bool:
        """Whether task events go out now: the dispatcher exists for worker heartbeats even when
        they don't, and their fields aren't worth building for nothing (checked per task, as
        ``enable_events``/``disable_events`` switch them at run time)."""
        events = self.events
        return events is not None and events.enabled and (events.groups is None or "task" in events.groups)

    def _event(self, type: str, **fields: Any) -> None:
        events = self.events
        if events is not None:
            events.send(type, **fields)

    def waiting(self) -> int:
        """Requests ready to run but waiting for a free pool slot."""
        with self._lock:
            return len(self._ready)

    def outstanding(self) -> int:
        with self._lock:
            held = len(self._ready) + len(self._timers) + len(self.state.active)
            # Results waiting to be written normally take a round trip; past a few prefetch windows
            # the store is down or slow, and the worker stops taking messages instead of running
            # more tasks whose results pile up in memory.
            if len(self._unwritten) >= self._unwritten_limit:
                held += len(self._unwritten)
            return held

    @property
    def _unwritten_limit(self) -> int:
        return self.prefetch_limit * UNWRITTEN_WINDOWS

    def held_deliveries(self) -> list[Delivery]:
        """Every delivery this worker holds (for lease renewal)."""
        with self._lock:
            held = [r.delivery for r in self._ready]
            held += [r.delivery for _, _, r in self._timers]
            held += [r.delivery for r in self.state.active.values()]
            held += [r.delivery for r in self._unwritten.values()]
        return held

    def _idle_timeout(self) -> float:
        with self._lock:
            if self._timers:
                return max(0.0, min(1.0, self._timers[0][0] - time.time()))
        return 1.0

    # -- receiving -------------------------------------------------------------------
    def _on_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        later: list[tuple[Request, datetime]] = []  # future ETAs, handed back to the broker together
        for delivery in deliveries:
            try:
                self._receive(delivery, later)
            except Exception as exc:
                # Whatever a message contains, it must not take the worker down with it.
                logger.exception("error while receiving a message")
                self._dead_letter(delivery, f"error while receiving: {exc!r}")
        if later:
            self._defer(later)

    def _defer(self, later: list[tuple[Request, datetime]]) -> None:
        try:
            parked = self.broker.defer_many([(request.delivery, eta) for request, eta in later])
        except Exception as exc:
            logger.warning("could not hand %d scheduled task(s) back to the broker: %s", len(later), exc)
            parked = [False] * len(later)
        for (request, eta), done in zip(later, parked, strict=True):
            if done:
                # Parked in the broker until due: it costs this worker nothing meanwhile.
                logger.info("Task %s[%s] scheduled for %s (kept by the broker)", request.name, request.id,
                            eta.isoformat())  # fmt: skip
                self.state.reserved.pop(request.id, None)
            else:
                self._schedule(request, eta.timestamp())

    def _receive(self, delivery: Delivery, later: list[tuple[Request, datetime]]) -> None:
        size, limit = len(delivery.envelope.body), self.max_message_size
        if limit and size > limit:
            # Not even decoded: a body this big costs its size several times over in memory.
            self._dead_letter(delivery, f"message body is {size} bytes, over task_max_message_size ({limit} bytes)")
            return
        try:
            message = decode(delivery.envelope, self.accept)
        except ContentDisallowed as exc:
            self._dead_letter(delivery, f"content type not accepted: {exc}")
            return
        except (DecodeError, InvalidTaskError) as exc:
            self._dead_letter(delivery, str(exc))
            return
        task = self.app.tasks.get(message.task)
        if task is None:
            self._unknown_task(delivery, message.task, message.id)
            return
        request = Request(delivery, message, task, self.hostname)
        logger.info("Task %s[%s] received", message.task, message.id)
        if self._task_events():
            m = message
            self._event(
                "task-received", uuid=m.id, name=m.task, args=m.argsrepr, kwargs=m.kwargsrepr, root_id=m.root_id,
                parent_id=m.parent_id, retries=m.retries, eta=m.eta, expires=m.expires,
            )  # fmt: skip
        self.state.reserved[message.id] = request
        signals.task_received.send(sender=self, request=request)
        if message.id in self.state.revoked:
            self._discard_revoked(request, "revoked")
            return
        eta = request.eta() if message.eta else None
        now = datetime.now(timezone.utc) if eta is not None else None
        if eta is not None and now is not None and eta > now:
            if (eta - now).total_seconds() > DEFER_AFTER:
                later.append((request, eta))
                return
            self._schedule(request, eta.timestamp())
        else:
            self._admit(request)

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        logger.error(INVALID_MESSAGE, reason, saferepr(dict(delivery.envelope.headers), 2048))
        try:
            self.broker.reject(delivery, requeue=False, reason=reason)
        except Exception:
            logger.exception("could not dead-letter an invalid message")

    def _unknown_task(self, delivery: Delivery, name: str, task_id: str) -> None:
        headers = saferepr(dict(delivery.envelope.headers), 2048)
        info = {"exchange": delivery.exchange, "routing_key": delivery.routing_key, "queue": delivery.queue}
        logger.error(UNKNOWN_TASK, name, headers, info)
        signals.task_unknown.send(sender=self, name=name, id=task_id, message=delivery, exc=NotRegistered(name))
        # Record the failure so a client waiting on get() hears about it instead of waiting forever.
        try:
            self.app.backend.mark_as_failure(task_id, NotRegistered(name))
        except Exception as exc:
            logger.debug("could not record unknown task %s: %s", task_id, exc)
        try:
            self.broker.reject(delivery, requeue=False, reason=f"unregistered task {name!r}")
        except Exception:
            logger.exception("could not dead-letter message of unknown task %s", name)

    def _discard_revoked(self, request: Request, why: str) -> None:
        logger.info("Discarding %s task: %s[%s]", why, request.name, request.id)
        self.state.reserved.pop(request.id, None)
        try:
            self.app.backend.mark_as_revoked(request.id, why, request=_context(request))
        except NotImplementedError:
            pass
        except Exception:
            logger.exception("could not record %s task %s", why, request.id)
        signals.task_revoked.send(
            sender=request.task, request=request, terminated=False, signum=None, expired=why == "expired"
        )
        self._event("task-revoked", uuid=request.id, terminated=False, signum=None, expired=why == "expired")
        self._settle(request, ACK)

    # -- holding and dispatching --------------------------------------------------------
    def _schedule(self, request: Request, due: float) -> None:
        with self._lock:
            heapq.heappush(self._timers, (due, next(self._seq), request))

    def _admit(self, request: Request) -> None:
        """Ready to run, unless the task's rate limit says wait."""
        wait = self._rate_limit_wait(request.task)
        if wait > 0:
            self._schedule(request, time.time() + wait)
            return
        with self._lock:
            self._ready.append(request)

    def _rate_limit_wait(self, task: Task[Any, Any]) -> float:
        if self.disable_rate_limits:
            return 0.0
        rate = parse_rate(task.opt("rate_limit"))
        if not rate:
            return 0.0
        if task.opt("rate_limit_scope") == "global":
            if self.broker.supports_global_rate_limits:
                try:
                    return self.broker.take_rate_token(task.name, rate)
                except Exception as exc:  # the broker is away: hold the task and ask again shortly
                    logger.warning("could not take a rate-limit token for %s: %s", task.name, exc)
                    return 1.0
            if task.name not in self._warned_scope:
                self._warned_scope.add(task.name)
                logger.warning("rate_limit_scope='global' for %s needs a Redis or SQLite broker; "
                               "%s limits per worker instead", task.name, type(self.broker).__name__)  # fmt: skip
        current = self._buckets.get(task.name)
        if current is None or current[0] != rate:
            current = (rate, TokenBucket(rate, capacity=1.0))
            self._buckets[task.name] = current
        bucket = current[1]
        if bucket.can_consume(1):
            return 0.0
        return max(bucket.expected_time(1), 0.001)

    def _dispatch(self) -> None:
        now = time.time()
        due: list[Request] = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
        for request in due:
            self._admit(request)
        while True:
            with self._lock:
                if not self._ready or self.pool.free_slots() <= 0:
                    return
                request = self._ready.popleft()
            if self._still_wanted(request):
                self._start(request)

    def _next_job(self) -> tuple[Job, OnDone] | None:
        """For a pool slot that just finished a task: the next ready request, started, or None.

        Called from the pool's own thread, so a busy pool goes from one task to the next without
        waiting for this loop's thread to wake up and hand the job over.
        """
        while not self._stopping:
            with self._lock:
                if not self._ready:
                    return None
                request = self._ready.popleft()
            if self._still_wanted(request):
                return self._begin(request)
        return None

    def _still_wanted(self, request: Request) -> bool:
        """False (and the request discarded) when it expired or was revoked while it waited for a slot."""
        if request.message.expires and request.is_expired():
            self._discard_revoked(request, "expired")
            return False
        if request.message.id in self.state.revoked:
            self._discard_revoked(request, "revoked")
            return False
        return True

    def _begin(self, request: Request) -> tuple[Job, OnDone]:
        request.started = time.time()
        if self._task_events():
            self._event("task-started", uuid=request.id)
        with self._lock:
            self.state.reserved.pop(request.id, None)
            self.state.active[request.id] = request
        return request.job(), partial(self._on_done, request)

    def _start(self, request: Request) -> None:
        job, on_done = self._begin(request)
        try:
            self.pool.submit(job, on_done)
        except RuntimeError as exc:
            # The pool lost the slot it had announced (a process died just now): try again shortly.
            logger.debug("pool refused %s[%s]: %s", request.name, request.id, exc)
            with self._lock:
                self.state.active.pop(request.id, None)
                self.state.reserved[request.id] = request
                self._ready.appendleft(request)

    # -- outcomes ------------------------------------------------------------------------
    def _on_done(self, request: Request, outcome: Outcome) -> None:
        # A process stopped on purpose (revoke with terminate) is a revoked task, not a failed
        # one: _record sends task-revoked, and no task-failed follows it (as in Celery).
        terminated = outcome.exc_type == "WorkerLostError" and self.state.is_revoked(request.id)
        try:
            action = self._record(request, outcome)
            if not terminated:
                self._log(request, outcome)
                self._outcome_event(request, outcome)
        except Exception:
            logger.exception("error recording the outcome of %s[%s]", request.name, request.id)
            action = outcome.message_action
        with self._lock:
            self.state.active.pop(request.id, None)
            self.state.count(request.name, states.REVOKED if terminated else outcome.state)
        if not self._stopping_cold:
            self._settle(request, action)
        self._slot_freed.set()

    def _record(self, request: Request, outcome: Outcome) -> str:
        """Store what the executing process could not, and pick what happens to the message."""
        if outcome.stored:
            return outcome.message_action
        task = request.task
        if outcome.exc_type == "TimeLimitExceeded":
            exc: BaseException = TimeLimitExceeded(request.time_limits()[0])
            action = ACK if (not task.opt("acks_late") or task.opt("acks_on_failure_or_timeout")) else DEAD_LETTER
        elif outcome.exc_type == "WorkerLostError" and self.state.is_revoked(request.id):
            # Stopped on purpose (revoke with terminate): revoked, never run again.
            self.app.backend.mark_as_revoked(request.id, "terminated", request=_context(request))
            signals.task_revoked.send(sender=task, request=request, terminated=True, signum=None, expired=False)
            self._event("task-revoked", uuid=request.id, terminated=True, signum=None, expired=False)
            logger.info("Task %s[%s] terminated", request.name, request.id)
            return ACK
        elif outcome.exc_type == "WorkerLostError":
            exc = WorkerLostError(outcome.exc_repr or "Worker exited prematurely")
            action = REQUEUE if _redeliver_after_loss(task, request) else ACK
            if action == REQUEUE:
                logger.warning("Task %s[%s]: its process died (%s); the message goes back to the queue once",
                               request.name, request.id, outcome.exc_repr)  # fmt: skip
        else:
            exc = RuntimeError(outcome.exc_repr or "task failed in the pool")
            action = ACK
        if action != REQUEUE:
            try:
                record_failure(self.app.backend, _context(request), exc, outcome.traceback)
            except NotImplementedError:
                pass
        signals.task_failure.send(
            sender=task,
            task_id=request.id,
            exception=exc,
            args=request.message.args,
            kwargs=request.message.kwargs,
            traceback=None,
            einfo=None,
        )
        return action

    def _outcome_event(self, request: Request, outcome: Outcome) -> None:
        if not self._task_events():
            return
        if outcome.state == states.SUCCESS:
            self._event("task-succeeded", uuid=request.id, result=outcome.retval_repr, runtime=outcome.runtime)
        elif outcome.state == states.FAILURE:
            self._event("task-failed", uuid=request.id, exception=outcome.exc_repr, traceback=outcome.traceback)
        elif outcome.state == states.RETRY:
            self._event("task-retried", uuid=request.id, exception=outcome.exc_repr, traceback=outcome.traceback)
        elif outcome.state == states.REJECTED:
            self._event("task-rejected", uuid=request.id, requeue=outcome.message_action == REQUEUE)

    def _log(self, request: Request, outcome: Outcome) -> None:
        name, task_id = request.name, request.id
        if outcome.state == states.SUCCESS:
            logger.info("Task %s[%s] succeeded in %.4fs: %s", name, task_id, outcome.runtime, outcome.retval_repr)
        elif outcome.state == states.FAILURE:
            if outcome.stored:
                logger.error(
                    "Task %s[%s] raised unexpected: %s\n%s",
                    name,
                    task_id,
                    outcome.exc_repr,
                    (outcome.traceback or "").rstrip(),
                )
            else:
                logger.error("Task handler raised error: %s (task %s[%s])", outcome.exc_repr, name, task_id)
        elif outcome.state == states.RETRY:
            logger.info("Task %s[%s] retry: %s", name, task_id, outcome.retry_reason)
        elif outcome.state == states.IGNORED:
            logger.info("Task %s[%s] ignored", name, task_id)
        elif outcome.state == states.REJECTED:
            logger.warning("Task %s[%s] rejected (%s): %s", name, task_id, outcome.message_action, outcome.exc_repr)

    def _settle(self, request: Request, action: str) -> None:
        try:
            if action == ACK:
                # After the task's result is written, when the backend writes behind the pool.
                with self._lock:
                    self._unwritten[id(request)] = request
                self.app.backend.after_writes(partial(self._ack, request), request.id)
            elif action == REQUEUE:
                self.broker.reject(request.delivery, requeue=True)
            else:
                self.broker.reject(request.delivery, requeue=False, reason=f"task {request.name} rejected")
        except Exception:
            logger.exception("could not %s message of task %s[%s]", action, request.name, request.id)

    def _ack(self, request: Request) -> None:
        with self._lock:
            if self._unwritten.pop(id(request), None) is None:
                return  # requeued at shutdown (requeue_unwritten) while its result waited
            full = len(self._unwritten) + 1 >= self._unwritten_limit
        if full:
            self._slot_freed.set()  # the loop may be waiting for these writes before it fetches
        try:
            self.broker.ack(request.delivery)
        except Exception:
            logger.exception("could not ack message of task %s[%s]", request.name, request.id)

    # -- shutdown ------------------------------------------------------------------------
    def release_unstarted(self) -> int:
        """Give back every message not yet started (warm shutdown), so another worker takes it now."""
        with self._lock:
            pending = list(self._ready) + [r for _, _, r in self._timers]
            self._ready.clear()
            self._timers.clear()
        for request in pending:
            self.state.reserved.pop(request.id, None)
            self._settle(request, REQUEUE)
        return len(pending)

    def requeue_unwritten(self) -> int:
        """At shutdown, when results could not be written: their messages go back to the queue,
        so the tasks run again (on this worker's next start or another worker) instead of waiting
        for the visibility timeout."""
        with self._lock:
            pending, self._unwritten = list(self._unwritten.values()), {}
        for request in pending:
            self._settle(request, REQUEUE)
        return len(pending)

    def release_active(self) -> int:
        """Cold shutdown: requeue the messages of tasks that were killed mid-run."""
        self._stopping_cold = True
        with self._lock:
            active = list(self.state.active.values())
            self.state.active.clear()
        for request in active:
            self._settle(request, REQUEUE if request.task.opt("acks_late") else ACK)
        return len(active)


def _redeliver_after_loss(task: Task[Any, Any], request: Request) -> bool:
    """Should a task whose process died (OOM kill, segfault, SIGKILL) run again?

    ``task_reject_on_worker_lost`` True/False decides, as in Celery. Left unset (celeriac's
    default), an ``acks_late`` task gets one more delivery: a process killed by the machine
    shouldn't lose work, but a task that kills its process every time must not loop forever.
    """
    if not task.opt("acks_late"):
        return False
    explicit = task.opt("reject_on_worker_lost")
    if explicit is not None:
        return bool(explicit)
    return not request.delivery.redelivered


def _context(request: Request) -> Any:
    from ..task import Context

    return Context(**request.context())
