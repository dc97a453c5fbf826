"""Chains, groups and chords across Celery 5 and celeriac on one Redis, in both directions."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.conftest import Project
from tests.interop.conftest import celery_worker

# Celery's own Redis store calls redis-py's deprecated setex.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run_canvases(tasks: ModuleType, chain: Any, chord: Any, group: Any) -> None:
    """Every shape, sent by the client whose tasks and canvas classes are given."""
    res = chain(tasks.add.s(1, 1), tasks.mul.s(5), tasks.add.s(3)).apply_async()
    assert res.get(timeout=30) == 13
    assert res.parent.get(timeout=30) == 10

    assert group(tasks.add.s(i, i) for i in range(10)).apply_async().get(timeout=30) == [2 * i for i in range(10)]

    # The client sets the chord size and sends the body with the header; the other side's
    # workers count the parts in Celery's Redis keys and send the body once.
    res = chord((tasks.add.s(i, i) for i in range(50)), tasks.xsum.s()).apply_async()
    assert res.get(timeout=60) == sum(2 * i for i in range(50))

    # A chord inside a chain: the chord's body continues the chain.
    res = chain(tasks.add.s(1, 1), chord([tasks.add.s(i) for i in range(3)], tasks.xsum.s()), tasks.mul.s(2))()
    assert res.get(timeout=60) == 18

    failing = chord([tasks.add.s(1, 1), tasks.fail.s()], tasks.xsum.s()).apply_async()
    # (get() may raise the failed header part's own error first, as Celery's does when it sees it.)
    failing.get(timeout=30, propagate=False)
    assert failing.state == "FAILURE"
    assert type(failing.result).__name__ == "ChordError"
    assert "Dependency" in str(failing.result)


def test_celery_canvas_on_celeriac_workers(mixed: Project) -> None:
    worker = mixed.worker("tasks", "-P", "threads", "-c", "4")
    import ctasks  # type: ignore[import-not-found]
    from celery import chain, chord, group

    run_canvases(ctasks, chain, chord, group)
    assert worker.stop() == 0


def test_celeriac_canvas_on_celery_workers(mixed: Project) -> None:
    worker = celery_worker(mixed, "ctasks", "-P", "threads", "-c", "4")
    import tasks  # type: ignore[import-not-found]

    from celeriac import chain, chord, group

    run_canvases(tasks, chain, chord, group)
    assert worker.stop() == 0
