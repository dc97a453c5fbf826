"""Coverage-guided fuzz targets (atheris) for the code that turns a broker delivery into a task.

Each target takes the bytes libFuzzer made up and feeds them to the path a worker takes:

``redis``     a Redis list item (kombu's JSON envelope) -> ``RedisBroker._delivery`` -> ``decode``
``sqs``       an SQS message body (base64 of JSON, or JSON) -> ``sqs._delivery`` -> ``decode``
``amqp``      AMQP content-header properties + body -> pamqp -> aiormq -> ``incoming_envelope`` -> ``decode``
``protocol``  headers, properties, content type and body -> ``decode`` (protocol 2 and protocol 1),
              with json, msgpack and yaml accepted

The property, for every input: the broker step returns a ``Delivery`` (a malformed item is handed
on to be dead-lettered: it never raises, or it would fail the whole batch it came in), and
``decode`` returns a well-formed ``TaskMessage`` or raises what the worker catches to dead-letter
a message (``ContentDisallowed``, ``DecodeError``, ``InvalidTaskError``). Any other exception is a
crash; so is unpickling anything (pickle is never accepted here: its decoder is replaced by one
that raises ``Unpickled``, a ``BaseException`` no ``except Exception`` can swallow), and so is an
input that takes longer than libFuzzer's ``-timeout``.

The corpus is seeded with real messages: celeriac's own envelopes, and what Celery 5 sends
(protocol 2 and 1, json, msgpack, yaml and pickle, with ETAs, time limits and canvas), taken from
kombu's in-memory transport, which builds the same payload its Redis and SQS transports store.

Run one target::

    python -m tests.reliability.fuzz_targets redis CORPUS_DIR -runs=10000 -max_total_time=20

(``scripts/fuzz.py`` does it for long runs; ``tests/reliability/test_fuzz_atheris.py`` in CI.)
Only the standard library is imported at the top, so that celeriac can be imported under
atheris' instrumentation.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TARGETS = ("redis", "sqs", "amqp", "protocol")
SEP = b"\x00"
_AMQP_HEADER = struct.Struct(">H")  # length of the properties part of an ``amqp`` input


class Unpickled(BaseException):
    """Raised instead of unpickling: a pickle body was decoded although pickle isn't accepted."""


class Setup:
    """What the targets share, made once per process (after instrumentation, when fuzzing)."""

    def __init__(self) -> None:
        from celeriac.brokers.redis import RedisBroker
        from celeriac.serialization import prepare_accept_content

        self.accept_json = prepare_accept_content(["json"])
        self.accept_many = prepare_accept_content(["json", "msgpack", "yaml"])
        self.redis = RedisBroker("redis://localhost:6379/0", {})


_setup: Setup | None = None


def guard_pickle() -> None:
    """Make any unpickling a crash. Only in the fuzzing process: it changes the process-wide registry."""
    from celeriac.serialization import Serializer, _by_content_type, registry

    def refuse(_: bytes) -> Any:
        raise Unpickled("a pickle payload reached pickle.loads")

    guard = Serializer("pickle", "application/x-python-serialize", "binary", registry["pickle"].encode, refuse)
    registry["pickle"] = _by_content_type[guard.content_type] = guard


def setup() -> Setup:
    global _setup
    if _setup is None:
        _setup = Setup()
    return _setup


def check_decode(envelope: Any, accept: frozenset[str]) -> None:
    """``decode`` returns a well-formed task or refuses with the errors the worker dead-letters on."""
    from celeriac.exceptions import ContentDisallowed, DecodeError, InvalidTaskError
    from celeriac.protocol import decode

    try:
        message = decode(envelope, accept)
    except (ContentDisallowed, DecodeError, InvalidTaskError):
        return
    assert isinstance(message.task, str) and message.task, message.task
    assert isinstance(message.id, str) and message.id, message.id
    assert isinstance(message.args, tuple)
    assert isinstance(message.kwargs, Mapping)
    assert isinstance(message.retries, int)
    assert isinstance(message.replaced_task_nesting, int)
    assert message.time_limit is None or isinstance(message.time_limit, float)
    assert message.soft_time_limit is None or isinstance(message.soft_time_limit, float)
    assert message.eta is None or isinstance(message.eta_datetime, datetime)
    assert message.expires is None or isinstance(message.expires_datetime, datetime)


