"""Tasks: ``@app.task`` turns a function into a :class:`Task` that can be called, sent and retried."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, TypeVar

from . import states
from ._state import current_task_var, get_current_app
from .canvas import Signature
from .exceptions import Ignore, MaxRetriesExceededError, Reject, Retry

if TYPE_CHECKING:
    from .app import Celery
    from .result import AsyncResult, EagerResult

logger = logging.getLogger("celeriac.task")

__all__ = ["AsyncTask", "Context", "Task"]

P = ParamSpec("P")
R = TypeVar("R")

# Task options that fall back to an app setting (``task_<name>``) when the task doesn't set them.
_CONF_FALLBACKS = (
    "serializer",
    "rate_limit",
    "rate_limit_scope",
    "priority",
    "acks_late",
    "acks_on_failure_or_timeout",
    "reject_on_worker_lost",
    "ignore_result",
    "store_errors_even_if_ignored",
    "track_started",
    "time_limit",
    "soft_time_limit",
)
_CONF_KEYS = {
    "rate_limit": "task_default_rate_limit",
    "priority": "task_default_priority",
}


class Context:
    """``task.request``: what the worker knows about the call being executed."""

    id: str | None = None
    task: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    retries: int = 0
    is_eager: bool = False
    called_directly: bool = True
    eta: str | None = None
    expires: str | None = None
    group: str | None = None
    group_index: int | None = None
    chord: Any = None
    chain: list[Any] | None = None
    callbacks: list[Any] | None = None
    errbacks: list[Any] | None = None
    hostname: str | None = None
    delivery_info: dict[str, Any] | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    root_id: str | None = None
    parent_id: str | None = None
    origin: str | None = None
    timelimit: tuple[float | None, float | None] | None = None
    ignore_result: bool = False
    headers: dict[str, Any] | None = None
    shadow: str | None = None
    stamps: dict[str, Any] | None = None
    stamped_headers: list[str] | None = None
    replaced_task_nesting: int = 0
    properties: dict[str, Any] | None = None
    children: list[Any]
    taskset: str | None = None
    utc: bool = True

    def __init__(self, **fields: Any) -> None:
        self.children = []
        self.__dict__.update(fields)

    def update(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def add_trail(self, result: Any) -> None:
        # An AsyncResult or a GroupResult: anything with Celery's as_tuple().
        self.children.append(result.as_tuple())

    def __repr__(self) -> str:
        return f"<Context: {self.__dict__!r}>"


_EMPTY_CONTEXT = Context()


class Task(Generic[P, R]):
    """A task: a function plus the options that say how to send, run, retry and record it.

    Calling the task object runs the function here (``add(2, 2)``); ``delay`` and
    ``apply_async`` send it to a worker and return an :class:`~celeriac.result.AsyncResult`.
    Subclass it (``@app.task(base=MyTask)``) to add hooks such as ``on_failure``.
    """

    # Celery's class attributes; ``None`` means "use the app setting".
    name: str = ""
    typing: bool = True
    max_retries: int | None = 3
    default_retry_delay: float = 180
    rate_limit: str | int | float | None = None
    rate_limit_scope: str | None = None  # "worker" (Celery's) or "global" (all workers together)
    ignore_result: bool | None = None
    trail: bool = True
    send_events: bool = True
    store_errors_even_if_ignored: bool | None = None
    serializer: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    acks_late: bool | None = None
    acks_on_failure_or_timeout: bool | None = None
    reject_on_worker_lost: bool | None = None
    track_started: bool | None = None
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: ClassVar[dict[str, Any]] = {}
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    expires: float | datetime | None = None
    priority: int | None = None
    queue: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    resultrepr_maxsize: int = 1024
    abstract: bool = False
    MaxRetriesExceededError = MaxRetriesExceededError

    def __init__(
        self,
        fun: Callable[P, R] | None = None,
        *,
        app: Celery | None = None,
        name: str | None = None,
        bind: bool = False,
        **options: Any,
    ) -> None:
        self._app = app
        self._fun = fun
        self._bind = bind
        if fun is not None:
            self.__doc__ = fun.__doc__
            self.__module__ = fun.__module__
            self.__name__ = getattr(fun, "__name__", type(self).__name__)
            self.__qualname__ = getattr(fun, "__qualname__", self.__name__)
            self.__wrapped__ = fun
        for key, value in options.items():
            if key in ("autoretry_for", "dont_autoretry_for") and value is not None:
                value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            setattr(self, key, value)
        if name:
            self.name = name

    # -- app and options -------------------------------------------------------
    @property
    def app(self) -> Celery:
        return self._app if self._app is not None else get_current_app()

    @app.setter
    def app(self, app: Celery) -> None:
        self._app = app

    def opt(self, key: str) -> Any:
        """The effective value of option ``key``: the task's own, else the app setting."""
        value = getattr(self, key, None)
        if value is None and key in _CONF_FALLBACKS:
            return self.app.conf.get(_CONF_KEYS.get(key, f"task_{key}"))
        return value

    @property
    def request(self) -> Context:
        """The request being executed by this task (an empty context outside a worker)."""
        current = current_task_var.get()
        if current is not None and current[0] is self:
            ctx: Context = current[1]
            return ctx
        return _EMPTY_CONTEXT

    @property
    def backend(self) -> Any:
        return self.app.backend

    # -- calling ---------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._fun is None:
            result: R = self.run(*args, **kwargs)
            return result
        if self._bind:
            return self._fun(self, *args, **kwargs)  # type: ignore[arg-type]
        return self._fun(*args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The task body; override in class-based tasks."""
        raise NotImplementedError(f"task {self.name!r} has no body: pass a function or override run()")

    @property
    def is_async(self) -> bool:
        """True for an ``async def`` task: its body returns a coroutine, awaited by the worker."""
        cached = self.__dict__.get("_is_async")
        if cached is None:
            fun = self._fun if self._fun is not None else self.run
            cached = inspect.iscoroutinefunction(fun)
            self.__dict__["_is_async"] = cached
        return bool(cached)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Send the task to a worker: a shortcut for ``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """``delay`` for async code: ``result = await add.adelay(2, 2)``; doesn't block the event loop."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """``apply_async`` for async code (same arguments); doesn't block the event loop.

        The message is published from a worker thread of the loop's default executor
        (broker clients are synchronous), with this coroutine's context, so a task sent
        from inside an async task gets its parent and root ids.
        """
        from ._aio import to_thread

        app = self.app
        if app.autofinalize and not app.finalized:
            app.finalize(auto=True)
        if app.conf.task_always_eager:
            if self.typing:
                self.check_arguments(args or (), kwargs or {})
            options.pop("countdown", None)
            options.pop("eta", None)
            return await self.aapply(args, kwargs, task_id=task_id, **options)
        return await to_thread(self.apply_async, args, kwargs, task_id, **options)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: str | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """Send the task to a worker.

        Args:
            args: positional arguments.
            kwargs: keyword arguments.
            task_id: the id to use (default: a new UUID).
            link: signature(s) to apply with the result on success.
            link_error: signature(s) to apply with the task id on failure.
            **options: ``countdown``, ``eta``, ``expires``, ``queue``, ``routing_key``, ``exchange``,
                ``priority``, ``headers``, ``ignore_result``, ``serializer``, ``time_limit``,
                ``soft_time_limit``, ``retries``...

        Raises:
            TypeError: the arguments don't match the task's signature (checked before sending).
            OperationalError: the broker could not be reached within ``broker_connection_timeout``.
        """
        if self.typing:
            self.check_arguments(args or (), kwargs or {})
        app = self.app
        if app.autofinalize and not app.finalized:
            # Finalizing applies task_annotations; do it before this task's options are read.
            app.finalize(auto=True)
        if app._sending().always_eager:
            options.pop("countdown", None)
            options.pop("eta", None)
            return self.apply(args, kwargs, task_id=task_id, link=link, link_error=link_error, **options)
        get = options.get
        for key in _SEND_DEFAULTS:
            if get(key) is None:
                value = getattr(self, key, None)
                if value is not None:
                    options[key] = value
        if get("serializer") is None and self.serializer:
            options["serializer"] = self.serializer
        if "ignore_result" not in options and self.ignore_result is not None:
            options["ignore_result"] = self.ignore_result
        return app.send_task(
            self.name,
            args,
            kwargs,
            task_id=task_id,
            producer=producer,
            link=link,
            link_error=link_error,
            shadow=shadow,
            task_type=self,
            **options,
        )

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError now if ``args``/``kwargs`` don't fit the task (instead of failing in the worker)."""
        sig = self.__dict__.get("_signature_cache", False)
        if sig is False:
            fun = self._fun if self._fun is not None else self.run
            try:
                sig = inspect.signature(fun)
            except (TypeError, ValueError):
                sig = None
            self.__dict__["_signature_cache"] = sig
            self.__dict__["_positional_range"] = _positional_range(sig)
        if sig is None:
            return
        if not kwargs:
            # The usual call, positional arguments only, to a function of plain parameters: their
            # count says it all (binding them costs more than the rest of building the message).
            known = self.__dict__.get("_positional_range")
            if known is not None:
                count = len(args) + (1 if self._bind else 0)
                if known[0] <= count <= known[1]:
                    return
        try:
            if self._bind:
                sig.bind(None, *args, **kwargs)
            else:
                sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}() {exc}") from None

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        link: Any = None,
        link_error: Any = None,
        task_id: str | None = None,
        retries: int | None = None,
        throw: bool | None = None,
        headers: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> EagerResult[R]:
        """Run the task in this process, now, and return an :class:`~celeriac.result.EagerResult`.

        An ``async def`` task runs on this process's event loop while this thread waits;
        from async code, ``await task.aapply(...)`` runs it on the caller's loop instead.
        """
        from .worker.execute import execute

        while True:
            ctx, throw = self._eager_request(args, kwargs, link, link_error, task_id, retries, throw, headers, options)
            outcome = execute(self.app, self, ctx, eager=True)
            retry = self._eager_retry(outcome)
            if retry is None:
                return self._eager_result(ctx, outcome, throw)
            args, kwargs, task_id, retries = retry.args, retry.kwargs, ctx.id, (retries or 0) + 1

    async def aapply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        link: Any = None,
        link_error: Any = None,
        task_id: str | None = None,
        retries: int | None = None,
        throw: bool | None = None,
        headers: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> EagerResult[R]:
        """``apply`` for async code: an ``async def`` task is awaited on the running loop."""
        from .worker.execute import execute_async

        while True:
            ctx, throw = self._eager_request(args, kwargs, link, link_error, task_id, retries, throw, headers, options)
            outcome = await execute_async(self.app, self, ctx, eager=True)
            retry = self._eager_retry(outcome)
            if retry is None:
                return self._eager_result(ctx, outcome, throw)
            args, kwargs, task_id, retries = retry.args, retry.kwargs, ctx.id, (retries or 0) + 1

    def _eager_retry(self, outcome: Any) -> Signature[Any] | None:
        if outcome.state == states.RETRY and isinstance(outcome.exc, Retry) and outcome.exc.sig is not None:
            sig: Signature[Any] = outcome.exc.sig
            return sig
        return None

    def _eager_result(self, ctx: Context, outcome: Any, throw: bool) -> EagerResult[R]:
        from .result import EagerResult

        if outcome.exc is not None and throw and outcome.state == states.FAILURE:
            raise outcome.exc
        value = outcome.exc if outcome.state in states.EXCEPTION_STATES else outcome.retval
        return EagerResult(ctx.id or "", value, outcome.state, traceback=outcome.traceback, name=self.name,
                           app=self.app)  # fmt: skip

    def _eager_request(
        self,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        link: Any,
        link_error: Any,
        task_id: str | None,
        retries: int | None,
        throw: bool | None,
        headers: Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> tuple[Context, bool]:
        from ._process import new_id

        app = self.app
        if app.autofinalize and not app.finalized:
            app.finalize(auto=True)
        task_id = task_id or new_id()
        throw = app.conf.task_eager_propagates if throw is None else throw
        parent = current_task_var.get()
        ctx = Context(
            id=task_id,
            task=self.name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            retries=retries or 0,
            is_eager=True,
            called_directly=False,
            root_id=parent[1].root_id if parent else task_id,
            parent_id=parent[1].id if parent else None,
            callbacks=_as_list(link),
            errbacks=_as_list(link_error),
            headers=dict(headers or {}),
            delivery_info={"is_eager": True},
            ignore_result=bool(options.get("ignore_result", False)),
            hostname=app.origin_name,
        )
        return ctx, bool(throw)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult[R]:
        from .result import AsyncResult

        return AsyncResult(task_id, backend=kwargs.get("backend"), task_name=self.name, app=self.app)

    # -- signatures ------------------------------------------------------------
    def signature(self, args: Sequence[Any] | None = None, *starargs: Any, **starkwargs: Any) -> Signature[R]:
        """A :class:`~celeriac.canvas.Signature` of a call to this task."""
        starkwargs.setdefault("app", self._app)
        return Signature(self, args, *starargs, **starkwargs)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """``add.s(2, 2)``: a partial signature (more args can be prepended when applied)."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """An immutable signature: applying it ignores any new arguments (e.g. a parent's result)."""
        return self.signature(args, kwargs, immutable=True)

    def map(self, it: Any) -> Signature[list[R]]:
        """``add.map([...])``: one message that calls the task for each item (see :class:`~celeriac.canvas.xmap`)."""
        from .canvas import xmap

        return xmap(self.s(), it, app=self._app)

    def starmap(self, it: Any) -> Signature[list[R]]:
        """``add.starmap([(1, 2), ...])``: as ``map``, each item unpacked as the arguments."""
        from .canvas import xstarmap

        return xstarmap(self.s(), it, app=self._app)

    def chunks(self, it: Any, n: int) -> Signature[Any]:
        """``add.chunks(zip(xs, ys), 10)``: the calls in messages of ``n`` (see :class:`~celeriac.canvas.chunks`)."""
        from .canvas import chunks

        return chunks(self.s(), it, n, app=self._app)

    # -- workflows from inside a task ----------------------------------------------
    def replace(self, sig: Signature[Any]) -> Any:
        """Replace this task with ``sig``, which takes over its id, chain, callbacks and chord.

        Stops the task (raises :class:`~celeriac.exceptions.Ignore`): write
        ``return self.replace(...)``. Whoever waits on this task gets ``sig``'s result.
        """
        from .canvas import _chain, group, signature

        request = self.request
        if "chord" in sig.options:
            from .exceptions import ImproperlyConfigured

            raise ImproperlyConfigured("A signature replacing a task must not be part of a chord")
        if isinstance(sig, _chain) and not sig.tasks:
            from .exceptions import ImproperlyConfigured

            raise ImproperlyConfigured("Cannot replace with an empty chain")
        if isinstance(sig, group):
            # A group gives a list: collect it with a task that returns its arguments.
            sig = sig | self.app.tasks["celery.accumulate"].s(index=0)
        for callback in request.callbacks or ():
            sig.link(callback)
        for errback in request.errbacks or ():
            sig.link_error(errback)
        if isinstance(sig, _chain) and "link" in sig.options:
            sig.tasks[-1].extend_list_option("link", sig.options["link"])
        sig.freeze(request.id)
        nesting = (request.replaced_task_nesting or 0) + 1
        sig.set(chord=request.chord, group_id=request.group, group_index=request.group_index,
                root_id=request.root_id, replaced_task_nesting=nesting)  # fmt: skip
        if isinstance(sig, _chain):
            for step in sig.tasks:
                step.set(replaced_task_nesting=nesting)
        for step in reversed(request.chain or []):
            step_sig = signature(step, app=self.app)
            step_sig.set(replaced_task_nesting=nesting)
            sig |= step_sig
        return self.on_replace(sig)

    def on_replace(self, sig: Signature[Any]) -> Any:
        """Send the replacement (eagerly: run it); override to act on replacement, calling super()."""
        if self.request.is_eager:
            return sig.apply().get()
        sig.delay()
        raise Ignore("Replaced by new task")

    def add_to_chord(self, sig: Signature[Any], lazy: bool = False) -> Any:
        """Add ``sig`` to the chord this task is a part of (Redis result store), and send it."""
        request = self.request
        if not request.chord:
            raise ValueError("Current task is not member of any chord")
        sig.set(group_id=request.group, group_index=request.group_index, chord=request.chord,
                root_id=request.root_id)  # fmt: skip
        result = sig.freeze()
        self.backend.add_to_chord(request.group, result)
        return sig if lazy else sig.delay()

    # -- retries -----------------------------------------------------------------
    def retry(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Send this task again, later, and tell the worker so (raises :class:`~celeriac.exceptions.Retry`).

        Raises:
            Retry: always, unless ``throw=False``; it is normal operation.
            MaxRetriesExceededError: ``max_retries`` was reached and no ``exc`` was given
                (with ``exc``, that exception is raised instead).
        """
        request = self.request
        retries = request.retries + 1
        limit = self.max_retries if max_retries is None else max_retries
        if request.called_directly:
            raise exc or Retry("Task can be retried", None)
        if not eta and countdown is None:
            countdown = self.default_retry_delay
        sig = self.signature_from_request(
            request, args, kwargs, countdown=countdown, eta=eta, retries=retries, **options
        )
        if limit is not None and retries > limit:
            if exc is not None:
                raise exc
            raise self.MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{sig.args} kwargs:{sig.kwargs}",
                task_args=sig.args,
                task_kwargs=sig.kwargs,
            )
        ret = Retry(exc=exc, when=eta or countdown, is_eager=request.is_eager, sig=sig)
        if request.is_eager:
            if throw:
                raise ret
            return ret
        # RETRY is stored before the new message goes out: the next run may start at once, in
        # another process, and its outcome (even the final FAILURE) must land after this state,
        # never under it.
        self._store_retry(request, ret)
        try:
            sig.apply_async()
        except Exception as send_error:
            raise Reject(send_error, requeue=False) from send_error
        if throw:
            raise ret
        return ret

    def _store_retry(self, request: Context, ret: Retry) -> None:
        import sys
        import traceback

        reason = ret.exc if isinstance(ret.exc, BaseException) else ret
        tb = traceback.format_exc() if sys.exc_info()[0] is not None else None
        try:
            self.backend.store_result(request.id or "", reason, states.RETRY, tb, request=request)
        except Exception:
            logger.exception("could not store the RETRY state of %s[%s]", self.name, request.id)
        ret.stored = True

    def signature_from_request(
        self,
        request: Context | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        queue: str | None = None,
        **extra_options: Any,
    ) -> Signature[R]:
        request = request or self.request
        delivery_info = request.delivery_info or {}
        hard, soft = request.timelimit or (None, None)
        options: dict[str, Any] = {
            "task_id": request.id,
            "link": request.callbacks,
            "link_error": request.errbacks,
            "group_id": request.group,
            "group_index": request.group_index,
            "chord": request.chord,
            "chain": request.chain,
            "soft_time_limit": soft,
            "time_limit": hard,
            "reply_to": request.reply_to or None,
            "headers": request.headers,
            "root_id": request.root_id,
            "parent_id": request.parent_id,
            "priority": (request.properties or {}).get("priority"),
            "expires": request.expires,
        }
        if queue or delivery_info.get("routing_key"):
            options["queue"] = queue or delivery_info.get("routing_key")
        options.update(extra_options)
        return self.signature(
            request.args if args is None else args,
            request.kwargs if kwargs is None else kwargs,
            **{k: v for k, v in options.items() if v is not None},
        )

    def retry_countdown(self, retries: int) -> float | None:
        """Backoff for ``autoretry_for``: ``retry_backoff * 2**retries`` capped, with full jitter."""
        if not self.retry_backoff:
            return None
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        countdown = float(min(self.retry_backoff_max, factor * (2**retries)))
        if self.retry_jitter:
            import random

            countdown = float(random.randrange(int(countdown) + 1))
        return max(0.0, countdown)

    # -- state -------------------------------------------------------------------
    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **kwargs: Any
    ) -> None:
        """Record a custom state (e.g. ``PROGRESS`` with ``meta={'done': 3}``) for this task."""
        task_id = task_id or self.request.id
        if task_id is None:
            raise ValueError("update_state needs a task_id outside a running task")
        self.backend.store_result(task_id, meta, state or states.PENDING, request=self.request, **kwargs)

    def send_event(self, type_: str, retry: bool = True, retry_policy: Any = None, **fields: Any) -> None:
        """Task events are not sent by this version; kept so task code calling it keeps working."""

    # -- hooks (override in a base class) ----------------------------------------
    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Called in the worker before the task body runs."""

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Called in the worker after the task succeeded."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        """Called in the worker after the task failed."""

    def on_retry(
        self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        """Called in the worker when the task is to be retried."""

    def after_return(
        self, status: str, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        """Called in the worker after the task returned, whatever the outcome."""

    def on_bound(self, app: Celery) -> None:
        """Called when the task is registered with an app."""

    # -- misc ------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<@task: {self.name} of {self._app.main if self._app else 'current app'}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # Tasks travel to prefork children (and into pickled signatures) by name.
        from .app import _unpickle_task

        return _unpickle_task, (self.name,)


if TYPE_CHECKING:

    class AsyncTask(Task[P, R]):
        """An ``async def`` task, for type checkers: calling it directly gives a coroutine of ``R``;
        ``delay()`` and ``apply_async()`` give an ``AsyncResult[R]`` as for any task."""

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...  # type: ignore[override]

else:
    AsyncTask = Task  # one class at run time: the worker tells async tasks apart with Task.is_async


# Task attributes that are sending options when the call doesn't give them.
_SEND_DEFAULTS = ("queue", "exchange", "routing_key", "expires", "priority", "time_limit", "soft_time_limit")


def _positional_range(sig: inspect.Signature | None) -> tuple[int, int] | None:
    """(required, total) for a signature of positional-or-keyword parameters only, else None."""
    if sig is None:
        return None
    params = list(sig.parameters.values())
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
        return None
    return sum(1 for p in params if p.default is inspect.Parameter.empty), len(params)


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [dict(v) for v in value]
    return [dict(value)]


def ignore() -> None:
    """Raise :class:`~celeriac.exceptions.Ignore`: the worker records nothing for this call."""
    raise Ignore()
