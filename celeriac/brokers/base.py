"""The broker interface: what every transport (SQLite, Redis, AMQP, SQS, memory) provides.

Brokers move :class:`Envelope` objects (bytes plus headers and properties)
between queues. They know nothing about tasks: ``celeriac.protocol`` turns task
calls into envelopes and back.

Delivery contract, the same for every implementation:

* ``get`` hands out each message to one consumer at a time. A message handed
  out stays invisible to other consumers until it is acked, rejected, or the
  consumer is presumed dead (its lease runs out: ``visibility_timeout``);
  consumers that are alive keep their leases with ``extend_leases``.
* ``ack`` removes a message for good. ``reject(requeue=True)`` makes it
  visible again at once (marked redelivered); ``reject(requeue=False)`` moves it
  to the broker's dead-letter place, where it can be inspected: nothing
  accepted is silently dropped.
* A message published with ``not_before`` is not handed out before that time,
  and it waits in the broker, not in a worker's memory.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

__all__ = ["Broker", "Delivery", "Envelope", "QueueSpec", "Subscription"]


@dataclass(slots=True)  # not frozen: one is made per task, and a frozen field costs a call to set
class Envelope:
    """A message as every broker moves it."""

    body: bytes
    headers: Mapping[str, Any]
    properties: Mapping[str, Any]  # correlation_id, reply_to, priority, delivery_mode, ...
    content_type: str
    content_encoding: str

    @property
    def priority(self) -> int | None:
        value = self.properties.get("priority")
        return value if isinstance(value, int) else None


@dataclass(slots=True)  # not frozen: one is made per task, and a frozen field costs a call to set
class Delivery:
    """An envelope handed to a consumer, with what's needed to ack or reject it."""

    envelope: Envelope
    queue: str
    tag: str  # broker-specific receipt: row id, delivery tag, receipt handle
    redelivered: bool = False
    exchange: str = ""
    routing_key: str = ""
    raw: bytes | None = None  # the message as the broker stored it, where the broker needs it back


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue to declare: Celery's ``Queue(name, exchange, routing_key, max_priority=...)``."""

    name: str
    exchange: str = ""
    routing_key: str = ""
    exchange_type: str = "direct"
    durable: bool = True
    max_priority: int | None = None
    queue_arguments: Mapping[str, Any] = field(default_factory=dict)
    auto_delete: bool = False
    exchange_durable: bool = True


