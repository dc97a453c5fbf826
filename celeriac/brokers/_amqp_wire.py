"""What the AMQP broker puts on the wire: URLs, TLS, message properties, and Celery's delay layout.

Kept apart from the broker's connection handling so each can be read on its own.

Message properties are those kombu's py-amqp transport sends for Celery: ``content_type``,
``content_encoding``, ``headers`` (the protocol-v2 headers), ``delivery_mode`` (2 unless
transient), ``priority`` (0 when unset, as kombu), ``correlation_id``, ``reply_to`` and,
when given, ``expiration``. Header floats are sent as AMQP doubles (``d``), as py-amqp does:
pamqp would send them as 32-bit floats, which turns an epoch time such as a remote-control
message's ``expires`` into a value off by a minute.

The delay layout is Celery's native delayed delivery (``kombu/transport/native_delayed_delivery.py``):
28 topic exchanges and queues ``celery_delayed_<level>``; queue ``level`` holds a message for
``2**level`` seconds (``x-message-ttl``) then dead-letters it to the next level down, and a
message's routing key ``<28 bits>.<routing key>`` decides, bit by bit, which levels it waits
in. Level 0 dead-letters to the ``celery_delayed_delivery`` topic exchange, from where the
binding ``#.<routing key>`` takes it to its queue. Declared with the same arguments as
Celery, so Celery and celeriac workers share the layout.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import aio_pika.abc
from aiormq.abc import DeliveredMessage
from pamqp import encode
from pamqp.commands import Basic
from yarl import URL

from ..exceptions import ImproperlyConfigured
from .base import Envelope, QueueSpec

__all__ = [
    "DELAYED_DELIVERY_EXCHANGE",
    "MAX_DELAY",
    "AMQPParams",
    "bind_for_delays",
    "declare_delay_chain",
    "delay_routing_key",
    "incoming_envelope",
    "outgoing_properties",
    "parse_url",
    "queue_arguments",
    "ssl_context",
    "strip_delay_bits",
]

DEFAULT_PORT = 5672
DEFAULT_SSL_PORT = 5671
DELAY_BITS = 28
MAX_DELAY = 2**DELAY_BITS - 1  # seconds (about 8.5 years)
DELAYED_DELIVERY_EXCHANGE = "celery_delayed_delivery"


# -- URLs and TLS --------------------------------------------------------------
@dataclass(frozen=True)
class AMQPParams:
    host: str
    port: int
    login: str
    password: str
    vhost: str
    tls: bool

    def url(self, heartbeat: float | None) -> URL:
        query = {"heartbeat": str(int(heartbeat or 0))}
        return URL.build(
            scheme="amqps" if self.tls else "amqp",
            host=self.host,
            port=self.port,
            user=self.login,
            password=self.password,
            # aiormq reads the vhost from the path: "//" is "/", "/name" is "name".
            path="/" + self.vhost,
            query=query,
        )


def parse_url(url: str, use_ssl: Any = None) -> AMQPParams:
    """kombu's reading of ``amqp://user:password@host:port/vhost`` (``//`` or no path is vhost ``/``)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("amqp", "amqps", "pyamqp"):
        raise ImproperlyConfigured(f"broker_url: not an AMQP URL: {scheme}://...", key="broker_url")
    tls = scheme == "amqps" or bool(use_ssl)
    try:
        port = parts.port or (DEFAULT_SSL_PORT if tls else DEFAULT_PORT)
    except ValueError as exc:
        raise ImproperlyConfigured(f"broker_url: {exc}", key="broker_url") from None
    vhost = unquote(parts.path[1:]) if parts.path else ""
    return AMQPParams(
        host=parts.hostname or "localhost",
        port=port,
        login=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        vhost=vhost or "/",
        tls=tls,
    )


def ssl_context(use_ssl: Any) -> ssl.SSLContext | None:
    """An SSL context from ``broker_use_ssl``: True, an ``SSLContext``, or kombu's dict
    (``ca_certs``, ``certfile``, ``keyfile``, ``cert_reqs``, ``check_hostname``)."""
    if isinstance(use_ssl, ssl.SSLContext):
        return use_ssl
    if not isinstance(use_ssl, Mapping):
        return ssl.create_default_context()
    opts = dict(use_ssl)
    context = ssl.create_default_context(
        cafile=opts.get("ca_certs") or opts.get("cafile"), capath=opts.get("ca_path") or opts.get("capath")
    )
    if opts.get("certfile"):
        context.load_cert_chain(opts["certfile"], opts.get("keyfile"), opts.get("password"))
    cert_reqs = opts.get("cert_reqs")
    if isinstance(cert_reqs, str):
        cert_reqs = getattr(ssl, cert_reqs.upper(), None)
    if cert_reqs == ssl.CERT_NONE:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cert_reqs == ssl.CERT_OPTIONAL:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_OPTIONAL
    if "check_hostname" in opts:
        context.check_hostname = bool(opts["check_hostname"])
    return context


