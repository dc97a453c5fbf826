"""Type-level checks, run by mypy (scripts/check), not by pytest."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from celeriac import Celery, Task
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
