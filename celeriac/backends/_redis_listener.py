"""One pub/sub connection per process, shared by every ``get()`` waiting on a Redis result.

Leader/follower: the first waiting thread becomes the *leader* and reads the
connection itself (subscribing, reading messages and handing each to the thread
waiting for it); other waiting threads are *followers* and sleep on a condition
until their result arrives or the leader leaves, when one of them takes over.
The usual case, one thread waiting for one result, therefore needs no helper
thread and no thread switch: the caller subscribes, reads and returns.

Compared with a connection per ``get()`` this saves the connect, the socket
teardown and the unsubscribe round trip; however many results a process waits
for, it holds one connection and no extra thread.
"""

from __future__ import annotations

import os
import select
import threading
import time
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
        self.subscribed = False
        self.event = threading.Event()
        self.data: bytes | None = None  # the last message; None after a reconnect (re-read the key)


class ResultListener:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._waiters: dict[bytes, list[Waiter]] = {}
        self._confirmed: set[bytes] = set()
        self._requests: deque[tuple[bool, bytes]] = deque()  # (subscribe?, channel)
        self._leader: int | None = None
        self._pubsub: Any = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)

    # -- waiters --------------------------------------------------------------
    def add(self, channel: str) -> Waiter:
        key = channel.encode()
        waiter = Waiter(key)
        with self._cond:
            waiters = self._waiters.setdefault(key, [])
            waiters.append(waiter)
            if key in self._confirmed:
                waiter.subscribed = True
            elif len(waiters) == 1:
                self._requests.append((True, key))
                self._wake_leader()
        return waiter

    def remove(self, waiter: Waiter) -> None:
        lead = False
        with self._cond:
            waiters = self._waiters.get(waiter.channel, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and waiter.channel in self._waiters:
                del self._waiters[waiter.channel]
                self._confirmed.discard(waiter.channel)
                self._requests.append((False, waiter.channel))
                if self._leader is None:
                    self._leader = threading.get_ident()
                    lead = True
                else:
                    self._wake_leader()
        if not lead:
            return
        # Nobody is reading: send the unsubscribe now (its reply is read by the next leader).
        self._step_down()

    def _step_down(self) -> None:
        """Send what was asked while we led (replies are read by the next leader), then hand over."""
        try:
            while True:
                with self._cond:
                    if not self._requests:
                        self._leader = None
                        self._cond.notify_all()  # a follower takes over, if any is waiting
                        return
                if self._pubsub is None or self._pubsub.connection is None:
                    with self._cond:
                        # Nothing is subscribed without a connection; the next leader resubscribes.
                        self._requests = deque(r for r in self._requests if r[0])
                        if not self._requests:
                            continue
                    self._connection()
                self._send_requests(self._pubsub)
        except connection_errors:
            self._after_disconnect()
            with self._cond:
                self._leader = None
                self._cond.notify_all()

    def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except connection_errors:
                pass

    def wait(self, waiter: Waiter, *, subscribed_only: bool, deadline: float | None) -> bool:
        """Wait until the waiter is subscribed (``subscribed_only``) or has a message.

        Returns False on timeout. The calling thread leads (reads the connection) when no
        other thread does.
        """
        while True:
            with self._cond:
                while not self._done(waiter, subscribed_only) and self._leader is not None:
                    if not self._cond.wait(_remaining(deadline)):
                        return self._done(waiter, subscribed_only)
                if self._done(waiter, subscribed_only):
                    return True
                self._leader = threading.get_ident()
            try:
                finished = self._lead(waiter, subscribed_only, deadline)
            finally:
                self._step_down()
            if finished or (deadline is not None and time.monotonic() >= deadline):
                return finished

    def _done(self, waiter: Waiter, subscribed_only: bool) -> bool:
        return waiter.subscribed if subscribed_only else waiter.event.is_set()

    def _wake_leader(self) -> None:
        if self._leader is not None and self._leader != threading.get_ident():
            try:
                os.write(self._wake_w, b"x")
            except (BlockingIOError, OSError):
                pass

    # -- the leader's loop ------------------------------------------------------
    def _lead(self, waiter: Waiter, subscribed_only: bool, deadline: float | None) -> bool:
        try:
            pubsub = self._connection()
            while True:
                self._send_requests(pubsub)
                while True:
                    message = pubsub.get_message(timeout=0)
                    if message is None:
                        break
                    self._dispatch(message)
                if self._done(waiter, subscribed_only):
                    return True
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    return False
                # Our own reply, or someone else's request (the wake pipe), whichever comes first.
                wait = 1.0 if remaining is None else min(remaining, 1.0)
                ready, _, _ = select.select([pubsub.connection._sock, self._wake_r], [], [], wait)
                if self._wake_r in ready:
                    self._drain_wake()
        except connection_errors:
            self._after_disconnect()
            return self._done(waiter, subscribed_only)

    def _connection(self) -> Any:
        if self._pubsub is None or self._pubsub.connection is None:
            self._pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
            # Subscribing opens the connection; every channel still wanted is subscribed again.
            self._pubsub.subscribe(f"celeriac.listener.{os.getpid()}.{id(self)}")
            with self._cond:
                self._requests.extend((True, ch) for ch in self._waiters)
        return self._pubsub

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _send_requests(self, pubsub: Any) -> None:
        with self._cond:
            requests = list(self._requests)
            self._requests.clear()
            unsubscribe = [ch for sub, ch in requests if not sub and ch not in self._waiters]
        subscribe = [ch for sub, ch in requests if sub]
        if subscribe:
            pubsub.subscribe(*subscribe)
        if unsubscribe:
            pubsub.unsubscribe(*unsubscribe)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), message.get("channel")
        if not isinstance(channel, bytes):
            return
        with self._cond:
            waiters = list(self._waiters.get(channel, ()))
            if kind == "subscribe" and waiters:
                self._confirmed.add(channel)
                for waiter in waiters:
                    waiter.subscribed = True
            elif kind == "message":
                for waiter in waiters:
                    waiter.data = message.get("data")
                    waiter.event.set()
            else:
                return
            self._cond.notify_all()

    def _after_disconnect(self) -> None:
        # Messages may have been missed: every waiter re-reads its key once resubscribed.
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except connection_errors:
                pass
        with self._cond:
            self._confirmed.clear()
            for group in self._waiters.values():
                for waiter in group:
                    waiter.subscribed = False
                    waiter.data = None
                    waiter.event.set()
            self._requests.clear()
            self._requests.extend((True, ch) for ch in self._waiters)
            self._cond.notify_all()


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
