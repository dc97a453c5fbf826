"""Type-level checks, run by mypy (scripts/check), not by pytest."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from celeriac import Celery, Signature, Task
from celeriac.result import AsyncResult

app = Celery("typing")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="typing.concat", ignore_result=False)
def concat(a: str, b: str = "") -> str:
    return a + b


task_object: Task[[int, int], int] = add
assert_type(add(1, 2), int)
assert_type(add.delay(4, 4), AsyncResult[int])
assert_type(add.delay(4, 4).get(timeout=1), int)
assert_type(concat.delay("a", b="b"), AsyncResult[str])
assert_type(app.AsyncResult("some-id"), AsyncResult[Any])

# A wrong argument type is an error (the ignore is checked: mypy fails if it is unused).
add.delay("4", 4)  # type: ignore[arg-type]


# -- async def tasks -------------------------------------------------------------
@app.task
async def fetch(url: str) -> bytes:
    return url.encode()


@app.task(bind=True, max_retries=2)
async def fetch_bound(self: Task[Any, Any], url: str, retries: int = 0) -> bytes:
    return url.encode()


@app.task(bind=True)
def add_bound(self: Task[Any, Any], x: int, y: int) -> int:
    return x + y


assert_type(fetch.delay("http://x"), AsyncResult[bytes])  # the value, not a coroutine
assert_type(fetch_bound.delay("http://x", retries=1), AsyncResult[bytes])
assert_type(add_bound.delay(1, 2).get(), int)  # bind=True: self is not part of the call
fetch.delay(1)  # type: ignore[arg-type]
add_bound.delay("1", 2)  # type: ignore[arg-type]
fetch_bound.delay()  # type: ignore[call-arg]


async def client() -> None:
    result = await add.adelay(1, 2)
    assert_type(result, AsyncResult[int])
    assert_type(await result, int)
    assert_type(await result.aget(timeout=1), int)
    assert_type(await fetch("u"), bytes)  # calling an async task gives its coroutine
    assert_type(await fetch.adelay("u"), AsyncResult[bytes])
    await add.adelay(1, "2")  # type: ignore[arg-type]


# -- signatures carry the result type ------------------------------------------------
assert_type(add.s(1, 2), Signature[int])
assert_type(add.s(1).delay(2).get(), int)
assert_type(fetch.si("u").apply_async(), AsyncResult[bytes])
