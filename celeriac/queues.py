"""Queue and exchange declarations: ``Queue``, ``Exchange`` and how ``task_queues`` becomes a :class:`QueueSpec`.

``celeriac.Queue`` and ``celeriac.Exchange`` take kombu's constructor arguments, so a
Celery ``task_queues`` list works as written::

    app.conf.task_queues = [
        Queue("default", Exchange("default"), routing_key="default"),
        Queue("video", Exchange("media", type="topic"), routing_key="media.video", max_priority=10),
        Queue("jobs", queue_arguments={"x-queue-type": "quorum"}),
    ]

kombu's own ``kombu.Queue``/``kombu.Exchange`` objects work too (they are read by their
attributes). :func:`queue_spec` applies Celery's rules (``celery/app/amqp.py``, ``Queues``):

* a queue without an exchange gets the default exchange (``task_default_exchange``, which
  defaults to ``task_default_queue``) and one without a routing key the default routing key;
* the default queue is ``Queue(task_default_queue, Exchange(task_default_queue), task_default_queue)``,
  a quorum queue when ``task_default_queue_type='quorum'``;
* a queue that isn't configured (``task_create_missing_queues``) is
  ``Queue(name, Exchange(name), name)``, of type ``task_create_missing_queue_type``;
* ``task_queue_max_priority`` sets ``x-max-priority`` on queues that have none.

Celery declares exactly these, so both declare every queue with the same arguments
(RabbitMQ refuses a second declaration that differs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .brokers.base import QueueSpec

if TYPE_CHECKING:
    from .app import Celery

__all__ = ["QUEUE_SETTINGS", "Exchange", "Queue", "destination", "queue_spec", "spec_from_queue"]

# Every setting queue_spec() reads.
QUEUE_SETTINGS = (
    "task_queues",
    "task_default_queue",
    "task_default_exchange",
    "task_default_exchange_type",
    "task_default_routing_key",
    "task_default_queue_type",
    "task_create_missing_queue_type",
    "task_create_missing_queue_exchange_type",
    "task_queue_max_priority",
)


class Exchange:
    """An exchange declaration (kombu's ``Exchange(name='', type='direct', durable=True, ...)``)."""

    def __init__(
        self,
        name: str = "",
        type: str = "direct",
        channel: Any = None,
        *,
        durable: bool = True,
        auto_delete: bool = False,
        delivery_mode: int | str | None = None,
        arguments: Mapping[str, Any] | None = None,
        passive: bool = False,
        no_declare: bool = False,
    ) -> None:
        self.name = name or ""
        self.type = type or "direct"
        self.durable = durable
        self.auto_delete = auto_delete
        self.delivery_mode = delivery_mode
        self.arguments = dict(arguments or {})
        self.passive = passive
        self.no_declare = no_declare

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Exchange):
            return NotImplemented
        return (self.name, self.type, self.durable, self.auto_delete) == (
            other.name,
            other.type,
            other.durable,
            other.auto_delete,
        )

    def __hash__(self) -> int:
        return hash(("Exchange", self.name))

    def __repr__(self) -> str:
        return f"<Exchange {self.name or repr('')}({self.type})>"


