"""The writer behind an in-process pool: order, batching, acks after writes, a store that is down.

The writes go to a recording function here; the same class on a real Redis, with the store cut
off by a proxy, is in ``tests/reliability/test_result_write_behind.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from celeriac.backends._write_behind import WriteBehind


class Store:
    """Records each batch; fails while ``down`` is set; ``gate`` holds a write in progress."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[Any, ...]]] = []
        self.down = False
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def execute(self, writes: Sequence[tuple[Any, tuple[tuple[Any, ...], ...]]]) -> None:
        self.entered.set()
        self.gate.wait(10)
        if self.down:
            raise ConnectionError("store down")
        self.batches.append([c for _tag, commands in writes for c in commands])

    @property
    def written(self) -> list[tuple[Any, ...]]:
        return [c for batch in self.batches for c in batch]


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_now_writes_in_the_calling_thread_and_after_runs_at_once() -> None:
    store = Store()
    behind = WriteBehind(store.execute)
    behind.add(("SET", "a", 1), ("PUBLISH", "a", 1), now=True)
    assert store.written == [("SET", "a", 1), ("PUBLISH", "a", 1)]
    assert behind.pending == 0
    called: list[str] = []
    behind.after(lambda: called.append("ack"))
    assert called == ["ack"]
    assert behind._thread is None  # no writer thread was needed


def test_writes_made_while_one_is_in_flight_go_out_together_in_order() -> None:
    store = Store()
    behind = WriteBehind(store.execute)
    store.gate.clear()
    behind.add(("SET", "k0", 0))  # taken by the writer thread, held at the gate
    assert store.entered.wait(5)
    for i in range(1, 50):
        behind.add(("SET", f"k{i}", i))
    store.gate.set()
    _wait(lambda: behind.pending == 0)
    assert store.written == [("SET", f"k{i}", i) for i in range(50)]
    assert len(store.batches) == 2  # the first write, then the 49 that piled up behind it


def test_an_ack_waits_for_the_writes_handed_over_before_it() -> None:
    store = Store()
    behind = WriteBehind(store.execute)
    store.gate.clear()
    behind.add(("SET", "a", 1))
    assert store.entered.wait(5)
    acked: list[str] = []
    behind.after(lambda: acked.append("a"))
    time.sleep(0.05)
    assert acked == []  # its result is not written yet
    store.gate.set()
    _wait(lambda: acked == ["a"])
    assert store.written == [("SET", "a", 1)]


def test_a_store_that_is_down_keeps_writes_and_acks_until_it_is_back() -> None:
    store = Store()
    store.down = True
    behind = WriteBehind(store.execute)
    acked: list[int] = []
    for i in range(3):
        behind.add(("SET", f"k{i}", i), now=True)  # fails in this thread, left to the writer thread
        behind.after(lambda i=i: acked.append(i))
    time.sleep(0.1)
    assert acked == [] and store.written == [] and behind.pending == 3
    assert behind.flush(timeout=0.2) is False  # gives up after the timeout, keeps the writes
    assert behind.pending == 3
    store.down = False
    assert behind.flush(timeout=5) is True
    assert store.written == [("SET", f"k{i}", i) for i in range(3)]  # each once, in order
    assert acked == [0, 1, 2]


def test_the_writer_thread_retries_on_its_own() -> None:
    store = Store()
    store.down = True
    behind = WriteBehind(store.execute)
    acked: list[str] = []
    behind.add(("SET", "a", 1))
    behind.after(lambda: acked.append("a"))
    _wait(lambda: store.entered.is_set())
    store.down = False
    _wait(lambda: acked == ["a"])  # within RETRY_AFTER, with no flush() from outside
    assert store.written == [("SET", "a", 1)]


def test_a_failing_callback_does_not_stop_the_others() -> None:
    store = Store()
    behind = WriteBehind(store.execute)
    store.gate.clear()
    behind.add(("SET", "a", 1))
    assert store.entered.wait(5)
    done: list[str] = []

    def bad() -> None:
        raise RuntimeError("ack failed")

    behind.after(bad)
    behind.after(lambda: done.append("second"))
    store.gate.set()
    _wait(lambda: done == ["second"])


def test_close_writes_what_waits() -> None:
    store = Store()
    behind = WriteBehind(store.execute)
    store.gate.clear()
    behind.add(("SET", "a", 1))
    assert store.entered.wait(5)
    behind.add(("SET", "b", 2))
    store.gate.set()
    assert behind.close(timeout=5) is True
    assert store.written == [("SET", "a", 1), ("SET", "b", 2)]


def test_a_prefork_child_hands_over_only_its_own_writes() -> None:
    """A child forked from a worker that writes behind its pool has a copy of the worker's writer,
    with the writes (and acks) waiting in it. Once told to hand its writes over, the child keeps only
    its own, for the worker, and never makes, nor waits for, the copies of the worker's."""
    from celeriac import Celery

    app = Celery("wb", broker="memory://", backend="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.redis_socket_connect_timeout = 0.2
    backend: Any = app.backend
    backend.write_behind()  # busy: every write waits for the writer, which can't reach the store
    backend.store_result("worker-1", 1, "SUCCESS")
    inherited = backend._behind
    assert inherited.pending == 1
    try:
        assert backend.hand_over_writes()
        backend.store_result("child-1", 2, "SUCCESS")
        acked: list[str] = []
        backend.after_writes(lambda: acked.append("worker-1"), "worker-1")
        assert acked == ["worker-1"]  # nothing of the worker's waits here
        taken = backend.take_writes()
        assert [task_id for task_id, _ in taken] == ["child-1"]
        assert backend.take_writes() == []
        assert backend.flush_writes(timeout=0)  # nothing to write: the inherited writer is not used
        assert inherited.pending == 1
    finally:
        inherited.close(timeout=0)
        app.close()
