"""Task history for the dashboard: one row per task, merged from its events, in a SQLite file.

The file is the dashboard's own (``celeriac-dashboard.db`` beside the embedded store,
or ``--db``), so a restart keeps what was seen. Rows are upserted: each event fills the
columns it knows and leaves the others. The first finished state (SUCCESS, FAILURE,
REVOKED) is the one kept, as in the result backend: a terminated task is reported revoked,
then failed with WorkerLostError, and it stays REVOKED (the error is kept in its columns).
Before that, the latest event wins, but for ``task-sent``: it comes from the client, which
sends it after publishing, so it can arrive after the worker's ``task-started`` (and even
carry a later timestamp); a known task never goes back to PENDING.

Listing is by first-seen time, newest first, with an index per filter column, so a page
of a filtered list is an index range read however many rows there are.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._sqlite import SQLiteDatabase

__all__ = ["EVENT_STATES", "READY", "TaskPage", "TaskQuery", "TaskStore", "state_of_event"]

# Event type -> the task state Celery's monitors show for it.
EVENT_STATES = {
    "task-sent": "PENDING",
    "task-received": "RECEIVED",
    "task-started": "STARTED",
    "task-succeeded": "SUCCESS",
    "task-failed": "FAILURE",
    "task-retried": "RETRY",
    "task-revoked": "REVOKED",
    "task-rejected": "REJECTED",
}
READY = ("SUCCESS", "FAILURE", "REVOKED")

COLUMNS = (
    "uuid", "name", "state", "args", "kwargs", "result", "exception", "traceback", "worker", "retries",
    "parent_id", "root_id", "eta", "expires", "first_seen", "sent", "received", "started", "finished",
    "runtime", "updated",
)  # fmt: skip

SCHEMA = """
CREATE TABLE IF NOT EXISTS dashboard_tasks (
    uuid TEXT PRIMARY KEY,
    name TEXT, state TEXT NOT NULL, args TEXT, kwargs TEXT, result TEXT, exception TEXT, traceback TEXT,
    worker TEXT, retries INTEGER, parent_id TEXT, root_id TEXT, eta TEXT, expires TEXT,
    first_seen REAL NOT NULL, sent REAL, received REAL, started REAL, finished REAL, runtime REAL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_tasks_seen ON dashboard_tasks (first_seen);
CREATE INDEX IF NOT EXISTS dashboard_tasks_state ON dashboard_tasks (state, first_seen);
CREATE INDEX IF NOT EXISTS dashboard_tasks_name ON dashboard_tasks (name, first_seen);
CREATE INDEX IF NOT EXISTS dashboard_tasks_worker ON dashboard_tasks (worker, first_seen);
CREATE INDEX IF NOT EXISTS dashboard_tasks_parent ON dashboard_tasks (parent_id);
CREATE INDEX IF NOT EXISTS dashboard_tasks_finished ON dashboard_tasks (finished)
"""

_READY_SQL = "('SUCCESS', 'FAILURE', 'REVOKED')"
_MERGED = [c for c in COLUMNS if c not in ("uuid", "state", "first_seen", "finished", "updated")]
_UPSERT = f"""
INSERT INTO dashboard_tasks ({", ".join(COLUMNS)}) VALUES ({", ".join("?" for _ in COLUMNS)})
ON CONFLICT (uuid) DO UPDATE SET
    state = CASE WHEN dashboard_tasks.state IN {_READY_SQL} THEN dashboard_tasks.state
                 WHEN excluded.state = 'PENDING' THEN dashboard_tasks.state
                 ELSE excluded.state END,
    first_seen = MIN(dashboard_tasks.first_seen, excluded.first_seen),
    finished = COALESCE(dashboard_tasks.finished, excluded.finished),
    updated = MAX(dashboard_tasks.updated, excluded.updated),
    {", ".join(f"{c} = COALESCE(excluded.{c}, dashboard_tasks.{c})" for c in _MERGED)}
"""


def state_of_event(kind: str) -> str | None:
    return EVENT_STATES.get(kind)


def row_from_event(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The columns one ``task-*`` event fills (None for events that aren't about a task)."""
    state = state_of_event(str(body.get("type", "")))
    task_id = body.get("uuid")
    if state is None or not task_id:
        return None
    when = float(body.get("timestamp") or time.time())
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(uuid=str(task_id), state=state, first_seen=when, updated=when)
    for key in ("name", "args", "kwargs", "parent_id", "root_id", "eta", "expires", "exception", "traceback"):
        if body.get(key) is not None:
            row[key] = str(body[key])
    if body.get("retries") is not None:
        row["retries"] = int(body["retries"])
    if state != "PENDING" and body.get("hostname"):
        row["worker"] = str(body["hostname"])  # task-sent comes from the client, not a worker
    if state == "SUCCESS":
        row["result"] = None if body.get("result") is None else str(body["result"])
        row["runtime"] = None if body.get("runtime") is None else float(body["runtime"])
    if state in READY:
        row["finished"] = when
    elif state != "RETRY":
        row[{"PENDING": "sent", "RECEIVED": "received", "STARTED": "started"}.get(state, "updated")] = when
    return row


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Filters for a page of tasks; empty strings mean "any"."""

    state: str = ""
    name: str = ""
    worker: str = ""
    search: str = ""  # a task id, or its first characters
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


class TaskStore:
    """The ``dashboard_tasks`` table; safe to use from several threads (one connection each)."""

    def __init__(self, path: str, *, max_tasks: int = 200_000) -> None:
        self.path = path
        self.max_tasks = max_tasks
        self.db = SQLiteDatabase(path, schema=SCHEMA)

    def open(self) -> None:
        self.db.connection()  # creates the file and schema now, so a bad path fails at start-up

    def close(self) -> None:
        self.db.close()

    def record(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Merge task events into their rows, in one transaction; returns how many rows were touched."""
        rows = [row for row in map(row_from_event, events) if row is not None]
        if rows:
            with self.db.transaction() as conn:
                conn.executemany(_UPSERT, [tuple(row[c] for c in COLUMNS) for row in rows])
        return len(rows)

    def get(self, task_id: str) -> dict[str, Any] | None:
        cursor = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM dashboard_tasks WHERE uuid = ?", (task_id,))
        found = cursor.fetchone()
        return dict(zip(COLUMNS, found, strict=True)) if found else None

    def children(self, task_id: str, limit: int = 200) -> list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT uuid, name, state FROM dashboard_tasks WHERE parent_id = ? ORDER BY first_seen LIMIT ?",
            (task_id, limit),
        )
        return [{"uuid": u, "name": n, "state": s} for u, n, s in cursor.fetchall()]

    def names(self, task_id: Sequence[str]) -> dict[str, str]:
        marks = ", ".join("?" for _ in task_id)
        cursor = self.db.execute(f"SELECT uuid, name FROM dashboard_tasks WHERE uuid IN ({marks})", tuple(task_id))
        return {u: n for u, n in cursor.fetchall() if n}

    def page(self, query: TaskQuery) -> TaskPage:
        where, params = _where(query)
        listed = ("uuid", "name", "state", "args", "kwargs", "worker", "runtime", "first_seen", "started",
                  "finished", "retries")  # fmt: skip
        cursor = self.db.execute(
            f"SELECT {', '.join(listed)} FROM dashboard_tasks {where} ORDER BY first_seen DESC LIMIT ? OFFSET ?",
            (*params, query.limit, query.offset),
        )
        tasks = [dict(zip(listed, found, strict=True)) for found in cursor.fetchall()]
        total = int(self.db.execute(f"SELECT COUNT(*) FROM dashboard_tasks {where}", params).fetchone()[0])
        return TaskPage(tasks, total, query.limit, query.offset)

    def counts_by_worker(self) -> dict[str, dict[str, int]]:
        """``{worker: {state: count}}`` over the kept history."""
        out: dict[str, dict[str, int]] = {}
        cursor = self.db.execute(
            "SELECT worker, state, COUNT(*) FROM dashboard_tasks WHERE worker IS NOT NULL GROUP BY worker, state"
        )
        for worker, state, count in cursor.fetchall():
            out.setdefault(worker, {})[state] = int(count)
        return out

    def finished_since(self, since: float) -> list[tuple[float, str, float | None]]:
        """``(finished, state, runtime)`` of every task that finished after ``since``, oldest first."""
        cursor = self.db.execute(
            "SELECT finished, state, runtime FROM dashboard_tasks WHERE finished >= ? ORDER BY finished", (since,)
        )
        return [(float(f), str(s), None if r is None else float(r)) for f, s, r in cursor.fetchall()]

    def prune(self) -> int:
        """Drop the oldest rows beyond ``max_tasks``; returns how many went."""
        total = int(self.db.execute("SELECT COUNT(*) FROM dashboard_tasks").fetchone()[0])
        excess = total - self.max_tasks
        if excess <= 0:
            return 0
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM dashboard_tasks WHERE uuid IN "
                "(SELECT uuid FROM dashboard_tasks ORDER BY first_seen LIMIT ?)",
                (excess,),
            )
        return excess


def _where(query: TaskQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column in ("state", "name", "worker"):
        value = getattr(query, column)
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.search:
        # A prefix range on the primary key: uses the index, unlike LIKE.
        clauses.append("uuid >= ? AND uuid < ?")
        params += [query.search, query.search + "\U0010ffff"]
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