def check_delivery(delivery: Any, tag: str, queue: str) -> None:
    from celeriac.brokers.base import Delivery

    assert isinstance(delivery, Delivery)
    assert delivery.tag == tag and delivery.queue == queue
    assert isinstance(delivery.envelope.body, bytes)
    assert isinstance(delivery.envelope.headers, Mapping)
    assert isinstance(delivery.envelope.properties, Mapping)
    assert isinstance(delivery.envelope.content_type, str)
    assert isinstance(delivery.envelope.content_encoding, str)
    assert isinstance(delivery.exchange, str) and isinstance(delivery.routing_key, str)


# -- targets -------------------------------------------------------------------------------------


def redis_target(data: bytes) -> None:
    """A Redis list item, as the claim script hands it on.

    The script reads the delivery tag with Redis' cjson, which refuses JSON nested deeper than
    1000; such an item comes without a tag (it was dead-lettered in Redis). Anything else may come
    with one, since cjson is more lenient than Python's json (``0x10``, ``inf``).
    """
    s = setup()
    tag = "fuzz-tag" if json_depth(data) <= CJSON_MAX_DEPTH else ""
    delivery = s.redis._delivery("celery", tag, data)
    check_delivery(delivery, tag, "celery")
    check_decode(delivery.envelope, s.accept_json)


CJSON_MAX_DEPTH = 1000


def json_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in ``data`` (strings skipped), as cjson counts."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def sqs_target(data: bytes) -> None:
    """An SQS message body (a str: SQS carries text)."""
    from celeriac.brokers.sqs import _delivery

    s = setup()
    message = {
        "Body": data.decode("utf-8", "replace"),
        "ReceiptHandle": "r",
        "Attributes": {"ApproximateReceiveCount": "1"},
    }
    delivery = _delivery("celery", message)
    check_delivery(delivery, "r", "celery")
    check_decode(delivery.envelope, s.accept_json)


def amqp_target(data: bytes) -> None:
    """The properties part of an AMQP content header, then the body.

    Input: 2-byte length of the properties, the properties (flags and values, as on the wire),
    the body. Properties pamqp refuses to read are not fuzzed further: the connection fails on them
    in aiormq, before any celeriac code runs (and RabbitMQ doesn't relay them). Nor
    is an ``expiration`` RabbitMQ refuses to publish (it takes an integer of milliseconds, 0 to
    2**32 - 1, written in decimal): ``1e400`` would make ``incoming_envelope`` raise, but can't
    reach a consumer.
    """
    from aiormq.abc import DeliveredMessage
    from pamqp import commands, header

    from celeriac.brokers._amqp_wire import incoming_envelope

    s = setup()
    if len(data) < _AMQP_HEADER.size:
        return
    (size,) = _AMQP_HEADER.unpack_from(data)
    props, body = data[_AMQP_HEADER.size : _AMQP_HEADER.size + size], data[_AMQP_HEADER.size + size :]
    content = header.ContentHeader()
    try:
        content.unmarshal(struct.pack(">HHQ", commands.Basic.frame_id, 0, len(body)) + props)
        deliver = commands.Basic.Deliver("ctag", 1, False, "", "celery")
        message = DeliveredMessage(deliver, content, body, None)  # type: ignore[arg-type]
    except Exception:
        return
    if not rabbitmq_accepts_expiration(content.properties.expiration):
        return
    envelope = incoming_envelope(message)
    assert isinstance(envelope.headers, Mapping) and isinstance(envelope.body, bytes)
    check_decode(envelope, s.accept_json)


def rabbitmq_accepts_expiration(value: str | None) -> bool:
    """What RabbitMQ's ``rabbit_basic:parse_expiration`` lets through (it closes the channel otherwise)."""
    if value is None:
        return True
    match = re.fullmatch(r"[+-]?([0-9]+)", value)
    return match is not None and not value.startswith("-") and int(match[1]) < 2**32


