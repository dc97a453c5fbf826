"""Task results: :class:`AsyncResult` (a handle on a task's state) and :class:`EagerResult`."""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import states
from ._state import get_current_app, get_current_task
from .backends.base import ResultMeta
from .exceptions import TaskRevokedError

if TYPE_CHECKING:
    from .app import Celery
    from .backends.base import ResultBackend

__all__ = [
    "AsyncResult",
    "EagerResult",
    "GroupResult",
    "ResultSet",
    "allow_join_result",
    "assert_will_not_block",
    "result_from_tuple",
]

R = TypeVar("R")

# A result asked for within this many seconds of sending is waited for without a first read.
JUST_SENT = 0.005
# Results read in one round trip by get(): its own and those the same thread sent after it.
READ_AHEAD = 64

E_WOULDBLOCK = (
    "Never call result.get() within a task! It can deadlock the worker "
    "(see https://docs.celeryq.dev/en/latest/userguide/tasks.html#avoid-launching-synchronous-subtasks); "
    "chain the tasks instead, or call .get(disable_sync_subtasks=False) if you really mean it."
)

_join_allowed = False


def warn_if_blocking_in_loop(what: str, instead: str) -> None:
    """Warn when a blocking call is made from the thread of a running event loop."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return  # no event loop can be running without asyncio imported
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    import warnings

    warnings.warn(f"{what} blocks the running event loop; use {instead} in async code", RuntimeWarning, stacklevel=3)


def assert_will_not_block() -> None:
    """Raise RuntimeError when called from inside a task (where a blocking get can deadlock)."""
    if get_current_task() is not None and not _join_allowed:
        raise RuntimeError(E_WOULDBLOCK)


class allow_join_result:
    """Context manager that allows ``get()`` inside a task (Celery's name)."""

    def __enter__(self) -> None:
        global _join_allowed
        self._prev = _join_allowed
        _join_allowed = True

    def __exit__(self, *exc: object) -> None:
        global _join_allowed
        _join_allowed = self._prev


class AsyncResult(Generic[R]):
    """The state and eventual value of a task, looked up in the app's result backend.

    Args:
        id: the task id.
        backend: the result backend to read (default: the app's).
        task_name: the task's name, if known.
        app: the app (default: the current app).
    """

    def __init__(
        self,
        id: str,
        backend: ResultBackend | None = None,
        task_name: str | None = None,
        app: Celery | None = None,
        parent: AsyncResult[Any] | None = None,
    ) -> None:
        if not id:
            raise ValueError(f"AsyncResult requires a valid id, not {type(id).__name__}")
        self.id = id
        self.app = app or get_current_app()
        self._backend = backend
        self.task_name = task_name
        self.parent = parent
        self._cache: ResultMeta | None = None
        self.on_ready: Callable[[AsyncResult[R]], None] | None = None
        self.sent_at: float | None = None  # time.monotonic() when this process sent the task
        self._next_sent: weakref.ref[AsyncResult[Any]] | None = None  # the result this thread sent next

    @property
    def backend(self) -> ResultBackend:
        """The result backend this result is read from (``print(result.backend)`` shows which)."""
        if self._backend is None:
            self._backend = self.app.backend
        return self._backend

    @property
    def task_id(self) -> str:
        return self.id

    # -- reading ------------------------------------------------------------
    def _meta(self) -> ResultMeta:
        if self._cache is not None:
            return self._cache
        meta = self.backend.get_meta(self.id)
        if meta.ready:
            self._cache = meta
        return meta

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        no_ack: bool = True,
        follow_parents: bool = True,
        callback: Callable[[str, Any], Any] | None = None,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
        on_interval: Callable[[], Any] | None = None,
        disable_sync_subtasks: bool = True,
        EXCEPTION_STATES: frozenset[str] = states.EXCEPTION_STATES,
        PROPAGATE_STATES: frozenset[str] = states.PROPAGATE_STATES,
    ) -> R:
        """Wait for the task to finish and return its value.

        Args:
            timeout: seconds to wait; :class:`~celeriac.exceptions.TimeoutError` after that.
            propagate: re-raise the task's exception if it failed (else return the exception).
            interval: upper bound between checks, for stores that must be polled.
            disable_sync_subtasks: refuse to block inside a task (deadlock guard).

        Raises:
            TimeoutError: the task didn't finish within ``timeout``.
            Exception: the task's own exception, when it failed and ``propagate`` is true.
        """
        if disable_sync_subtasks:
            assert_will_not_block()
        warn_if_blocking_in_loop("AsyncResult.get()", "`await result` or `await result.aget()`")
        if follow_parents and propagate and self.parent is not None:
            self.parent.maybe_throw()
        if self._cache is not None:
            meta = self._cache
        elif self.sent_at is not None and time.monotonic() - self.sent_at < JUST_SENT:
            # Sent a moment ago by this process: it can't be done yet, so don't read it first.
            meta = self.backend.wait_for(self.id, timeout=timeout, interval=interval, just_sent=True)
        elif self._next_sent is not None:
            found = self._read_ahead()
            # Not done when read: wait for it, without reading it again first.
            meta = found or self.backend.wait_for(self.id, timeout=timeout, interval=interval, just_sent=True)
        else:
            meta = self.backend.wait_for(self.id, timeout=timeout, interval=interval)
        self._cache = meta
        if callback is not None:
            callback(self.id, meta.result)
        if meta.status in PROPAGATE_STATES and propagate:
            raise _with_remote_traceback(self._exception(meta), meta.traceback)
        return meta.result  # type: ignore[no-any-return]

    wait = get

    def _read_ahead(self) -> ResultMeta | None:
        """Read this result and the next ones this thread sent after it (up to ``READ_AHEAD`` in
        all, in one round trip); keep those that are done, so that ``[r.get() for r in results]``
        makes one round trip per ``READ_AHEAD`` results rather than one per result. Returns this
        result's meta when it is done, else None (as when the read fails: the caller reads it alone,
        and a bad result of another task is that task's error, not this one's)."""
        backend = self.backend
        batch: list[AsyncResult[Any]] = [self]
        link, hops = self._next_sent, 0
        while link is not None and len(batch) < READ_AHEAD and hops < 2 * READ_AHEAD:
            other = link()
            if other is None:
                break  # nobody holds it, nor (most likely) the ones sent after it
            hops += 1
            if other._cache is None and other.backend is backend:
                batch.append(other)
            link = other._next_sent
        try:
            metas = backend.load_many([r.id for r in batch])
        except Exception:
            # One result of the batch can't be read (or the store is down): this one is read alone,
            # which raises its own error, if any.
            self._next_sent = None
            return None
        for result, meta in zip(batch, metas, strict=True):
            if meta is not None and meta.ready and result._cache is None:
                result._cache = meta
        return self._cache

    # -- async ----------------------------------------------------------------
    async def aget(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        follow_parents: bool = True,
    ) -> R:
        """:meth:`get` for async code: ``value = await result.aget(timeout=10)`` (or ``await result``).

        Waits without blocking the event loop and without a thread: on Redis all the
        coroutines of a loop share one pub/sub connection; on rpc:// the reply consumer
        wakes them; other stores are polled with ``asyncio.sleep`` between reads.
        """
        if follow_parents and propagate and self.parent is not None:
            parent_meta = await self.parent._ameta()
            if parent_meta.status in states.PROPAGATE_STATES:
                raise _with_remote_traceback(self.parent._exception(parent_meta), parent_meta.traceback)
        meta = self._cache
        if meta is None:
            just_sent = self.sent_at is not None and time.monotonic() - self.sent_at < JUST_SENT
            meta = await self.backend.await_for(self.id, timeout=timeout, interval=interval, just_sent=just_sent)
            self._cache = meta
        if meta.status in states.PROPAGATE_STATES and propagate:
            raise _with_remote_traceback(self._exception(meta), meta.traceback)
        return meta.result  # type: ignore[no-any-return]

    def __await__(self) -> Generator[Any, None, R]:
        """``await result``: the task's value (its exception is raised), as ``await result.aget()``."""
        return self.aget().__await__()

    async def _ameta(self) -> ResultMeta:
        if self._cache is not None:
            return self._cache
        import asyncio

        meta = await asyncio.to_thread(self.backend.get_meta, self.id)
        if meta.ready:
            self._cache = meta
        return meta

    async def astate(self) -> str:
        """:attr:`state` for async code."""
        return (await self._ameta()).status

    async def aready(self) -> bool:
        """:meth:`ready` for async code."""
        return (await self._ameta()).status in states.READY_STATES

    async def aforget(self) -> None:
        """:meth:`forget` for async code."""
        import asyncio

        self._cache = None
        await asyncio.to_thread(self.backend.forget, self.id)

    def _exception(self, meta: ResultMeta) -> BaseException:
        exc = meta.result
        if isinstance(exc, BaseException):
            return exc
        if meta.status == states.REVOKED:
            return TaskRevokedError(exc or "revoked")
        return RuntimeError(f"task {self.id} failed: {exc!r}")

    def maybe_throw(self, propagate: bool = True, callback: Any = None) -> None:
        meta = self._meta()
        if propagate and meta.status in states.PROPAGATE_STATES:
            raise _with_remote_traceback(self._exception(meta), meta.traceback)

    maybe_reraise = maybe_throw

    def ready(self) -> bool:
        """True once the task has finished (successfully, with an error, or revoked)."""
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    @property
    def state(self) -> str:
        """``PENDING`` (waiting or unknown), ``STARTED``, ``RETRY``, ``SUCCESS``, ``FAILURE`` or ``REVOKED``."""
        return self._meta().status

    status = state

    @property
    def result(self) -> Any:
        """The return value, or the exception if the task failed (never raises it)."""
        return self._meta().result

    info = result

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failed task."""
        return self._meta().traceback

    @property
    def date_done(self) -> datetime | None:
        return self._meta().date_done

    @property
    def children(self) -> list[Any]:
        return [result_from_tuple(child, self.app) for child in self._meta().children]

    @property
    def name(self) -> str | None:
        return self._meta().name or self.task_name

    @property
    def args(self) -> Any:
        return self._meta().args

    @property
    def kwargs(self) -> Any:
        return self._meta().kwargs

    @property
    def worker(self) -> str | None:
        return self._meta().worker

    @property
    def retries(self) -> int | None:
        return self._meta().retries

    @property
    def queue(self) -> str | None:
        return self._meta().queue

    @property
    def graph(self) -> None:  # pragma: no cover - not supported
        raise NotImplementedError("result graphs are not supported")

    def exists(self) -> bool:
        """True if the result store has any record of this task (unlike ``state``, which says PENDING)."""
        return self.backend.load(self.id) is not None

    def forget(self) -> None:
        """Remove the result from the store, freeing its resources."""
        self._cache = None
        self.backend.forget(self.id)

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Ask the workers not to run this task (``terminate`` also stops it if it is running).

        The revoke is remembered by the broker too (Redis, SQLite), so a worker that is
        down right now still honours it when it starts.
        """
        self.app.control.revoke(self.id, terminate=terminate, signal=signal, reply=wait, timeout=timeout or 1.0)

    def as_tuple(self) -> tuple[Any, ...]:
        parent = self.parent
        return (self.id, parent.as_tuple() if parent is not None else None), None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __str__(self) -> str:
        return self.id

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.id, None, self.task_name, None, self.parent)

    def __copy__(self) -> AsyncResult[R]:
        return self.__class__(self.id, self._backend, self.task_name, self.app, self.parent)


