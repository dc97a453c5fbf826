"""Running one task: the only place that fires task signals, applies retry policy and stores results.

Used in every pool (in the process that runs the task) and by ``Task.apply``
for eager calls, so a task behaves the same wherever it runs.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
import traceback as tb_module
from collections.abc import Generator
from dataclasses import dataclass
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from .. import signals, states
from .._state import current_task_var
from ..canvas import Signature, signature
from ..exceptions import Ignore, OperationalError, Reject, Retry
from ..protocol import saferepr

if TYPE_CHECKING:
    from ..app import Celery
    from ..task import Context, Task

__all__ = ["ExceptionInfo", "Outcome", "execute", "execute_async"]

logger = logging.getLogger("celeriac.worker")

# What to do with the message once the task is done.
ACK = "ack"
REQUEUE = "requeue"
DEAD_LETTER = "reject"


@dataclass(slots=True)
class Outcome:
    """How a task ended. Crosses the process boundary in prefork, so it holds only plain values
    (``retval``/``exc`` are kept only for eager calls, in-process). Not changed once made (not
    frozen only because a frozen dataclass costs several times as much to make, once per task)."""

    task_id: str
    task_name: str
    state: str
    runtime: float
    message_action: str = ACK
    retval_repr: str | None = None
    exc_repr: str | None = None
    exc_type: str | None = None
    traceback: str | None = None
    retry_reason: str | None = None
    stored: bool = True  # False: the executing process could not record the state (the parent must)
    retval: Any = None
    exc: BaseException | None = None

    def without_objects(self) -> Outcome:
        if self.retval is None and self.exc is None:
            return self
        return Outcome(
            self.task_id, self.task_name, self.state, self.runtime, self.message_action, self.retval_repr,
            self.exc_repr, self.exc_type, self.traceback, self.retry_reason, self.stored,
        )  # fmt: skip


class ExceptionInfo:
    """Celery's ``einfo``: the exception, its type and the formatted traceback."""

    def __init__(self, exc: BaseException) -> None:
        self.exception = exc
        self.type = type(exc)
        self.tb = exc.__traceback__
        self.traceback = "".join(tb_module.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
        self.internal = False

    def __str__(self) -> str:
        return self.traceback


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _user_frames(tb: Any) -> Any:
    """Skip celeriac's own frames at the top of a task traceback: they say nothing about the failure."""
    first = tb
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR + os.sep):
        tb = tb.tb_next
    return tb if tb is not None else first


def execute(app: Celery, task: Task[Any, Any], ctx: Context, *, eager: bool = False) -> Outcome:
    """Run ``task`` for the request ``ctx`` and record the outcome.

    An ``async def`` task's coroutine runs on this process's event loop (see ``_aio``)
    while this thread waits, so every pool can run async tasks.
    """
    steps = _steps(app, task, ctx, eager)
    try:
        awaitable = next(steps)
        # Only an async task gets here: asyncio is loaded for it, not in every pool process.
        from .._aio import run_blocking

        while True:
            try:
                value = run_blocking(awaitable)
            except BaseException as exc:
                awaitable = steps.throw(exc)
            else:
                awaitable = steps.send(value)
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome


async def execute_async(
    app: Celery, task: Task[Any, Any], ctx: Context, *, eager: bool = False, holder: Any = None
) -> Outcome:
    """:func:`execute` for an event loop: the task's coroutine is awaited here, in this asyncio task.

    ``holder.box`` is set to the :class:`~celeriac._aio.Interruptible` running the
    coroutine, for time limits and revokes to interrupt it.
    """
    from .._aio import Interruptible

    steps = _steps(app, task, ctx, eager)
    try:
        awaitable = next(steps)
        while True:
            box = Interruptible(awaitable)
            if holder is not None:
                holder.box = box
            try:
                value = await box
            except BaseException as exc:
                awaitable = steps.throw(exc)
            else:
                awaitable = steps.send(value)
            finally:
                if holder is not None:
                    holder.box = None
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome


