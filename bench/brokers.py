"""The brokers a benchmark runs on: their URLs, which systems support them, and how to empty them.

Results always go to the same Redis database (the ``--redis-url``), whatever the broker, so that a
figure on RabbitMQ or SQLite differs from the Redis one by the broker alone.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import redis

BROKERS = ("redis", "amqp", "sqlite")
# Celery has no embedded SQLite broker (kombu's SQLAlchemy transport is a different, polling design).
SUPPORTED = {"redis": ("celeriac", "celery"), "amqp": ("celeriac", "celery"), "sqlite": ("celeriac",)}
QUEUES = ("celery",)  # the default queue of both systems


@dataclass(frozen=True)
class Broker:
    name: str  # redis | amqp | sqlite
    url: str  # the broker URL both systems are configured with
    result_url: str  # the Redis result backend

    def supports(self, system: str) -> bool:
        return system in SUPPORTED[self.name]

    def flush(self) -> None:
        """Empty the result database, and the broker's queues when they live elsewhere."""
        flush_redis(self.result_url)
        if self.name == "amqp":
            purge_amqp(self.url, QUEUES)
        elif self.name == "sqlite":
            purge_sqlite(Path(self.url.removeprefix("sqlite:///")))


def make(name: str, redis_url: str, amqp_url: str | None, workdir: Path) -> Broker:
    if name == "redis":
        return Broker(name, redis_url, redis_url)
    if name == "amqp":
        if amqp_url is None:
            raise ValueError("the amqp broker needs --amqp-url")
        return Broker(name, amqp_url, redis_url)
    return Broker(name, f"sqlite:///{workdir / 'bench-broker.db'}", redis_url)


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def purge_sqlite(path: Path) -> None:
    """Empty the message tables in place: the client keeps its connection to the file open."""
    if not path.exists():
        return
    conn = sqlite3.connect(path, timeout=30)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        with conn:
            for table in ("celeriac_messages", "celeriac_dead_letters", "celeriac_broadcast"):
                if table in tables:
                    conn.execute(f"DELETE FROM {table}")
    finally:
        conn.close()


def amqp_connection(url: str) -> object:
    """A py-amqp (kombu's client) connection to ``amqp://user:password@host:port/vhost``."""
    from urllib.parse import unquote, urlsplit

    import amqp  # type: ignore[import-untyped]

    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    conn = amqp.Connection(
        host=f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}",
        userid=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        virtual_host=vhost or "/",
    )
    conn.connect()
    return conn


def purge_amqp(url: str, queues: tuple[str, ...]) -> None:
    conn = amqp_connection(url)
    try:
        for queue in queues:
            channel = conn.channel()  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):  # a queue not declared yet: nothing to purge
                channel.queue_purge(queue)
            with contextlib.suppress(Exception):
                channel.close()
    finally:
        conn.close()  # type: ignore[attr-defined]
