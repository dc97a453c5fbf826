"""One pub/sub connection per process, shared by every ``get()`` waiting on a Redis result.

A result is stored under a key and PUBLISHed on a channel of the same name. Waiting
for it takes a subscription to the channel and a read of the key made once the
subscription is in effect, so that a result stored just before is not missed. On a
RESP3 connection (Redis 6 and later, redis-py's default from version 8) both go in one
write, ``SUBSCRIBE k`` then ``GET k``: Redis runs them in that order, so the read
follows the subscription without waiting for its confirmation, and the wait costs one
round trip. On RESP2 the key is read once the subscription is confirmed, on a command
connection (``GET`` is refused on a subscribed RESP2 connection).

Leader/follower: the first waiting thread becomes the *leader* and reads the
connection itself (sending the subscriptions, reading replies and messages and handing
each to the threads waiting for it); other waiting threads are *followers* and sleep on
a condition until their result arrives or the leader leaves, when one of them takes
over. The usual case, one thread waiting for one result, therefore needs no helper
thread and no thread switch: the caller subscribes, reads and returns.

However many results a process waits for, it holds one connection and no extra thread;
nothing stays subscribed once every ``get()`` has returned.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections import deque
from typing import Any

import redis
import redis.exceptions

from .._redis import connection_errors, execute_raw, pack_commands

__all__ = ["ResultListener", "Waiter"]

RECONNECT_PAUSE = 0.05  # seconds between attempts while Redis can't be reached


class Waiter:
    """One ``get()`` waiting on one key and its channel.

    ``event`` is set whenever there is news: the key was read (``data`` is its value, or
    None if it doesn't exist yet), a message came (``data`` is it), or the read failed
    (``error``). The waiting thread clears it before looking.
    """

    __slots__ = ("channel", "data", "error", "event", "read")

    def __init__(self, channel: bytes) -> None:
        self.channel = channel
        self.event = threading.Event()
        self.data: bytes | None = None  # the latest value seen, from the read or a message
        self.read = False  # the key was read since the subscription took effect
        self.error: Exception | None = None


class ResultListener:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._cond = threading.Condition()
        self._waiters: dict[bytes, list[Waiter]] = {}
        self._confirmed: set[bytes] = set()  # subscribed, and the key read since
        self._requests: deque[tuple[bool, bytes]] = deque()  # (subscribe?, channel), to send
        self._reads: deque[bytes | None] = deque()  # RESP3: the replies due, in order (None: a PING)
        self._leader: int | None = None
        self._conn: Any = None
        self._resp3 = False
        kwargs = getattr(client.connection_pool, "connection_kwargs", {})
        self._health_interval = float(kwargs.get("health_check_interval") or 25)
        self._last_read = 0.0
        self._ping_sent: float | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)

    # -- waiters --------------------------------------------------------------
    def add(self, channel: str) -> Waiter:
        """Start waiting on ``channel`` (and its key): subscribed and read by the leader."""
        key = channel.encode()
        waiter = Waiter(key)
        with self._cond:
            waiters = self._waiters.setdefault(key, [])
            waiters.append(waiter)
            if len(waiters) == 1:
                self._requests.append((True, key))
                self._wake_leader()
            elif key in self._confirmed:
                # Subscribed and read already: what the others have is current (or a message follows).
                first = waiters[0]
                waiter.data, waiter.read = first.data, True
                waiter.event.set()
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
                    if self._conn is None:
                        # Nothing is subscribed without a connection; the next leader subscribes.
                        self._requests = deque(r for r in self._requests if r[0])
                        self._leader = None
                        self._cond.notify_all()
                        return
                self._send_requests(self._conn)
        except connection_errors:
            self._after_disconnect()
            with self._cond:
                self._leader = None
                self._cond.notify_all()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.disconnect()
            except connection_errors:
                pass

    def wait(self, waiter: Waiter, *, deadline: float | None) -> bool:
        """Wait until ``waiter.event`` is set; False on timeout.

        The calling thread leads (reads the connection) when no other thread does.
        """
        while True:
            with self._cond:
                while not waiter.event.is_set() and self._leader is not None:
                    if not self._cond.wait(_remaining(deadline)):
                        return waiter.event.is_set()
                if waiter.event.is_set():
                    return True
                self._leader = threading.get_ident()
            try:
                finished = self._lead(waiter, deadline)
            finally:
                self._step_down()
            if finished or (deadline is not None and time.monotonic() >= deadline):
                return finished

    def _wake_leader(self) -> None:
        if self._leader is not None and self._leader != threading.get_ident():
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    # -- the leader's loop ------------------------------------------------------
    def _lead(self, waiter: Waiter, deadline: float | None) -> bool:
        try:
            conn = self._connection()
            while True:
                self._send_requests(conn)
                while conn.can_read(0):
                    self._receive(conn)
                if waiter.event.is_set():
                    return True
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    return False
                self._check_health(conn)
                # A reply or message, or someone else's request (the wake pipe), whichever comes first.
                wait = 1.0 if remaining is None else min(remaining, 1.0)
                ready, _, _ = select.select([conn._sock, self._wake_r], [], [], wait)
                if self._wake_r in ready:
                    self._drain_wake()
        except connection_errors:
            connected = self._conn is not None
            self._after_disconnect()
            if not connected:  # Redis can't be reached: don't retry in a busy loop
                time.sleep(min(RECONNECT_PAUSE, _remaining(deadline) or RECONNECT_PAUSE))
            return waiter.event.is_set()

    def _connection(self) -> Any:
        if self._conn is None:
            conn: Any = self._client.connection_pool.make_connection()
            conn.connect()
            self._resp3 = str(getattr(conn, "protocol", 2)) == "3"
            self._conn, self._last_read, self._ping_sent = conn, time.monotonic(), None
            with self._cond:
                # Every channel still wanted is subscribed (and its key read) again.
                self._reads.clear()
                self._requests = deque((True, ch) for ch in self._waiters)
        return self._conn

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _send_requests(self, conn: Any) -> None:
        with self._cond:
            if not self._requests:
                return
            requests = list(self._requests)
            self._requests.clear()
            commands: list[tuple[Any, ...]] = []
            for subscribe, channel in requests:
                if subscribe:
                    commands.append(("SUBSCRIBE", channel))
                    if self._resp3:
                        commands.append(("GET", channel))
                        self._reads.append(channel)
                elif channel not in self._waiters:
                    commands.append(("UNSUBSCRIBE", channel))
        if commands:
            conn.send_packed_command(pack_commands(conn, tuple(commands)), check_health=False)

    def _check_health(self, conn: Any) -> None:
        """PING a connection that has been quiet for a while; one that doesn't answer is dead."""
        now = time.monotonic()
        if now - self._last_read < self._health_interval:
            return
        if self._ping_sent is None:
            self._ping_sent = now
            with self._cond:
                if self._resp3:
                    self._reads.append(None)
            conn.send_packed_command(pack_commands(conn, (("PING",),)), check_health=False)
        elif now - self._ping_sent > self._health_interval:
            raise redis.exceptions.ConnectionError("no reply to a PING on the result listener's connection")

    def _receive(self, conn: Any) -> None:
        try:
            reply = conn.read_response(push_request=True)
        except redis.exceptions.ResponseError as exc:
            if not self._resp3:
                raise redis.exceptions.ConnectionError(f"unexpected error on a subscribed connection: {exc}") from exc
            reply = exc
        self._last_read, self._ping_sent = time.monotonic(), None
        if isinstance(reply, list):  # a push: a message, or a (un)subscribe confirmation
            kind = reply[0] if reply else b""
            if kind in (b"message", "message") and len(reply) >= 3:
                self._deliver(_bytes(reply[1]), reply[2], read=False)
            elif kind in (b"subscribe", "subscribe") and not self._resp3 and len(reply) >= 2:
                self._read_key(_bytes(reply[1]))
            return
        with self._cond:
            channel = self._reads.popleft() if self._reads else None
        if channel is None:
            return  # PONG
        if isinstance(reply, Exception):
            self._fail(channel, reply)
        else:
            self._deliver(channel, reply, read=True)

    def _read_key(self, channel: bytes) -> None:
        """RESP2: the subscription is confirmed; read the key on a command connection."""
        with self._cond:
            if channel not in self._waiters:
                return
        try:
            value = execute_raw(self._client, ("GET", channel))[0]
        except redis.exceptions.ResponseError as exc:
            self._fail(channel, exc)
            return
        self._deliver(channel, value, read=True)

    def _deliver(self, channel: bytes, data: Any, *, read: bool) -> None:
        with self._cond:
            waiters = self._waiters.get(channel)
            if not waiters:
                return  # unsubscribed meanwhile
            if read:
                self._confirmed.add(channel)
            if isinstance(data, str):
                data = data.encode()
            for waiter in waiters:
                if data is not None:
                    waiter.data = data
                waiter.read = waiter.read or read
                waiter.event.set()
            self._cond.notify_all()

    def _fail(self, channel: bytes, error: Exception) -> None:
        with self._cond:
            for waiter in self._waiters.get(channel, ()):
                waiter.error = error
                waiter.event.set()
            self._cond.notify_all()

    def _after_disconnect(self) -> None:
        # Messages may have been missed: every channel is subscribed and its key read again.
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.disconnect()
            except connection_errors:
                pass
        with self._cond:
            self._confirmed.clear()
            self._reads.clear()
            self._requests = deque((True, ch) for ch in self._waiters)
            self._cond.notify_all()


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
