"""Chords counted by SQL result stores (PostgreSQL, MariaDB, SQLite through SQLAlchemy)."""

from __future__ import annotations

import pytest

from celeriac import chain, chord, group
from celeriac.exceptions import ChordError
from tests.conftest import Project
from tests.integration.canvas.conftest import canvas_project, lines, wait_lines
from tests.integration.database.conftest import Database


@pytest.fixture
def sql_canvas(request: pytest.FixtureRequest, project: Project, database: Database) -> Project:
    proj = canvas_project(project, "database", request)
    proj.worker("tasks", "-P", "threads", "-c", "8")
    return proj


def test_chord_completes_exactly_once(sql_canvas: Project) -> None:
    from tasks import add, collect  # type: ignore[import-not-found]

    res = chord(add.s(i, 1) for i in range(300))(collect.s())
    assert res.get(timeout=240) == sum(i + 1 for i in range(300))
    assert lines(sql_canvas, "body.log") == ["300"]


def test_failing_header_calls_the_errback_once(sql_canvas: Project) -> None:
    from tasks import add, errback, fail, xsum  # type: ignore[import-not-found]

    res = chord([add.s(1, 1), fail.s(), fail.s()], xsum.s().on_error(errback.s()))()
    with pytest.raises(ChordError, match="canvas boom"):
        res.get(timeout=60)
    assert wait_lines(sql_canvas, "errbacks.log") == [f"{res.id} ChordError"]


def test_nested_chords(sql_canvas: Project) -> None:
    from tasks import add, xsum  # type: ignore[import-not-found]

    inner = chain(add.s(1, 1), chord([add.s(i) for i in range(3)], xsum.s()))
    assert group(inner.clone() for _ in range(2))().get(timeout=60) == [9, 9]
    assert chord([chord([add.s(1, 1), add.s(2, 2)], xsum.s()), add.s(3, 3)], xsum.s())().get(timeout=60) == 12
