"""``[r.get() for r in results]`` on Redis: each get() reads its own result and those this thread sent
after it in one MGET, and keeps the ones that are done; the others are read again when asked for."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from celeriac import Celery, states
from celeriac.exceptions import DecodeError
from celeriac.result import READ_AHEAD, AsyncResult

QUEUE = "read-ahead-nobody-consumes"  # the tests write the results themselves


@pytest.fixture
def app(redis_url: str) -> Iterator[Celery]:
    app = Celery("read_ahead", broker=redis_url, backend=redis_url, set_as_current=False)
    yield app
    app.close()


@pytest.fixture
def reads(app: Celery, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every read of the store by the client: ("get", 1) or ("mget", number of keys)."""
    backend: Any = app.backend
    seen: list[tuple[str, int]] = []
    get, mget = backend._get, backend._mget

    def counting_get(key: str) -> bytes | None:
        seen.append(("get", 1))
        return get(key)

    def counting_mget(keys: list[str]) -> list[bytes | None]:
        seen.append(("mget", len(keys)))
        return mget(keys)

    monkeypatch.setattr(backend, "_get", counting_get)
    monkeypatch.setattr(backend, "_mget", counting_mget)
    return seen


def send(app: Celery, n: int, **options: Any) -> list[AsyncResult[Any]]:
    results = [app.send_task("tasks.add", (i, i), queue=QUEUE, **options) for i in range(n)]
    for r in results:
        r.sent_at = None  # as if sent a while ago (a result just sent is not read before waiting)
    return results


def test_results_read_in_order_cost_one_round_trip_per_batch(app: Celery, reads: list[tuple[str, int]]) -> None:
    results = send(app, 2 * READ_AHEAD + 10)
    for i, r in enumerate(results):
        app.backend.mark_as_done(r.id, 2 * i)
    assert [r.get(timeout=5) for r in results] == [2 * i for i in range(len(results))]
    assert reads == [("mget", READ_AHEAD), ("mget", READ_AHEAD), ("mget", 10)]


def test_results_not_done_when_read_ahead_are_read_again(app: Celery, reads: list[tuple[str, int]]) -> None:
    results = send(app, 6)
    for i in (0, 1, 3):
        app.backend.mark_as_done(results[i].id, i)
    app.backend.store_result(results[2].id, {"done": 1}, "PROGRESS")
    assert results[0].get(timeout=5) == 0
    assert reads == [("mget", 6)]
    # Only the results that were done are kept: the others are read (and waited for) when asked for.
    assert results[1].get(timeout=5) == 1 and results[3].get(timeout=5) == 3 and len(reads) == 1
    app.backend.mark_as_done(results[2].id, 2)
    app.backend.mark_as_failure(results[4].id, ValueError("four"))
    assert results[2].get(timeout=5) == 2
    with pytest.raises(ValueError, match="four"):
        results[4].get(timeout=5)
    assert results[5].state == states.PENDING
    app.backend.mark_as_done(results[5].id, 5)
    assert results[5].get(timeout=5) == 5


def test_a_bad_result_of_another_task_is_not_this_ones_error(
    app: Celery, rclient: redis.Redis, reads: list[tuple[str, int]]
) -> None:
    results = send(app, 3)
    app.backend.mark_as_done(results[0].id, "zero")
    rclient.set(f"celery-task-meta-{results[1].id}", b"\xff not json")
    app.backend.mark_as_done(results[2].id, "two")
    assert results[0].get(timeout=5) == "zero"  # the batch could not be decoded: read alone
    assert results[2].get(timeout=5) == "two"
    with pytest.raises(DecodeError):
        results[1].get(timeout=5)


def test_results_nobody_holds_or_that_ignore_their_result_are_not_read(
    app: Celery, reads: list[tuple[str, int]]
) -> None:
    first, dropped, third = send(app, 3)
    del dropped  # the link from first goes through it: read-ahead stops there
    app.backend.mark_as_done(first.id, 1)
    app.backend.mark_as_done(third.id, 3)
    assert first.get(timeout=5) == 1
    assert reads == [("mget", 1)]
    assert third.get(timeout=5) == 3

    a = send(app, 1)[0]
    send(app, 1, ignore_result=True)
    c = send(app, 1)[0]
    assert a._next_sent is not None and a._next_sent() is c


def test_results_another_thread_sent_are_not_read(app: Celery, reads: list[tuple[str, int]]) -> None:
    """A threaded web server's requests don't read (nor keep) each other's results."""
    mine = send(app, 2)
    theirs: list[AsyncResult[Any]] = []
    other = threading.Thread(target=lambda: theirs.extend(send(app, 2)))
    other.start()
    other.join()
    mine += send(app, 1)
    for r in [*mine, *theirs]:
        app.backend.mark_as_done(r.id, r.id)
    assert mine[0].get(timeout=5) == mine[0].id
    assert reads == [("mget", 3)]
    assert all(r._cache is None for r in theirs)
    assert [r.get(timeout=5) for r in theirs] == [r.id for r in theirs]