class EagerResult(AsyncResult[R]):
    """The result of a task run in this process (``task.apply()`` or ``task_always_eager``)."""

    def __init__(
        self,
        id: str,
        ret_value: Any,
        state: str,
        traceback: str | None = None,
        name: str | None = None,
        app: Celery | None = None,
    ) -> None:
        super().__init__(id, task_name=name, app=app)
        self._cache = ResultMeta(task_id=id, status=state, result=ret_value, traceback=traceback, name=name)

    def _meta(self) -> ResultMeta:
        assert self._cache is not None
        return self._cache

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        no_ack: bool = True,
        follow_parents: bool = True,
        callback: Callable[[str, Any], Any] | None = None,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
        on_interval: Callable[[], Any] | None = None,
        disable_sync_subtasks: bool = True,
        EXCEPTION_STATES: frozenset[str] = states.EXCEPTION_STATES,
        PROPAGATE_STATES: frozenset[str] = states.PROPAGATE_STATES,
    ) -> R:
        meta = self._meta()
        if meta.status in PROPAGATE_STATES and propagate:
            raise self._exception(meta)
        return meta.result  # type: ignore[no-any-return]

    wait = get

    async def aget(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        follow_parents: bool = True,
    ) -> R:
        return self.get(propagate=propagate)

    def forget(self) -> None:
        pass

    async def aforget(self) -> None:
        pass

    def exists(self) -> bool:
        return True

    def __reduce__(self) -> tuple[Any, ...]:
        meta = self._meta()
        return self.__class__, (self.id, meta.result, meta.status, meta.traceback, self.task_name)

    def __repr__(self) -> str:
        return f"<EagerResult: {self.id}>"


