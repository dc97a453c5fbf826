"""Results written behind the pool, on a real Redis: a message is acked only once its task's result
is in the store, so a result store that goes away loses nothing.

The worker reaches its broker directly and its result store through a TCP proxy the test cuts.
Each task appends a line to a file, so the test sees that a task ran even while its result can't
be written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from celeriac import Celery
from tests.conftest import Project
from tests.reliability.proxy import TCPProxy

TASKS = """
import os
from celeriac import Celery

app = Celery("tasks")


@app.task
def mark(i):
    with open(os.path.join(os.path.dirname(__file__), "ran.txt"), "a") as f:
        f.write(f"{i}\\n")
    return i * 10
"""


def _ran(project: Project) -> list[int]:
    path = Path(project.path) / "ran.txt"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def cut_off_results(
    project: Project, redis_url: str, redis_proxy: TCPProxy, monkeypatch: pytest.MonkeyPatch
) -> tuple[Celery, TCPProxy]:
    project.write("tasks.py", TASKS)
    db = redis_url.rsplit("/", 1)[1]
    project.broker_url = redis_url
    project.result_backend = redis_proxy.url("redis", f"/{db}")
    monkeypatch.delenv("CELERIAC_BROKER_URL")  # it would win over the URL given to the client
    client = Celery("client", broker=redis_url, backend=redis_url, set_as_current=False)
    return client, redis_proxy


@pytest.mark.parametrize("pool", ["solo", "threads", "asyncio", "prefork"])
def test_acks_wait_for_the_results_and_nothing_is_lost_while_the_store_is_away(
    pool: str, project: Project, cut_off_results: tuple[Celery, TCPProxy], rclient: redis.Redis
) -> None:
    client, proxy = cut_off_results
    worker = project.worker("tasks", "-P", pool, "-c", "4")
    try:
        assert client.send_task("tasks.mark", (-1,)).get(timeout=30) == -10
        # Its ack first: a cut between the write and its reply would leave the worker unsure, and
        # it would rightly write it again (and ack it) only once the store is back.
        _wait(lambda: rclient.hlen("unacked") == 0, 10, "the first ack")
        proxy.drop()
        results = [client.send_task("tasks.mark", (i,)) for i in range(10)]
        _wait(lambda: sorted(i for i in _ran(project) if i >= 0) == list(range(10)), 30, "the tasks to run")
        time.sleep(0.5)
        # They ran, but their results can't be written: every message is still held, none acked.
        held = rclient.hgetall("unacked")
        assert len(held) == 10
        assert all(r.state == "PENDING" for r in results)
        assert worker.proc is not None and worker.proc.poll() is None
        proxy.restore()
        assert [r.get(timeout=30) for r in results] == [i * 10 for i in range(10)]
        _wait(lambda: rclient.hlen("unacked") == 0, 10, "the acks")
        assert sorted(_ran(project)) == [-1, *range(10)]  # each ran once
        assert worker.stop() == 0
    finally:
        client.close()


def test_a_worker_whose_results_pile_up_stops_taking_messages(
    project: Project, cut_off_results: tuple[Celery, TCPProxy], rclient: redis.Redis
) -> None:
    """Results wait in memory for at most 4 prefetch windows (solo: 4 x 4 messages); past that the
    rest stay in the broker, for other workers, instead of piling up here."""
    client, proxy = cut_off_results
    worker = project.worker("tasks", "-P", "solo")
    try:
        assert client.send_task("tasks.mark", (-1,)).get(timeout=30) == -10
        # Its ack first: a cut between the write and its reply would leave the worker unsure, and
        # it would rightly write it again (and ack it) only once the store is back.
        _wait(lambda: rclient.hlen("unacked") == 0, 10, "the first ack")
        proxy.drop()
        results = [client.send_task("tasks.mark", (i,)) for i in range(40)]
        _wait(lambda: len(_ran(project)) >= 1 + 16, 30, "16 tasks to run")
        time.sleep(1.5)
        ran = len(_ran(project)) - 1
        assert 16 <= ran <= 16 + 4  # at most one more fetch (of up to the prefetch room) past the bound
        assert rclient.llen("celery") == 40 - ran
        proxy.restore()
        assert [r.get(timeout=30) for r in results] == [i * 10 for i in range(40)]
        assert sorted(_ran(project)) == [-1, *range(40)]
        assert worker.stop() == 0
    finally:
        client.close()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_results_that_cannot_be_written_at_shutdown_run_again(
    pool: str, project: Project, cut_off_results: tuple[Celery, TCPProxy], rclient: redis.Redis
) -> None:
    client, proxy = cut_off_results
    worker = project.worker("tasks", "-P", pool, "-c", "4")
    try:
        assert client.send_task("tasks.mark", (-1,)).get(timeout=30) == -10
        # Its ack first: a cut between the write and its reply would leave the worker unsure, and
        # it would rightly write it again (and ack it) only once the store is back.
        _wait(lambda: rclient.hlen("unacked") == 0, 10, "the first ack")
        proxy.drop()
        results = [client.send_task("tasks.mark", (i,)) for i in range(5)]
        _wait(lambda: sorted(i for i in _ran(project) if i >= 0) == list(range(5)), 30, "the tasks to run")
        assert worker.stop() == 0
        assert "could not write the results of 5 task(s) at shutdown" in worker.output
        # Back on their queue at once (not left for the visibility timeout), none acked.
        assert rclient.llen("celery") == 5
        assert rclient.hlen("unacked") == 0
        proxy.restore()
        again = project.worker("tasks", "-P", pool, "-c", "4")
        assert [r.get(timeout=30) for r in results] == [i * 10 for i in range(5)]
        assert sorted(_ran(project)) == [-1, *sorted([*range(5), *range(5)])]  # run again, not lost
        assert again.stop() == 0
    finally:
        client.close()


@pytest.fixture
def write_limited_user(rclient: redis.Redis) -> Iterator[str]:
    """A Redis user that may write only result keys of task ids starting with ``ok-``."""
    name = f"celeriac-wb-{os.getpid()}"
    rclient.acl_setuser(
        name,
        enabled=True,
        passwords=["+secret"],
        commands=["+@all"],
        keys=["%R~*", "%W~celery-task-meta-ok-*"],
        channels=["*"],
        reset=True,
        reset_keys=True,
    )
    yield name
    rclient.acl_deluser(name)


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_result_the_store_refuses_does_not_hold_back_the_others(
    pool: str,
    project: Project,
    redis_url: str,
    rclient: redis.Redis,
    write_limited_user: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis refuses one write of a batch (here: no permission; in production: out of memory, a value
    over its size limit) and takes the others. The refused task is logged and its message acked,
    as with an inline write; the results batched with it and after it are all stored."""
    project.write("tasks.py", TASKS)
    db = redis_url.rsplit("/", 1)[1]
    project.broker_url = redis_url
    project.result_backend = (
        f"redis://{write_limited_user}:secret@127.0.0.1:{rclient.connection_pool.connection_kwargs['port']}/{db}"
    )
    monkeypatch.delenv("CELERIAC_BROKER_URL")
    worker = project.worker("tasks", "-P", pool, "-c", "4")
    client = Celery("client", broker=redis_url, backend=redis_url, set_as_current=False)
    try:
        ids = [f"ok-{i}" if i % 5 else f"bad-{i}" for i in range(40)]
        results = {tid: client.send_task("tasks.mark", (i,), task_id=tid) for i, tid in enumerate(ids)}
        for i, tid in enumerate(ids):
            if tid.startswith("ok-"):
                assert results[tid].get(timeout=30) == i * 10
        _wait(lambda: rclient.hlen("unacked") == 0, 10, "every message to be acked, the refused ones too")
        worker.wait_for("could not store the result of task bad-0", timeout=10)
        assert all(results[tid].state == "PENDING" for tid in ids if tid.startswith("bad-"))
        assert sorted(_ran(project)) == list(range(40))  # each ran once: nothing was redelivered
        assert worker.stop() == 0
    finally:
        client.close()


