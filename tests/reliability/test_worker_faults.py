"""Worker faults on the embedded SQLite broker and on Redis: the worker's main process or a pool
process dies mid-task (SIGKILL, ``os._exit``, a segfault), or a task never returns under a hard
time limit. The worker survives or is replaced, and nothing queued is lost.

What happens to the task that was running, as docs/reliability.md states it:

* the main process is killed: its messages were never acked, so a new worker runs them again
  (``acks_late`` or not: celeriac acks after the task, whatever ``acks_late`` says);
* a pool process dies: an ``acks_late`` task is delivered once more; if its process dies again it
  fails with ``WorkerLostError``. Without ``acks_late`` it fails with ``WorkerLostError`` at once;
* a hard time limit: the pool process is killed and replaced, the task fails with
  ``TimeLimitExceeded``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from celeriac.brokers import broker_class
from tests.conftest import Project, WorkerProcess

TASKS = """
import ctypes
import os
import time
from pathlib import Path

from celeriac import Celery

app = Celery("tasks")
# A dead worker's messages come back after 5 s (SQLite: lease; Redis: consumer heartbeat). Shorter
# limits make a live worker on a busy machine look dead, and its messages run twice.
app.conf.broker_transport_options = {"visibility_timeout": 5, "consumer_timeout": 5}
HERE = Path(__file__).resolve().parent


def _hold(i):
    with open(HERE / "runs.txt", "a") as f:
        f.write(f"{i}\\n")
    (HERE / f"running-{i}").write_text(str(os.getpid()))
    while not (HERE / "go").exists():
        time.sleep(0.02)
    return i * 2


@app.task
def hold(i):
    return _hold(i)


@app.task(acks_late=False)
def hold_early_ack(i):
    return _hold(i)


@app.task
def victim(i):
    # The first run waits to be killed from outside (as by the OOM killer); the next one returns.
    marker = HERE / f"victim-{i}"
    if marker.exists():
        return "ran again"
    marker.write_text(str(os.getpid()))
    time.sleep(120)


@app.task
def crash(how):
    if how == "exit":
        os._exit(1)
    if how == "segfault":
        ctypes.string_at(0)
    if how == "hang":
        while True:
            time.sleep(1)
    raise ValueError(how)


@app.task
def add(x, y):
    return x + y
"""


def _wait_for_files(paths: list[Path], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() and p.read_text() for p in paths):
        assert time.monotonic() < deadline, f"not all of {[p.name for p in paths]} appeared"
        time.sleep(0.02)


def _queue_size(project: Project) -> int:
    broker = broker_class(project.broker_url)(project.broker_url, {})
    try:
        return broker.queue_size("celery")
    finally:
        broker.close()


def _drain(worker: WorkerProcess, project: Project, timeout: float = 30.0) -> None:
    """Wait until the queue is empty and ``worker`` has finished everything it received. (A task
    whose orphaned process stored its result is received again, and runs again: results being
    ready doesn't mean the worker is done.)"""
    deadline = time.monotonic() + timeout
    while _queue_size(project) or worker.output.count("] received") > worker.output.count("] succeeded in"):
        assert time.monotonic() < deadline, f"the worker did not drain the queue:\n{worker.output}"
        time.sleep(0.1)


def _kill_what_is_left(worker: WorkerProcess) -> None:
    """Pool processes orphaned by a killed main process are still in its process group."""
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.parametrize("task_name", ["hold", "hold_early_ack"])
@pytest.mark.parametrize("victim", ["main process", "process group"])
def test_sigkilled_worker_mid_task_every_task_completes(broker_project: Project, victim: str, task_name: str) -> None:
    project = broker_project
    project.write("tasks.py", TASKS)
    import tasks  # type: ignore[import-not-found]

    task = getattr(tasks, task_name)
    results = [task.delay(i) for i in range(8)]
    first = project.worker("tasks", "-c", "2", "--prefetch-multiplier", "4")
    first.wait_for("received", count=8)
    _wait_for_files([project.path / "running-0", project.path / "running-1"])
    if victim == "main process":
        os.kill(first.pid, signal.SIGKILL)  # the pool processes are orphaned, still running their task
        assert first.proc is not None
        first.proc.wait(10)
    else:
        first.kill_group()
    try:
        assert "succeeded" not in first.output
        (project.path / "go").touch()
        second = project.worker("tasks", "-c", "2")
        assert [r.get(timeout=60) for r in results] == [i * 2 for i in range(8)]
        _drain(second, project)
        assert second.stop() == 0, second.output
    finally:
        _kill_what_is_left(first)
    runs = [int(x) for x in (project.path / "runs.txt").read_text().split()]
    assert set(runs) == set(range(8))  # every task ran at least once...
    assert all(runs.count(i) <= 2 for i in range(8))  # ...and at most twice (once more if it was running)
    assert _queue_size(project) == 0


@pytest.mark.parametrize("how", ["sigkill", "exit", "segfault", "hang"])
def test_pool_process_death_or_hang_spares_the_worker_and_the_queue(broker_project: Project, how: str) -> None:
    # On SQLite this also covers the fork of the replacement process while another thread of
    # the worker is inside SQLite (its locks must not be inherited held).
    project = broker_project
    project.write("tasks.py", TASKS)
    from tasks import add, crash, victim  # type: ignore[import-not-found]

    if how == "sigkill":
        doomed = victim.delay(0)
    else:
        doomed = crash.apply_async((how,), time_limit=2 if how == "hang" else None)
    queued = [add.delay(i, i) for i in range(30)]
    worker = project.worker("tasks", "-c", "2")
    main_pid = worker.pid
    if how == "sigkill":
        # Killed from outside, mid-task, as the OOM killer does: delivered once more, and completes.
        _wait_for_files([project.path / "victim-0"])
        os.kill(int((project.path / "victim-0").read_text()), signal.SIGKILL)
        assert doomed.get(timeout=60) == "ran again"
    else:
        exc = doomed.get(timeout=60, propagate=False)
        expected = "TimeLimitExceeded" if how == "hang" else "WorkerLostError"
        assert type(exc).__name__ == expected, exc
    try:
        assert [r.get(timeout=30) for r in queued] == [i * 2 for i in range(30)]
    except TimeoutError:
        missing = [r.id for r in queued if not r.ready()]
        raise AssertionError(f"tasks {missing} never completed:\n{worker.output}") from None
    # The same worker, with its pool process replaced, keeps taking work.
    assert add.delay(20, 22).get(timeout=30) == 42
    assert worker.pid == main_pid and worker.proc is not None and worker.proc.poll() is None
    if how in ("exit", "segfault"):
        # Delivered twice (the process died each time), then reported: no crash loop.
        assert worker.output.count(f"Task tasks.crash[{doomed.id}] received") == 2
    assert worker.stop() == 0, worker.output
    assert _queue_size(project) == 0