def protocol_input(headers: Any, properties: Any, content_type: str, body: bytes) -> bytes:
    """A ``protocol`` input: JSON headers NUL JSON properties NUL content type NUL body."""
    return SEP.join([_json(headers), _json(properties), content_type.encode(), body])


def protocol_target(data: bytes) -> None:
    """``decode`` alone, with headers and properties of any JSON type (a wrong type included)."""
    from celeriac.brokers.base import Envelope

    s = setup()
    parts = data.split(SEP, 3)
    if len(parts) != 4:
        parts = [b'{"task": "tasks.add", "id": "x"}', b"{}", b"application/json", data]
    headers, properties = _loose_json(parts[0]), _loose_json(parts[1])
    if not isinstance(properties, Mapping):
        properties = {}  # the brokers always make properties a dict
    content_type = parts[2].decode("utf-8", "replace")
    for accept in (s.accept_json, s.accept_many):
        check_decode(Envelope(parts[3], headers, properties, content_type, "utf-8"), accept)


def _loose_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace")  # a string where a mapping belongs: a wrong type too


def _json(value: Any) -> bytes:
    text = json.dumps(value, default=str).encode()
    return _NESTED.sub(lambda m: b"[" * int(m[1]) + b"]" * int(m[1]), text)


TARGET_FUNCTIONS: dict[str, Callable[[bytes], None]] = {
    "redis": redis_target,
    "sqs": sqs_target,
    "amqp": amqp_target,
    "protocol": protocol_target,
}


# -- structure-aware mutation -------------------------------------------------------------------
#
# Byte flips rarely keep JSON valid, and a Redis or SQS body is base64 inside JSON: most of what
# plain libFuzzer mutation makes is refused by the first ``json.loads``. So half of the mutations
# parse the input, change one value somewhere in it (the task call inside the body included) to
# one of the values below or to a wrong type, and write it back; the rest are libFuzzer's own.

HEADER_NAMES = ("task", "id", "eta", "expires", "retries", "timelimit", "argsrepr", "kwargsrepr", "group",
                "group_index", "root_id", "parent_id", "ignore_result", "stamps", "stamped_headers", "shadow",
                "replaced_task_nesting", "origin", "lang", "redelivered", "headers", "properties", "body",
                "body_encoding", "delivery_info", "delivery_tag", "content-type", "content-encoding",
                "priority", "delivery_mode", "reply_to", "correlation_id", "exchange", "routing_key",
                "args", "kwargs", "callbacks", "errbacks", "chain", "chord", "taskset", "__type__",
                "__value__")  # fmt: skip
CONTENT_TYPES = ("application/json", "application/x-python-serialize", "application/x-msgpack", "application/x-yaml",
                 "application/data", "application/text", "text/plain", "")  # fmt: skip
TAG_TYPES = ("datetime", "date", "time", "decimal", "uuid", "bytes", "base64", "other")


def _interesting(rng: Any) -> Any:
    choices: list[Callable[[], Any]] = [
        lambda: None, lambda: True, lambda: False, lambda: 0, lambda: -1, lambda: 2**63, lambda: 10**400,
        lambda: -(10**400), lambda: float("inf"), lambda: float("-inf"), lambda: float("nan"), lambda: 1e308,
        lambda: 0.5, lambda: "", lambda: "x", lambda: "\ud800", lambda: "\x00", lambda: "9" * 5000,
        lambda: "2030-01-02T03:04:05", lambda: "2030-01-02T03:04:05Z", lambda: "not a date", lambda: "base64",
        lambda: [], lambda: {}, lambda: [None, None], lambda: [1.5, 1], lambda: [[], {}, {}],
        lambda: {"__type__": rng.choice(TAG_TYPES), "__value__": _interesting(rng)},
        lambda: rng.choice(HEADER_NAMES), lambda: rng.choice(CONTENT_TYPES),
        lambda: _nested(rng.choice((2, 50, 900, 990, 1100, 5000))),
    ]  # fmt: skip
    return rng.choice(choices)()


