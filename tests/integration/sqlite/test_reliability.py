"""Nothing queued is lost: killed workers, many processes, poisoned messages (real workers, SQLite)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from celeriac.brokers.base import Envelope
from celeriac.brokers.sqlite import SQLiteBroker
from tests.conftest import Project

GATED = """
import os, time
from celeriac import Celery

app = Celery("tasks")
app.conf.broker_transport_options = {"visibility_timeout": float(os.environ.get("VT", "30"))}
GATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gate")


@app.task
def double(i):
    open(GATE + "-started-%d" % i, "w").close()  # for a test that must act while it runs
    while not os.path.exists(GATE):
        time.sleep(0.02)
    return i * 2


@app.task
def add(x, y):
    return x + y
"""


def test_sigkilled_worker_loses_nothing(project: Project) -> None:
    """A worker holding 50 claimed tasks is SIGKILLed; a new worker completes all 50."""
    project.write("tasks.py", GATED)
    from tasks import double  # type: ignore[import-not-found]

    results = [double.delay(i) for i in range(50)]
    env = project.env(VT="2")
    first = project.worker("tasks", "-c", "2", "--prefetch-multiplier", "25", env=env)
    first.wait_for("received", count=50, timeout=60)
    first.kill_group()
    assert "succeeded" not in first.output  # the gate was closed: nothing finished

    (project.path / "gate").touch()
    second = project.worker("tasks", "-c", "2", env=env)
    values = [r.get(timeout=90) for r in results]
    assert values == [i * 2 for i in range(50)]
    assert second.stop() == 0
    assert second.output.count("succeeded in") >= 50
    # Every message was acked: the results were stored before the acks, so check after the stop.
    assert SQLiteBroker(project.broker_url).queue_size("celery") == 0


CLIENT = """
import sys
from tasks import record
n, offset = int(sys.argv[1]), int(sys.argv[2])
results = [record.delay(offset + i) for i in range(n)]
values = [r.get(timeout=240) for r in results]
assert values == [offset + i for i in range(n)], "wrong results"
print("ok", len(values))
"""

RECORDING = """
import os
from celeriac import Celery

app = Celery("tasks")
RUNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs")


@app.task(bind=True)
def record(self, i):
    # "x" mode fails if this task id already ran: a duplicate run becomes a visible failure.
    with open(os.path.join(RUNS, self.request.id), "x") as fh:
        fh.write(str(i))
    return i
