"""app.events.State: events that arrive out of order don't move a task back."""

from __future__ import annotations

from celeriac.events import State


def _task_event(kind: str, timestamp: float, **fields: object) -> dict[str, object]:
    return {"type": f"task-{kind}", "uuid": "t1", "timestamp": timestamp, **fields}


def test_a_late_task_sent_adds_its_fields_but_keeps_the_final_state() -> None:
    state = State()
    state.event(_task_event("received", 2.0, name="tasks.add", args="(1, 1)"))
    state.event(_task_event("started", 3.0))
    state.event(_task_event("succeeded", 4.0, result="2", runtime=0.1))
    state.event(_task_event("sent", 1.0, queue="celery", name="tasks.add"))  # the client's, late
    task = state.tasks["t1"]
    assert task["state"] == "SUCCEEDED" and task["result"] == "2"
    assert task["queue"] == "celery" and task["sent"] == 1.0 and task["timestamp"] == 4.0


def test_a_late_task_received_only_fills_in_what_it_knows() -> None:
    state = State()
    state.event(_task_event("started", 3.0, hostname="w1"))
    state.event(_task_event("received", 2.0, name="tasks.add", hostname="elsewhere", retries=0))
    task = state.tasks["t1"]
    assert task["state"] == "STARTED" and task["name"] == "tasks.add" and task["retries"] == 0
    assert task["hostname"] == "w1"


def test_events_in_order_move_the_state_on() -> None:
    state = State()
    for kind, timestamp in (("sent", 1.0), ("received", 2.0), ("started", 3.0), ("failed", 4.0)):
        state.event(_task_event(kind, timestamp))
        assert state.tasks["t1"]["state"] == kind.upper()
    # A retry goes through whatever came before (Celery's exception for RETRY).
    state.event(_task_event("retried", 5.0))
    assert state.tasks["t1"]["state"] == "RETRIED"
    state.event(_task_event("started", 6.0))
    assert state.tasks["t1"]["state"] == "STARTED"