class ResultSet:
    """Several results handled as one: ``ready()`` when all are, ``join()`` their values in order."""

    def __init__(self, results: Iterable[AsyncResult[Any]] | None = None, app: Celery | None = None) -> None:
        self.results: list[AsyncResult[Any]] = list(results or [])
        self._app = app

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = self.results[0].app if self.results else get_current_app()
        return self._app

    @property
    def backend(self) -> ResultBackend:
        return self.results[0].backend if self.results else self.app.backend

    @property
    def supports_native_join(self) -> bool:
        return bool(self.backend.supports_native_join)

    # -- the set ---------------------------------------------------------------
    def add(self, result: AsyncResult[Any]) -> None:
        if result not in self.results:
            self.results.append(result)

    def remove(self, result: AsyncResult[Any] | str) -> None:
        if isinstance(result, str):
            result = AsyncResult(result, app=self._app)
        self.results.remove(result)

    def discard(self, result: AsyncResult[Any] | str) -> None:
        try:
            self.remove(result)
        except ValueError:
            pass

    def update(self, results: Iterable[AsyncResult[Any]]) -> None:
        self.results.extend(r for r in results if r not in self.results)

    def clear(self) -> None:
        self.results[:] = []

    def __iter__(self) -> Iterator[AsyncResult[Any]]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult[Any]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResultSet):
            return other.results == self.results
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(r.id for r in self.results)}]>"

    # -- state -------------------------------------------------------------------
    def successful(self) -> bool:
        """True if every task succeeded."""
        return all(result.successful() for result in self.results)

    def failed(self) -> bool:
        """True if any task failed."""
        return any(result.failed() for result in self.results)

    def waiting(self) -> bool:
        """True if any task is not ready yet."""
        return any(not result.ready() for result in self.results)

    def ready(self) -> bool:
        """True once every task is ready."""
        return all(result.ready() for result in self.results)

    def completed_count(self) -> int:
        """How many tasks succeeded."""
        return sum(int(result.successful()) for result in self.results)

    def maybe_throw(self, callback: Any = None, propagate: bool = True) -> None:
        for result in self.results:
            result.maybe_throw(callback=callback, propagate=propagate)

    maybe_reraise = maybe_throw

    def forget(self) -> None:
        for result in self.results:
            result.forget()

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke every task of the set (one broadcast)."""
        self.app.control.revoke([r.id for r in self.results], terminate=terminate, signal=signal, reply=wait,
                                timeout=timeout or 1.0)  # fmt: skip

    # -- values --------------------------------------------------------------------
    def join(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], Any] | None = None,
        no_ack: bool = True,
        on_message: Any = None,
        disable_sync_subtasks: bool = True,
        on_interval: Any = None,
    ) -> list[Any]:
        """The values of every task, in order (``timeout`` bounds the whole wait).

        Raises:
            TimeoutError: not all done within ``timeout``.
            Exception: the first failed task's exception, when ``propagate``.
        """
        if disable_sync_subtasks:
            assert_will_not_block()
        deadline = None if timeout is None else time.monotonic() + timeout
        values: list[Any] = []
        for result in self.results:
            remaining = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("join operation timed out")
            try:
                value = result.get(timeout=remaining, propagate=propagate, interval=interval,
                                   disable_sync_subtasks=False)  # fmt: skip
            except TimeoutError:
                raise TimeoutError("join operation timed out") from None
            if callback is not None:
                callback(result.id, value)
            else:
                values.append(value)
        return values

    join_native = join

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], Any] | None = None,
        no_ack: bool = True,
        on_message: Any = None,
        disable_sync_subtasks: bool = True,
        on_interval: Any = None,
    ) -> list[Any]:
        """``join()``: the values of every task, in order."""
        return self.join(timeout=timeout, propagate=propagate, interval=interval, callback=callback,
                         disable_sync_subtasks=disable_sync_subtasks)  # fmt: skip

    async def aget(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5) -> list[Any]:
        """``get()`` for async code: every result awaited at once (no thread, no blocked loop)."""
        import asyncio

        waits = asyncio.gather(*(r.aget(propagate=propagate, interval=interval) for r in self.results))
        try:
            return list(await asyncio.wait_for(waits, timeout))
        except asyncio.TimeoutError:
            raise TimeoutError("join operation timed out") from None

    ajoin = aget

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self.aget().__await__()

    def _failed_join_report(self) -> Iterator[AsyncResult[Any]]:
        return (result for result in self.results if result.state in states.PROPAGATE_STATES)


class GroupResult(ResultSet):
    """The result of a group: its id and the result of each task, in order.

    ``save()`` stores it (Celery's ``celery-taskset-meta-<id>``) so another process can
    ``GroupResult.restore(id)``.
    """

    def __init__(
        self,
        id: str | None = None,
        results: Iterable[AsyncResult[Any]] | None = None,
        parent: AsyncResult[Any] | None = None,
        app: Celery | None = None,
        **_: Any,
    ) -> None:
        super().__init__(results, app=app)
        self.id = id
        self.parent = parent

    @property
    def children(self) -> list[AsyncResult[Any]]:
        return self.results

    def save(self, backend: ResultBackend | None = None) -> GroupResult:
        """Store the group so it can be restored by id elsewhere."""
        assert self.id, "a group needs an id to be saved"
        (backend or self.app.backend).save_group(self.id, self)
        return self

    def delete(self, backend: ResultBackend | None = None) -> None:
        if self.id:
            (backend or self.app.backend).delete_group(self.id)

    @classmethod
    def restore(cls, id: str, backend: ResultBackend | None = None, app: Celery | None = None) -> GroupResult | None:
        """The group saved as ``id``, or None."""
        app = app or get_current_app()
        stored = (backend or app.backend).restore_group(id)
        if stored is None:
            return None
        result = result_from_tuple(stored, app)
        return result if isinstance(result, GroupResult) else None

    def as_tuple(self) -> tuple[Any, ...]:
        parent = self.parent
        return (self.id, parent.as_tuple() if parent is not None else None), [r.as_tuple() for r in self.results]

    def __bool__(self) -> bool:
        return bool(self.id or self.results)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results and other.parent == self.parent
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __str__(self) -> str:
        return str(self.id)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.id, self.results, self.parent)


def result_from_tuple(value: Any, app: Celery | None = None) -> Any:
    """Rebuild a result (or a group's) from its ``as_tuple()`` form, as stored in ``children``."""
    if isinstance(value, (AsyncResult, ResultSet)):
        return value
    head, nodes = value
    task_id, parent = head if isinstance(head, (list, tuple)) else (head, None)
    parent_result = result_from_tuple(parent, app) if parent else None
    if nodes is not None:
        return GroupResult(task_id, [result_from_tuple(child, app) for child in nodes], parent=parent_result,
                           app=app)  # fmt: skip
    return AsyncResult(task_id, app=app, parent=parent_result)


def _with_remote_traceback(exc: BaseException, remote_traceback: str | None) -> BaseException:
    # The local traceback of a re-raised remote exception points at get(); the note
    # carries where it really failed, without changing the exception's type.
    if remote_traceback and sys.version_info >= (3, 11):
        notes = getattr(exc, "__notes__", [])
        note = "Remote traceback (from the worker):\n" + remote_traceback.rstrip()
        if note not in notes:
            exc.add_note(note)
    return exc
