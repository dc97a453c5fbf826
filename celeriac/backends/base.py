"""The result-store interface, and the key-value base most stores build on.

A backend stores one :class:`ResultMeta` per task id. Reading an id nobody
stored gives ``PENDING`` (the state Celery gives both "waiting" and "unknown").
Values are laid out as Celery's, so a Celery client can read a celeriac
result and back::

    key   celery-task-meta-<task id>
    value {"status", "result", "traceback", "children", "date_done", "task_id",
           optional "group_id", "parent_id", and with result_extended
           "name", "args", "kwargs", "worker", "retries", "queue"}

A failure's ``result`` is ``{"exc_type", "exc_message", "exc_module"}`` and is
turned back into the original exception class when that class is importable
(a :class:`~celeriac.exceptions.RemoteTaskError` stand-in otherwise).
"""

from __future__ import annotations

import abc
import importlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from .. import states
from ..exceptions import (
    BackendGetMetaError,
    DecodeError,
    EncodeError,
    RemoteTaskError,
    SecurityError,
    TimeoutError,
)
from ..serialization import dumps, loads, prepare_accept_content

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["KeyValueBackend", "ResultBackend", "ResultMeta", "exception_from_meta", "exception_to_meta"]

TASK_KEY_PREFIX = "celery-task-meta-"
GROUP_KEY_PREFIX = "celery-taskset-meta-"
CHORD_KEY_PREFIX = "chord-unlock-"
CHORD_KEY_PREFIX = "chord-unlock-"

POLL_START = 0.005  # seconds before the second look at a polled store

_EXTENDED_FIELDS = ("name", "args", "kwargs", "worker", "retries", "queue")