def test_writes_no_worker_settles_are_not_remembered_forever(
    redis_url: str, rclient: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results stored behind but never settled by the worker (an eager call inside a task) leave no
    trace once written: the task ids the backend keeps for the acks stay bounded."""
    from celeriac.backends import redis as redis_backend

    monkeypatch.setattr(redis_backend, "WRITES_TRACKED", 100)
    app = Celery("wb", broker=redis_url, backend=redis_url, set_as_current=False)
    backend = app.backend
    try:
        backend.write_behind()  # no busy() given: every write waits for the writer thread
        for i in range(1000):
            backend.store_result(f"eager-{i}", i, "SUCCESS")
            if i % 50 == 49:
                assert backend.flush_writes(timeout=10)  # as the writer thread keeps up in a worker
        assert backend.flush_writes(timeout=10)
        assert len(backend._write_of) <= 2 * 100
        assert [backend.get_task_meta(f"eager-{i}")["result"] for i in (0, 500, 999)] == [0, 500, 999]
        acked: list[str] = []
        backend.after_writes(lambda: acked.append("now"), "eager-999")
        assert acked == ["now"]  # written already: called at once
    finally:
        app.close()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_write_behind_off_writes_in_the_task_thread(
    pool: str, project: Project, cut_off_results: tuple[Celery, TCPProxy], rclient: redis.Redis
) -> None:
    """``worker_result_write_behind = False``: each task writes its own result before its slot goes on
    (a prefork child too, instead of handing it to the worker), so a store that is away fails the
    write in the task (logged), and nothing waits behind."""
    client, proxy = cut_off_results
    project.write("celeryconfig.py", "worker_result_write_behind = False\n")
    project.write("tasks.py", TASKS + "\napp.config_from_object('celeryconfig')\n")
    worker = project.worker("tasks", "-P", pool, "-c", "2")
    try:
        assert client.send_task("tasks.mark", (-1,)).get(timeout=30) == -10
        _wait(lambda: rclient.hlen("unacked") == 0, 10, "the first ack")
        proxy.drop()
        client.send_task("tasks.mark", (1,))
        worker.wait_for("could not store the result of tasks.mark", timeout=30)
        _wait(lambda: rclient.hlen("unacked") == 0, 10, "the ack: the outcome was recorded in the task")
        assert "could not write results" not in worker.output  # no writer thread
        assert worker.stop() == 0
    finally:
        client.close()
