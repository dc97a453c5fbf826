"""Every canvas shape on real workers, on the embedded broker and on Redis: values, ids, failures."""

from __future__ import annotations

import uuid

import pytest

from celeriac import chain, chord, group
from celeriac.exceptions import ChordError
from celeriac.result import AsyncResult, GroupResult
from tests.conftest import Project
from tests.integration.canvas.conftest import lines, wait_lines


def test_chain_passes_each_result_on_and_links_parents(canvas: Project) -> None:
    from tasks import add, ids, mul  # type: ignore[import-not-found]

    res = (add.s(2, 2) | mul.s(4) | add.s(1))()
    assert res.get(timeout=30) == 17
    assert res.parent.get(timeout=30) == 16
    assert res.parent.parent.get(timeout=30) == 4
    assert res.parent.parent.parent is None

    # The worker sees Celery's ids: parent is the step before, root the first step.
    res = chain(add.s(1, 1), ids.s())()
    value, parent_id, root_id = res.get(timeout=30)
    assert value == 2
    assert parent_id == res.parent.id
    assert root_id == res.parent.id


def test_chain_failure_fails_the_rest(canvas: Project) -> None:
    from tasks import add, fail  # type: ignore[import-not-found]

    res = (add.s(1, 1) | fail.s() | add.s(1) | add.s(2))()
    with pytest.raises(ValueError, match="canvas boom"):
        res.get(timeout=30)
    # Every step after the failed one is marked failed with its error: nothing waits forever.
    with pytest.raises(ValueError, match="canvas boom"):
        res.parent.get(timeout=30, follow_parents=False)
    with pytest.raises(ValueError, match="canvas boom"):
        res.parent.parent.get(timeout=30, follow_parents=False)
    assert res.parent.parent.parent.get(timeout=30) == 2


def test_immutable_signature_ignores_the_previous_result(canvas: Project) -> None:
    from tasks import add  # type: ignore[import-not-found]

    assert (add.s(1, 1) | add.si(5, 5))().get(timeout=30) == 10
    assert (add.s(1, 1) | add.s(5, 5).set(immutable=True) | add.s(3))().get(timeout=30) == 13
    # Too few arguments for an immutable step: its TypeError ends the chain, as a failure.
    with pytest.raises(TypeError):
        (add.s(1, 1) | add.si(5) | add.s(3))().get(timeout=30)


def test_group_results(canvas: Project) -> None:
    from tasks import add  # type: ignore[import-not-found]

    res = group(add.s(i, i) for i in range(10))()
    assert isinstance(res, GroupResult)
    assert res.get(timeout=30) == [i * 2 for i in range(10)]
    assert res.join(timeout=30) == [i * 2 for i in range(10)]
    assert res.completed_count() == 10
    assert res.ready() and res.successful() and not res.failed()
    assert len(res) == 10

    res.save()
    restored = GroupResult.restore(res.id)
    assert restored is not None
    assert [r.id for r in restored.results] == [r.id for r in res.results]
    assert restored.get(timeout=30) == [i * 2 for i in range(10)]
    res.delete()
    assert GroupResult.restore(res.id) is None


def test_group_with_a_failure(canvas: Project) -> None:
    from tasks import add, fail  # type: ignore[import-not-found]

    res = group([add.s(1, 1), fail.s(), add.s(2, 2)])()
    with pytest.raises(ValueError, match="canvas boom"):
        res.get(timeout=30)
    assert res.join(timeout=30, propagate=False)[0] == 2
    assert res.failed()
    assert res.completed_count() == 2


def test_chord(canvas: Project) -> None:
    from tasks import add, xsum  # type: ignore[import-not-found]

    res = chord(add.s(i, i) for i in range(10))(xsum.s())
    assert res.get(timeout=30) == 90
    # A chain ending in a group becomes a chord, as in Celery.
    res = (group(add.s(i, i) for i in range(4)) | xsum.s() | add.s(1))()
    assert res.get(timeout=30) == 13


