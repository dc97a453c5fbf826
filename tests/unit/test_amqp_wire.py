"""What the AMQP broker puts on the wire, checked against py-amqp (Celery's client) and kombu, without a server."""

from __future__ import annotations

import ssl
from datetime import datetime, timezone

import amqp.serialization
import pytest
from aiormq.abc import DeliveredMessage
from kombu.transport.native_delayed_delivery import calculate_routing_key
from pamqp import commands, decode
from pamqp.header import ContentHeader

from celeriac import Celery
from celeriac.brokers import broker_class
from celeriac.brokers._amqp_wire import (
    delay_routing_key,
    incoming_envelope,
    outgoing_properties,
    parse_url,
    ssl_context,
    strip_delay_bits,
)
from celeriac.brokers.amqp import AMQPBroker
from celeriac.brokers.base import Envelope
from celeriac.exceptions import ImproperlyConfigured


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("pyamqp://", ("localhost", 5672, "guest", "guest", "/", False)),
        ("amqp://guest:guest@localhost:5672//", ("localhost", 5672, "guest", "guest", "/", False)),
        ("amqp://u:p%40ss@rabbit/", ("rabbit", 5672, "u", "p@ss", "/", False)),
        ("amqp://rabbit:5673/prod", ("rabbit", 5673, "guest", "guest", "prod", False)),
        ("amqp://rabbit/%2Fdev", ("rabbit", 5672, "guest", "guest", "/dev", False)),
        ("amqps://rabbit/", ("rabbit", 5671, "guest", "guest", "/", True)),
    ],
)
def test_urls_read_as_kombu_reads_them(url: str, expected: tuple[object, ...]) -> None:
    p = parse_url(url)
    assert (p.host, p.port, p.login, p.password, p.vhost, p.tls) == expected


def test_broker_use_ssl_turns_tls_on_and_builds_the_context() -> None:
    assert parse_url("amqp://rabbit/", use_ssl=True).tls
    context = ssl_context({"cert_reqs": ssl.CERT_NONE})
    assert context is not None and context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert ssl_context(True) is not None


def test_the_seed_url_is_the_local_default_vhost() -> None:
    app = Celery("tasks", backend="rpc://", broker="pyamqp://", set_as_current=False)
    broker = app.create_broker()
    assert isinstance(broker, AMQPBroker)
    assert (broker.params.host, broker.params.port, broker.params.vhost) == ("localhost", 5672, "/")
    assert broker.heartbeat == 120  # broker_heartbeat reaches the broker
    assert broker_class("amqps://x/") is AMQPBroker
    with pytest.raises(ImproperlyConfigured):
        parse_url("redis://x")


def test_headers_are_encoded_as_py_amqp_decodes_them() -> None:
    headers = {
        "timelimit": [1.1, None],
        "expires": 1712345678.123,
        "retries": 3,
        "big": 2**40,
        "ignore_result": False,
        "stamps": {"k": ["v", 1]},
        "argsrepr": "(1, 2)",
        "raw": b"\x00\xff",
        "shadow": None,
        "origin": "gen1@hôst ✓",
        "group": "",
        "neg": -7,
    }
    envelope = Envelope(b"{}", headers, {"correlation_id": "id", "reply_to": "r"}, "application/json", "utf-8")
    props = outgoing_properties(envelope)
    raw = props.marshal()
    # py-amqp (Celery's client) reads the same values back, floats at full precision.
    table = raw[2:]  # after the property flags come short strings, then the header table
    decoded = _decode_headers(table, props)
    assert decoded["timelimit"] == [1.1, None]
    assert decoded["expires"] == 1712345678.123
    assert decoded["big"] == 2**40 and decoded["retries"] == 3
    assert decoded["stamps"] == {"k": ["v", 1]} and decoded["ignore_result"] is False
    assert decoded["raw"] == b"\x00\xff"
    assert decoded["shadow"] is None and decoded["origin"] == "gen1@hôst ✓" and decoded["group"] == ""
    assert decoded["neg"] == -7
    assert list(decoded) == list(headers)  # in order
    assert props.delivery_mode == 2 and props.priority == 0  # kombu's defaults


