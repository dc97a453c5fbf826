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

import os
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
import redis.exceptions

from .._redis import client_from_url, connection_errors, execute_raw, redis_error
from ..exceptions import TimeoutError
from ._redis_listener import ResultListener
from .base import KeyValueBackend, ResultMeta

if TYPE_CHECKING:
    from ..app import Celery
    from ._redis_async import AsyncResultListener

__all__ = ["RedisBackend"]


class RedisBackend(KeyValueBackend):
    supports_native_join = True

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
        # One listener per event loop (redis.asyncio connections belong to the loop that made them).
        self._async_listeners: weakref.WeakKeyDictionary[Any, AsyncResultListener] = weakref.WeakKeyDictionary()

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = client_from_url(self.url, self._options, timeout=self._timeout, use_ssl=self._use_ssl)
        return self._client

    def _run(self, action: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except connection_errors + (redis.exceptions.RedisError,) as exc:
            raise redis_error(exc, self.url, action) from exc

    def _get(self, key: str) -> bytes | None:
        value: bytes | None = self._run("reading a result", execute_raw, self.client, ("GET", key))[0]
        return value

    def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = self._run("reading results", self.client.mget, list(keys))
        return values

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        store = ("SET", key, value, "EX", max(1, int(ttl))) if ttl else ("SET", key, value)
        self._run("storing a result", execute_raw, self.client, store, ("PUBLISH", key, value))

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

    def _listener(self) -> ResultListener:
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
        waiter = listener.add(self.task_key(task_id))
        try:
            while True:
                if not listener.wait(waiter, subscribed_only=True, deadline=deadline):
                    raise TimeoutError(f"The operation timed out waiting for task {task_id}.")
                # Stored before the subscription took effect? Read the key once subscribed.
                meta = self.get_meta(task_id)
                while not meta.ready:
                    if not listener.wait(waiter, subscribed_only=False, deadline=deadline):
                        raise TimeoutError(f"The operation timed out waiting for task {task_id}.")
                    waiter.event.clear()
                    data = waiter.data
                    if data is None:
                        break  # reconnected: subscribe again, then re-read the key
                    meta = self.decode_meta(data, task_id)
                if meta.ready:
                    return meta
        finally:
            listener.remove(waiter)

    async def await_for(
        self, task_id: str, *, timeout: float | None = None, interval: float = 0.5, just_sent: bool = False
    ) -> ResultMeta:
        import asyncio

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
        if self._listener_obj is not None and self._listener_pid == os.getpid():
            self._listener_obj.close()
        self._listener_obj = None

    def cleanup(self) -> int:
        """Redis expires results itself (``result_expires``); nothing to do."""
        return 0


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