def _nested(depth: int) -> str:
    """A placeholder ``_json`` writes as ``depth`` nested lists (too deep for ``json.dumps``)."""
    return f"{_NEST}{depth}"


_NEST = "\x00nested:"
_NESTED = re.compile(rb'"\\u0000nested:(\d+)"')


def mutate_value(value: Any, rng: Any, depth: int = 0) -> Any:
    """``value`` with one thing in it changed: a value replaced, a key added or dropped."""
    if isinstance(value, dict) and value and depth < 20 and rng.random() < 0.7:
        key = rng.choice(list(value))
        if rng.random() < 0.15:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: mutate_value(value[key], rng, depth + 1)}
    if isinstance(value, dict) and rng.random() < 0.5:
        return {**value, rng.choice(HEADER_NAMES): _interesting(rng)}
    if isinstance(value, list) and value and depth < 20 and rng.random() < 0.7:
        i = rng.randrange(len(value))
        if rng.random() < 0.15:
            return value[:i] + value[i + 1 :]
        return value[:i] + [mutate_value(value[i], rng, depth + 1)] + value[i + 1 :]
    if isinstance(value, str) and value and rng.random() < 0.3:
        i = rng.randrange(len(value))
        return value[:i] + rng.choice(["", "\ud800", "\xff", "Z", "+25:00", "9" * 30]) + value[i + 1 :]
    return _interesting(rng)


def _mutate_bytes(data: bytes, max_size: int, rng: Any) -> bytes:
    import atheris

    return bytes(atheris.Mutate(data, max_size))


def _mutate_json_bytes(data: bytes, max_size: int, rng: Any) -> bytes:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return _mutate_bytes(data, max_size, rng)
    return _json(mutate_value(value, rng))