def test_a_header_name_longer_than_a_short_string_is_refused() -> None:
    envelope = Envelope(b"{}", {"k" * 256: 1}, {}, "application/json", "utf-8")
    with pytest.raises(TypeError, match="255 bytes"):
        outgoing_properties(envelope).marshal()


def test_many_distinct_header_names_are_encoded_right_and_not_all_kept() -> None:
    # The encoded names of the usual headers are kept between messages; a stream of messages that
    # each carry new names (user headers with ids in them) must neither grow that without bound
    # nor be written differently from the first message with a known name.
    from celeriac.brokers import _amqp_wire

    for n in range(2000):
        headers = {f"x-user-{n}": n, "task": "tasks.add", f"x-note-{n}": f"v{n}", "eta": None}
        envelope = Envelope(b"{}", headers, {}, "application/json", "utf-8")
        props = outgoing_properties(envelope)
        if n % 250 == 0:
            assert _decode_headers(props.marshal()[2:], props) == headers  # after the property flags
        else:
            props.marshal()
    assert len(_amqp_wire._NAMES) <= _amqp_wire._NAMES_KEPT
    assert "task" in _amqp_wire._NAMES


def _decode_headers(raw: bytes, props: object) -> dict[str, object]:
    # Skip content_type and content_encoding (short strings), then read the table with py-amqp.
    offset = 0
    for _ in range(2):
        offset += 1 + raw[offset]
    table, _ = amqp.serialization.loads("F", raw[offset:], 0)
    assert isinstance(table[0], dict)
    # pamqp (the other side of aio-pika) agrees.
    _, ours = decode.field_table(raw[offset:])
    assert ours == table[0]
    return table[0]


def test_delay_routing_keys_are_kombus() -> None:
    for seconds in (1, 2, 3, 60, 3600, 86400 * 365):
        assert delay_routing_key(seconds, "celery") == calculate_routing_key(seconds, "celery")
    key = delay_routing_key(5, "tasks.hi")
    assert strip_delay_bits(key) == "tasks.hi"
    assert strip_delay_bits("celery") == "celery"
    with pytest.raises(ValueError):
        delay_routing_key(0, "celery")


def test_expiration_and_timestamp_properties_pass_through() -> None:
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    envelope = Envelope(b"", {}, {"expiration": "60000", "timestamp": when}, "", "")
    props = outgoing_properties(envelope)
    assert props.expiration == "60000" and props.timestamp == when
    assert outgoing_properties(envelope, drop=("expiration",)).expiration is None


def test_a_received_message_reads_back_as_the_envelope_sent() -> None:
    """Published properties, through pamqp's wire format and aiormq's delivery, give kombu's
    ``Message.properties`` back (what the worker's decode and the rpc:// backend read)."""
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    sent = Envelope(
        b"[[4, 4], {}, {}]",
        {"task": "tasks.add", "id": "abc", "retries": 0, "eta": None},
        {"correlation_id": "abc", "reply_to": "r1", "priority": 3, "expiration": "60000", "timestamp": when},
        "application/json",
        "utf-8",
    )
    content = ContentHeader(properties=outgoing_properties(sent), body_size=len(sent.body))
    received = ContentHeader()
    received.unmarshal(content.marshal())
    deliver = commands.Basic.Deliver("ctag", 7, True, "ex", "rk")
    envelope = incoming_envelope(DeliveredMessage(deliver, received, sent.body, None))  # type: ignore[arg-type]
    assert envelope.body == sent.body and envelope.headers == sent.headers
    assert (envelope.content_type, envelope.content_encoding) == ("application/json", "utf-8")
    assert envelope.properties == {
        "correlation_id": "abc",
        "reply_to": "r1",
        "delivery_mode": 2,
        "priority": 3,
        "expiration": "60000",
        "timestamp": when,
    }
