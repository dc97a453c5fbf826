"""One pub/sub connection per process, shared by every ``get()`` waiting on a Redis result.

A background thread owns the connection; waiters hand it (un)subscribe requests
through a queue and a self-pipe, so no two threads ever use the connection at
once. Compared with a connection per ``get()`` this saves the connect, the
unsubscribe round trip and the socket teardown on every result, and a process
waiting on thousands of results still holds one connection and one thread.
"""

from __future__ import annotations

import os
import select
import threading
import uuid
from collections import deque
from typing import Any

import redis

from .._redis import connection_errors

__all__ = ["ResultListener", "Waiter"]


class Waiter:
    """One ``get()`` waiting for messages on one channel."""

    __slots__ = ("channel", "data", "event", "subscribed")

    def __init__(self, channel: bytes) -> None:
        self.channel = channel
        self.subscribed = threading.Event()
        self.event = threading.Event()
        self.data: bytes | None = None  # the last message; None after a reconnect (re-read the key)


class ResultListener:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._waiters: dict[bytes, list[Waiter]] = {}
        self._confirmed: set[bytes] = set()
        self._requests: deque[tuple[bool, bytes]] = deque()  # (subscribe?, channel)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread: threading.Thread | None = None

    def add(self, channel: str) -> Waiter:
        key = channel.encode()
        waiter = Waiter(key)
        with self._lock:
            waiters = self._waiters.setdefault(key, [])
            waiters.append(waiter)
            if key in self._confirmed:
                waiter.subscribed.set()
            elif len(waiters) == 1:
                self._requests.append((True, key))
        self._ensure_thread()
        self._wake()
        return waiter

    def remove(self, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(waiter.channel, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and waiter.channel in self._waiters:
                del self._waiters[waiter.channel]
                self._confirmed.discard(waiter.channel)
                self._requests.append((False, waiter.channel))
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ResultListener", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self._listen()
            except connection_errors:
                self._after_disconnect()
                threading.Event().wait(0.5)

    def _listen(self) -> None:
        pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        # A private channel opens the connection, so there is a socket to select() on.
        pubsub.subscribe(f"celeriac.listener.{uuid.uuid4().hex}")
        with self._lock:
            self._requests.extend((True, ch) for ch in self._waiters)
        sock: Any = pubsub.connection._sock
        try:
            while True:
                self._send_requests(pubsub)
                while True:
                    message = pubsub.get_message(timeout=0)
                    if message is None:
                        break
                    self._dispatch(message)
                ready, _, _ = select.select([sock, self._wake_r], [], [], 5.0)
                if self._wake_r in ready:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
        finally:
            try:
                pubsub.close()
            except connection_errors:
                pass

    def _send_requests(self, pubsub: Any) -> None:
        with self._lock:
            requests = list(self._requests)
            self._requests.clear()
        subscribe = [ch for sub, ch in requests if sub]
        unsubscribe = [ch for sub, ch in requests if not sub and ch not in self._waiters]
        if subscribe:
            pubsub.subscribe(*subscribe)
        if unsubscribe:
            pubsub.unsubscribe(*unsubscribe)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), message.get("channel")
        if not isinstance(channel, bytes):
            return
        with self._lock:
            waiters = list(self._waiters.get(channel, ()))
            if kind == "subscribe" and waiters:
                self._confirmed.add(channel)
        if kind == "subscribe":
            for waiter in waiters:
                waiter.subscribed.set()
        elif kind == "message":
            for waiter in waiters:
                waiter.data = message.get("data")
                waiter.event.set()

    def _after_disconnect(self) -> None:
        # Messages may have been missed: every waiter re-reads its key after resubscribing.
        with self._lock:
            self._confirmed.clear()
            waiters = [w for group in self._waiters.values() for w in group]
        for waiter in waiters:
            waiter.data = None
            waiter.event.set()