def _mutate_kombu(data: bytes, max_size: int, rng: Any) -> bytes:
    """A kombu envelope: the envelope itself, or the task call inside its base64 body."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):
        return _mutate_bytes(data, max_size, rng)
    if not isinstance(payload, dict) or not isinstance(payload.get("body"), str) or rng.random() < 0.4:
        return _json(mutate_value(payload, rng))
    try:
        body = base64.b64decode(payload["body"], validate=True)
    except ValueError:
        return _json(mutate_value(payload, rng))
    body = _mutate_json_bytes(body, max_size, rng)
    return _json({**payload, "body": base64.b64encode(body).decode()})


def _mutate_sqs(data: bytes, max_size: int, rng: Any) -> bytes:
    try:
        inner = base64.b64decode(data, validate=True)
    except ValueError:
        return _mutate_kombu(data, max_size, rng)
    return base64.b64encode(_mutate_kombu(inner, max_size, rng))


def _mutate_protocol(data: bytes, max_size: int, rng: Any) -> bytes:
    parts = data.split(SEP, 3)
    if len(parts) != 4:
        return _mutate_bytes(data, max_size, rng)
    i = rng.randrange(4)
    if i == 2:
        parts[2] = rng.choice(CONTENT_TYPES).encode()
    elif i == 3 and rng.random() < 0.3:
        parts[3] = _mutate_bytes(parts[3], max_size, rng)
    else:
        parts[i] = _mutate_json_bytes(parts[i], max_size, rng)
    return SEP.join(parts)


def _mutate_amqp(data: bytes, max_size: int, rng: Any) -> bytes:
    """The headers table, changed as a mapping and encoded again as celeriac encodes headers."""
    from pamqp import commands, header

    from celeriac.brokers._amqp_wire import _Properties

    try:
        (size,) = _AMQP_HEADER.unpack_from(data)
        props, body = data[_AMQP_HEADER.size : _AMQP_HEADER.size + size], data[_AMQP_HEADER.size + size :]
        content = header.ContentHeader()
        content.unmarshal(struct.pack(">HHQ", commands.Basic.frame_id, 0, len(body)) + props)
        fields = {k: getattr(content.properties, k) for k in content.properties.attributes()}
        if rng.random() < 0.3:
            body = _mutate_json_bytes(body, max_size, rng)
        else:
            fields["headers"] = mutate_value(fields.get("headers") or {}, rng)
        props = _Properties(**fields).marshal()
    except Exception:
        return _mutate_bytes(data, max_size, rng)
    return _AMQP_HEADER.pack(len(props)) + props + body


MUTATORS: dict[str, Callable[[bytes, int, Any], bytes]] = {
    "redis": _mutate_kombu,
    "sqs": _mutate_sqs,
    "amqp": _mutate_amqp,
    "protocol": _mutate_protocol,
}


def custom_mutator(target: str) -> Callable[[bytes, int, int], bytes]:
    import random

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return _mutate_bytes(data, max_size, rng)
        try:
            out = MUTATORS[target](data, max_size, rng)
        except Exception:  # e.g. a mapping key json can't write: mutate the bytes instead
            return _mutate_bytes(data, max_size, rng)
        return out if len(out) <= max_size else _mutate_bytes(data, max_size, rng)

    return mutate


# -- seeds ---------------------------------------------------------------------------------------


def celeriac_envelopes() -> list[Any]:
    """Envelopes celeriac's client sends: plain, with ETA and time limits, canvas, other serializers."""
    from celeriac.protocol import TaskMessage, encode

    tid = "5b0f7a4e-0000-4000-8000-00000000000"
    eta = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc).isoformat()
    sig = {"task": "tasks.add", "args": [1], "kwargs": {}, "options": {}, "subtask_type": None, "immutable": False}
    messages = [
        TaskMessage(id=tid + "1", task="tasks.add", args=(1, 2)),
        TaskMessage(
            id=tid + "2",
            task="tasks.add",
            args=(1,),
            kwargs={"y": 2},
            eta=eta,
            expires=eta,
            retries=3,
            time_limit=10.0,
            soft_time_limit=5.0,
            priority=7,
            group="g",
            group_index=0,
            stamped_headers=["s"],
            stamps={"s": "v"},
            extra_headers={"x-custom": [1, 2]},
        ),
        TaskMessage(
            id=tid + "3",
            task="tasks.add",
            args=(b"\xff", datetime(2020, 1, 1)),
            callbacks=[sig],
            errbacks=[sig],
            chain=[sig, sig],
            chord={**sig, "chord_size": 2},
        ),
    ]
    out = [encode(m) for m in messages]
    out += [encode(messages[1], serializer) for serializer in ("msgpack", "yaml", "pickle")]
    return out


def celery_messages() -> list[dict[str, Any]]:
    """kombu's payloads for what Celery 5 sends (the dict its Redis and SQS transports store)."""
    from celery import Celery, chain, chord, group

    out: list[dict[str, Any]] = []
    for protocol in (2, 1):
        app = Celery("seeds", broker="memory://", backend="cache+memory://", set_as_current=False)
        app.conf.task_protocol = protocol
        add = app.signature("tasks.add")
        with app.connection_for_write() as conn:
            send = app.send_task
            send("tasks.add", args=(1, 2), connection=conn)
            send("tasks.add", args=(1,), kwargs={"y": 2}, countdown=30, expires=600, time_limit=10, soft_time_limit=5,
                 priority=3, retries=2, connection=conn)  # fmt: skip
            for serializer in ("msgpack", "yaml", "pickle"):
                send("tasks.add", args=(1, 2), serializer=serializer, connection=conn)
            if protocol == 2:
                link, link_error = add.clone((3,)), add.clone((4,))
                send(
                    "tasks.add", args=(b"\xff", datetime(2020, 1, 1)), link=link, link_error=link_error, connection=conn
                )
                chain(add.clone((1, 2)), add.clone((3,))).apply_async(connection=conn)
                group(add.clone((1, 2)), add.clone((3, 4))).apply_async(connection=conn)
                chord([add.clone((1, 2))], add.clone((5,))).apply_async(connection=conn)
            channel = conn.default_channel
            for queue in list(channel.queues):
                while True:
                    try:
                        out.append(channel._get(queue))
                    except Exception:
                        break
        app.close()
    return out


