"""Celery's remote-control wire format (kombu's "pidbox"), shared by the client and the worker.

Requests go to the fanout exchange ``<control_exchange>.pidbox`` (``celery.pidbox``)::

    body    {"method", "arguments", "destination": [node, ...] | null, "pattern", "matcher",
             "ticket": <uuid>, "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": <oid>}}
    headers {"clock": <lamport clock>, "expires": <epoch seconds> | 0}

Replies go to the direct exchange ``reply.<control_exchange>.pidbox`` with the client's oid
as routing key, landing in its queue ``<oid>.reply.celery.pidbox``::

    body    {<node name>: <reply>}      (replies are {"ok": ...} or {"error": ...} by convention)
    headers {"ticket": <uuid>, "clock": <lamport clock>}
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .brokers.base import Envelope, QueueSpec
from .serialization import dumps, loads, prepare_accept_content

if TYPE_CHECKING:
    from .app import Celery

__all__ = ["LamportClock", "Names", "decode", "encode", "names_for"]


class LamportClock:
    """Celery's logical clock: ``forward()`` before sending, ``adjust(other)`` on receiving."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def forward(self) -> int:
        with self._lock:
            self.value += 1
            return self.value

    def adjust(self, other: int) -> int:
        with self._lock:
            self.value = max(self.value, int(other or 0)) + 1
            return self.value


@dataclass(frozen=True, slots=True)
class Names:
    exchange: str  # celery.pidbox (fanout)
    reply_exchange: str  # reply.celery.pidbox (direct)

    def node_queue(self, hostname: str) -> str:
        return f"{hostname}.{self.exchange}"

    def reply_queue(self, oid: str) -> str:
        return f"{oid}.{self.reply_exchange}"


def names_for(app: Celery) -> Names:
    namespace = app.conf.control_exchange or "celery"
    return Names(exchange=f"{namespace}.pidbox", reply_exchange=f"reply.{namespace}.pidbox")


def reply_queue_spec(app: Celery, oid: str) -> QueueSpec:
    """The client's reply queue, declared as kombu's Mailbox declares it."""
    names = names_for(app)
    arguments: dict[str, Any] = {}
    if app.conf.control_queue_expires:
        arguments["x-expires"] = int(float(app.conf.control_queue_expires) * 1000)
    if app.conf.control_queue_ttl:
        arguments["x-message-ttl"] = int(float(app.conf.control_queue_ttl) * 1000)
    return QueueSpec(
        name=names.reply_queue(oid),
        exchange=names.reply_exchange,
        routing_key=oid,
        exchange_type="direct",
        durable=False,
        auto_delete=True,
        exchange_durable=False,
        queue_arguments=arguments,
    )


def encode(app: Celery, body: dict[str, Any], headers: dict[str, Any]) -> Envelope:
    content_type, content_encoding, payload = dumps(body, app.conf.task_serializer)
    return Envelope(payload, headers, {"delivery_mode": 1}, content_type, content_encoding)


def decode(app: Celery, envelope: Envelope) -> Any:
    accept = prepare_accept_content(app.conf.accept_content)
    return loads(envelope.body, envelope.content_type, envelope.content_encoding, accept)


def expired(headers: Any) -> bool:
    expires = headers.get("expires") if isinstance(headers, dict) else None
    return bool(expires) and time.time() > float(expires or 0)