# -- message properties -------------------------------------------------------------
class _Properties(Basic.Properties):
    """Basic.Properties whose header table carries floats as doubles, as py-amqp sends them."""

    def encode_property(self, name: str, value: Any) -> bytes:
        if name == "headers":
            return _table(value)
        return super().encode_property(name, value)


_LONG = struct.Struct(">I")


_NAMES: dict[str, bytes] = {}  # header name -> its encoded form (length byte + bytes), for the usual names
_NAMES_KEPT = 512


def _name(key: Any) -> bytes:
    name = str(key).encode()
    if len(name) > 255:
        raise TypeError(f"a header name is at most 255 bytes: {str(key)[:40]!r}...")
    encoded = bytes((len(name),)) + name
    if type(key) is str and len(_NAMES) < _NAMES_KEPT:
        _NAMES[key] = encoded
    return encoded


def _table(value: Mapping[str, Any]) -> bytes:
    # Runs for every message published, with a task's ~20 headers: the names' encodings are kept,
    # and str and None values (most of them) are written here without a call.
    parts: list[bytes] = []
    append = parts.append
    for key, item in (value or {}).items():
        append(_NAMES.get(key) or _name(key))
        if type(item) is str:
            data = item.encode()
            append(b"S" + _LONG.pack(len(data)) + data)
        elif item is None:
            append(b"V")
        else:
            append(_field(item))
    body = b"".join(parts)
    return _LONG.pack(len(body)) + body


def _field(value: Any) -> bytes:
    # str and None first, by exact type: they are most of a task's headers, and this runs for
    # every header of every message published (the same bytes pamqp would write for them).
    if type(value) is str:
        data: bytes = value.encode()
        return b"S" + _LONG.pack(len(data)) + data
    if value is None:
        return b"V"
    if isinstance(value, bool):
        return b"t" + (b"\x01" if value else b"\x00")
    if isinstance(value, float):
        return b"d" + struct.pack(">d", value)
    if isinstance(value, Mapping):
        return b"F" + _table(value)
    if isinstance(value, (list, tuple)):
        body = b"".join(_field(item) for item in value)
        return b"A" + _LONG.pack(len(body)) + body
    if isinstance(value, (bytes, bytearray)):
        return b"x" + _LONG.pack(len(value)) + bytes(value)
    if isinstance(value, (int, str, datetime, Decimal)):
        return encode.encode_table_value(value)
    return encode.encode_table_value(str(value))


_OPTIONAL_PROPERTIES = ("correlation_id", "reply_to", "message_id", "user_id", "app_id")


def outgoing_properties(envelope: Envelope, *, drop: Sequence[str] = ()) -> Basic.Properties:
    """The AMQP properties of ``envelope``, as kombu sends a Celery message."""
    props = envelope.properties
    priority = props.get("priority")
    expiration = props.get("expiration")
    headers = {k: v for k, v in envelope.headers.items() if k not in drop}
    kwargs: dict[str, Any] = {key: str(props[key]) for key in _OPTIONAL_PROPERTIES if props.get(key) not in (None, "")}
    if expiration is not None and "expiration" not in drop:
        kwargs["expiration"] = str(expiration)
    if isinstance(props.get("timestamp"), datetime):
        kwargs["timestamp"] = props["timestamp"]
    return _Properties(
        content_type=envelope.content_type or None,
        content_encoding=envelope.content_encoding or None,
        headers=headers,
        delivery_mode=int(props.get("delivery_mode") or 2),
        priority=int(priority) if isinstance(priority, int) else 0,
        **kwargs,
    )


