"""``app.control``: remote control and inspection of workers, as Celery's (and with Celery's workers).

``app.control.rate_limit('tasks.add', '10/m', reply=True)`` broadcasts the command on
the ``celery.pidbox`` fanout exchange and collects the replies that arrive within
``timeout`` seconds (or until ``limit`` replies); ``app.control.inspect().active()``
does the same for read-only commands. Works on brokers with fanout (Redis, RabbitMQ,
the embedded SQLite broker); SQS has none, and says so.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import _pidbox
from .exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from .app import Celery
    from .brokers.base import Broker

__all__ = ["Control", "Inspect"]

Reply = dict[str, Any]


class Control:
    """Send commands to workers (``app.control``)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.clock = _pidbox.LamportClock()
        self._broker: Broker | None = None
        self._broker_pid = 0

    # -- plumbing -------------------------------------------------------------------
    @property
    def oid(self) -> str:
        return self.app.oid

    def _connection(self) -> Broker:
        if self._broker is None or self._broker_pid != os.getpid():
            broker = self.app.create_broker()
            if not broker.supports_fanout:
                raise ImproperlyConfigured(
                    f"remote control needs a broker with fanout (Redis, RabbitMQ or the embedded SQLite broker); "
                    f"{type(broker).__name__} has none, so workers can't be reached by broadcast"
                )
            broker.open()
            self._broker, self._broker_pid = broker, os.getpid()
        return self._broker

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        connection: Any = None,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        callback: Callable[[Reply], Any] | None = None,
        channel: Any = None,
        pattern: str | None = None,
        matcher: str | None = None,
        **extra_kwargs: Any,
    ) -> list[Reply] | None:
        """Send ``command`` to all workers (or ``destination``); with ``reply`` return their replies.

        Returns:
            ``[{node: reply}, ...]`` for the replies received within ``timeout`` (None without ``reply``).
        """
        broker = self._connection()
        names = _pidbox.names_for(self.app)
        if isinstance(destination, str):
            destination = [destination]
        if destination is not None and limit is None:
            limit = len(destination)
        body: dict[str, Any] = {
            "method": command,
            "arguments": dict(arguments or {}, **extra_kwargs),
            "destination": list(destination) if destination is not None else None,
            "pattern": pattern,
            "matcher": matcher,
        }
        ticket = None
        if reply:
            ticket = str(uuid.uuid4())
            # Declared for every request, as kombu's Mailbox does: a Redis restarted without persistence
            # (or flushed) since the last one has forgotten the reply queue's binding, and the workers'
            # replies would go nowhere. (The AMQP broker declares again when it reconnects.)
            broker.declare_queue(_pidbox.reply_queue_spec(self.app, self.oid))
            body["ticket"] = ticket
            body["reply_to"] = {"exchange": names.reply_exchange, "routing_key": self.oid}
        headers = {"clock": self.clock.forward(), "expires": time.time() + timeout if timeout else 0}
        broker.broadcast(names.exchange, _pidbox.encode(self.app, body, headers))
        if ticket is None:
            return None
        return self._collect(broker, names.reply_queue(self.oid), ticket, timeout, limit, callback)

    def _collect(
        self,
        broker: Broker,
        queue: str,
        ticket: str,
        timeout: float,
        limit: int | None,
        callback: Callable[[Reply], Any] | None,
    ) -> list[Reply]:
        replies: list[Reply] = []
        deadline = time.monotonic() + timeout
        while limit is None or len(replies) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for delivery in broker.get([queue], max_messages=16, timeout=remaining):
                broker.ack(delivery)
                headers = delivery.envelope.headers or {}
                self.clock.adjust(headers.get("clock") or 0)
                if headers.get("ticket", ticket) != ticket:
                    continue  # a late reply to an earlier request
                try:
                    body = _pidbox.decode(self.app, delivery.envelope)
                except Exception:
                    continue
                if callback is not None:
                    callback(body)
                replies.append(body)
        return replies

    def close(self) -> None:
        if self._broker is not None and self._broker_pid == os.getpid():
            self._broker.close()
        self._broker = None

    # -- Celery's control commands ----------------------------------------------------------
    def inspect(
        self,
        destination: Sequence[str] | None = None,
        timeout: float = 1.0,
        callback: Callable[[Reply], Any] | None = None,
        connection: Any = None,
        app: Any = None,
        limit: int | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> Inspect:
        return Inspect(self, destination=destination, timeout=timeout, callback=callback, limit=limit,
                       pattern=pattern, matcher=matcher)  # fmt: skip

    def ping(self, destination: Sequence[str] | None = None, timeout: float = 1.0, **kwargs: Any) -> list[Reply]:
        return self.broadcast("ping", reply=True, destination=destination, timeout=timeout, **kwargs) or []

    def rate_limit(
        self, task_name: str, rate_limit: str | int | None, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[Reply] | None:
        """Set the rate limit of ``task_name`` (e.g. ``'10/m'``) in the workers."""
        return self.broadcast("rate_limit", {"task_name": task_name, "rate_limit": rate_limit},
                              destination=destination, **kwargs)  # fmt: skip

    def time_limit(
        self,
        task_name: str,
        soft: float | None = None,
        hard: float | None = None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[Reply] | None:
        return self.broadcast("time_limit", {"task_name": task_name, "soft": soft, "hard": hard},
                              destination=destination, **kwargs)  # fmt: skip

    def revoke(
        self,
        task_id: str | Iterable[str],
        destination: Sequence[str] | None = None,
        terminate: bool = False,
        signal: str | None = None,
        **kwargs: Any,
    ) -> list[Reply] | None:
        """Revoke tasks: workers won't run them (``terminate`` also stops one that is running)."""
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        self._store_revoked(ids)
        return self.broadcast("revoke", {"task_id": ids, "terminate": terminate, "signal": signal},
                              destination=destination, **kwargs)  # fmt: skip

    def _store_revoked(self, ids: list[str]) -> None:
        # Durable in the broker too, so a worker that is down right now still honours it later
        # (for as long as results are kept: a revoke older than that has nothing left to stop).
        expires = self.app.conf.result_expires
        ttl = expires.total_seconds() if hasattr(expires, "total_seconds") else float(expires or 86400)
        self._connection().store_revoked(ids, ttl)

    def terminate(
        self,
        task_id: str | Iterable[str],
        destination: Sequence[str] | None = None,
        signal: str = "SIGTERM",
        **kwargs: Any,
    ) -> list[Reply] | None:
        return self.revoke(task_id, destination=destination, terminate=True, signal=signal, **kwargs)

    def add_consumer(
        self,
        queue: str,
        exchange: str | None = None,
        exchange_type: str = "direct",
        routing_key: str | None = None,
        options: dict[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[Reply] | None:
        return self.broadcast("add_consumer", dict({"queue": queue, "exchange": exchange,
                              "exchange_type": exchange_type, "routing_key": routing_key}, **(options or {})),
                              destination=destination, **kwargs)  # fmt: skip

    def cancel_consumer(
        self, queue: str, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[Reply] | None:
        return self.broadcast("cancel_consumer", {"queue": queue}, destination=destination, **kwargs)

    def pool_grow(self, n: int = 1, destination: Sequence[str] | None = None, **kwargs: Any) -> list[Reply] | None:
        return self.broadcast("pool_grow", {"n": n}, destination=destination, **kwargs)

    def pool_shrink(self, n: int = 1, destination: Sequence[str] | None = None, **kwargs: Any) -> list[Reply] | None:
        return self.broadcast("pool_shrink", {"n": n}, destination=destination, **kwargs)

    def autoscale(
        self, max: int, min: int, destination: Sequence[str] | None = None, **kwargs: Any
    ) -> list[Reply] | None:
        return self.broadcast("autoscale", {"max": max, "min": min}, destination=destination, **kwargs)

    def enable_events(self, destination: Sequence[str] | None = None, **kwargs: Any) -> list[Reply] | None:
        return self.broadcast("enable_events", destination=destination, **kwargs)

    def disable_events(self, destination: Sequence[str] | None = None, **kwargs: Any) -> list[Reply] | None:
        return self.broadcast("disable_events", destination=destination, **kwargs)

    def heartbeat(self, destination: Sequence[str] | None = None, **kwargs: Any) -> list[Reply] | None:
        return self.broadcast("heartbeat", destination=destination, **kwargs)

    def shutdown(self, destination: Sequence[str] | None = None, **kwargs: Any) -> list[Reply] | None:
        """Warm shutdown of the workers."""
        return self.broadcast("shutdown", destination=destination, **kwargs)

    def purge(self, connection: Any = None) -> int:
        """Delete every waiting message of the configured queues; returns how many."""
        broker = self.app.connection_for_write()
        return sum(broker.purge(name) for name in self.app.configured_queue_names())

    discard_all = purge


class Inspect:
    """Read-only questions to workers (``app.control.inspect()``); each returns ``{node: reply}``."""

    def __init__(self, control: Control, *, destination: Sequence[str] | None = None, timeout: float = 1.0,
                 callback: Callable[[Reply], Any] | None = None, limit: int | None = None,
                 pattern: str | None = None, matcher: str | None = None) -> None:  # fmt: skip
        self.control = control
        self.destination = destination
        self.timeout = timeout
        self.callback = callback
        self.limit = limit
        self.pattern = pattern
        self.matcher = matcher

    def _request(self, command: str, **kwargs: Any) -> dict[str, Any] | None:
        replies = self.control.broadcast(
            command, arguments=kwargs, destination=self.destination, reply=True, timeout=self.timeout,
            limit=self.limit, callback=self.callback, pattern=self.pattern, matcher=self.matcher,
        )  # fmt: skip
        merged: dict[str, Any] = {}
        for reply in replies or ():
            merged.update(reply)
        return merged or None

    def ping(self, destination: Any = None) -> dict[str, Any] | None:
        return self._request("ping")

    def report(self) -> dict[str, Any] | None:
        return self._request("report")

    def clock(self) -> dict[str, Any] | None:
        return self._request("clock")

    def active(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("active", safe=safe) if safe is not None else self._request("active")

    def scheduled(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("scheduled")

    def reserved(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("reserved")

    def stats(self) -> dict[str, Any] | None:
        return self._request("stats")

    def revoked(self) -> dict[str, Any] | None:
        return self._request("revoked")

    def registered(self, *taskinfoitems: str) -> dict[str, Any] | None:
        return self._request("registered", taskinfoitems=list(taskinfoitems))

    registered_tasks = registered

    def active_queues(self) -> dict[str, Any] | None:
        return self._request("active_queues")

    def query_task(self, *ids: str) -> dict[str, Any] | None:
        if len(ids) == 1 and not isinstance(ids[0], str):
            ids = tuple(ids[0])
        return self._request("query_task", ids=list(ids))

    def conf(self, with_defaults: bool = False) -> dict[str, Any] | None:
        return self._request("conf", with_defaults=with_defaults)

    def memsample(self) -> dict[str, Any] | None:
        return self._request("memsample")

    def memdump(self, samples: int = 10) -> dict[str, Any] | None:
        return self._request("memdump", samples=samples)