def _steps(app: Celery, task: Task[Any, Any], ctx: Context, eager: bool) -> Generator[Any, Any, Outcome]:
    """The whole of running a task, as a generator that yields the task's awaitable, if it has one.

    The drivers above send back its value (or throw its exception), so signals,
    retries and result storage are written once for sync and async tasks.
    """
    args, kwargs = tuple(ctx.args), dict(ctx.kwargs)
    ignore_result = bool(task.opt("ignore_result") or ctx.ignore_result)
    store = (not eager) or bool(app.conf.task_store_eager_result)
    backend = app.backend if store else None
    token = current_task_var.set((task, ctx))
    start = time.perf_counter()
    state, retval, einfo = states.SUCCESS, None, None
    signals.task_prerun.send(sender=task, task_id=_tid(ctx), task=task, args=args, kwargs=kwargs)
    try:
        if backend is not None and not ignore_result and task.opt("track_started"):
            backend.store_result(_tid(ctx), {"pid": os.getpid(), "hostname": ctx.hostname}, states.STARTED, request=ctx)
        try:
            task.before_start(_tid(ctx), args, kwargs)
            retval = task(*args, **kwargs)
            if type(retval) is CoroutineType or inspect.isawaitable(retval):
                retval = yield retval
        except Exception as exc:
            retry = _autoretry(task, exc)
            if retry is None:
                raise
            raise retry from exc
    except Retry as exc:
        state, einfo = states.RETRY, ExceptionInfo(exc)
        outcome = _on_retry(task, ctx, exc, einfo, backend, args, kwargs, start)
    except Ignore:
        state = states.IGNORED
        outcome = Outcome(_tid(ctx), task.name, state, time.perf_counter() - start)
    except Reject as exc:
        state = states.REJECTED
        action = REQUEUE if exc.requeue else DEAD_LETTER
        signals.task_rejected.send(sender=task, message=None, exc=exc)
        outcome = Outcome(_tid(ctx), task.name, state, time.perf_counter() - start, action, exc_repr=repr(exc))
    except BaseException as exc:
        if (isinstance(exc, (KeyboardInterrupt, SystemExit)) or _cancelled(exc)) and not eager:
            raise  # the worker is stopping, or the pool stopped this task (revoke terminate): the pool decides
        state, einfo = states.FAILURE, ExceptionInfo(exc)
        outcome = _on_failure(app, task, ctx, exc, einfo, backend, ignore_result, args, kwargs, start)
    else:
        outcome = _on_success(app, task, ctx, retval, backend, ignore_result, args, kwargs, start)
        state = outcome.state
    finally:
        current_task_var.reset(token)
    try:
        task.after_return(state, retval if einfo is None else einfo.exception, _tid(ctx), args, kwargs, einfo)
    except Exception:
        logger.exception("after_return of %s[%s] raised", task.name, _tid(ctx))
    signals.task_postrun.send(
        sender=task, task_id=_tid(ctx), task=task, args=args, kwargs=kwargs, retval=retval, state=state
    )
    return outcome


def _cancelled(exc: BaseException) -> bool:
    """An asyncio cancellation: only possible once asyncio is loaded (a sync task's process may never)."""
    aio = sys.modules.get("asyncio")
    return aio is not None and isinstance(exc, aio.CancelledError)


def _autoretry(task: Task[Any, Any], exc: Exception) -> Retry | None:
    if not task.autoretry_for or not isinstance(exc, task.autoretry_for):
        return None
    if task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for):
        return None
    options = dict(task.retry_kwargs or {})
    countdown = task.retry_countdown(task.request.retries)
    if countdown is not None and "countdown" not in options:
        options["countdown"] = countdown
    try:
        return task.retry(exc=exc, throw=False, **options)
    except Retry as retry:
        return retry