class Queue:
    """A queue declaration (kombu's ``Queue(name, exchange=None, routing_key='', ...)``).

    Args:
        name: the queue's name.
        exchange: the exchange it is bound to (an :class:`Exchange` or a name).
        routing_key: the binding key.
        queue_arguments: extra declaration arguments, e.g. ``{"x-queue-type": "quorum"}``.
        max_priority: highest priority (``x-max-priority``; on RabbitMQ 9 is the most urgent).
        durable: survives a broker restart.
        expires: seconds an unused queue is kept (``x-expires``).
        message_ttl: seconds a message waits in the queue at most (``x-message-ttl``).
    """

    def __init__(
        self,
        name: str = "",
        exchange: Exchange | str | None = None,
        routing_key: str = "",
        channel: Any = None,
        bindings: Any = None,
        on_declared: Any = None,
        *,
        queue_arguments: Mapping[str, Any] | None = None,
        binding_arguments: Mapping[str, Any] | None = None,
        consumer_arguments: Mapping[str, Any] | None = None,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        no_ack: bool | None = None,
        alias: str | None = None,
        expires: float | None = None,
        message_ttl: float | None = None,
        max_length: int | None = None,
        max_length_bytes: int | None = None,
        max_priority: int | None = None,
        no_declare: bool = False,
    ) -> None:
        if bindings:
            raise NotImplementedError("Queue(bindings=...) is not supported by celeriac: bind one exchange per queue")
        self.name = name
        self.exchange: Exchange | None = Exchange(exchange) if isinstance(exchange, str) else exchange
        self.routing_key = routing_key or ""
        self.queue_arguments = dict(queue_arguments) if queue_arguments is not None else None
        self.binding_arguments = dict(binding_arguments) if binding_arguments is not None else None
        self.consumer_arguments = dict(consumer_arguments) if consumer_arguments is not None else None
        self.durable = durable
        self.exclusive = exclusive
        self.auto_delete = auto_delete or exclusive  # exclusive implies auto-delete, as in kombu
        self.no_ack = no_ack
        self.alias = alias
        self.expires = expires
        self.message_ttl = message_ttl
        self.max_length = max_length
        self.max_length_bytes = max_length_bytes
        self.max_priority = max_priority
        self.no_declare = no_declare

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Queue):
            return NotImplemented
        return spec_from_queue(self) == spec_from_queue(other)

    def __hash__(self) -> int:
        return hash(("Queue", self.name))

    def __repr__(self) -> str:
        exchange = self.exchange.name if self.exchange is not None else ""
        return f"<Queue {self.name} -> <Exchange {exchange}> -> {self.routing_key}>"


def _ms(seconds: Any) -> int:
    return int(float(seconds) * 1000)


# kombu's Queue attributes and the RabbitMQ arguments they become.
_ARGUMENTS = (
    ("expires", "x-expires", _ms),
    ("message_ttl", "x-message-ttl", _ms),
    ("max_length", "x-max-length", int),
    ("max_length_bytes", "x-max-length-bytes", int),
    ("max_priority", "x-max-priority", int),
)


def spec_from_queue(queue: Any) -> QueueSpec:
    """The declaration of a ``celeriac.Queue`` or ``kombu.Queue`` (read by attribute), as given."""
    exchange = getattr(queue, "exchange", None)
    if isinstance(exchange, str):
        exchange = Exchange(exchange)
    arguments = dict(getattr(queue, "queue_arguments", None) or {})
    for attr, key, convert in _ARGUMENTS:
        value = getattr(queue, attr, None)
        if value is not None:
            arguments[key] = convert(value)
    priority = arguments.get("x-max-priority")
    return QueueSpec(
        name=str(queue.name),
        exchange=str(getattr(exchange, "name", "") or ""),
        routing_key=str(getattr(queue, "routing_key", "") or ""),
        exchange_type=str(getattr(exchange, "type", "") or "direct"),
        durable=bool(getattr(queue, "durable", True)),
        max_priority=int(priority) if priority is not None else None,
        queue_arguments=arguments,
        auto_delete=bool(getattr(queue, "auto_delete", False)),
        exchange_durable=bool(getattr(exchange, "durable", True)) if exchange is not None else True,
    )


