"""Embedded SQLite broker: the zero-setup default.

URL: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, or no
broker at all (``celeriac.db`` in the current directory).

Capabilities: durable queues in one file, safe with many worker and client
processes on one machine; priorities (0-9, **9 is highest**, as on RabbitMQ);
ETA/countdown kept in the database (``native_delay``: a scheduled message costs
a worker nothing until it is due); leases with redelivery when a consumer dies;
dead-lettered messages kept in ``celeriac_dead_letters``; fanout (remote control, events)
through ``celeriac_broadcast``, where each subscriber reads what arrives after it subscribed
(rows are kept a minute); publishing to a named exchange goes to the queues declared with
that exchange and routing key.

Transport options (``broker_transport_options``):
    visibility_timeout  seconds a consumer's lease lasts without renewal (default 30;
                        a live worker renews its leases every third of that, so a long
                        task is never handed out twice)
    polling_interval    upper bound, in seconds, of the idle wait between checks (default 0.01)
    synchronous         SQLite's synchronous mode: NORMAL (default; survives process crashes)
                        or FULL (also survives power loss)

How a message moves::

    publish  -> ready=1 (or ready=0, not_before=eta when scheduled)
    get      -> ready=0, owner=<consumer>, not_before=now+visibility_timeout
    ack      -> row deleted
    reject   -> ready=1 again (requeue) or moved to celeriac_dead_letters
    lease or ETA due (not_before <= now) -> ready=1, owner=NULL (redelivered if it had an owner)
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from .._sqlite import SQLiteDatabase, path_from_url
from ..exceptions import ImproperlyConfigured
from ..serialization import json_dumps, json_loads_plain
from .base import Broker, Delivery, Envelope, QueueSpec, Subscription

__all__ = ["SQLiteBroker"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS celeriac_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    ready INTEGER NOT NULL,
    not_before REAL NOT NULL,
    owner TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0,
    exchange TEXT NOT NULL DEFAULT '',
    routing_key TEXT NOT NULL DEFAULT '',
    headers TEXT NOT NULL,
    properties TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_encoding TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS celeriac_messages_ready
    ON celeriac_messages (queue, priority DESC, id) WHERE ready = 1;
CREATE INDEX IF NOT EXISTS celeriac_messages_waiting
    ON celeriac_messages (not_before) WHERE ready = 0;
CREATE TABLE IF NOT EXISTS celeriac_dead_letters (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    reason TEXT NOT NULL,
    rejected REAL NOT NULL,
    headers TEXT NOT NULL,
    properties TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_encoding TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS celeriac_rate_limits (
    key TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    stamp REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS celeriac_broadcast (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    headers TEXT NOT NULL,
    properties TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_encoding TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS celeriac_revoked (
    task_id TEXT PRIMARY KEY,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS celeriac_queues (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL
)
"""

_COLUMNS = "id, queue, deliveries, exchange, routing_key, headers, properties, content_type, content_encoding, body"