@dataclass(slots=True)  # not frozen: one is made per task, and a frozen field costs a call to set
class ResultMeta:
    """What the result store knows of one task."""

    task_id: str
    status: str = states.PENDING
    result: Any = None  # the return value, or the exception for FAILURE/RETRY/REVOKED
    traceback: str | None = None
    children: list[Any] = field(default_factory=list)
    date_done: datetime | None = None
    group_id: str | None = None
    parent_id: str | None = None
    name: str | None = None
    args: Any = None
    kwargs: Any = None
    worker: str | None = None
    retries: int | None = None
    queue: str | None = None

    @property
    def ready(self) -> bool:
        return self.status in states.READY_STATES

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _join_timeout(backend: Any) -> float:
    conf = backend.app.conf if backend.app is not None else None
    return float(conf.result_chord_join_timeout if conf is not None and conf.result_chord_join_timeout else 3.0)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ResultBackend(abc.ABC):
    """Abstract result store.

    Implementations fill :meth:`store`, :meth:`load` and :meth:`forget`; waiting,
    the Celery-style ``store_result``/``mark_as_*`` helpers and ``get_task_meta``
    are built on those. ``load`` returns ``None`` for an id it doesn't know.
    """

    supports_native_join: ClassVar[bool] = False
    persistent: ClassVar[bool] = True
    # load_many() reads many results in one round trip: AsyncResult.get() then reads the results
    # the same thread sent after its own with it (see AsyncResult._read_ahead).
    read_ahead: ClassVar[bool] = False

    def __init__(self, url: str = "", options: Mapping[str, Any] | None = None, *, app: Celery | None = None) -> None:
        self.url = url
        self.options: Mapping[str, Any] = options or {}
        self.app = app

    # -- the interface --------------------------------------------------------
    @abc.abstractmethod
    def store(self, meta: ResultMeta) -> None:
        """Save ``meta``, replacing what was stored for that task id, except a ``SUCCESS``:
        once a task has succeeded, a late update from a duplicate run must not undo it."""

    @abc.abstractmethod
    def load(self, task_id: str) -> ResultMeta | None:
        """What is stored for ``task_id``, or ``None``."""

    @abc.abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete what is stored for ``task_id``. Idempotent."""

    def load_many(self, task_ids: Sequence[str]) -> list[ResultMeta | None]:
        """:meth:`load` for each of ``task_ids``; a store that reads many in one go overrides it."""
        return [self.load(task_id) for task_id in task_ids]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # -- writes behind the worker's pool (optional) ---------------------------
    def write_behind(self, busy: Callable[[], bool] | None = None) -> None:  # noqa: B027 - optional hook
        """Called by a worker whose tasks run in its own process: a store that can batch may leave
        successful results to a writer thread from now on (see :meth:`after_writes`). ``busy()``
        says whether more tasks wait to run, i.e. whether a write is worth holding for a batch."""

    def after_writes(self, callback: Callable[[], None], task_id: str) -> None:
        """Call ``callback`` once the result stored for ``task_id`` is written (at once if none
        waits); the worker acks a task's message there."""
        callback()

    def flush_writes(self, timeout: float | None = None) -> bool:
        """Write now whatever :meth:`write_behind` left waiting; False if it could not be written."""
        return True

    # -- writes handed from a prefork child to its worker (optional) -------------
    def hand_over_writes(self) -> bool:
        """Called in a prefork child: successful results are encoded here, so a value that can't be
        stored still fails its task, and kept for :meth:`take_writes` instead of being written; the
        worker makes the writes (:meth:`accept_writes`), behind its pool. False when this store
        can't: the child then writes its own results."""
        return False

    def take_writes(self) -> list[tuple[str, Any]]:
        """The writes kept since the last call (in a child that :meth:`hand_over_writes`)."""
        return []

    def accept_writes(self, writes: Sequence[tuple[str, Any]]) -> None:
        """Make the writes a child handed over, as this process's own stores (:meth:`after_writes`
        knows of them)."""
        raise NotImplementedError(f"{type(self).__name__} takes no writes from other processes")

    def wait_for(
        self, task_id: str, *, timeout: float | None = None, interval: float = 0.5, just_sent: bool = False
    ) -> ResultMeta:
        """Block until the task is ready; raises :class:`~celeriac.exceptions.TimeoutError` after ``timeout``.

        ``just_sent`` says the task was sent a moment ago, so it is pointless to read it
        before starting to wait (stores with notifications use that to save a round trip).

        Stores that must be polled are read with a backoff: 5 ms after the first
        look, doubling up to ``interval``, so a quick task is seen quickly and a
        slow one costs the store a couple of reads a second.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        step = POLL_START
        while True:
            mark = self._change_mark()
            meta = self.get_meta(task_id)
            if meta.ready:
                return meta
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"The operation timed out waiting for task {task_id}.")
            wait = min(step, interval)
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            self._sleep_until_change(task_id, wait, mark)
            step = min(step * 2, max(interval, POLL_START))

    def _change_mark(self) -> Any:
        """Read before a look at a result, for :meth:`_sleep_until_change` (stores that can tell
        a change since then override both)."""
        return None

    def _sleep_until_change(self, task_id: str, seconds: float, mark: Any = None) -> None:
        """Wait up to ``seconds`` for a change since ``mark``; stores with notifications override this."""
        time.sleep(seconds)

    async def await_for(
        self, task_id: str, *, timeout: float | None = None, interval: float = 0.5, just_sent: bool = False
    ) -> ResultMeta:
        """:meth:`wait_for` for async code: the event loop is never blocked.

        This default polls with the same backoff, each read done in the loop's default
        executor and each pause an ``asyncio.sleep``, so no thread is held while waiting.
        Stores with notifications override it.
        """
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        step = POLL_START
        while True:
            meta = await asyncio.to_thread(self.get_meta, task_id)
            if meta.ready:
                return meta
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"The operation timed out waiting for task {task_id}.")
            wait = min(step, interval)
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - loop.time()))
            await asyncio.sleep(wait)
            step = min(step * 2, max(interval, POLL_START))

    # -- built on the interface ---------------------------------------------
    def get_meta(self, task_id: str) -> ResultMeta:
        try:
            meta = self.load(task_id)
        except (DecodeError, SecurityError):
            raise
        except Exception as exc:
            raise BackendGetMetaError(f"can't read the state of task {task_id}: {exc}", task_id=task_id) from exc
        return meta if meta is not None else ResultMeta(task_id=task_id)

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        """Celery's dict form of :meth:`get_meta`."""
        return self.get_meta(task_id).as_dict()

    def get_state(self, task_id: str) -> str:
        return self.get_meta(task_id).status

    def get_result(self, task_id: str) -> Any:
        return self.get_meta(task_id).result

    def get_traceback(self, task_id: str) -> str | None:
        return self.get_meta(task_id).traceback

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **_: Any,
    ) -> ResultMeta:
        """Celery's signature: build the meta from a task request and store it."""
        meta = self.build_meta(task_id, result, state, traceback, request)
        self.store(meta)
        return meta

    def build_meta(
        self, task_id: str, result: Any, state: str, traceback: str | None = None, request: Any = None
    ) -> ResultMeta:
        meta = ResultMeta(
            task_id=task_id,
            status=state,
            result=result,
            traceback=traceback,
            children=list(getattr(request, "children", None) or []),
            date_done=_now() if state in states.READY_STATES else None,
            group_id=getattr(request, "group", None),
            parent_id=getattr(request, "parent_id", None),
        )
        if request is not None and self.app is not None and self.app.conf.result_extended:
            delivery_info = getattr(request, "delivery_info", None) or {}
            meta = replace(
                meta,
                name=getattr(request, "task", None),
                args=getattr(request, "args", None),
                kwargs=getattr(request, "kwargs", None),
                worker=getattr(request, "hostname", None),
                retries=getattr(request, "retries", None),
                queue=delivery_info.get("routing_key"),
            )
        return meta

    def mark_as_started(self, task_id: str, request: Any = None, **meta: Any) -> ResultMeta:
        return self.store_result(task_id, meta or None, states.STARTED, request=request)

    def mark_as_done(self, task_id: str, result: Any, request: Any = None, **_: Any) -> ResultMeta:
        return self.store_result(task_id, result, states.SUCCESS, request=request)

    def mark_as_failure(
        self, task_id: str, exc: BaseException, traceback: str | None = None, request: Any = None, **_: Any
    ) -> ResultMeta:
        return self.store_result(task_id, exc, states.FAILURE, traceback, request=request)

    def mark_as_retry(
        self, task_id: str, exc: BaseException, traceback: str | None = None, request: Any = None, **_: Any
    ) -> ResultMeta:
        return self.store_result(task_id, exc, states.RETRY, traceback, request=request)

    def mark_as_revoked(self, task_id: str, reason: str = "", request: Any = None, **_: Any) -> ResultMeta:
        from ..exceptions import TaskRevokedError

        exc = TaskRevokedError(reason)
        meta = self.store_result(task_id, exc, states.REVOKED, request=request)
        if request is not None and getattr(request, "chord", None):
            self.on_chord_part_return(request, states.REVOKED, exc)
        return meta

    # -- chords ---------------------------------------------------------------
    # -- groups: stores that can keep a group's result tuple override these --------------
    def save_group(self, group_id: str, result: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} can't save groups: use a result store that can")

    def restore_group(self, group_id: str) -> Any:
        raise NotImplementedError(f"{type(self).__name__} can't restore groups: use a result store that can")

    def delete_group(self, group_id: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} can't delete groups: use a result store that can")

    def ensure_chords_allowed(self) -> None:  # noqa: B027 - stores that can't hold chords override it
        """Raise if a chord can't complete with this store."""

    def set_chord_size(self, group_id: str, chord_size: int) -> None:  # noqa: B027 - optional hook
        """Told by the client before the last header part is sent (Redis keeps it, as Celery does)."""

    def apply_chord(self, header_result: Any, body: Any) -> None:  # noqa: B027 - optional hook
        """Called by the client before it sends a chord's header."""

    def on_chord_part_return(self, request: Any, state: str, result: Any) -> None:  # noqa: B027
        """A header part of a chord ended (``request.chord`` is the body); the last one sends the body."""

    def add_to_chord(self, group_id: str, result: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} can't add tasks to a running chord (Redis can)")

    def _part_value(self, result: Any, state: str) -> Any:
        """A chord part's value as stored with it (an exception as Celery's exception dict)."""
        if state in states.EXCEPTION_STATES and isinstance(result, BaseException):
            return exception_to_meta(result)
        return result

    def _unpack_parts(self, parts: Sequence[Any]) -> tuple[list[Any] | None, BaseException | None]:
        """Values of decoded ``[task id, state, value]`` parts, in order, or the first failed part's error."""
        from ._chords import part_error

        values = []
        for task_id, state, value in parts:
            if state in states.EXCEPTION_STATES:
                value = exception_from_meta(value) or value
            if state in states.PROPAGATE_STATES:
                return None, part_error(task_id, value)
            values.append(value)
        return values, None

    # Celery calls these when a result is read (rpc) or should be dropped from caches.
    def reload_task_result(self, task_id: str) -> ResultMeta:
        return self.get_meta(task_id)

    def on_task_call(self, producer: Any, task_id: str) -> dict[str, Any]:
        """Hook run when a task is sent; returns extra publish options (the RPC backend sets ``reply_to``)."""
        return {}

    def __repr__(self) -> str:
        from ..config import mask_url

        return f"<{type(self).__module__}.{type(self).__name__} {mask_url(self.url)}>"

    __str__ = __repr__