def _kombu_to_envelope(payload: Mapping[str, Any]) -> Any:
    from celeriac.brokers.base import Envelope

    props = dict(payload.get("properties") or {})
    body = payload.get("body", "")
    raw = base64.b64decode(body) if props.get("body_encoding") == "base64" else str(body).encode()
    for key in ("body_encoding", "delivery_info", "delivery_tag"):
        props.pop(key, None)
    return Envelope(raw, dict(payload.get("headers") or {}), props, str(payload.get("content-type") or ""),
                    str(payload.get("content-encoding") or ""))  # fmt: skip


def _kombu_payloads(celeriac: list[Any]) -> list[dict[str, Any]]:
    s = setup()
    return [s.redis._payload(e, "", "celery", 0) for e in celeriac] + celery_messages()


def seeds(target: str) -> list[bytes]:
    """Real messages, in the input format of ``target``."""
    celeriac = celeriac_envelopes()
    payloads = _kombu_payloads(celeriac)
    if target == "redis":
        return [_json(p) for p in payloads]
    if target == "sqs":
        return [base64.b64encode(_json(p)) for p in payloads] + [_json(p) for p in payloads[:3]]
    envelopes = celeriac + [_kombu_to_envelope(p) for p in payloads[len(celeriac) :]]
    if target == "amqp":
        from celeriac.brokers._amqp_wire import outgoing_properties

        out = []
        for e in envelopes:
            props = outgoing_properties(e).marshal()
            out.append(_AMQP_HEADER.pack(len(props)) + props + e.body)
        return out
    if target == "protocol":
        return [protocol_input(e.headers, e.properties, e.content_type, e.body) for e in envelopes] + REGRESSIONS
    raise ValueError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")


def _call(**headers: Any) -> bytes:
    return protocol_input({"task": "tasks.add", "id": "x", **headers}, {}, "application/json", b"[[1], {}, {}]")


# Inputs that crashed decode() once (each now refused with InvalidTaskError): kept in every corpus.
REGRESSIONS = [
    _call(retries=float("inf")),  # OverflowError: an AMQP double or JSON Infinity
    _call(timelimit=[None, 10**400]),  # OverflowError: int too large to convert to float
    _call(replaced_task_nesting=float("-inf")),
    protocol_input({}, {}, "application/json", b'{"task": "tasks.add", "id": ""}'),  # protocol 1, empty id
]


def write_seeds(target: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    found = seeds(target)
    for i, seed in enumerate(found):
        (directory / f"seed-{i:03d}").write_bytes(seed)
    return len(found)


# -- running under atheris -------------------------------------------------------------------------


def _with_canary(target: Callable[[bytes], None], canary: bytes) -> Callable[[bytes], None]:
    """The target, failing on one input: shows that a failure is reported and its input kept."""

    def run(data: bytes) -> None:
        if data == canary:
            raise AssertionError("canary input")
        target(data)

    run.__name__ = target.__name__
    return run


def main(argv: list[str]) -> None:
    """``fuzz_targets TARGET [libFuzzer arguments, corpus directories]``."""
    import atheris

    if len(argv) < 2 or argv[1] not in TARGETS:
        raise SystemExit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [libFuzzer args] [corpus dirs]")
    target = argv[1]
    with atheris.instrument_imports(include=["celeriac"]):
        import celeriac.brokers._amqp_wire
        import celeriac.brokers.redis
        import celeriac.brokers.sqs
        import celeriac.protocol
        import celeriac.serialization  # noqa: F401
    setup()
    guard_pickle()
    function = TARGET_FUNCTIONS[target]
    if os.environ.get("CELERIAC_FUZZ_CANARY"):
        function = _with_canary(function, os.environ["CELERIAC_FUZZ_CANARY"].encode())
    atheris.Setup([argv[0], *argv[2:]], function, custom_mutator=custom_mutator(target))
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
