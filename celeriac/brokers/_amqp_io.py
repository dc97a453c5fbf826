"""The AMQP client's event loop: one asyncio loop, in one daemon thread, per process.

aio-pika is asynchronous, while celeriac's broker interface is called from plain threads:
the worker's main thread (``get``), pool threads (``ack``), client code (``delay()``).
Every AMQP operation runs as a coroutine on this loop and the calling thread waits for
its result, with a timeout.

The loop is created on first use. A forked child (prefork pool) has no copy of the
thread, so :func:`io_loop` makes a new loop there (it checks the pid); the parent's
connections are left untouched in the child, never closed from it, since their sockets
are shared with the parent.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

__all__ = ["IOLoop", "io_loop"]

logger = logging.getLogger("celeriac.brokers.amqp")

T = TypeVar("T")

CLOSE_AT_EXIT_TIMEOUT = 2.0


class _Closable(Protocol):
    async def close(self) -> None: ...


class IOLoop:
    """An asyncio loop running in a daemon thread, with blocking calls into it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._owners: weakref.WeakSet[Any] = weakref.WeakSet()
        self._flushes: list[weakref.WeakMethod[Callable[[], None]]] = []
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="celeriac-amqp-io", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def in_loop(self) -> bool:
        return threading.current_thread() is self.thread

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run ``coro`` on the loop and wait for its result.

        Raises:
            TimeoutError: no result within ``timeout`` seconds (the coroutine is cancelled).
        """
        if self.in_loop():
            coro.close()
            raise RuntimeError("a blocking AMQP call was made from the AMQP IO thread itself")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer from the broker within {timeout} seconds") from None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start ``coro`` on the loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def register(self, owner: _Closable) -> None:
        """Close ``owner`` (``await owner.close()``, e.g. a connection) when the interpreter exits, if still there."""
        self._owners.add(owner)

    def register_flush(self, flush: Callable[[], None]) -> None:
        """Call ``flush()`` (a bound method; from the exiting thread) before closing connections at exit:
        brokers wait there for the confirms of what they published."""
        self._flushes.append(weakref.WeakMethod(flush))

    def shutdown(self) -> None:
        """Flush, close what is registered (politely, so RabbitMQ logs no dropped connection) and stop the loop."""
        if os.getpid() != self.pid or not self.thread.is_alive():
            return
        for ref in self._flushes:
            flush = ref()
            if flush is not None:
                try:
                    flush()
                except Exception as exc:  # at exit: report, never raise
                    logger.debug("flushing at exit: %r", exc)
        owners = list(self._owners)

        async def close_all() -> None:
            await asyncio.gather(*(owner.close() for owner in owners), return_exceptions=True)

        try:
            self.run(close_all(), CLOSE_AT_EXIT_TIMEOUT)
        except Exception as exc:  # at exit: report, never raise
            logger.debug("closing AMQP connections at exit: %r", exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(CLOSE_AT_EXIT_TIMEOUT)


_current: IOLoop | None = None
_lock = threading.Lock()
_hooks_installed = False
# Loops inherited from the parent after a fork: kept referenced so that nothing in the
# child finalizes (and so closes) the sockets the parent still uses.
_inherited: list[IOLoop] = []


def _after_fork_in_child() -> None:
    global _current, _lock
    if _current is not None:
        _inherited.append(_current)
    _current = None
    _lock = threading.Lock()  # another thread may have held it at the fork


def _at_exit() -> None:
    loop = _current
    if loop is not None:
        loop.shutdown()


def io_loop() -> IOLoop:
    """This process's IO loop, started on first use."""
    global _current, _hooks_installed
    loop = _current
    if loop is not None and loop.pid == os.getpid():
        return loop
    with _lock:
        if _current is None or _current.pid != os.getpid():
            if _current is not None:
                _inherited.append(_current)
            if not _hooks_installed:
                os.register_at_fork(after_in_child=_after_fork_in_child)
                atexit.register(_at_exit)
                _hooks_installed = True
            _current = IOLoop()
            _exit_hook_for_pool_process()
        return _current


def _exit_hook_for_pool_process() -> None:
    """A multiprocessing child (a prefork pool process) ends with ``os._exit``, without atexit
    hooks: ask multiprocessing to run ours as the child finishes."""
    process = sys.modules.get("multiprocessing.process")
    if process is None or process.parent_process() is None:
        return
    from multiprocessing import util

    util.Finalize(None, _at_exit, exitpriority=10)