class SQLiteBroker(Broker):
    scheme: ClassVar[str] = "sqlite"
    supports_fanout: ClassVar[bool] = True
    supports_priority: ClassVar[bool] = True
    supports_global_rate_limits: ClassVar[bool] = True
    native_delay: ClassVar[bool] = True

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        opts = dict(options or {})
        self.path = path_from_url(url)
        self.visibility_timeout = float(opts.get("visibility_timeout", 30.0))
        self.polling_interval = float(opts.get("polling_interval", 0.01))
        if not self.polling_interval > 0:  # 0 would make every idle worker a busy loop
            raise ImproperlyConfigured(
                f"broker_transport_options['polling_interval'] must be a positive number of seconds, "
                f"got {opts.get('polling_interval')!r}"
            )
        self.consumer_id = uuid.uuid4().hex
        self.db = SQLiteDatabase(self.path, schema=SCHEMA, synchronous=str(opts.get("synchronous", "NORMAL")))
        self._rotation = 0
        self._next_promote = 0.0

    def open(self) -> None:
        self.db.connection()

    def close(self) -> None:
        self.db.close()

    def declare_queue(self, spec: QueueSpec) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO celeriac_queues (name, spec) VALUES (?, ?)",
            (spec.name, json.dumps({"exchange": spec.exchange, "routing_key": spec.routing_key})),
        )

    def _lookup(self, exchange: str, routing_key: str) -> list[str]:
        rows = self.db.execute(
            "SELECT name FROM celeriac_queues WHERE json_extract(spec, '$.exchange') = ?"
            " AND json_extract(spec, '$.routing_key') = ?",
            (exchange, routing_key),
        ).fetchall()
        return [row[0] for row in rows] or [routing_key]

    def publish(
        self,
        envelope: Envelope,
        *,
        exchange: str,
        routing_key: str,
        not_before: datetime | None = None,
    ) -> None:
        now = time.time()
        due = not_before.timestamp() if not_before is not None else now
        priority = envelope.priority or 0
        # The default exchange ("") routes by queue name; a named one through the declared bindings.
        for queue in [routing_key] if not exchange else self._lookup(exchange, routing_key):
            self._insert(envelope, queue, priority, due, now, exchange, routing_key)

    def _insert(
        self, envelope: Envelope, queue: str, priority: int, due: float, now: float, exchange: str, routing_key: str
    ) -> None:
        self.db.execute(
            "INSERT INTO celeriac_messages (queue, priority, ready, not_before, exchange, routing_key,"
            " headers, properties, content_type, content_encoding, body, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                queue,
                max(0, min(9, int(priority))),
                1 if due <= now else 0,
                due,
                exchange,
                routing_key,
                json_dumps(dict(envelope.headers)),
                json_dumps(dict(envelope.properties)),
                envelope.content_type,
                envelope.content_encoding,
                envelope.body,
                now,
            ),
        )
        # A due message makes the waiters' data_version change; a scheduled one only
        # needs the next promote pass, which every waiter times by next_due().

    def get(self, queues: Sequence[str], *, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while True:
            version = self.db.data_version()  # before looking: a message sent after it wakes the wait
            self._promote_due()
            deliveries = self._claim(queues, max_messages)
            if deliveries:
                return deliveries
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wait = min(remaining, max(0.0, self._next_due() - time.time()))
            self.db.wait_for_change(wait, since=version, longest=self.polling_interval) if wait > 0 else None

    def _claim(self, queues: Sequence[str], max_messages: int) -> list[Delivery]:
        if not queues or max_messages <= 0:
            return []
        # Rotate the starting queue so a busy queue can't starve the others.
        order = list(queues[self._rotation % len(queues) :]) + list(queues[: self._rotation % len(queues)])
        self._rotation += 1
        lease_until = time.time() + self.visibility_timeout
        claimed: list[Delivery] = []
        for queue in order:
            want = max_messages - len(claimed)
            if want <= 0:
                break
            # A read first: an UPDATE takes the write lock even when nothing matches, and
            # idle consumers would then contend with publishers for nothing.
            if not self.db.execute(
                "SELECT 1 FROM celeriac_messages WHERE ready = 1 AND queue = ? LIMIT 1", (queue,)
            ).fetchone():
                continue
            rows = self.db.execute(
                "UPDATE celeriac_messages SET ready = 0, owner = ?, not_before = ?, deliveries = deliveries + 1"
                " WHERE id IN (SELECT id FROM celeriac_messages WHERE ready = 1 AND queue = ?"
                " ORDER BY priority DESC, id LIMIT ?)"
                f" RETURNING {_COLUMNS}, priority",
                (self.consumer_id, lease_until, queue, want),
            ).fetchall()
            rows.sort(key=lambda row: (-row[-1], row[0]))
            claimed.extend(self._delivery(row) for row in rows)
        return claimed

    def _delivery(self, row: Sequence[Any]) -> Delivery:
        msg_id, queue, deliveries, exchange, routing_key, headers, properties, ctype, cenc, body = row[:10]
        redelivered = deliveries > 1
        headers = json_loads_plain(headers)
        properties = json_loads_plain(properties)
        if redelivered:
            headers["redelivered"] = True
        properties["delivery_info"] = {"exchange": exchange, "routing_key": routing_key, "redelivered": redelivered}
        return Delivery(
            envelope=Envelope(bytes(body), headers, properties, ctype, cenc),
            queue=queue,
            tag=str(msg_id),
            redelivered=redelivered,
            exchange=exchange,
            routing_key=routing_key,
        )

    def _promote_due(self) -> None:
        now = time.time()
        if now < self._next_promote:
            return
        self._next_promote = now + 0.05
        due = self.db.execute(
            "SELECT 1 FROM celeriac_messages WHERE ready = 0 AND not_before <= ? LIMIT 1", (now,)
        ).fetchone()
        if due:
            self.db.execute(
                "UPDATE celeriac_messages SET ready = 1, owner = NULL WHERE ready = 0 AND not_before <= ?", (now,)
            )

    def _next_due(self) -> float:
        row = self.db.execute("SELECT MIN(not_before) FROM celeriac_messages WHERE ready = 0").fetchone()
        return float(row[0]) if row and row[0] is not None else float("inf")

    def ack(self, delivery: Delivery) -> None:
        self.db.execute(
            "DELETE FROM celeriac_messages WHERE id = ? AND owner = ?", (int(delivery.tag), self.consumer_id)
        )

    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        msg_id = int(delivery.tag)
        if requeue:
            self.db.execute(
                "UPDATE celeriac_messages SET ready = 1, owner = NULL WHERE id = ? AND owner = ?",
                (msg_id, self.consumer_id),
            )
            return
        with self.db.transaction() as conn:
            moved = conn.execute(
                "INSERT INTO celeriac_dead_letters (id, queue, reason, rejected, headers, properties, content_type,"
                " content_encoding, body) SELECT id, queue, ?, ?, headers, properties, content_type,"
                " content_encoding, body FROM celeriac_messages WHERE id = ? AND owner = ?",
                (reason or "rejected", time.time(), msg_id, self.consumer_id),
            ).rowcount
            if moved:
                conn.execute("DELETE FROM celeriac_messages WHERE id = ?", (msg_id,))

    def extend_leases(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        lease_until = time.time() + self.visibility_timeout
        ids = [int(d.tag) for d in deliveries]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            self.db.execute(
                f"UPDATE celeriac_messages SET not_before = ? WHERE owner = ? AND id IN ({marks})",
                (lease_until, self.consumer_id, *chunk),
            )

    def take_rate_token(self, key: str, rate: float, capacity: float = 1.0) -> float:
        with self.db.transaction() as conn:
            now = time.time()
            row = conn.execute("SELECT tokens, stamp FROM celeriac_rate_limits WHERE key = ?", (key,)).fetchone()
            tokens = capacity if row is None else min(capacity, row[0] + max(0.0, now - row[1]) * rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / rate
            conn.execute(
                "INSERT INTO celeriac_rate_limits (key, tokens, stamp) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET tokens = excluded.tokens, stamp = excluded.stamp",
                (key, tokens, now),
            )
        return wait

    @property
    def lease_renew_interval(self) -> float:
        return max(0.1, self.visibility_timeout / 3)

    def defer(self, delivery: Delivery, not_before: datetime) -> bool:
        cursor = self.db.execute(
            "UPDATE celeriac_messages SET ready = 0, owner = NULL, not_before = ?, deliveries = deliveries - 1"
            " WHERE id = ? AND owner = ?",
            (not_before.timestamp(), int(delivery.tag), self.consumer_id),
        )
        return cursor.rowcount == 1

    # -- durable revokes ---------------------------------------------------------------
    def store_revoked(self, task_ids: Sequence[str], ttl: float) -> None:
        expires = time.time() + ttl
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO celeriac_revoked (task_id, expires) VALUES (?, ?)"
                " ON CONFLICT(task_id) DO UPDATE SET expires = excluded.expires",
                [(tid, expires) for tid in task_ids],
            )

    def load_revoked(self) -> set[str]:
        now = time.time()
        self.db.execute("DELETE FROM celeriac_revoked WHERE expires <= ?", (now,))
        return {row[0] for row in self.db.execute("SELECT task_id FROM celeriac_revoked").fetchall()}

    # -- fanout ---------------------------------------------------------------------
    def broadcast(self, exchange: str, envelope: Envelope, *, routing_key: str = "") -> None:
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO celeriac_broadcast (exchange, routing_key, headers, properties, content_type,"
                " content_encoding, body, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (exchange, routing_key, json_dumps(dict(envelope.headers)), json_dumps(dict(envelope.properties)),
                 envelope.content_type, envelope.content_encoding, envelope.body, now),
            )  # fmt: skip
            # A broadcast is for subscribers of the moment: old ones only take space.
            conn.execute("DELETE FROM celeriac_broadcast WHERE created < ?", (now - BROADCAST_KEEP,))

    def subscribe(self, exchange: str, *, routing_key: str = "") -> Subscription:
        return _SQLiteSubscription(self, exchange, routing_key)

    def purge(self, queue: str) -> int:
        # Messages held by a live consumer are not "waiting" and are left alone, as on RabbitMQ.
        cursor = self.db.execute(
            "DELETE FROM celeriac_messages WHERE queue = ? AND owner IS NULL",
            (queue,),
        )
        return int(cursor.rowcount)

    def queue_size(self, queue: str) -> int:
        # Waiting messages only (ready or scheduled), as purge() and the other brokers count:
        # one held by a consumer is in flight, not in the queue.
        row = self.db.execute(
            "SELECT COUNT(*) FROM celeriac_messages WHERE queue = ? AND owner IS NULL", (queue,)
        ).fetchone()
        return int(row[0])

    def dead_letters(self, queue: str | None = None) -> list[dict[str, Any]]:
        """Messages rejected without requeue, oldest first (for inspection and replay)."""
        sql = "SELECT id, queue, reason, rejected, headers, content_type FROM celeriac_dead_letters"
        params: tuple[Any, ...] = ()
        if queue is not None:
            sql += " WHERE queue = ?"
            params = (queue,)
        rows = self.db.execute(sql + " ORDER BY id", params).fetchall()
        return [
            {
                "id": r[0],
                "queue": r[1],
                "reason": r[2],
                "rejected": r[3],
                "headers": json.loads(r[4]),
                "content_type": r[5],
            }
            for r in rows
        ]

    def info(self) -> dict[str, Any]:
        return {"transport": "sqlite", "url": f"sqlite:///{self.path}", "path": self.path}


BROADCAST_KEEP = 60.0  # seconds a broadcast row is kept for subscribers to read


class _SQLiteSubscription(Subscription):
    def __init__(self, broker: SQLiteBroker, exchange: str, routing_key: str) -> None:
        self.broker = broker
        self.exchange = exchange
        # "" and "#" take everything sent to the exchange (fanout); anything else, that routing key.
        self.routing_key = routing_key
        row = broker.db.execute("SELECT MAX(id) FROM celeriac_broadcast").fetchone()
        self.last_id = int(row[0] or 0)

    def get(self, timeout: float) -> Envelope | None:
        deadline = time.monotonic() + timeout
        while True:
            version = self.broker.db.data_version()
            sql = (
                "SELECT id, routing_key, headers, properties, content_type, content_encoding, body"
                " FROM celeriac_broadcast WHERE id > ? AND exchange = ? ORDER BY id LIMIT 50"
            )
            for row in self.broker.db.execute(sql, (self.last_id, self.exchange)).fetchall():
                self.last_id = row[0]
                if self.routing_key not in ("", "#") and row[1] != self.routing_key:
                    continue
                return Envelope(bytes(row[6]), json.loads(row[2]), json.loads(row[3]), row[4], row[5])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.broker.db.wait_for_change(remaining, since=version, longest=self.broker.polling_interval)

    def close(self) -> None:
        pass
