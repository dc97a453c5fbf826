"""The dashboard's task history: merging events, pagination over 100,000 tasks, surviving a restart."""

from __future__ import annotations

import time
from pathlib import Path

from celeriac.dashboard.store import TaskQuery, TaskStore


def ev(kind: str, task_id: str, when: float, **fields: object) -> dict[str, object]:
    return {"type": kind, "uuid": task_id, "timestamp": when, "hostname": "w1@host", **fields}


def test_events_merge_into_one_row_and_a_late_task_sent_does_not_win(tmp_path: Path) -> None:
    store = TaskStore(str(tmp_path / "h.db"))
    store.open()
    store.record([
        ev("task-received", "a", 10.0, name="tasks.add", args="(1, 2)", kwargs="{}", retries=0, parent_id="p"),
        ev("task-started", "a", 10.1),
    ])  # fmt: skip
    store.record([ev("task-sent", "a", 10.2, name="tasks.add")])  # from the client, after publishing
    row = store.get("a")
    assert row is not None and row["state"] == "STARTED" and row["worker"] == "w1@host"
    store.record([ev("task-succeeded", "a", 10.5, result="3", runtime=0.4)])
    row = store.get("a")
    assert row is not None
    assert (row["state"], row["result"], row["runtime"], row["args"]) == ("SUCCESS", "3", 0.4, "(1, 2)")
    assert (row["first_seen"], row["received"], row["started"], row["finished"]) == (10.0, 10.0, 10.1, 10.5)
    assert store.children("p") == [{"uuid": "a", "name": "tasks.add", "state": "SUCCESS"}]
    store.close()


def test_the_first_finished_state_is_kept(tmp_path: Path) -> None:
    store = TaskStore(str(tmp_path / "h.db"))
    store.record([ev("task-started", "t", 1.0, name="tasks.sleepy"), ev("task-revoked", "t", 2.0, terminated=True)])
    store.record([ev("task-failed", "t", 2.1, exception="WorkerLostError()", traceback="...")])
    row = store.get("t")
    assert row is not None and row["state"] == "REVOKED" and row["exception"] == "WorkerLostError()"
    assert row["finished"] == 2.0
    store.close()


def test_a_page_of_100000_tasks_is_an_indexed_read_and_the_history_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "h.db")
    store = TaskStore(path, max_tasks=200_000)
    events = []
    for i in range(100_000):
        name = ("tasks.add", "tasks.mul", "tasks.boom")[i % 3]
        events.append(ev("task-received", f"{i:08d}-task", 1000.0 + i, name=name, args=f"({i},)"))
        events.append(ev("task-failed" if name == "tasks.boom" else "task-succeeded", f"{i:08d}-task", 1000.5 + i,
                         runtime=0.01))  # fmt: skip
    store.record(events)
    store.close()

    reopened = TaskStore(path)  # a restarted dashboard reads the same file
    started = time.perf_counter()
    last_page = reopened.page(TaskQuery(state="FAILURE", limit=50, offset=33_300))
    first_page = reopened.page(TaskQuery(name="tasks.mul", limit=50))
    by_worker = reopened.page(TaskQuery(worker="w1@host", limit=50, offset=99_950))
    by_id = reopened.page(TaskQuery(search="0004200"))
    elapsed = time.perf_counter() - started
    assert last_page.total == 33_333 and len(last_page.tasks) == 33
    assert first_page.total == 33_333 and first_page.tasks[0]["uuid"] == "00099997-task"
    assert [t["uuid"] for t in by_worker.tasks][-1] == "00000000-task"
    assert by_id.total == 10 and all(t["uuid"].startswith("0004200") for t in by_id.tasks)
    assert elapsed < 2.0, elapsed  # generous for a loaded machine; each is a few ms here

    for query in (TaskQuery(state="FAILURE"), TaskQuery(name="x"), TaskQuery(worker="w"), TaskQuery(search="1")):
        where = "WHERE " + " AND ".join(
            c for c in ("state = ?" if query.state else "", "name = ?" if query.name else "",
                        "worker = ?" if query.worker else "", "uuid >= ? AND uuid < ?" if query.search else "") if c
        )  # fmt: skip
        params = [v for v in (query.state, query.name, query.worker) if v] + (
            ["1", "1\U0010ffff"] if query.search else []
        )
        plan = " ".join(
            str(row[-1])
            for row in reopened.db.execute(
                f"EXPLAIN QUERY PLAN SELECT uuid FROM dashboard_tasks {where} ORDER BY first_seen DESC LIMIT 50", params
            ).fetchall()
        )
        assert "USING INDEX" in plan or "USING PRIMARY KEY" in plan or "USING COVERING INDEX" in plan, plan
    reopened.close()


def test_the_oldest_tasks_are_pruned_beyond_max_tasks(tmp_path: Path) -> None:
    store = TaskStore(str(tmp_path / "h.db"), max_tasks=100)
    store.record([ev("task-received", f"t{i:04d}", float(i + 1), name="tasks.add") for i in range(250)])
    assert store.prune() == 150
    page = store.page(TaskQuery(limit=500))
    assert page.total == 100 and page.tasks[-1]["uuid"] == "t0150"
    store.close()
