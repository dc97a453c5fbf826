"""Result writes of many tasks in one round trip, made by a writer thread behind the pool.

A worker whose tasks run in its own process (``solo``, ``threads``, ``asyncio``) hands each
successful result to a :class:`WriteBehind` instead of waiting for its write: the pool slot goes
on to its next task at once, and the writer sends whatever has piled up as one pipeline. The
message of a task is acknowledged only once its result is written (:meth:`WriteBehind.after`), so
a worker killed in between runs the task again rather than losing its result: the same promise as
a worker killed in the middle of the task.

Writes go out in the order they were handed over. A batch that fails (the store is down) is kept,
and tried again until it succeeds or the worker stops; the acks waiting on it wait too. What to
do with one write the store refuses while it takes the others is the executor's business (the
Redis backend records that task's failure instead, as an inline write would).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["WriteBehind"]

logger = logging.getLogger("celeriac.worker")

Command = tuple[Any, ...]
Write = tuple[Any, tuple[Command, ...]]  # (tag given to add(), the write's commands)
RETRY_AFTER = 0.5  # seconds between tries while the store can't be written


class WriteBehind:
    def __init__(self, execute: Callable[[Sequence[Write]], Any], *, name: str = "ResultWriter") -> None:
        self._execute = execute
        self._name = name
        self._lock = threading.Lock()
        self._writes: list[Write] = []
        self._callbacks: list[tuple[int, Callable[[], None]]] = []  # (writes it waits for, callback)
        self._added = 0  # writes handed over so far
        self._written = 0  # of which written
        self._flushing = threading.Lock()  # one flush at a time, so writes keep their order
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        return self._added - self._written

    @property
    def written(self) -> int:
        """Number of the last write made (writes are numbered from 1 as they are handed over)."""
        return self._written

    def add(self, *commands: Command, now: bool = False, tag: Any = None) -> int:
        """One write (its commands stay together, in order), sent soon by the writer thread; returns
        its number, for :meth:`after`. ``tag`` goes with it to the executor.

        ``now``: sent at once from this thread, with whatever waits (for a worker with nothing else
        to do, the hand-over to the writer thread would only add to the task's round trip).
        """
        with self._lock:
            self._writes.append((tag, commands))
            self._added += 1
            number = self._added
            first = self._added - self._written == 1
        if now and self._flushing.acquire(blocking=False):
            try:
                self._write_waiting()
                return number
            except Exception:
                pass  # the writer thread keeps trying
            finally:
                self._flushing.release()
        if first or now:
            self._start()
            self._wake.set()
        return number

    def after(self, callback: Callable[[], None], number: int | None = None) -> None:
        """Call ``callback`` once write ``number`` and those before it are made (by default every write
        handed over until now); at once if they are."""
        with self._lock:
            wanted = self._added if number is None else number
            if wanted > self._written:
                self._callbacks.append((wanted, callback))
                return
        callback()

    def flush(self, timeout: float | None = None) -> bool:
        """Write what waits, in this thread; True once nothing handed over before the call is left.

        Keeps trying while the store is down, until ``timeout``.
        """
        with self._lock:
            target = self._added
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self._flush_once()
            except Exception as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    logger.error("could not write %d result(s): %s", self.pending, exc)
                    return False
                time.sleep(RETRY_AFTER if deadline is None else min(RETRY_AFTER, max(0.0, deadline - time.monotonic())))
                continue
            with self._lock:
                if self._written >= target:
                    return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """Write what waits (giving up after ``timeout``) and stop the writer thread."""
        done = self.flush(timeout)
        self._closed = True
        self._wake.set()
        return done

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._closed = False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        warned = False
        while not self._closed:
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self._flush_once()
            except Exception as exc:
                if not warned:
                    logger.warning("could not write results (%s); their messages stay unacked; trying again", exc)
                    warned = True
                time.sleep(RETRY_AFTER)
                self._wake.set()
                continue
            if warned:
                logger.info("results written again")
                warned = False
            with self._lock:
                if self._added != self._written:
                    self._wake.set()  # more came while the last batch was being written

    def _flush_once(self) -> None:
        with self._flushing:
            self._write_waiting()

    def _write_waiting(self) -> None:
        """Write what waits and run the callbacks it releases; the caller holds ``_flushing``."""
        with self._lock:
            writes, self._writes = self._writes, []
            upto = self._added
        if writes:
            try:
                self._execute(writes)
            except BaseException:
                with self._lock:
                    self._writes[:0] = writes  # first in line for the next try
                raise
        with self._lock:
            self._written = upto
            ready = [cb for n, cb in self._callbacks if n <= upto]
            self._callbacks = [(n, cb) for n, cb in self._callbacks if n > upto]
        for callback in ready:
            try:
                callback()
            except Exception:
                logger.exception("callback after a result write failed")