def incoming_envelope(message: DeliveredMessage) -> Envelope:
    """The envelope of a received message (aiormq's); properties as kombu's ``Message.properties``."""
    props = message.header.properties
    properties: dict[str, Any] = {}
    for key in _OPTIONAL_PROPERTIES:
        value = getattr(props, key, None)
        if value is not None:
            properties[key] = value
    properties["delivery_mode"] = int(props.delivery_mode or 1)
    properties["priority"] = int(props.priority or 0)
    if props.expiration is not None:
        properties["expiration"] = props.expiration  # milliseconds, as a decimal string on the wire too
    if props.timestamp is not None:
        properties["timestamp"] = props.timestamp
    return Envelope(
        body=message.body,
        headers=dict(props.headers or {}),
        properties=properties,
        content_type=props.content_type or "",
        content_encoding=props.content_encoding or "",
    )


def queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    arguments = dict(spec.queue_arguments)
    if spec.max_priority is not None:
        arguments["x-max-priority"] = int(spec.max_priority)
    return arguments


# -- Celery's native delayed delivery ---------------------------------------------------------
def level_name(level: int) -> str:
    return f"celery_delayed_{level}"


def delay_routing_key(seconds: int, routing_key: str) -> str:
    """``<28 bits of seconds, dot-separated>.<routing_key>`` (kombu's ``calculate_routing_key``)."""
    if not 1 <= seconds <= MAX_DELAY:
        raise ValueError(f"a delay must be 1 to {MAX_DELAY} seconds, got {seconds}")
    return ".".join(f"{seconds:0{DELAY_BITS}b}") + "." + routing_key


def strip_delay_bits(routing_key: str) -> str:
    """The routing key a message had before it went through the delay layout."""
    words = routing_key.split(".", DELAY_BITS)
    if len(words) > DELAY_BITS and all(word in ("0", "1") for word in words[:DELAY_BITS]):
        return words[DELAY_BITS]
    return routing_key


async def declare_delay_chain(channel: aio_pika.abc.AbstractChannel, queue_type: str) -> None:
    """Declare Celery's 28 delay levels (idempotent; the same arguments as Celery's worker uses)."""
    if queue_type not in ("classic", "quorum"):
        raise ImproperlyConfigured(
            "broker_native_delayed_delivery_queue_type must be 'classic' or 'quorum'",
            key="broker_native_delayed_delivery_queue_type",
        )
    routing_key = "1.#"
    for level in range(DELAY_BITS - 1, -1, -1):
        name = level_name(level)
        await channel.declare_exchange(name, "topic", durable=True)
        arguments: dict[str, Any] = {
            "x-queue-type": queue_type,
            "x-overflow": "reject-publish",
            "x-message-ttl": 2**level * 1000,
            "x-dead-letter-exchange": level_name(level - 1) if level > 0 else DELAYED_DELIVERY_EXCHANGE,
        }
        if queue_type == "quorum":
            arguments["x-dead-letter-strategy"] = "at-least-once"
        queue = await channel.declare_queue(name, durable=True, arguments=arguments)
        await queue.bind(name, routing_key)
        routing_key = "*." + routing_key
    routing_key = "0.#"
    for level in range(DELAY_BITS - 1, 0, -1):
        lower = await channel.get_exchange(level_name(level - 1), ensure=False)
        await lower.bind(level_name(level), routing_key)
        routing_key = "*." + routing_key
    delivery = await channel.declare_exchange(DELAYED_DELIVERY_EXCHANGE, "topic", durable=True)
    await delivery.bind(level_name(0), routing_key)


async def bind_for_delays(channel: aio_pika.abc.AbstractChannel, spec: QueueSpec) -> None:
    """Route what leaves the delay layout for ``spec``'s queue into it.

    celeriac parks messages with the routing key ``<bits>.<queue name>`` and binds the
    queue straight to ``celery_delayed_delivery`` with ``#.<queue name>``. For a topic or
    fanout exchange Celery's clients publish delayed tasks themselves, so its bindings are
    made too: exchange from ``celery_delayed_delivery`` and queue from exchange, both with
    ``#.<routing key>``. (RabbitMQ routes a message to a queue at most once per publish,
    however many of these bindings match.)
    """
    queue = await channel.get_queue(spec.name, ensure=False)
    await queue.bind(DELAYED_DELIVERY_EXCHANGE, "#." + spec.name)
    if spec.exchange and spec.exchange_type != "direct":
        key = spec.routing_key if spec.routing_key.startswith("#") else "#." + spec.routing_key
        exchange = await channel.get_exchange(spec.exchange, ensure=False)
        await exchange.bind(DELAYED_DELIVERY_EXCHANGE, key)
        await queue.bind(spec.exchange, key)