class Subscription(abc.ABC):
    """Messages broadcast on a fanout exchange, from the moment of subscribing. Close it when done."""

    @abc.abstractmethod
    def get(self, timeout: float) -> Envelope | None:
        """The next message, or None after ``timeout`` seconds."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Envelope]:
        while True:
            envelope = self.get(1.0)
            if envelope is not None:
                yield envelope


class Broker(abc.ABC):
    """Abstract broker; one instance per process (implementations guard against fork)."""

    scheme: ClassVar[str]
    supports_fanout: ClassVar[bool] = False
    supports_priority: ClassVar[bool] = False
    native_delay: ClassVar[bool] = False
    supports_global_rate_limits: ClassVar[bool] = (
        False  # take_rate_token works across workers  # True: ETA is kept by the broker, never in worker RAM
    )
    # True: publish() routes through exchanges and bindings (AMQP), so tasks for topic and fanout
    # exchanges are published to the exchange, as Celery does; False: every task is published
    # straight to its queue (exchange "", routing key = queue name).
    exchange_routing: ClassVar[bool] = False
    # Settings this broker reads beyond the common ones; the app passes each as an option
    # named without its ``broker_`` prefix (``broker_heartbeat`` -> ``heartbeat``).
    app_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options: Mapping[str, Any] = options or {}

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect, or raise :class:`~celeriac.exceptions.BrokerUnavailable` within the connection timeout."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Safe to call twice."""

    @abc.abstractmethod
    def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue if it doesn't exist. Idempotent."""

    @abc.abstractmethod
    def publish(
        self,
        envelope: Envelope,
        *,
        exchange: str,
        routing_key: str,
        not_before: datetime | None = None,
    ) -> None:
        """Enqueue durably; returns once the broker has the message. ``routing_key`` names the queue
        for the default (direct) exchange."""

    @abc.abstractmethod
    def get(self, queues: Sequence[str], *, max_messages: int, timeout: float) -> list[Delivery]:
        """Take up to ``max_messages`` visible messages from ``queues``, waiting up to ``timeout``
        seconds for the first. Returns ``[]`` on timeout."""

    @abc.abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """Remove the message for good. Acking a message whose lease was lost is a no-op."""

    @abc.abstractmethod
    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        """Requeue the message (visible again at once) or dead-letter it."""

    def set_prefetch(self, count: int) -> None:  # noqa: B027 - optional hook
        """How many messages this consumer may hold at once (the worker's ``concurrency * prefetch_multiplier``).

        Brokers that push messages (AMQP's ``basic.qos``) never send more than this unacked;
        brokers that are polled ignore it, since ``get(max_messages=...)`` already bounds them."""

    def extend_leases(self, deliveries: Sequence[Delivery]) -> None:  # noqa: B027 - optional hook
        """Keep the leases of messages this consumer still holds (called periodically by the worker)."""

    @property
    def lease_renew_interval(self) -> float | None:
        """How often the worker must call :meth:`extend_leases` (None: never)."""
        return None

    def defer(self, delivery: Delivery, not_before: datetime) -> bool:
        """Hand a received message whose ETA is in the future back to the broker until then.

        Returns False where the broker can't (the worker then holds the message itself).
        """
        return False

    def take_rate_token(self, key: str, rate: float, capacity: float = 1.0) -> float:
        """Take one token from the bucket ``key`` shared by every worker of this broker.

        Returns 0.0 when a token was taken, else the seconds until one will be there
        (nothing is taken then). Only where ``supports_global_rate_limits``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no shared rate limits")

    def store_revoked(self, task_ids: Sequence[str], ttl: float) -> None:  # noqa: B027 - optional
        """Remember revoked task ids for ``ttl`` seconds, for workers that are down right now.

        Brokers without storage do nothing here (only the broadcast to live workers counts).
        """

    def load_revoked(self) -> set[str]:
        """The revoked task ids still remembered (see :meth:`store_revoked`)."""
        return set()

    def defer_many(self, items: Sequence[tuple[Delivery, datetime]]) -> list[bool]:
        """:meth:`defer` for several messages (brokers that can do it in one round trip override this)."""
        return [self.defer(delivery, when) for delivery, when in items]

    def purge(self, queue: str) -> int:
        """Delete every waiting message of ``queue``; returns how many were deleted."""
        raise NotImplementedError(f"{type(self).__name__} can't purge queues")

    def queue_size(self, queue: str) -> int:
        """How many messages wait in ``queue`` (ready or scheduled); those held by a consumer are not counted."""
        raise NotImplementedError(f"{type(self).__name__} can't count messages")

    def broadcast(self, exchange: str, envelope: Envelope, *, routing_key: str = "") -> None:
        """Send to every current subscriber of the fanout ``exchange`` (only if ``supports_fanout``)."""
        raise NotImplementedError(f"{type(self).__name__} has no fanout (supports_fanout is False)")

    def subscribe(self, exchange: str, *, routing_key: str = "") -> Subscription:
        """Start receiving what is broadcast on ``exchange`` from now on (only if ``supports_fanout``).

        ``routing_key`` is the binding key: ``""`` for plain fanout (remote control), ``"#"`` for
        everything sent with any routing key (events)."""
        raise NotImplementedError(f"{type(self).__name__} has no fanout (supports_fanout is False)")

    def info(self) -> dict[str, Any]:
        """What to show in banners and reports (never credentials)."""
        from ..config import mask_url

        return {"transport": self.scheme, "url": mask_url(self.url)}

    def __repr__(self) -> str:
        from ..config import mask_url

        return f"<{type(self).__name__} {mask_url(self.url)}>"