"""


def test_four_clients_two_workers_each_task_runs_once(project: Project) -> None:
    project.write("tasks.py", RECORDING)
    project.write("client.py", CLIENT)
    (project.path / "runs").mkdir()
    workers = [project.worker("tasks", "-c", "2", "-n", f"w{i}@%h") for i in range(2)]
    clients = [
        subprocess.Popen(
            [sys.executable, "client.py", "500", str(k * 500)],
            cwd=project.path,
            env=project.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    for client in clients:
        out, err = client.communicate(timeout=300)
        assert client.returncode == 0, err
        assert out.strip() == "ok 500"
    runs = list((project.path / "runs").iterdir())
    assert len(runs) == 2000
    assert sorted(int(p.read_text()) for p in runs) == list(range(2000))
    for worker in workers:
        assert "raised unexpected" not in worker.output
        assert worker.stop() == 0
    # Both workers took part.
    assert all("succeeded in" in w.output for w in workers)


def _envelope(body: bytes, headers: dict[str, object], content_type: str = "application/json") -> Envelope:
    return Envelope(
        body=body,
        headers=headers,
        properties={"delivery_mode": 2, "priority": 0},
        content_type=content_type,
        content_encoding="utf-8",
    )


def test_poisoned_messages_are_dead_lettered_and_the_worker_carries_on(project: Project) -> None:
    project.write("tasks.py", GATED)
    (project.path / "gate").touch()
    broker = SQLiteBroker(project.broker_url)
    good_body = json.dumps([[1, 2], {}, {}]).encode()
    broker.publish(_envelope(b"{not json", {"task": "tasks.add", "id": "bad-json"}), exchange="", routing_key="celery")
    broker.publish(
        _envelope(good_body, {"task": "tasks.nope", "id": "unknown-task"}), exchange="", routing_key="celery"
    )
    broker.publish(
        _envelope(b"\x80\x04K\x01.", {"task": "tasks.add", "id": "pickled"}, "application/x-python-serialize"),
        exchange="",
        routing_key="celery",
    )
    broker.publish(
        _envelope(json.dumps({"a": 1}).encode(), {"task": "tasks.add", "id": "not-a-call"}),
        exchange="",
        routing_key="celery",
    )
    broker.publish(_envelope(good_body, {"task": "tasks.add", "id": "fine"}), exchange="", routing_key="celery")

    worker = project.worker("tasks", "-c", "1")
    from tasks import app  # type: ignore[import-not-found]

    assert app.AsyncResult("fine").get(timeout=30) == 3
    unknown = app.AsyncResult("unknown-task")
    assert unknown.get(timeout=30, propagate=False).__class__.__name__ == "NotRegistered"
    output = worker.output
    assert "Received unregistered task of type 'tasks.nope'" in output
    assert "Refusing to deserialize" in output and "application/x-python-serialize" in output
    assert "can't decode application/json" in output
    assert "body must be [args, kwargs, embed]" in output
    dead = {d["headers"]["id"]: d["reason"] for d in broker.dead_letters()}
    assert set(dead) == {"bad-json", "unknown-task", "pickled", "not-a-call"}
    assert "unregistered" in dead["unknown-task"]
    assert app.AsyncResult("bad-json").state == "PENDING"  # never executed
    assert worker.proc is not None and worker.proc.poll() is None  # still running
    assert worker.stop() == 0
    broker.close()


def test_warm_shutdown_returns_unstarted_messages(project: Project) -> None:
    project.write("tasks.py", GATED)
    from tasks import double  # type: ignore[import-not-found]

    results = [double.delay(i) for i in range(4)]
    worker = project.worker("tasks", "-P", "threads", "-c", "1", "--prefetch-multiplier", "4")
    worker.wait_for("received", count=4)
    deadline = time.monotonic() + 30
    while not (project.path / "gate-started-0").exists():  # the one slot has started the first task
        assert time.monotonic() < deadline, worker.output
        time.sleep(0.02)
    worker.signal(15)  # SIGTERM: warm shutdown waits for the running task
    worker.wait_for("Warm shutdown")
    worker.wait_for("Returned 3 unstarted messages")
    assert worker.proc is not None and worker.proc.poll() is None
    (project.path / "gate").touch()
    assert worker.stop() == 0
    assert results[0].get(timeout=10) == 0
    assert SQLiteBroker(project.broker_url).queue_size("celery") == 3
    again = project.worker("tasks", "-c", "1")
    assert [r.get(timeout=30) for r in results[1:]] == [2, 4, 6]
    assert again.stop() == 0


def test_cold_shutdown_requeues_the_running_task(project: Project) -> None:
    project.write("tasks.py", GATED)
    from tasks import double  # type: ignore[import-not-found]

    result = double.delay(21)
    worker = project.worker("tasks", "-c", "1")
    worker.wait_for("received")
    time.sleep(0.3)  # let the child start it; not a timing assertion
    worker.signal(3)  # SIGQUIT: cold shutdown
    assert worker.stop() != 0 or "Cold shutdown" in worker.output
    assert "Cold shutdown" in worker.output
    assert result.state == "PENDING"
    (project.path / "gate").touch()
    again = project.worker("tasks", "-c", "1")
    assert result.get(timeout=30) == 42
    assert again.stop() == 0


def test_killed_pool_process_is_reported_and_replaced(project: Project) -> None:
    project.write(
        "tasks.py",
        """
        import os, signal
        from celeriac import Celery
        app = Celery("tasks")
        HERE = os.path.dirname(os.path.abspath(__file__))

        @app.task
        def die():
            os.kill(os.getpid(), signal.SIGKILL)

        @app.task
        def die_once():
            try:
                open(os.path.join(HERE, "died-once"), "x").close()
            except FileExistsError:
                return "survived"
            os.kill(os.getpid(), signal.SIGKILL)

        @app.task(reject_on_worker_lost=False)
        def die_no_retry():
            os.kill(os.getpid(), signal.SIGKILL)

        @app.task
        def add(x, y):
            return x + y
    """,
    )
    from tasks import add, die, die_no_retry, die_once  # type: ignore[import-not-found]

    worker = project.worker("tasks", "-c", "1")
    # Killed once (as by the OOM killer): delivered again, and this time it completes.
    assert die_once.delay().get(timeout=30) == "survived"
    # Killed every time: one more delivery, then reported as lost (no endless crash loop).
    lost = die.delay()
    exc = lost.get(timeout=60, propagate=False)
    assert type(exc).__name__ == "WorkerLostError"
    assert "signal 9" in str(exc)
    assert worker.output.count(f"Task tasks.die[{lost.id}] received") == 2
    # task_reject_on_worker_lost=False: reported at once, never delivered again.
    once = die_no_retry.delay()
    assert type(once.get(timeout=30, propagate=False)).__name__ == "WorkerLostError"
    assert worker.output.count(f"Task tasks.die_no_retry[{once.id}] received") == 1
    assert add.delay(2, 3).get(timeout=30) == 5  # the pool process was replaced each time
    assert worker.stop() == 0


def test_path_helper(tmp_path: Path) -> None:
    assert SQLiteBroker(f"sqlite:///{tmp_path}/x.db").path == str(tmp_path / "x.db")


def test_a_pool_process_stuck_at_start_is_replaced(project: Project) -> None:
    project.write(
        "tasks.py",
        """
        import os, time
        from celeriac import Celery
        from celeriac.signals import worker_process_init

        app = Celery("tasks")
        app.conf.worker_proc_alive_timeout = 1.0
        MARK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stalled-once")


        @worker_process_init.connect
        def stall_the_first_child(**kwargs):
            # The first pool process hangs in its start-up (as after a fork that inherited a held lock).
            try:
                open(MARK, "x").close()
            except FileExistsError:
                return
            time.sleep(3600)


        @app.task
        def add(x, y):
            return x + y
        """,
    )
    worker = project.worker("tasks", "-c", "1")
    from tasks import add  # type: ignore[import-not-found]

    assert add.delay(2, 2).get(timeout=30) == 4
    assert "Timed out waiting for UP message" in worker.output
    assert worker.stop() == 0


def test_sighup_restarts_in_place_and_sigusr1_dumps_stacks(project: Project) -> None:
    project.write("tasks.py", GATED)
    (project.path / "gate").touch()
    worker = project.worker("tasks", "-c", "1")
    from tasks import add  # type: ignore[import-not-found]

    assert add.delay(1, 2).get(timeout=30) == 3
    worker.signal(10)  # SIGUSR1
    worker.wait_for("most recent call first")
    pid = worker.pid
    worker.signal(1)  # SIGHUP
    worker.wait_for("Restarting")
    worker.wait_for("ready.", count=2, timeout=60)
    assert add.delay(2, 3).get(timeout=30) == 5
    assert worker.pid == pid and worker.proc is not None and worker.proc.poll() is None
    assert worker.stop() == 0


def test_soft_shutdown_lets_running_tasks_finish_then_requeues(project: Project) -> None:
    project.write(
        "tasks.py",
        """
        import time
        from celeriac import Celery

        app = Celery("tasks")
        app.conf.worker_soft_shutdown_timeout = 3


        @app.task
        def nap(seconds):
            time.sleep(seconds)
            return seconds
        """,
    )
    from tasks import nap  # type: ignore[import-not-found]

    quick, slow = nap.delay(1), nap.delay(30)
    worker = project.worker("tasks", "-P", "threads", "-c", "2")
    worker.wait_for("received", count=2)
    time.sleep(0.3)
    worker.signal(3)  # SIGQUIT: cold shutdown, softened
    worker.wait_for("Soft shutdown: waiting up to 3.0s for 2 running task(s)")
    worker.stop()
    assert quick.get(timeout=30) == 1  # finished within the soft period
    assert slow.state == "PENDING"  # stopped, and its message requeued:
    assert SQLiteBroker(project.broker_url).queue_size("celery") == 1