def _on_success(
    app: Celery,
    task: Task[Any, Any],
    ctx: Context,
    retval: Any,
    backend: Any,
    ignore_result: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    start: float,
) -> Outcome:
    runtime = time.perf_counter() - start
    try:
        # Callbacks and the chain's next step go out before the result is stored (Celery's
        # order: the stored result lists them as children).
        _apply_callbacks(app, ctx, retval)
    except OperationalError as exc:
        # The broker can't take what follows right now: rather than stop the workflow
        # silently, the message goes back to the queue and the task runs again (at least once).
        logger.error("could not send what follows %s[%s] (%s); its message goes back to the queue",
                     task.name, _tid(ctx), exc)  # fmt: skip
        return Outcome(_tid(ctx), task.name, states.REJECTED, runtime, REQUEUE, exc_repr=repr(exc))
    except Exception as exc:
        # What follows can never be sent (bad arguments for the next step, an unknown
        # signature...): as in Celery, this task fails with that error, and so does the rest
        # of its chain; running it again would fail the same way, forever.
        logger.error("could not send what follows %s[%s]: %r", task.name, _tid(ctx), exc)
        return _on_failure(app, task, ctx, exc, ExceptionInfo(exc), backend, ignore_result, args, kwargs, start)
    if backend is not None and not ignore_result:
        try:
            backend.store_result(_tid(ctx), retval, states.SUCCESS, request=ctx)
        except Exception as exc:
            # The task ran, but its value can't be stored (can't be serialized, too big for the
            # store, store down): record that as the failure it is, never lose the outcome.
            logger.error("could not store the result of %s[%s]: %s", task.name, _tid(ctx), exc)
            einfo = ExceptionInfo(exc)
            try:
                backend.store_result(_tid(ctx), exc, states.FAILURE, einfo.traceback, request=ctx)
            except Exception:
                logger.exception("could not store the failure of %s[%s] either", task.name, _tid(ctx))
            return Outcome(
                _tid(ctx),
                task.name,
                states.FAILURE,
                runtime,
                ACK,
                exc_repr=repr(exc),
                exc_type=type(exc).__name__,
                traceback=einfo.traceback,
                exc=exc,
            )
    try:
        task.on_success(retval, _tid(ctx), args, kwargs)
    except Exception:
        logger.exception("on_success of %s[%s] raised", task.name, _tid(ctx))
    if ctx.chord and backend is not None:
        _chord_part(backend, ctx, states.SUCCESS, retval)
    signals.task_success.send(sender=task, result=retval)
    return Outcome(
        _tid(ctx),
        task.name,
        states.SUCCESS,
        runtime,
        ACK,
        retval_repr=saferepr(retval, task.resultrepr_maxsize),
        retval=retval,
    )


def _on_retry(
    task: Task[Any, Any],
    ctx: Context,
    exc: Retry,
    einfo: ExceptionInfo,
    backend: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    start: float,
) -> Outcome:
    reason = exc.exc if isinstance(exc.exc, BaseException) else exc
    if backend is not None and not exc.stored:
        backend.store_result(_tid(ctx), reason, states.RETRY, einfo.traceback, request=ctx)
    try:
        task.on_retry(reason, _tid(ctx), args, kwargs, einfo)
    except Exception:
        logger.exception("on_retry of %s[%s] raised", task.name, _tid(ctx))
    signals.task_retry.send(sender=task, request=ctx, reason=reason, einfo=einfo)
    return Outcome(
        _tid(ctx),
        task.name,
        states.RETRY,
        time.perf_counter() - start,
        ACK,
        exc_repr=repr(reason),
        retry_reason=str(exc),
        exc=exc,
    )


def _on_failure(
    app: Celery,
    task: Task[Any, Any],
    ctx: Context,
    exc: BaseException,
    einfo: ExceptionInfo,
    backend: Any,
    ignore_result: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    start: float,
) -> Outcome:
    runtime = time.perf_counter() - start
    if backend is not None and (not ignore_result or task.opt("store_errors_even_if_ignored")):
        try:
            backend.store_result(_tid(ctx), exc, states.FAILURE, einfo.traceback, request=ctx)
        except Exception:
            logger.exception("could not store the failure of %s[%s]", task.name, _tid(ctx))
    try:
        task.on_failure(exc, _tid(ctx), args, kwargs, einfo)
    except Exception:
        logger.exception("on_failure of %s[%s] raised", task.name, _tid(ctx))
    signals.task_failure.send(
        sender=task, task_id=_tid(ctx), exception=exc, args=args, kwargs=kwargs, traceback=einfo.tb, einfo=einfo
    )
    if backend is not None:
        _fail_workflow(backend, ctx, exc)
    _apply_errbacks(app, ctx, exc, einfo)
    acks_late = task.opt("acks_late")
    action = ACK if (not acks_late or task.opt("acks_on_failure_or_timeout")) else DEAD_LETTER
    return Outcome(
        _tid(ctx),
        task.name,
        states.FAILURE,
        runtime,
        action,
        exc_repr=saferepr(exc),
        exc_type=type(exc).__name__,
        traceback=einfo.traceback,
        exc=exc,
    )