def exception_to_meta(exc: BaseException) -> dict[str, Any]:
    """Celery's serializable form of an exception."""
    cls = type(exc)
    if isinstance(exc, RemoteTaskError):
        return {"exc_type": exc.exc_type, "exc_message": list(exc.args), "exc_module": exc.exc_module}
    return {
        "exc_type": getattr(cls, "__qualname__", cls.__name__),
        "exc_message": _serializable_args(exc.args),
        "exc_module": cls.__module__,
    }


def _serializable_args(args: tuple[Any, ...]) -> list[Any]:
    from ..serialization import json_dumps

    out: list[Any] = []
    for arg in args:
        try:
            json_dumps(arg)
            out.append(arg)
        except (TypeError, ValueError):
            out.append(repr(arg))
    return out


# Exceptions raised by a Celery worker name Celery's modules; map them to ours so a
# celeriac client catches ``celeriac.exceptions.TimeLimitExceeded`` for either worker.
_ALIASED_MODULES = ("celery.exceptions", "billiard.exceptions", "billiard.einfo", "kombu.exceptions")
_remote_classes: dict[tuple[str | None, str], type[RemoteTaskError]] = {}


def exception_from_meta(value: Any) -> BaseException | None:
    """Rebuild an exception from ``{exc_type, exc_message, exc_module}``.

    Only classes from modules already imported are used (as Celery does): a stored
    result can't make this process import code. A non-exception class is refused.
    """
    if value is None:
        return None
    if isinstance(value, BaseException):
        return value
    if not isinstance(value, Mapping) or "exc_type" not in value:
        return RemoteTaskError(value)
    exc_type = str(value["exc_type"])
    exc_module = value.get("exc_module")
    message = value.get("exc_message", ())
    args = tuple(message) if isinstance(message, (list, tuple)) else (message,)
    cls = _find_class(exc_module, exc_type)
    if cls is None:
        cls = _remote_class(exc_module, exc_type)
    elif not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise SecurityError(f"Expected an exception class, got {exc_module}.{exc_type} with payload {message!r}")
    try:
        return cls(*args)  # type: ignore[no-any-return]
    except Exception:
        return _remote_class(exc_module, exc_type)(*args)


