"""Canvases with task_always_eager: the same values, computed in the calling process."""

from __future__ import annotations

import pytest

from celeriac import Celery, chain, chord, group


@pytest.fixture
def app() -> Celery:
    app = Celery("eager", broker="memory://", task_always_eager=True)
    return app


def test_eager_canvas(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def xsum(numbers: list[int]) -> int:
        return sum(numbers)

    @app.task
    def boom(x: int) -> int:
        raise ValueError("eager boom")

    assert chain(add.s(1, 1), add.s(2), add.s(3)).apply_async().get() == 7
    assert (add.s(1, 1) | add.s(2))().get() == 4
    assert group(add.s(i, i) for i in range(5))().get() == [0, 2, 4, 6, 8]
    assert chord(add.s(i, i) for i in range(5))(xsum.s()).get() == 20
    assert add.chunks([(i, i) for i in range(4)], 2)().get() == [[0, 2], [4, 6]]
    with pytest.raises(ValueError, match="eager boom"):
        (add.s(1, 1) | boom.s())().get()