def _apply_callbacks(app: Celery, ctx: Context, retval: Any) -> None:
    """Send the ``link`` callbacks with the value, then the chain's next step (raises if one can't go)."""
    if not ctx.callbacks and not ctx.chain:
        return
    from ..canvas import group, signature

    callbacks = [signature(c, app=app) for c in ctx.callbacks or ()]
    options: dict[str, Any] = {"parent_id": _tid(ctx), "root_id": ctx.root_id}
    if len(callbacks) == 1:
        callbacks[0].apply_async((retval,), **options)
    elif callbacks:
        # As Celery: several callbacks go out as one group (group callbacks each as themselves).
        groups = [c for c in callbacks if isinstance(c, group)]
        plain = [c for c in callbacks if not isinstance(c, group)]
        for g in groups:
            g.apply_async((retval,), **options)
        if plain:
            group(plain, app=app).apply_async((retval,), **options)
    if ctx.chain:
        chain = list(ctx.chain)
        step = signature(chain.pop(), app=app)
        step.apply_async((retval,), chain=chain or None, **options)


def record_failure(backend: Any, ctx: Context, exc: BaseException, traceback: str | None) -> None:
    """Store a failure decided outside the task (time limit, lost process) with its workflow effects:
    the rest of its chain fails too and its chord hears of it."""
    backend.store_result(_tid(ctx), exc, states.FAILURE, traceback, request=ctx)
    _fail_workflow(backend, ctx, exc)


def _fail_workflow(backend: Any, ctx: Context, exc: BaseException) -> None:
    """A failed task's effects on its workflow: the rest of its chain fails, its chord counts it."""
    from ..backends._chords import mark_chain_failed

    mark_chain_failed(backend, ctx.chain, exc)
    if ctx.chord:
        _chord_part(backend, ctx, states.FAILURE, exc)


def _chord_part(backend: Any, ctx: Context, state: str, value: Any) -> None:
    try:
        backend.on_chord_part_return(ctx, state, value)
    except Exception:
        logger.exception("could not count %s as a part of chord %s", _tid(ctx), ctx.group)


def _apply_errbacks(app: Celery, ctx: Context, exc: BaseException, einfo: ExceptionInfo) -> None:
    for errback in ctx.errbacks or ():
        sig: Signature[Any] = signature(errback, app=app)
        try:
            task = app.tasks.get(sig.task)
            if task is not None and _takes_request(task):
                # New-style errback (request, exc, traceback): run here, where the exception is.
                sig.type(ctx, exc, einfo.traceback)
            else:
                sig.apply_async((_tid(ctx),), parent_id=_tid(ctx), root_id=ctx.root_id)
        except Exception:
            logger.exception("could not apply errback %r of task %s", errback, _tid(ctx))


def _takes_request(task: Task[Any, Any]) -> bool:
    import inspect

    fun = getattr(task, "__wrapped__", None) or task.run
    try:
        params = list(inspect.signature(fun).parameters)
    except (TypeError, ValueError):
        return False
    if getattr(task, "_bind", False):
        params = params[1:]
    return params[:3] == ["request", "exc", "traceback"]


def format_exception_only(exc: BaseException) -> str:
    return "".join(tb_module.format_exception_only(type(exc), exc)).strip()


def _tid(ctx: Context) -> str:
    return ctx.id or ""