def _find_class(module_name: Any, qualname: str) -> Any:
    candidates = []
    if module_name in _ALIASED_MODULES:
        candidates.append("celeriac.exceptions")
    if isinstance(module_name, str):
        candidates.append(module_name)
    if module_name == "builtins" or module_name is None:
        candidates.append("builtins")
    for name in candidates:
        module = sys.modules.get(name)
        if module is None and name == "celeriac.exceptions":
            module = importlib.import_module(name)
        if module is None:
            continue
        obj: Any = module
        try:
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    return None


def _remote_class(module_name: Any, name: str) -> type[RemoteTaskError]:
    key = (module_name if isinstance(module_name, str) else None, name)
    cls = _remote_classes.get(key)
    if cls is None:
        short = name.rsplit(".", 1)[-1]
        cls = type(short, (RemoteTaskError,), {"exc_type": name, "exc_module": key[0], "__qualname__": short})
        cls.__module__ = key[0] or "celeriac.exceptions"
        _remote_classes[key] = cls
    return cls


class KeyValueBackend(ResultBackend):
    """A backend on a key-value store: implementations fill ``_get/_set/_delete`` (and ``_incr``)."""

    key_prefix: ClassVar[str] = TASK_KEY_PREFIX

    def __init__(self, url: str = "", options: Mapping[str, Any] | None = None, *, app: Celery | None = None) -> None:
        super().__init__(url, options, app=app)
        conf = app.conf if app is not None else None
        self.serializer: str = conf.result_serializer if conf is not None else "json"
        accept = (conf.result_accept_content or conf.accept_content) if conf is not None else ("json",)
        self.accept = prepare_accept_content(accept)
        expires = conf.result_expires if conf is not None else timedelta(days=1)
        if isinstance(expires, timedelta):
            expires = expires.total_seconds()
        self.expires: float | None = float(expires) if expires else None
        prefix = (conf.result_backend_transport_options or {}).get("global_keyprefix", "") if conf else ""
        prefix = str(prefix or "")
        if prefix and prefix[-1] not in ":_-.":
            # Celery's rule: a prefix that doesn't end in a separator gets "_", so both
            # name the same keys for the same setting.
            prefix += "_"
        self.global_keyprefix: str = prefix

    # -- to fill -----------------------------------------------------------------
    @abc.abstractmethod
    def _get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    def _set(self, key: str, value: bytes, ttl: float | None) -> None: ...

    @abc.abstractmethod
    def _delete(self, key: str) -> None: ...

    def _incr(self, key: str, ttl: float | None) -> int:
        raise NotImplementedError(f"{type(self).__name__} can't count chord parts")

    def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._get(key) for key in keys]

    # -- the interface -------------------------------------------------------
    def task_key(self, task_id: str) -> str:
        return f"{self.global_keyprefix}{self.key_prefix}{task_id}"

    def store(self, meta: ResultMeta) -> None:
        key, value = self.task_key(meta.task_id), self.encode_meta(meta)
        if meta.status == states.SUCCESS:
            self._set(key, value, self.expires)
        else:
            self._set_unless_success(key, value, self.expires)

    def _set_unless_success(self, key: str, value: bytes, ttl: float | None) -> bool:
        """Store unless a SUCCESS is stored there. Stores that can do this atomically override it."""
        current = self._get(key)
        if current is not None and self._is_success(current):
            return False
        self._set(key, value, ttl)
        return True

    def _is_success(self, raw: bytes) -> bool:
        from ..serialization import get_serializer

        ser = get_serializer(self.serializer)
        try:
            data = loads(raw, ser.content_type, ser.content_encoding, self.accept)
        except Exception:
            return False
        return isinstance(data, Mapping) and data.get("status") == states.SUCCESS

    # -- chords: Celery's counter key (``chord-unlock-<group id>``) --------------
    def apply_chord(self, header_result: Any, body: Any) -> None:
        # The parts find their siblings (and the chord's size) in the saved group.
        header_result.save(backend=self)

    def on_chord_part_return(self, request: Any, state: str, result: Any) -> None:
        from ..result import GroupResult, allow_join_result
        from ._chords import finish, part_error

        group_id = getattr(request, "group", None)
        callback = getattr(request, "chord", None)
        if not group_id or not callback:
            return
        deps = GroupResult.restore(group_id, backend=self, app=self.app)
        if deps is None:
            return  # not a chord this store counts (e.g. a Celery client's, completed by celery.chord_unlock)
        key = f"{self.global_keyprefix}{CHORD_KEY_PREFIX}{group_id}"
        count = self._incr(key, self.expires)
        size = callback.get("chord_size") or len(deps)
        if count != size:
            return
        try:
            with allow_join_result():
                values = deps.join(propagate=False, timeout=_join_timeout(self))
            failed = next((r for r, v in zip(deps, values, strict=True) if r.state in states.PROPAGATE_STATES), None)
            if failed is not None:
                finish(self, callback, group_id, None, part_error(failed.id, failed.result))
            else:
                finish(self, callback, group_id, values)
        finally:
            deps.delete(backend=self)
            self._delete(key)

    def _decode_parts(self, raw: Sequence[bytes]) -> list[Any]:
        from ..serialization import get_serializer

        ser = get_serializer(self.serializer)
        return [loads(item, ser.content_type, ser.content_encoding, self.accept) for item in raw]

    # -- groups (Celery's celery-taskset-meta-<group id>) ---------------------
    def group_key(self, group_id: str) -> str:
        if not group_id:
            raise ValueError(f"group_id must not be empty, got {group_id!r}")
        return f"{self.global_keyprefix}{GROUP_KEY_PREFIX}{group_id}"

    def save_group(self, group_id: str, result: Any) -> None:
        """Store a group's result tuple as Celery does: ``{"result": group.as_tuple()}``."""
        as_tuple = result.as_tuple() if hasattr(result, "as_tuple") else result
        self._set(self.group_key(group_id), dumps({"result": as_tuple}, self.serializer)[2], self.expires)

    def restore_group(self, group_id: str) -> Any:
        """The stored group tuple, or None."""
        from ..serialization import get_serializer

        raw = self._get(self.group_key(group_id))
        if raw is None:
            return None
        ser = get_serializer(self.serializer)
        data = loads(raw, ser.content_type, ser.content_encoding, self.accept)
        return data.get("result") if isinstance(data, Mapping) else None

    def delete_group(self, group_id: str) -> None:
        self._delete(self.group_key(group_id))

    def load(self, task_id: str) -> ResultMeta | None:
        raw = self._get(self.task_key(task_id))
        return None if raw is None else self.decode_meta(raw, task_id)

    def load_many(self, task_ids: Sequence[str]) -> list[ResultMeta | None]:
        raws = self._mget([self.task_key(tid) for tid in task_ids])
        return [None if raw is None else self.decode_meta(raw, tid) for raw, tid in zip(raws, task_ids, strict=True)]

    def forget(self, task_id: str) -> None:
        self._delete(self.task_key(task_id))

    # -- encoding ----------------------------------------------------------
    def encode_meta(self, meta: ResultMeta) -> bytes:
        result = meta.result
        if meta.status in states.EXCEPTION_STATES and isinstance(result, BaseException):
            result = exception_to_meta(result)
        data: dict[str, Any] = {
            "status": meta.status,
            "result": result,
            "traceback": meta.traceback,
            "children": meta.children,
            "date_done": meta.date_done.isoformat() if meta.date_done else None,
        }
        if meta.group_id:
            data["group_id"] = meta.group_id
        if meta.parent_id:
            data["parent_id"] = meta.parent_id
        if meta.name is not None:
            for key in _EXTENDED_FIELDS:
                data[key] = getattr(meta, key)
        data["task_id"] = meta.task_id
        try:
            return dumps(data, self.serializer)[2]
        except EncodeError:
            raise
        except Exception as exc:
            raise EncodeError(f"can't encode result of task {meta.task_id}: {exc}") from exc

    def decode_meta(self, raw: bytes, task_id: str) -> ResultMeta:
        from ..serialization import get_serializer

        ser = get_serializer(self.serializer)
        data = loads(raw, ser.content_type, ser.content_encoding, self.accept)
        return self.meta_from_dict(data, task_id)

    def meta_from_dict(self, data: Any, task_id: str) -> ResultMeta:
        """A decoded result (Celery's meta dict) as a :class:`ResultMeta`."""
        if not isinstance(data, Mapping):
            raise DecodeError(f"stored result of task {task_id} is not a mapping")
        status = data.get("status", states.PENDING)
        result = data.get("result")
        if status in states.EXCEPTION_STATES:
            result = exception_from_meta(result)
        date_done = data.get("date_done")
        if isinstance(date_done, str):
            try:
                date_done = datetime.fromisoformat(date_done.replace("Z", "+00:00"))
            except ValueError:
                date_done = None
        return ResultMeta(
            task_id=data.get("task_id") or task_id,
            status=status,
            result=result,
            traceback=data.get("traceback"),
            children=list(data.get("children") or []),
            date_done=date_done if isinstance(date_done, datetime) else None,
            group_id=data.get("group_id"),
            parent_id=data.get("parent_id"),
            name=data.get("name"),
            args=data.get("args"),
            kwargs=data.get("kwargs"),
            worker=data.get("worker"),
            retries=data.get("retries"),
            queue=data.get("queue"),
        )