def test_chord_of_a_thousand_completes_exactly_once(canvas: Project) -> None:
    from tasks import add, collect  # type: ignore[import-not-found]

    res = chord(add.s(i, 1) for i in range(1000))(collect.s())
    assert res.get(timeout=240) == sum(i + 1 for i in range(1000))
    # The body ran once, with all 1,000 values.
    assert lines(canvas, "body.log") == ["1000"]


def test_failing_header_calls_the_errback_once(canvas: Project) -> None:
    from tasks import add, errback, fail, xsum  # type: ignore[import-not-found]

    body = xsum.s().on_error(errback.s())
    res = chord([add.s(1, 1), fail.s(), fail.s(), add.s(2, 2)], body)()
    # The body's own outcome. By default get() first raises a failed parent's error, as Celery's does:
    # that is the header task's ValueError once a fail() has finished before get() looks.
    with pytest.raises(ChordError, match="canvas boom"):
        res.get(timeout=30, follow_parents=False)
    with pytest.raises((ChordError, ValueError), match="canvas boom"):
        res.get(timeout=30)
    assert res.state == "FAILURE"
    logged = wait_lines(canvas, "errbacks.log")
    assert logged == [f"{res.id} ChordError"]


def test_nested_chord_inside_chain_inside_group(canvas: Project) -> None:
    from tasks import add, xsum  # type: ignore[import-not-found]

    # Each chain: 1+1=2, then a chord whose header adds 0, 1, 2 to it (2+3+4), summed.
    inner = chain(add.s(1, 1), chord([add.s(i) for i in range(3)], xsum.s()))
    res = group(inner.clone() for _ in range(3))()
    assert res.get(timeout=60) == [9, 9, 9]

    # A chord as a part of another chord's header.
    res = chord([chord([add.s(1, 1), add.s(2, 2)], xsum.s()), add.s(3, 3)], xsum.s())()
    assert res.get(timeout=60) == 12


def test_link_and_link_error(canvas: Project) -> None:
    from tasks import add, fail, mul, on_error_id  # type: ignore[import-not-found]

    callback_id = str(uuid.uuid4())
    res = add.apply_async((2, 2), link=mul.s(10).set(task_id=callback_id))
    assert res.get(timeout=30) == 4
    assert AsyncResult(callback_id).get(timeout=30) == 40

    failed = fail.apply_async(link_error=on_error_id.s())
    with pytest.raises(ValueError):
        failed.get(timeout=30)
    assert wait_lines(canvas, "errback-ids.log") == [failed.id]


def test_chunks_map_starmap(canvas: Project) -> None:
    from tasks import add, xsum  # type: ignore[import-not-found]

    res = add.chunks([(i, i) for i in range(10)], 3)()
    assert res.get(timeout=30) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    assert add.starmap([(1, 1), (2, 2)]).delay().get(timeout=30) == [2, 4]
    assert xsum.map([[1, 2], [3]]).delay().get(timeout=30) == [3, 3]
    # chunks as a group, inside a chord's header.
    flat = chord(add.chunks([(i, i) for i in range(4)], 2).group(), xsum.s())
    with pytest.raises(TypeError):
        flat().get(timeout=30)  # sum() of lists of lists: the body's own error, raised as Celery does


def test_replace(canvas: Project) -> None:
    from tasks import add, replaced, replaced_by_group  # type: ignore[import-not-found]

    assert replaced.delay(1).get(timeout=30) == 101
    # The replacement continues the chain the replaced task was in.
    assert (replaced.s(1) | add.s(1))().get(timeout=30) == 102
    assert replaced_by_group.delay(3).get(timeout=30) == [0, 2, 4]


def test_children(canvas: Project) -> None:
    from tasks import spawn  # type: ignore[import-not-found]

    res = spawn.delay()
    child_id = res.get(timeout=30)
    assert [c.id for c in res.children or []] == [child_id]
    assert res.children[0].get(timeout=30) == 42
