"""Where beat keeps its schedule state and its leader lease.

Every store keeps, per schedule *scope* (one app's beat): the state of each entry
(``last_run_at`` and ``total_run_count``, as JSON text) and one lease (owner and
expiry). Several beat processes may share a store; the lease lets one of them send.

Two guarantees make a run go out at most once, even when an old leader wakes up
from a pause and still believes it leads:

* :meth:`ScheduleStore.claim` records the new ``last_run_at`` only if the caller
  still holds the lease *and* the entry's stored state is still the one the caller
  decided from (compare-and-set, in one transaction or one Lua script);
* beat sends a run only after its claim succeeded.

A beat killed between claim and send loses that one run (at most once, never twice).

Stores:

* ``SQLiteScheduleStore``: two tables in a SQLite file (the embedded broker's own
  file by default), changed in ``BEGIN IMMEDIATE`` transactions; the lease expiry is
  the host's wall clock, so all beats must share the host (they share the file anyway).
* ``RedisScheduleStore``: a lease key taken with ``SET NX PX`` and renewed or released
  by Lua that compares the owner token first; entry state in a hash. Expiry is
  Redis's clock, so beats on different hosts agree.
* ``MemoryScheduleStore``: one process only (Celery's plain ``Scheduler``).
"""

from __future__ import annotations

import abc
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "EntryState",
    "MemoryScheduleStore",
    "RedisScheduleStore",
    "SQLiteScheduleStore",
    "ScheduleStore",
    "decode_state",
    "encode_state",
]


@dataclass(frozen=True, slots=True)
class EntryState:
    last_run_at: datetime
    total_run_count: int
    version: str  # the stored text: a claim names it, and fails if it has changed since


def encode_state(last_run_at: datetime, total_run_count: int) -> str:
    when = last_run_at.astimezone(timezone.utc).isoformat()
    return json.dumps({"last_run_at": when, "total_run_count": total_run_count}, sort_keys=True)


def decode_state(text: str | bytes) -> EntryState:
    raw = text.decode() if isinstance(text, bytes) else text
    data = json.loads(raw)
    return EntryState(datetime.fromisoformat(data["last_run_at"]), int(data["total_run_count"]), raw)


class ScheduleStore(abc.ABC):
    """Entry state and a leader lease for one schedule scope.

    ``acquire`` takes the lease if it is free or expired, and renews it if ``owner``
    holds it; it returns whether ``owner`` holds it now. ``claim`` is the only way to
    advance an entry and is atomic with the lease check (see the module docstring).
    """

    description: str = ""

    @abc.abstractmethod
    def acquire(self, owner: str, ttl: float) -> bool: ...

    @abc.abstractmethod
    def release(self, owner: str) -> None:
        """Give the lease up now (if ``owner`` holds it), so another beat takes over at once."""

    @abc.abstractmethod
    def load(self) -> dict[str, EntryState]: ...

    @abc.abstractmethod
    def add(self, name: str, state: str) -> None:
        """Store ``state`` for ``name`` unless the entry already has one (idempotent)."""

    @abc.abstractmethod
    def claim(self, owner: str, name: str, expected: str, state: str) -> bool:
        """Replace ``expected`` with ``state`` if ``owner`` holds the lease and ``expected`` is current."""

    def close(self) -> None:
        return None


