"""Redis result backend, compatible with Celery's.

URL: ``redis://[:password@]host:6379/0`` (and ``rediss://``, ``redis+socket://``, ``sentinel://``).

Layout: ``celery-task-meta-<task id>`` holds the JSON meta (with ``result_expires`` as
TTL) and every state change is also PUBLISHed on a channel of the same name, so
a Celery client can read a celeriac result and back. ``get()`` subscribes to that
channel and waits for the message (no polling), then unsubscribes: nothing is
left subscribed once the result is in, however many results a process reads.
All waits in a process share one pub/sub connection (see ``_redis_listener``).
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import states
from ..exceptions import BackendStoreError, OperationalError, TimeoutError
from ..serialization import dumps
from ._write_behind import WriteBehind
from .base import KeyValueBackend, ResultMeta

# redis-py is imported with the first connection, not with this module: a prefork child that
# hands its results to the worker (hand_over_writes) never loads it.
if TYPE_CHECKING:
    import redis

    from ..app import Celery
    from ._redis_async import AsyncResultListener
    from ._redis_listener import ResultListener

__all__ = ["RedisBackend"]

logger = logging.getLogger("celeriac.worker")

WRITES_TRACKED = 10_000  # task ids whose write is remembered until their message is settled


class RedisBackend(KeyValueBackend):
    supports_native_join = True
    read_ahead = True  # MGET

    def __init__(self, url: str = "", options: Mapping[str, Any] | None = None, *, app: Celery | None = None) -> None:
        super().__init__(url, options, app=app)
        opts = {k: v for k, v in (options or {}).items() if k not in ("global_keyprefix",)}
        conf = app.conf if app is not None else None
        self._timeout = float(conf.redis_socket_connect_timeout or conf.broker_connection_timeout) if conf else 4.0
        if conf is not None and conf.redis_max_connections:
            opts.setdefault("max_connections", conf.redis_max_connections)
        self._options = opts
        self._use_ssl = conf.redis_backend_use_ssl if conf is not None else None
        self._client: redis.Redis | None = None
        self._listener_obj: ResultListener | None = None
        self._store_script: Any = None
        self._listener_pid = 0
        self._behind: WriteBehind | None = None
        self._busy: Callable[[], bool] = _always
        self._write_of: dict[str, int] = {}  # task id -> number of its write waiting behind
        self._handed: list[tuple[str, Any]] | None = None  # in a prefork child: writes for the worker
        self._prune_at = WRITES_TRACKED
        # One listener per event loop (redis.asyncio connections belong to the loop that made them).
        self._async_listeners: weakref.WeakKeyDictionary[Any, AsyncResultListener] = weakref.WeakKeyDictionary()

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            from .._redis import client_from_url

            self._client = client_from_url(self.url, self._options, timeout=self._timeout, use_ssl=self._use_ssl)
        return self._client

    def _run(self, action: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except _errors() as exc:  # evaluated only once something was raised
            from .._redis import redis_error

            raise redis_error(exc, self.url, action) from exc

    def _execute(self, action: str, *commands: tuple[Any, ...]) -> list[Any]:
        """Commands in one round trip (a pipeline without MULTI); their replies."""
        from .._redis import execute_raw

        replies: list[Any] = self._run(action, execute_raw, self.client, *commands)
        return replies

    def _get(self, key: str) -> bytes | None:
        value: bytes | None = self._execute("reading a result", ("GET", key))[0]
        return value

    def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = self._run("reading results", self.client.mget, list(keys))
        return values

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._execute("storing a result", *_set_commands(key, value, ttl))

    def store(self, meta: ResultMeta) -> None:
        if meta.status != states.SUCCESS or (self._behind is None and self._handed is None):
            super().store(meta)
            return
        # Encoded here, in the task's thread, so a value that can't be stored fails its task as
        # before; only the round trip is left to the writer (or to the worker, from a child).
        write = (meta.task_id, _set_commands(self.task_key(meta.task_id), self.encode_meta(meta), self.expires))
        if self._handed is not None:
            self._handed.append(write)
        else:
            self.accept_writes((write,))

    # -- writes behind the worker's pool -----------------------------------------
    def write_behind(self, busy: Callable[[], bool] | None = None) -> None:
        if self._behind is None:
            self._behind = WriteBehind(self._write_many)
        self._busy = busy or _always

    def accept_writes(self, writes: Sequence[tuple[str, Any]]) -> None:
        behind = self._behind
        if behind is None:
            self.write_behind()
            behind = self._behind
            assert behind is not None
        # With more tasks waiting, the writer thread batches these writes with theirs; otherwise
        # they go out now, from this thread, with whatever else waits.
        now = not self._busy()
        for task_id, commands in writes:
            number = behind.add(*commands, now=now, tag=task_id)
            if len(self._write_of) >= self._prune_at:
                # Normally emptied as each task's message is settled; a result stored outside the
                # worker's own settling (an eager call in a task) would otherwise stay here.
                written = behind.written
                self._write_of = {t: n for t, n in self._write_of.items() if n > written}
                self._prune_at = max(WRITES_TRACKED, 2 * len(self._write_of))  # amortized: no scan per store
            self._write_of[task_id] = number

    def hand_over_writes(self) -> bool:
        # A child forked to replace another has a copy of the worker's writer, its waiting writes
        # and acks included: they are the worker's to make, never this process's.
        self._behind, self._write_of = None, {}
        self._handed = []
        return True

    def take_writes(self) -> list[tuple[str, Any]]:
        writes = self._handed
        if not writes:
            return []
        self._handed = []
        return writes

    def _write_many(self, writes: Sequence[tuple[Any, tuple[tuple[Any, ...], ...]]]) -> None:
        try:
            self._execute("storing results", *(c for _, commands in writes for c in commands))
        except OperationalError as exc:
            if not _refused(exc):
                raise  # the store is away: the whole batch is tried again
            # Redis refused some write (out of memory, a value over its size limit) and took the
            # others. Each is tried alone, and a refused one is recorded as its task's failure, as
            # an inline write would be, rather than holding back every result behind it.
            for task_id, commands in writes:
                try:
                    self._execute("storing a result", *commands)
                except OperationalError as one:
                    if not _refused(one):
                        raise
                    self._record_refused(str(task_id), one)

    def _record_refused(self, task_id: str, exc: BaseException) -> None:
        logger.error("could not store the result of task %s: %s", task_id, exc)
        failure = BackendStoreError(f"could not store the result: {exc}")
        try:
            self.store(self.build_meta(task_id, failure, states.FAILURE))
        except Exception:
            logger.exception("could not store the failure of task %s either", task_id)

    def after_writes(self, callback: Callable[[], None], task_id: str) -> None:
        behind = self._behind
        number = None if behind is None else self._write_of.pop(task_id, None)
        if behind is None or number is None:
            callback()  # nothing of this task's waits
        else:
            behind.after(callback, number)

    def flush_writes(self, timeout: float | None = None) -> bool:
        if self._handed:
            # A child about to count a chord part: its own result must be in first.
            try:
                self._write_many(self._handed)
            except OperationalError:
                return False  # the store is away: the worker will make the write
            self._handed = []
        return True if self._behind is None else self._behind.flush(timeout)

    def _set_unless_success(self, key: str, value: bytes, ttl: float | None) -> bool:
        if self.serializer != "json":
            return super()._set_unless_success(key, value, ttl)
        if self._store_script is None:
            self._store_script = self.client.register_script(
                (Path(__file__).with_name("redis_scripts") / "store_unless_success.lua").read_text()
            )
        stored = self._run("storing a result", self._store_script, [key], [value, max(1, int(ttl)) if ttl else 0])
        return bool(stored)

    def _delete(self, key: str) -> None:
        self._run("forgetting a result", self.client.delete, key)

    def _incr(self, key: str, ttl: float | None) -> int:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            if ttl:
                pipe.expire(key, max(1, int(ttl)))
            value = self._run("counting", pipe.execute)[0]
        return int(value)

    # -- chords: Celery's layout, so Celery and celeriac workers finish each other's chords --------
    # celery-taskset-meta-<gid>.j  each part's [1, task id, state, result], a sorted set by group index
    # celery-taskset-meta-<gid>.t  parts added on the fly (Task.add_to_chord)
    # celery-taskset-meta-<gid>.s  the chord size, set by the client before the last part is sent
    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        key = self.group_key(group_id) + ".s"
        store = ("SET", key, str(int(chord_size)), "EX", max(1, int(self.expires))) if self.expires else (
            "SET", key, str(int(chord_size)))  # fmt: skip
        self._execute("storing a chord size", store)

    def apply_chord(self, header_result: Any, body: Any) -> None:
        from ..result import GroupResult

        # A header holding groups keeps its structure only if saved (Celery's rule); flat ones need nothing.
        if any(isinstance(r, GroupResult) for r in header_result.results):
            header_result.save(backend=self)

    def add_to_chord(self, group_id: str, result: Any) -> None:
        self._run("extending a chord", self.client.incr, self.group_key(group_id) + ".t", 1)

    def _chord_ordered(self) -> bool:
        options = (self.app.conf.result_backend_transport_options or {}) if self.app is not None else {}
        return bool(options.get("result_chord_ordered", True))

    def on_chord_part_return(self, request: Any, state: str, result: Any) -> None:
        from ._chords import finish

        task_id, group_id = getattr(request, "id", None), getattr(request, "group", None)
        callback = getattr(request, "chord", None)
        if not task_id or not group_id or not callback:
            return
        # The body may run now and read every part's result, this one's included: none may be
        # left waiting behind (and another worker's part counts only after its own result is in).
        self.flush_writes(self._timeout)
        index = getattr(request, "group_index", None)
        base = self.group_key(group_id)
        jkey, tkey, skey = base + ".j", base + ".t", base + ".s"
        encoded = dumps([1, task_id, state, self._part_value(result, state)], self.serializer)[2]
        ordered = self._chord_ordered()
        with self.client.pipeline(transaction=True) as pipe:
            if ordered:
                pipe.zadd(jkey, {encoded: "+inf" if index is None else index})
                pipe.zcount(jkey, "-inf", "+inf")
            else:
                pipe.rpush(jkey, encoded)
                pipe.llen(jkey)
            pipe.get(tkey)
            pipe.get(skey)
            if self.expires:
                for key in (jkey, tkey, skey):
                    pipe.expire(key, max(1, int(self.expires)))
            _, ready, extra, size = self._run("counting a chord part", pipe.execute)[:4]
        if not size:
            return
        total = int(size) + int(extra or 0)
        if ready != total:
            return
        try:
            raw = self._run("reading a chord", self.client.zrange if ordered else self.client.lrange, jkey, 0, -1)
            values, error = self._unpack_parts([part[1:] for part in self._decode_parts(raw)])
            finish(self, callback, group_id, values, error)
        finally:
            self._run("clearing a chord", self.client.delete, jkey, tkey, skey)

    def _listener(self) -> ResultListener:
        from ._redis_listener import ResultListener

        pid = os.getpid()
        if self._listener_obj is None or self._listener_pid != pid:
            self._listener_obj, self._listener_pid = ResultListener(self.client), pid
        return self._listener_obj

    def wait_for(
        self, task_id: str, *, timeout: float | None = None, interval: float = 0.5, just_sent: bool = False
    ) -> ResultMeta:
        if not just_sent:
            meta = self.get_meta(task_id)
            if meta.ready:
                return meta
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = self._listener()
        # Subscribed to the result's channel, and its key read once the subscription is in effect
        # (one round trip on RESP3): a result stored just before is read, one stored after is heard.
        waiter = listener.add(self.task_key(task_id))
        try:
            while True:
                if not listener.wait(waiter, deadline=deadline):
                    raise TimeoutError(f"The operation timed out waiting for task {task_id}.")
                waiter.event.clear()
                if waiter.error is not None:
                    waiter.error = None
                    meta = self.get_meta(task_id)  # raises what reading the key raises
                    if meta.ready:
                        return meta
                    continue
                data = waiter.data
                if data is not None:
                    meta = self.decode_meta(data, task_id)
                    if meta.ready:
                        return meta
        finally:
            listener.remove(waiter)

    async def await_for(
        self, task_id: str, *, timeout: float | None = None, interval: float = 0.5, just_sent: bool = False
    ) -> ResultMeta:
        import asyncio

        from .._redis import connection_errors, redis_error

        listener = self._async_listener()
        key = self.task_key(task_id)

        async def read() -> ResultMeta:
            try:
                raw = await listener.client.get(key)
            except connection_errors as exc:
                raise redis_error(exc, self.url, "reading a result") from exc
            if raw is None:
                return ResultMeta(task_id=task_id)
            return self.decode_meta(raw if isinstance(raw, bytes) else raw.encode(), task_id)

        try:
            meta: ResultMeta = await listener.wait(key, read, lambda data: self.decode_meta(data, task_id), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"The operation timed out waiting for task {task_id}.") from None
        except connection_errors as exc:
            raise redis_error(exc, self.url, "waiting for a result") from exc
        return meta

    def _async_listener(self) -> AsyncResultListener:
        import asyncio

        from .._redis import async_client_from_url
        from ._redis_async import AsyncResultListener

        loop = asyncio.get_running_loop()
        listeners = self._async_listeners
        listener = listeners.get(loop)
        if listener is None:
            client = async_client_from_url(self.url, self._options, timeout=self._timeout, use_ssl=self._use_ssl)
            listener = listeners[loop] = AsyncResultListener(client)
        return listener

    def close(self) -> None:
        if self._behind is not None:
            self._behind.close(timeout=0)  # one more try: a worker has waited for them already
        if self._listener_obj is not None and self._listener_pid == os.getpid():
            self._listener_obj.close()
        self._listener_obj = None

    def cleanup(self) -> int:
        """Redis expires results itself (``result_expires``); nothing to do."""
        return 0


def _set_commands(key: str, value: bytes, ttl: float | None) -> tuple[tuple[Any, ...], ...]:
    """Store a result and announce it to those waiting (the value goes with the announcement)."""
    store = ("SET", key, value, "EX", max(1, int(ttl))) if ttl else ("SET", key, value)
    return store, ("PUBLISH", key, value)


def _errors() -> tuple[type[BaseException], ...]:
    """What redis-py raises when a command fails (imported by then: a command was sent)."""
    import redis.exceptions

    from .._redis import connection_errors

    return (*connection_errors, redis.exceptions.RedisError)


def _refused(exc: OperationalError) -> bool:
    """Redis answered the command with an error (as opposed to not answering at all)."""
    import redis.exceptions

    return isinstance(exc.__cause__, redis.exceptions.ResponseError)


def _always() -> bool:
    return True


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
