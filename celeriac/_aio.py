"""asyncio plumbing shared by the worker and the client.

* :class:`Interruptible` runs an awaitable so that another party (a time limit, a
  revoke) can raise an exception *inside* it, at the ``await`` it is suspended on:
  that is how ``SoftTimeLimitExceeded`` reaches an ``async def`` task exactly where a
  sync task would see it, and how a revoked coroutine is cancelled.
* :func:`process_loop` is the event loop that runs ``async def`` tasks in pools that
  are not asyncio (solo, threads, prefork): one per process, in its own thread, so a
  task's connections and caches survive from one call to the next.
* :func:`run_blocking` is how a synchronous caller runs an awaitable on that loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

from ._state import current_task_var
from .exceptions import SoftTimeLimitExceeded

__all__ = [
    "Interruptible",
    "new_event_loop",
    "process_loop",
    "run_blocking",
]

T = TypeVar("T")

WAIT_SLICE = 0.05  # seconds


class Interruptible:
    """Wraps an awaitable; :meth:`interrupt` (called on the loop) raises an exception inside it.

    The exception is delivered at the awaitable's current suspension point: the
    asyncio task running it is woken with ``cancel()`` and the resulting
    ``CancelledError`` is swapped for the requested exception on its way in.
    """

    __slots__ = ("_iter", "_pending", "_task", "_swapping")

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self._iter: Any = awaitable.__await__()
        self._pending: BaseException | None = None
        self._task: asyncio.Task[Any] | None = None
        self._swapping = False

    def interrupt(self, exc: BaseException) -> None:
        """Raise ``exc`` inside the awaitable as soon as possible (call from the loop's thread)."""
        self._pending = exc
        task = self._task
        if task is not None and not task.done() and not self._swapping:
            self._swapping = True
            task.cancel()

    def __await__(self) -> Generator[Any, Any, Any]:
        self._task = asyncio.current_task()
        inner = self._iter
        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                if self._pending is not None and not self._swapping:
                    error, self._pending = self._pending, None
                if error is not None:
                    exc, error = error, None
                    yielded = inner.throw(exc)
                else:
                    yielded = inner.send(send)
            except StopIteration as stop:
                return stop.value
            try:
                send = yield yielded
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as exc:
                send, error = None, exc
                if self._swapping and isinstance(exc, asyncio.CancelledError):
                    # Our own wake-up call: deliver the requested exception instead.
                    self._swapping = False
                    error, self._pending = self._pending, None
                    task = self._task
                    if task is not None and hasattr(task, "uncancel"):
                        task.uncancel()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed, else asyncio's."""
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class _LoopThread:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="celeriac-asyncio", daemon=True)
        self.thread.start()
        self.ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self.ready.set)
        self.loop.run_forever()


_loop_lock = threading.Lock()
_process_loop: _LoopThread | None = None
_borrowed_loop: tuple[int, asyncio.AbstractEventLoop, threading.Thread] | None = None


def process_loop() -> asyncio.AbstractEventLoop:
    """This process's loop for ``async def`` tasks, started on first use (again after a fork)."""
    global _process_loop
    borrowed = _borrowed_loop
    if borrowed is not None and borrowed[0] == os.getpid():
        return borrowed[1]
    current = _process_loop
    if current is not None and current.pid == os.getpid():
        return current.loop
    with _loop_lock:
        if _process_loop is None or _process_loop.pid != os.getpid():
            _process_loop = _LoopThread()
        return _process_loop.loop


def use_as_process_loop(loop: asyncio.AbstractEventLoop | None, thread: threading.Thread | None = None) -> None:
    """Make ``loop`` (run by ``thread``, e.g. the asyncio pool's) the process loop, or undo that with None."""
    global _borrowed_loop
    _borrowed_loop = None if loop is None or thread is None else (os.getpid(), loop, thread)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _with_request(awaitable: Interruptible, request: Any) -> Any:
    # The coroutine runs in an asyncio task of its own: give it the caller's task.request.
    current_task_var.set(request)
    return await awaitable


def run_blocking(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` on the process loop and wait for it in this thread.

    A time limit that fires while waiting (SIGALRM in the main thread, or the thread
    pool's monitor) is passed on into the coroutine: the soft limit is raised there and
    the wait goes on, so the task can clean up; anything else (the hard limit, a
    shutdown) is raised there and here, and the caller stops waiting.
    """
    loop = process_loop()
    if _on_loop_thread(loop):
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise RuntimeError(
            "can't run an async task synchronously from the event loop that would run it: "
            "await it instead (await task(...), or send it with await task.adelay(...))"
        )
    box = Interruptible(awaitable)
    future = asyncio.run_coroutine_threadsafe(_with_request(box, current_task_var.get()), loop)
    # Signals interrupt a wait in the main thread; an exception sent to another thread (the
    # thread pool's time limits) is only seen between bytecodes, so those threads wait in slices.
    slice_ = None if threading.current_thread() is threading.main_thread() else WAIT_SLICE
    while True:
        try:
            value: T = future.result(slice_)
            return value
        except concurrent.futures.TimeoutError:
            continue
        except concurrent.futures.CancelledError:
            raise asyncio.CancelledError() from None
        except SoftTimeLimitExceeded as exc:
            if future.done():
                raise
            loop.call_soon_threadsafe(box.interrupt, exc)
        except BaseException as exc:
            if future.done():
                raise
            loop.call_soon_threadsafe(box.interrupt, exc)
            raise


async def to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread``: run blocking ``fn`` in the loop's default executor, with this context."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def close_coroutine(value: Any) -> None:
    if isinstance(value, Coroutine):
        value.close()
