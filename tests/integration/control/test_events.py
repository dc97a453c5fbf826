"""Events: counted for 100 tasks on every broker with fanout, read by Celery's own receiver, and dumped."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.conftest import Project

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_event_stream_of_100_tasks(any_broker: Project) -> None:
    from tasks import add, app  # type: ignore[import-not-found]

    app.conf.task_send_sent_event = True
    receiver = app.events.Receiver()
    worker = any_broker.worker("tasks", "-c", "2", "-E", "-n", "ev@%h")
    results = [add.delay(i, i) for i in range(100)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(100)]
    counts: Counter[str] = Counter()
    state = app.events.State()
    deadline = time.monotonic() + 60
    for event in receiver.itercapture(timeout=60):
        counts[event["type"]] += 1
        state.event(event)
        if counts["task-succeeded"] >= 100 and counts["worker-heartbeat"] >= 1 or time.monotonic() > deadline:
            break
    receiver.close()
    assert counts["task-sent"] == 100
    assert counts["task-received"] == counts["task-started"] == counts["task-succeeded"] == 100
    assert counts["worker-heartbeat"] >= 1
    node = f"ev@{socket.gethostname()}"
    assert state.workers[node]["sw_ident"] == "py-celeriac" and state.workers[node]["alive"]
    done = state.tasks[results[0].id]
    assert done["state"] == "SUCCEEDED" and done["name"] == "tasks.add" and done["result"] == "0"
    assert worker.stop() == 0


def test_celerys_event_receiver_reads_celeriac_events(redis_project: Project) -> None:
    redis_project.write("tasks.py", "from celeriac import Celery\napp = Celery('tasks')\n\n@app.task\ndef add(x, y):\n"
                        "    return x + y\n")  # fmt: skip
    code = f"""
import celery, collections
app = celery.Celery("tasks", broker={redis_project.broker_url!r})
counts = collections.Counter()
with app.connection() as conn:
    def on_event(event):
        counts[event["type"]] += 1
    receiver = app.events.Receiver(conn, handlers={{"*": on_event}})
    open("listening", "w").close()
    try:
        receiver.capture(limit=40, timeout=30)
    except Exception:
        pass
print(dict(counts))
"""
    celery_side = subprocess.Popen([sys.executable, "-W", "ignore", "-c", code], cwd=redis_project.path,
                                   env=redis_project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
    deadline = time.time() + 30
    while not (redis_project.path / "listening").exists() and time.time() < deadline:
        time.sleep(0.05)
    worker = redis_project.worker("tasks", "-c", "1", "-E")
    from tasks import add  # type: ignore[import-not-found]

    assert [add.delay(i, 1).get(timeout=30) for i in range(12)] == list(range(1, 13))
    out, err = celery_side.communicate(timeout=60)
    counts = eval(out.strip().splitlines()[-1])
    assert counts.get("task-succeeded", 0) >= 10, (out, err)
    assert counts.get("worker-online", 0) + counts.get("worker-heartbeat", 0) >= 1
    assert worker.stop() == 0


def test_events_dump_command(any_broker: Project) -> None:
    worker = any_broker.worker("tasks", "-c", "1", "-E")
    dump = subprocess.Popen([sys.executable, "-m", "celeriac", "-A", "tasks", "events", "--dump", "--limit", "6",
                             "--timeout", "60"], cwd=any_broker.path, env=any_broker.env(), stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    time.sleep(1.5)  # the dump subscribes before the tasks go out
    from tasks import add  # type: ignore[import-not-found]

    assert [add.delay(i, 1).get(timeout=30) for i in range(3)] == [1, 2, 3]
    out, _ = dump.communicate(timeout=90)
    lines = [line for line in out.splitlines() if " task-" in line or " worker-" in line]
    assert len(lines) == 6
    assert any("task-succeeded" in line and '"result": "1"' in line for line in lines)
    assert worker.stop() == 0


def test_terminated_task_is_revoked_not_failed(any_broker: Project) -> None:
    from tasks import add, app, sleepy  # type: ignore[import-not-found]

    receiver = app.events.Receiver()
    worker = any_broker.worker("tasks", "-c", "1", "-E", "-n", "term@%h")
    long = sleepy.delay(60)
    states: list[str] = []
    for event in receiver.itercapture(timeout=30):
        if event.get("uuid") == long.id:
            states.append(event["type"])
            if event["type"] == "task-started":
                app.control.terminate(long.id, signal="SIGKILL")
            if event["type"] in ("task-revoked", "task-failed"):
                break
    # The next task's events come after anything the terminated one could still send.
    after = add.delay(1, 1)
    assert after.get(timeout=30) == 2
    for event in receiver.itercapture(timeout=30):
        if event.get("uuid") == long.id:
            states.append(event["type"])
        if event.get("uuid") == after.id and event["type"] == "task-succeeded":
            break
    receiver.close()
    assert "task-revoked" in states
    assert "task-failed" not in states
    assert worker.stop() == 0
