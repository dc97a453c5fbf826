"""Embedded SQLite result store: the default when no backend is configured.

URL: ``sqlite:///relative.db`` / ``sqlite:////absolute.db``; with no broker and no
backend configured, the same ``celeriac.db`` the embedded broker uses.

Capabilities: durable, multi-process; ``result_expires`` honoured (expired rows
read as missing and are swept periodically); chords counted in a table of parts,
one row per header task (a task run twice still counts once), under the write lock,
so the body is sent exactly once and even header tasks with ``ignore_result`` count;
``get()`` wakes on the database's change counter instead of sleeping a fixed
interval, so results arrive within milliseconds without busy queries.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._sqlite import SQLiteDatabase, path_from_url
from ..serialization import dumps
from .base import KeyValueBackend

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["SQLiteBackend"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS celeriac_results (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires REAL
);
CREATE INDEX IF NOT EXISTS celeriac_results_expires ON celeriac_results (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS celeriac_chord_parts (
    group_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    position REAL NOT NULL,
    part BLOB NOT NULL,
    expires REAL,
    PRIMARY KEY (group_id, task_id)
);
CREATE TABLE IF NOT EXISTS celeriac_chords_done (
    group_id TEXT PRIMARY KEY,
    expires REAL
)
"""

_SWEEP_EVERY = 60.0


class SQLiteBackend(KeyValueBackend):
    def __init__(self, url: str = "", options: Mapping[str, Any] | None = None, *, app: Celery | None = None) -> None:
        super().__init__(url, options, app=app)
        self.path = path_from_url(url or "sqlite://")
        self.url = f"sqlite:///{self.path}"
        self.db = SQLiteDatabase(self.path, schema=SCHEMA, synchronous=str(self.options.get("synchronous", "NORMAL")))
        self._next_sweep = time.time() + _SWEEP_EVERY

    def _get(self, key: str) -> bytes | None:
        row = self.db.execute(
            "SELECT value FROM celeriac_results WHERE key = ? AND (expires IS NULL OR expires > ?)",
            (key, time.time()),
        ).fetchone()
        return bytes(row[0]) if row else None

    def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        found: dict[str, bytes] = {}
        now = time.time()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT key, value FROM celeriac_results WHERE key IN ({marks}) AND (expires IS NULL OR expires > ?)",
                (*chunk, now),
            ).fetchall()
            found.update((k, bytes(v)) for k, v in rows)
        return [found.get(key) for key in keys]

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        now = time.time()
        self.db.execute(
            "INSERT INTO celeriac_results (key, value, expires) VALUES (?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
            (key, value, now + ttl if ttl else None),
        )
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY
            self.cleanup()

    def _set_unless_success(self, key: str, value: bytes, ttl: float | None) -> bool:
        if self.serializer != "json":
            return super()._set_unless_success(key, value, ttl)
        # One statement: the check and the write can't interleave with another writer's.
        cursor = self.db.execute(
            "INSERT INTO celeriac_results (key, value, expires) VALUES (?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires = excluded.expires"
            " WHERE json_extract(CAST(celeriac_results.value AS TEXT), '$.status') IS NOT 'SUCCESS'"
            " OR (celeriac_results.expires IS NOT NULL AND celeriac_results.expires <= ?)",
            (key, value, time.time() + ttl if ttl else None, time.time()),
        )
        return cursor.rowcount > 0

    def _delete(self, key: str) -> None:
        self.db.execute("DELETE FROM celeriac_results WHERE key = ?", (key,))

    def _incr(self, key: str, ttl: float | None) -> int:
        row = self.db.execute(
            "INSERT INTO celeriac_results (key, value, expires) VALUES (?, '1', ?)"
            " ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
            " RETURNING value",
            (key, time.time() + ttl if ttl else None),
        ).fetchone()
        return int(row[0])

    def cleanup(self) -> int:
        """Delete expired results; returns how many."""
        now = time.time()
        self.db.execute("DELETE FROM celeriac_chord_parts WHERE expires <= ?", (now,))
        self.db.execute("DELETE FROM celeriac_chords_done WHERE expires <= ?", (now,))
        return int(self.db.execute("DELETE FROM celeriac_results WHERE expires <= ?", (now,)).rowcount)

    # -- chords -------------------------------------------------------------------------
    def apply_chord(self, header_result: Any, body: Any) -> None:
        pass  # the parts carry their values and the size: nothing to prepare

    def on_chord_part_return(self, request: Any, state: str, result: Any) -> None:
        from ._chords import finish

        task_id, group_id = getattr(request, "id", None), getattr(request, "group", None)
        callback = getattr(request, "chord", None)
        if not task_id or not group_id or not callback:
            return
        size = callback.get("chord_size")
        if size is None:
            super().on_chord_part_return(request, state, result)  # sent without a size: count as Celery does
            return
        index = getattr(request, "group_index", None)
        part = dumps([task_id, state, self._part_value(result, state)], self.serializer)[2]
        expires = time.time() + self.expires if self.expires else None
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO celeriac_chord_parts (group_id, task_id, position, part, expires)"
                " VALUES (?, ?, ?, ?, ?)",
                (group_id, task_id, float("inf") if index is None else float(index), part, expires),
            )
            count = conn.execute("SELECT count(*) FROM celeriac_chord_parts WHERE group_id = ?", (group_id,))
            if int(count.fetchone()[0]) < int(size):
                return
            claimed = conn.execute(
                "INSERT OR IGNORE INTO celeriac_chords_done (group_id, expires) VALUES (?, ?)", (group_id, expires)
            ).rowcount
            if not claimed:
                return  # already sent (a header task ran again after the chord completed)
            rows = conn.execute(
                "SELECT part FROM celeriac_chord_parts WHERE group_id = ? ORDER BY position, rowid", (group_id,)
            ).fetchall()
            conn.execute("DELETE FROM celeriac_chord_parts WHERE group_id = ?", (group_id,))
        values, error = self._unpack_parts(self._decode_parts([bytes(row[0]) for row in rows]))
        finish(self, callback, group_id, values, error)

    def _change_mark(self) -> int:
        return self.db.data_version()

    def _sleep_until_change(self, task_id: str, seconds: float, mark: Any = None) -> None:
        self.db.wait_for_change(seconds, since=mark)

    def close(self) -> None:
        self.db.close()