def _spec_from_options(name: str, options: Mapping[str, Any]) -> QueueSpec:
    """Celery's dict form: ``task_queues = {"name": {"exchange": ..., "routing_key": ...}}``."""
    exchange = options.get("exchange")
    exchange_type = options.get("exchange_type")
    if exchange is not None and not isinstance(exchange, str):
        exchange_type = exchange_type or getattr(exchange, "type", None)
        exchange = getattr(exchange, "name", "")
    routing_key = options.get("routing_key", options.get("binding_key"))
    arguments = dict(options.get("queue_arguments") or {})
    if options.get("max_priority") is not None:
        arguments["x-max-priority"] = int(options["max_priority"])
    priority = arguments.get("x-max-priority")
    return QueueSpec(
        name=name,
        exchange=str(exchange or ""),
        routing_key=str(name if routing_key is None else routing_key),
        exchange_type=str(exchange_type or "direct"),
        durable=bool(options.get("queue_durable", options.get("durable", True))),
        max_priority=int(priority) if priority is not None else None,
        queue_arguments=arguments,
        auto_delete=bool(options.get("auto_delete", False)),
        exchange_durable=bool(options.get("exchange_durable", True)),
    )


def _configured(queues: Any, name: str) -> Any:
    if not queues:
        return None
    if isinstance(queues, Mapping):
        return queues.get(name)
    for queue in queues:
        if (queue if isinstance(queue, str) else getattr(queue, "name", None)) == name:
            return queue
    return None


def queue_spec(app: Celery, name: str, queue: Any = None) -> QueueSpec:
    """How ``name`` is declared: from ``task_queues``, the default queue or a missing queue, with Celery's defaults.

    Args:
        app: the app whose settings apply.
        name: the queue's name.
        queue: a ``Queue`` object given by a route, used when ``task_queues`` doesn't define ``name``.
    """
    conf = app.conf
    default_queue = str(conf.task_default_queue)
    default_exchange = str(conf.task_default_exchange or default_queue)
    default_exchange_type = str(conf.task_default_exchange_type or "direct")
    default_routing_key = str(conf.task_default_routing_key or default_queue)
    found = _configured(conf.task_queues, name)
    if found is None and queue is not None and not isinstance(queue, str):
        found = queue
    if isinstance(found, Mapping):
        spec = _spec_from_options(name, found)
    elif found is not None and not isinstance(found, str):
        spec = spec_from_queue(found)
    elif not conf.task_queues and name == default_queue:
        quorum = {"x-queue-type": "quorum"} if conf.task_default_queue_type == "quorum" else {}
        spec = QueueSpec(name, default_exchange, default_routing_key, default_exchange_type, queue_arguments=quorum)
    else:
        queue_type = conf.task_create_missing_queue_type
        arguments = {"x-queue-type": str(queue_type)} if queue_type and queue_type != "classic" else {}
        exchange_type = str(conf.task_create_missing_queue_exchange_type or "direct")
        spec = QueueSpec(name, name, name, exchange_type, queue_arguments=arguments)
    if not spec.exchange:
        spec = replace(spec, exchange=default_exchange, exchange_type=default_exchange_type)
    if not spec.routing_key:
        spec = replace(spec, routing_key=default_routing_key)
    max_priority = conf.task_queue_max_priority
    if max_priority is not None and "x-max-priority" not in spec.queue_arguments:
        with_priority = {**spec.queue_arguments, "x-max-priority": int(max_priority)}
        spec = replace(spec, queue_arguments=with_priority, max_priority=int(max_priority))
    return spec


def destination(spec: QueueSpec, route: Mapping[str, Any]) -> tuple[str, str]:
    """The ``(exchange, routing_key)`` a task for ``spec`` is published to (Celery's ``send_task_message``).

    For a direct exchange Celery publishes to the default exchange ``""`` with the queue's
    name as routing key; for topic and fanout exchanges, to the exchange with the queue's
    routing key (or the route's).
    """
    exchange = route.get("exchange")
    exchange_type = route.get("exchange_type")
    if exchange is not None and not isinstance(exchange, str):
        exchange_type = exchange_type or getattr(exchange, "type", None)
        exchange = getattr(exchange, "name", "")
    exchange_type = exchange_type or spec.exchange_type
    routing_key = route.get("routing_key")
    if (not exchange or not routing_key) and exchange_type == "direct":
        return "", spec.name
    if not exchange:
        return spec.exchange, str(routing_key or spec.routing_key)
    return str(exchange), str(routing_key or "")
