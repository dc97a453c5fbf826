"""The asyncio plumbing: raising into a suspended coroutine, and the per-process loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from celeriac._aio import Interruptible, process_loop, run_blocking
from celeriac.exceptions import SoftTimeLimitExceeded


def test_interrupt_raises_at_the_await_and_the_coroutine_can_go_on() -> None:
    async def body() -> str:
        try:
            await asyncio.sleep(30)
        except SoftTimeLimitExceeded:
            await asyncio.sleep(0.01)  # the task is not left cancelled: it can await again
            return "cleaned up"
        return "slept"

    async def main() -> tuple[str, int]:
        box = Interruptible(body())
        task = asyncio.ensure_future(box)
        await asyncio.sleep(0.01)
        box.interrupt(SoftTimeLimitExceeded())
        value = await task
        return value, task.cancelling()

    assert asyncio.run(main()) == ("cleaned up", 0)


def test_interrupt_before_the_first_step_and_cancellation() -> None:
    started: list[bool] = []

    async def body() -> None:
        started.append(True)
        await asyncio.sleep(30)

    async def main() -> None:
        early = Interruptible(body())
        early.interrupt(KeyError("early"))
        with pytest.raises(KeyError):
            await early
        assert started == []
        box = Interruptible(body())
        task = asyncio.ensure_future(box)
        await asyncio.sleep(0.01)
        box.interrupt(asyncio.CancelledError())
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_real_cancel_still_cancels() -> None:
    async def main() -> None:
        task = asyncio.ensure_future(Interruptible(asyncio.sleep(30)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_run_blocking_uses_one_loop_per_process_in_its_own_thread() -> None:
    async def where() -> tuple[Any, str]:
        return asyncio.get_running_loop(), threading.current_thread().name

    loop, thread = run_blocking(where())
    assert loop is process_loop() and thread == "celeriac-asyncio"
    assert run_blocking(where())[0] is loop  # the same loop next time: connections can be kept

    async def fails() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        run_blocking(fails())


def test_run_blocking_from_its_own_loop_is_refused_not_deadlocked() -> None:
    async def nested() -> None:
        async def inner() -> int:
            return 1

        run_blocking(inner())

    with pytest.raises(RuntimeError, match="await it instead"):
        run_blocking(nested())