class MemoryScheduleStore(ScheduleStore):
    description = "memory (this process only)"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # the lease's clock (tests pass a fake one)
        self._lock = threading.Lock()
        self._owner: str | None = None
        self._expires = 0.0
        self._entries: dict[str, str] = {}

    def acquire(self, owner: str, ttl: float) -> bool:
        with self._lock:
            now = self.clock()
            if self._owner not in (None, owner) and self._expires > now:
                return False
            self._owner, self._expires = owner, now + ttl
            return True

    def release(self, owner: str) -> None:
        with self._lock:
            if self._owner == owner:
                self._owner = None

    def load(self) -> dict[str, EntryState]:
        with self._lock:
            return {name: decode_state(text) for name, text in self._entries.items()}

    def add(self, name: str, state: str) -> None:
        with self._lock:
            self._entries.setdefault(name, state)

    def claim(self, owner: str, name: str, expected: str, state: str) -> bool:
        with self._lock:
            if self._owner != owner or self._expires <= self.clock():
                return False
            if self._entries.get(name) != expected:
                return False
            self._entries[name] = state
            return True


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS celeriac_beat_lease (
    scope TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS celeriac_beat_entries (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (scope, name)
)
"""


class SQLiteScheduleStore(ScheduleStore):
    def __init__(self, path: str, scope: str, clock: Callable[[], float] = time.time) -> None:
        from ._sqlite import SQLiteDatabase

        self.clock = clock  # the lease's clock: wall time, shared by the processes on this host
        self.db = SQLiteDatabase(path, schema=_SQLITE_SCHEMA)
        self.scope = scope
        self.description = f"sqlite:///{path}"

    def acquire(self, owner: str, ttl: float) -> bool:
        with self.db.transaction() as conn:
            now = self.clock()
            row = conn.execute(
                "SELECT owner, expires FROM celeriac_beat_lease WHERE scope = ?", (self.scope,)
            ).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            conn.execute(
                "INSERT INTO celeriac_beat_lease (scope, owner, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (scope) DO UPDATE SET owner = excluded.owner, expires = excluded.expires",
                (self.scope, owner, now + ttl),
            )
            return True

    def release(self, owner: str) -> None:
        self.db.execute("DELETE FROM celeriac_beat_lease WHERE scope = ? AND owner = ?", (self.scope, owner))

    def load(self) -> dict[str, EntryState]:
        rows = self.db.execute("SELECT name, state FROM celeriac_beat_entries WHERE scope = ?", (self.scope,))
        return {name: decode_state(state) for name, state in rows.fetchall()}

    def add(self, name: str, state: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO celeriac_beat_entries (scope, name, state) VALUES (?, ?, ?)",
            (self.scope, name, state),
        )

    def claim(self, owner: str, name: str, expected: str, state: str) -> bool:
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT owner, expires FROM celeriac_beat_lease WHERE scope = ?", (self.scope,)
            ).fetchone()
            if row is None or row[0] != owner or row[1] <= self.clock():
                return False
            cursor = conn.execute(
                "UPDATE celeriac_beat_entries SET state = ? WHERE scope = ? AND name = ? AND state = ?",
                (state, self.scope, name, expected),
            )
            return cursor.rowcount == 1

    def close(self) -> None:
        self.db.close()


# KEYS[1] lease; ARGV[1] owner token, ARGV[2] ttl (ms). Renew only our own lease.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1] lease; ARGV[1] owner token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
# KEYS[1] lease, KEYS[2] entries hash; ARGV: owner, entry name, expected state, new state.
_CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return -1
end
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then
    return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
return 1
"""


class RedisScheduleStore(ScheduleStore):
    def __init__(self, url: str, scope: str, options: Mapping[str, Any] | None = None, use_ssl: Any = None) -> None:
        from ._redis import client_from_url
        from .config import mask_url

        options = dict(options or {})
        prefix = str(options.get("global_keyprefix") or "")
        self.client = client_from_url(url, options, use_ssl=use_ssl)
        self.lease_key = f"{prefix}celeriac-beat:{scope}:lease"
        self.entries_key = f"{prefix}celeriac-beat:{scope}:entries"
        self.url = url
        self.description = mask_url(url)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._claim = self.client.register_script(_CLAIM)

    def _call(self, action: str, fun: Any, *args: Any, **kwargs: Any) -> Any:
        import redis.exceptions

        from ._redis import redis_error

        try:
            return fun(*args, **kwargs)
        except redis.exceptions.RedisError as exc:
            raise redis_error(exc, self.url, action) from exc

    def acquire(self, owner: str, ttl: float) -> bool:
        ms = max(int(ttl * 1000), 1)
        if self._call("taking the beat lease", self.client.set, self.lease_key, owner, nx=True, px=ms):
            return True
        return bool(self._call("renewing the beat lease", self._renew, keys=[self.lease_key], args=[owner, ms]))

    def release(self, owner: str) -> None:
        self._call("releasing the beat lease", self._release, keys=[self.lease_key], args=[owner])

    def load(self) -> dict[str, EntryState]:
        raw = self._call("reading the beat schedule", self.client.hgetall, self.entries_key)
        return {name.decode(): decode_state(text) for name, text in raw.items()}

    def add(self, name: str, state: str) -> None:
        self._call("adding a beat entry", self.client.hsetnx, self.entries_key, name, state)

    def claim(self, owner: str, name: str, expected: str, state: str) -> bool:
        keys = [self.lease_key, self.entries_key]
        result = self._call("claiming a beat run", self._claim, keys=keys, args=[owner, name, expected, state])
        return int(result) == 1
