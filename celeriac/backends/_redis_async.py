"""Awaiting Redis results: one ``redis.asyncio`` pub/sub connection per event loop.

Every ``await result`` on a loop shares that loop's connection and its one reader
task; a waiting coroutine costs a dict entry, not a thread or a connection. The
protocol is the sync listener's: subscribe to the result's channel, read the key
once the subscription is confirmed (a result stored just before is not missed),
then wait for the PUBLISH. After a reconnect redis-py subscribes again and each
waiter reads its key again, as messages sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio

from .._redis import connection_errors

__all__ = ["AsyncResultListener"]

_CLOSE_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, asyncio.CancelledError, *connection_errors)


class _Waiter:
    __slots__ = ("event", "data", "reread")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.data: bytes | None = None
        self.reread = False  # (re)subscribed: the key must be read


class AsyncResultListener:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[bytes, list[_Waiter]] = {}
        self._confirmed: set[bytes] = set()
        self._ready: asyncio.Event | None = None

    async def _start(self) -> None:
        if self._ready is not None:
            await self._ready.wait()  # started, or being started by another waiter
            return
        ready = self._ready = asyncio.Event()
        try:
            self._pubsub = self.client.pubsub()
            # A channel of our own keeps the connection subscribed (so readable) between waits.
            await self._pubsub.subscribe(f"celeriac.listener.{os.getpid()}.{id(self)}")
        except BaseException:
            self._ready, self._pubsub = None, None
            ready.set()
            raise
        self._reader = asyncio.get_running_loop().create_task(self._read())
        ready.set()

    async def wait(
        self,
        channel: str,
        read: Callable[[], Awaitable[Any]],
        decode: Callable[[bytes], Any],
        timeout: float | None,
    ) -> Any:
        """Wait for a ready result on ``channel``: ``read()`` reads the key, ``decode`` a message.

        Both return the result meta; raises ``asyncio.TimeoutError`` after ``timeout``.
        """
        key = channel.encode()
        waiter = _Waiter()
        await self._start()
        if self._pubsub is None:
            raise ConnectionError("the result listener could not connect")
        group = self._waiters.setdefault(key, [])
        group.append(waiter)
        if key in self._confirmed:
            waiter.reread = True
            waiter.event.set()
        elif len(group) == 1:
            await self._pubsub.subscribe(key)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(waiter.event.wait(), remaining)
                waiter.event.clear()
                if waiter.reread:
                    waiter.reread, waiter.data = False, None
                    meta = await read()
                elif waiter.data is not None:
                    meta, waiter.data = decode(waiter.data), None
                else:
                    continue
                if meta.ready:
                    return meta
        finally:
            group = self._waiters.get(key, [])
            if waiter in group:
                group.remove(waiter)
            if not group:
                self._waiters.pop(key, None)
                self._confirmed.discard(key)
                try:
                    await self._pubsub.unsubscribe(key)
                except connection_errors:
                    pass  # gone with the connection anyway

    async def _read(self) -> None:
        delay = 0.1
        try:
            while True:
                try:
                    message = await self._pubsub.get_message(timeout=None)
                    delay = 0.1
                except connection_errors:
                    # redis-py reconnects and subscribes again on the next read; until the
                    # confirmations arrive, nothing is known to be subscribed.
                    self._confirmed.clear()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                if message is not None:
                    self._dispatch(message)
        finally:
            pubsub, self._pubsub = self._pubsub, None
            self._reader, self._ready = None, None
            # The loop is ending (asyncio.run cancels this task): close the sockets while it runs.
            try:
                if pubsub is not None:
                    await pubsub.aclose()
                await self.client.connection_pool.disconnect()
            except _CLOSE_ERRORS:
                pass

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), message.get("channel")
        if not isinstance(channel, bytes):
            return
        waiters = self._waiters.get(channel, ())
        if kind == "subscribe":
            if waiters:
                self._confirmed.add(channel)
            for waiter in waiters:
                waiter.reread = True
                waiter.event.set()
        elif kind == "message":
            for waiter in waiters:
                waiter.data = message.get("data")
                waiter.event.set()
