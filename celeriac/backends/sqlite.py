"""Embedded SQLite result store: the default when no backend is configured.

URL: ``sqlite:///relative.db`` / ``sqlite:////absolute.db``; with no broker and no
backend configured, the same ``celeriac.db`` the embedded broker uses.

Capabilities: durable, multi-process; ``result_expires`` honoured (expired rows
read as missing and are swept periodically); atomic counters for chords;
``get()`` wakes on the database's change counter instead of sleeping a fixed
interval, so results arrive within milliseconds without busy queries.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._sqlite import SQLiteDatabase, path_from_url
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
CREATE INDEX IF NOT EXISTS celeriac_results_expires ON celeriac_results (expires) WHERE expires IS NOT NULL
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
        return int(self.db.execute("DELETE FROM celeriac_results WHERE expires <= ?", (time.time(),)).rowcount)

    def _sleep_until_change(self, task_id: str, seconds: float) -> None:
        self.db.wait_for_change(seconds)

    def close(self) -> None:
        self.db.close()
