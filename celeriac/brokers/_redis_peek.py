"""Wait until one of several Redis lists has an item, without taking it.

Why not ``BRPOP``, as kombu does: ``BRPOP`` takes the item off the list in Redis and hands it
over in its reply. When the connection is cut or stalls after Redis sent that reply, the item
is in neither place, and the message is lost. Here nothing is taken while waiting: each list
gets a connection of its own, blocked in ``BLMOVE key key RIGHT RIGHT``, which pops the
oldest item and pushes it straight back where it was (one atomic command: the list is
unchanged, and a Celery worker blocked on the same list is still served). Its reply only
says "there is something"; the consumer then takes messages with its claim script, which
records them as held in the same step. A reply lost on the way costs nothing.

``BLMOVE`` has one source key, hence one connection per list, all waited on with one
``select``. A peek outlives the call that sent it (its reply is read by a later call), so an
idle worker sends one command per list per ``block`` seconds, not one per call.

Redis older than 6.2 has no ``BLMOVE``: the waiter then polls (the claim script every
``POLL_INTERVAL``), which is slower to notice a message but loses nothing either.
"""

from __future__ import annotations

import logging
import os
import selectors
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions

from .._redis import connection_errors

__all__ = ["ListWaiter"]

logger = logging.getLogger("celeriac.brokers.redis")

POLL_INTERVAL = 0.05  # seconds between claims on a Redis without BLMOVE


@dataclass
class _Peek:
    conn: Any  # a redis-py Connection, outside any pool
    sent_at: float | None = None  # monotonic time the outstanding BLMOVE was sent; None: none outstanding


class ListWaiter:
    """Blocking peeks on a set of lists, one connection each.

    ``make_connection`` returns a new, unconnected redis-py connection. ``block`` is how long
    one ``BLMOVE`` waits in Redis; ``socket_timeout`` is how much longer its reply may take
    before the connection is taken for stalled and an error is raised.
    """

    def __init__(self, make_connection: Callable[[], Any], *, block: float, socket_timeout: float) -> None:
        self._make_connection = make_connection
        self.block = block
        self.socket_timeout = socket_timeout
        self._peeks: dict[str, _Peek] = {}
        self._selector: selectors.BaseSelector | None = None
        self._pid = os.getpid()
        self.supported: bool | None = None  # BLMOVE known to exist (None: not asked yet)

    def wait(self, keys: Sequence[str], timeout: float) -> bool:
        """True as soon as one of ``keys`` has an item (it may be gone again by the time it is claimed).

        False after ``timeout`` seconds with nothing seen. Raises a redis-py connection error
        (after dropping every connection) when one fails or stalls.
        """
        if self.supported is None:
            self._check_support()
        if not self.supported:
            time.sleep(max(0.0, min(timeout, POLL_INTERVAL)))
            return True
        if self._pid != os.getpid():
            # A forked child: the sockets belong to the parent. Forget them without closing.
            self._peeks, self._selector, self._pid = {}, None, os.getpid()
        try:
            return self._wait(keys, timeout)
        except connection_errors:
            self.close()
            raise

    def _wait(self, keys: Sequence[str], timeout: float) -> bool:
        selector = self._start(keys)
        deadline = time.monotonic() + timeout
        while True:
            # Replies first, stalls after: a peek sent by an earlier call may have been answered
            # long ago, its reply waiting on the socket for this call to read it.
            remaining = deadline - time.monotonic()
            seen = False
            for selector_key, _ in selector.select(max(0.0, min(remaining, self.socket_timeout))):
                key = selector_key.data
                peek = self._peeks[key]
                reply = peek.conn.read_response()
                peek.sent_at = None
                if reply is not None:
                    seen = True
                else:
                    self._send(key, peek)  # that wait ended empty: start the next one
            if seen:
                # The next waits are sent by the next call, after a claim found the lists empty:
                # sent now, they would only report the items about to be claimed.
                return True
            now = time.monotonic()
            self._check_stalled(now)
            if now >= deadline:
                return False

    def _start(self, keys: Sequence[str]) -> selectors.BaseSelector:
        """A wait outstanding on each of ``keys`` (and on no other list)."""
        wanted = set(keys)
        for key in [k for k in self._peeks if k not in wanted]:
            self._drop(key)
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
        for key in keys:
            peek = self._peeks.get(key)
            if peek is None:
                peek = self._peeks[key] = _Peek(self._make_connection())
            if peek.sent_at is None:
                self._send(key, peek)
        return self._selector

    def _check_stalled(self, now: float) -> None:
        for key, peek in self._peeks.items():
            if peek.sent_at is not None and now - peek.sent_at > self.block + self.socket_timeout:
                raise redis.exceptions.TimeoutError(f"no reply from Redis to a wait on {key!r}: the connection stalled")

    def _send(self, key: str, peek: _Peek) -> None:
        assert self._selector is not None
        conn = peek.conn
        fresh = conn._sock is None  # the socket is what select() watches
        conn.send_command("BLMOVE", key, key, "RIGHT", "RIGHT", f"{self.block:.3f}")
        peek.sent_at = time.monotonic()
        if fresh:
            self._selector.register(conn._sock, selectors.EVENT_READ, key)

    def _check_support(self) -> None:
        conn = self._make_connection()
        try:
            conn.send_command("COMMAND", "INFO", "BLMOVE")
            info = conn.read_response()
        except redis.exceptions.ResponseError:
            info = None  # no COMMAND INFO either: an old or a restricted server
        finally:
            conn.disconnect()
        self.supported = bool(info and info[0])
        if not self.supported:
            logger.warning("Redis has no BLMOVE (it needs 6.2 or later): polling queues every %.2fs", POLL_INTERVAL)

    def _drop(self, key: str) -> None:
        peek = self._peeks.pop(key, None)
        if peek is None:
            return
        if self._selector is not None and peek.conn._sock is not None:
            try:
                self._selector.unregister(peek.conn._sock)
            except (KeyError, ValueError):
                pass
        peek.conn.disconnect()

    def close(self) -> None:
        for key in list(self._peeks):
            try:
                self._drop(key)
            except connection_errors:
                pass
        if self._selector is not None:
            self._selector.close()
            self._selector = None
