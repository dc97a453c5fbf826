"""Protocol v2 against real Celery: golden messages in both directions, protocol 1, malformed bodies."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import celery
import pytest
from kombu.utils import json as kombu_json

from celeriac import Celery, signals
from celeriac.brokers.base import Envelope
from celeriac.exceptions import ContentDisallowed, DecodeError, InvalidTaskError
from celeriac.protocol import TaskMessage, decode, encode, origin, parse_iso8601
from celeriac.serialization import prepare_accept_content

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
JSON = prepare_accept_content(["json"])
TASK_ID = "4f3e2d1c-0b0a-4999-8888-777766665555"
ETA = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
EXPIRES = datetime(2030, 1, 3, tzinfo=timezone.utc)
CALLBACK: dict[str, Any] = {
    "task": "tasks.log",
    "args": ["done"],
    "kwargs": {},
    "options": {},
    "subtask_type": None,
    "immutable": False,
}
ERRBACK: dict[str, Any] = {
    "task": "tasks.oops",
    "args": [],
    "kwargs": {},
    "options": {},
    "subtask_type": None,
    "immutable": True,
}

# Each case: the keyword arguments of Celery's ``as_task_v2`` (eta/expires as datetimes).
# Headers are compared whole, argsrepr/kwargsrepr and origin included. The cases hold no bytes
# arguments: Celery's saferepr shows b"\xff\x00" as b'ff00' where celeriac shows Python's repr,
# a display-only difference (workers never read argsrepr back).
CASES: dict[str, dict[str, Any]] = {
    "plain": {"args": (2, 2), "kwargs": {}},
    "kwargs": {"args": [], "kwargs": {"x": 1, "name": "caf\u00e9", "items": [1, 2, 3]}},
    "eta-expires": {"args": (1,), "kwargs": {}, "eta": ETA, "expires": EXPIRES},
    "time-limits": {"args": (), "kwargs": {}, "time_limit": 30, "soft_time_limit": 10},
    "only-soft": {"args": (), "kwargs": {}, "soft_time_limit": 5},
    "workflow": {
        "args": (3,),
        "kwargs": {},
        "group_id": "g-1",
        "group_index": 4,
        "root_id": "root-1",
        "parent_id": "parent-1",
        "retries": 2,
        "shadow": "tasks.alias",
        "ignore_result": True,
        "callbacks": [CALLBACK],
        "errbacks": [ERRBACK],
        "chain": [CALLBACK],
        "chord": {"task": "tasks.join", "args": [], "kwargs": {}, "options": {}},
        "replaced_task_nesting": 1,
    },
    "reprs": {"args": (1,), "kwargs": {"a": 1}, "argsrepr": "<hidden>", "kwargsrepr": "<hidden too>"},
    "reply-to": {"args": (), "kwargs": {}, "reply_to": "some-reply-queue"},
}


@pytest.fixture(scope="module")
def celery_app() -> Iterator[celery.Celery]:
    app = celery.Celery("tasks", broker="memory://", set_as_current=False)
    yield app
    app.close()


def celeriac_message(task_id: str, name: str, case: dict[str, Any], **extra: Any) -> TaskMessage:
    """The TaskMessage for one of CASES (Celery's argument names -> TaskMessage fields)."""
    renames = {"group_id": "group", "time_limit": "time_limit", "soft_time_limit": "soft_time_limit"}
    fields: dict[str, Any] = {}
    for key, value in case.items():
        if key in ("eta", "expires"):
            value = value.isoformat()
        fields[renames.get(key, key)] = value
    fields["args"] = tuple(fields.get("args", ()))
    return TaskMessage(id=task_id, task=name, **fields, **extra)


@pytest.mark.parametrize("case", sorted(CASES))
def test_encode_matches_celery_as_task_v2(celery_app: celery.Celery, case: str) -> None:
    spec = CASES[case]
    theirs = celery_app.amqp.as_task_v2(TASK_ID, "tasks.add", **spec)
    ours = encode(celeriac_message(TASK_ID, "tasks.add", spec))

    assert dict(ours.headers) == theirs.headers  # every key and value, origin and argsrepr included
    assert ours.body == kombu_json.dumps(theirs.body).encode("utf-8")  # byte for byte
    assert ours.properties["correlation_id"] == theirs.properties["correlation_id"] == TASK_ID
    assert ours.properties["reply_to"] == theirs.properties["reply_to"]
    assert (ours.content_type, ours.content_encoding) == ("application/json", "utf-8")


def test_timelimit_is_hard_then_soft() -> None:
    envelope = encode(TaskMessage(id=TASK_ID, task="t", time_limit=30, soft_time_limit=10))
    assert envelope.headers["timelimit"] == [30, 10]
    message = decode(envelope, JSON)
    assert (message.time_limit, message.soft_time_limit) == (30, 10)


def test_stamps_match_celery(celery_app: celery.Celery) -> None:
    theirs = celery_app.amqp.as_task_v2(TASK_ID, "t", (), {}, stamped_headers=["tenant"], tenant="acme")
    ours = encode(TaskMessage(id=TASK_ID, task="t", stamped_headers=["tenant"], stamps={"tenant": "acme"}))
    assert ours.headers["stamped_headers"] == theirs.headers["stamped_headers"] == ["tenant"]
    assert ours.headers["stamps"] == theirs.headers["stamps"] == {"tenant": "acme"}


def test_origin_is_celerys_anonymous_nodename() -> None:
    from celery.utils.nodenames import anon_nodename

    assert origin() == anon_nodename()


def kombu_envelope(raw: dict[str, Any]) -> Envelope:
    """An Envelope from a kombu virtual-transport message (what Redis keeps in the queue's list)."""
    properties = dict(raw["properties"])
    body = raw["body"]
    if properties.get("body_encoding") == "base64":
        body = base64.b64decode(body)
    return Envelope(
        body=body if isinstance(body, bytes) else body.encode(raw["content-encoding"]),
        headers=raw["headers"],
        properties=properties,
        content_type=raw["content-type"],
        content_encoding=raw["content-encoding"],
    )


def test_send_task_publishes_what_celery_publishes(celery_app: celery.Celery, app: Celery) -> None:
    options: dict[str, Any] = {
        "task_id": TASK_ID,
        "eta": datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc),  # past: delivered at once
        "expires": EXPIRES,
        "time_limit": 60,
        "soft_time_limit": 50,
        "priority": 7,
        "queue": "reports",
        "headers": {"x-tenant": "acme"},
    }
    with celery_app.connection_for_write() as conn:
        celery_app.send_task("tasks.report", (1, "a"), {"k": Decimal("1.5")}, connection=conn, **options)
        theirs = kombu_envelope(conn.default_channel._get("reports"))
    app.send_task("tasks.report", (1, "a"), {"k": Decimal("1.5")}, **options)
    (delivery,) = app.connection_for_write().get(["reports"], max_messages=1, timeout=0)
    ours = delivery.envelope

    assert dict(ours.headers) == dict(theirs.headers)
    assert ours.body == theirs.body
    for key in ("correlation_id", "delivery_mode", "priority"):
        assert ours.properties[key] == theirs.properties[key], key
    assert ours.properties["reply_to"] and theirs.properties["reply_to"]


def test_countdown_and_numeric_expires_become_aware_iso_times(app: Celery) -> None:
    published: list[Mapping[str, Any]] = []

    def capture(headers: Mapping[str, Any], **_: Any) -> None:
        published.append(headers)

    signals.after_task_publish.connect(capture)
    try:
        before = datetime.now(timezone.utc)
        app.send_task("tasks.add", (1, 2), countdown=30, expires=120)
        after = datetime.now(timezone.utc)
    finally:
        signals.after_task_publish.disconnect(capture)
    # The message waits in the broker until its ETA: not visible yet.
    assert app.connection_for_write().get(["celery"], max_messages=1, timeout=0) == []
    (headers,) = published
    eta, expires = headers["eta"], headers["expires"]
    assert eta.endswith("+00:00") and expires.endswith("+00:00")
    assert before + timedelta(seconds=30) <= datetime.fromisoformat(eta) <= after + timedelta(seconds=30)
    assert before + timedelta(seconds=120) <= datetime.fromisoformat(expires) <= after + timedelta(seconds=120)


@pytest.mark.parametrize("case", sorted(CASES))
def test_decode_celery_message(celery_app: celery.Celery, case: str) -> None:
    spec = CASES[case]
    theirs = celery_app.amqp.as_task_v2(TASK_ID, "tasks.add", **spec)
    envelope = Envelope(
        body=kombu_json.dumps(theirs.body).encode("utf-8"),
        headers=theirs.headers,
        properties={**theirs.properties, "delivery_mode": 2, "priority": 0},
        content_type="application/json",
        content_encoding="utf-8",
    )
    message = decode(envelope, JSON)
    assert message.id == TASK_ID and message.task == "tasks.add"
    assert message.args == tuple(spec["args"]) and message.kwargs == spec["kwargs"]
    assert message.eta_datetime == spec.get("eta")
    assert message.expires_datetime == spec.get("expires")
    assert message.time_limit == spec.get("time_limit")
    assert message.soft_time_limit == spec.get("soft_time_limit")
    assert message.group == spec.get("group_id") and message.group_index == spec.get("group_index")
    assert message.root_id == spec.get("root_id", TASK_ID) and message.parent_id == spec.get("parent_id")
    assert message.retries == spec.get("retries", 0)
    assert message.shadow == spec.get("shadow") and message.ignore_result == spec.get("ignore_result", False)
    assert message.callbacks == spec.get("callbacks") and message.errbacks == spec.get("errbacks")
    assert message.chain == spec.get("chain") and message.chord == spec.get("chord")
    assert message.replaced_task_nesting == spec.get("replaced_task_nesting", 0)
    assert message.reply_to == spec.get("reply_to", "") and message.correlation_id == TASK_ID
    assert message.extra_headers == {}
    # What we decode re-encodes to Celery's bytes.
    assert encode(message).body == envelope.body
    assert dict(encode(message).headers) == theirs.headers


def load_fixture(name: str) -> Envelope:
    text = (FIXTURES / name).read_text()
    return kombu_envelope(kombu_json.loads(text))


def test_fixture_simple_add() -> None:
    message = decode(load_fixture("celery-add-simple.json"), JSON)
    assert message.task == "tasks.add" and message.id == "0b1c6a8e-6c1d-4d0e-9f55-6d3f4e7a1a01"
    assert message.args == (2, 3) and message.kwargs == {}
    assert message.root_id == message.id and message.parent_id is None
    assert message.eta is None and message.expires is None
    assert (message.time_limit, message.soft_time_limit) == (None, None)
    assert message.callbacks is None and message.errbacks is None
    assert message.origin is not None and message.origin.startswith("gen")
    assert message.priority == 0 and message.delivery_mode == 2


def test_fixture_full_report() -> None:
    message = decode(load_fixture("celery-report-full.json"), JSON)
    assert message.task == "tasks.report" and message.id == "5d0b8a3c-2f4e-4d7a-8c1b-9e6f0a2b3c02"
    assert message.args == (datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc), Decimal("12.50"), b"\xff\x00", "café")
    assert message.kwargs == {"when": "later", "count": 3}
    assert message.eta_datetime == ETA and message.expires_datetime == EXPIRES
    assert (message.time_limit, message.soft_time_limit) == (60, 50)
    assert message.priority == 7 and message.retries == 1
    assert message.root_id == "9a8b7c6d-0000-4000-8000-000000000003"
    assert message.parent_id == "9a8b7c6d-0000-4000-8000-000000000004"
    assert (message.group, message.group_index) == ("9a8b7c6d-0000-4000-8000-000000000005", 2)
    assert message.shadow == "tasks.report[shadowed]"
    assert message.extra_headers == {"x-tenant": "acme"}
    assert message.callbacks is not None and message.errbacks is not None
    assert [(s["task"], s["args"], s["immutable"]) for s in message.callbacks] == [("tasks.add", [1], False)]
    assert [(s["task"], s["args"], s["immutable"]) for s in message.errbacks] == [("tasks.report", ["failed"], True)]


def test_fixture_protocol_1() -> None:
    envelope = load_fixture("celery-add-v1.json")
    assert envelope.headers == {}
    message = decode(envelope, JSON)
    assert message.task == "tasks.add" and message.id == "7e6d5c4b-1a2b-4c3d-8e9f-0a1b2c3d4e06"
    assert message.args == (4, 5) and message.kwargs == {}
    assert (message.time_limit, message.soft_time_limit) == (30, 20)


def v1_envelope(body: Any) -> Envelope:
    return Envelope(json.dumps(body).encode(), {}, {"correlation_id": "x"}, "application/json", "utf-8")


def test_protocol_1_dict_body() -> None:
    body = {
        "task": "tasks.add",
        "id": "v1-id",
        "args": [1, 2],
        "kwargs": {"z": 3},
        "eta": "2030-01-02T03:04:05",
        "expires": None,
        "retries": 3,
        "timelimit": [None, 9],
        "taskset": "grp",
        "callbacks": [CALLBACK],
        "errbacks": None,
        "chord": None,
        "utc": True,
    }
    message = decode(v1_envelope(body), JSON)
    assert (message.task, message.id, message.args, message.kwargs) == ("tasks.add", "v1-id", (1, 2), {"z": 3})
    assert message.eta_datetime == ETA  # naive protocol-1 times are UTC
    assert message.retries == 3 and message.group == "grp"
    assert (message.time_limit, message.soft_time_limit) == (None, 9)
    assert message.callbacks == [CALLBACK]


def v2_envelope(body: Any, **headers: Any) -> Envelope:
    base = {"task": "tasks.add", "id": "v2-id", "lang": "py"}
    base.update(headers)
    return Envelope(json.dumps(body).encode(), base, {}, "application/json", "utf-8")


EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@pytest.mark.parametrize(
    ("envelope", "match"),
    [
        (v2_envelope({"args": []}), "body must be"),
        (v2_envelope([[], {}]), "body must be"),
        (v2_envelope([[], {}, EMBED, "extra"]), "body must be"),
        (v2_envelope(["1, 2", {}, EMBED]), "args must be a list"),
        (v2_envelope([[1], [("a", 1)], EMBED]), "kwargs must be a mapping"),
        (v2_envelope([[], {}, EMBED], id=None), "'id' header"),
        (v2_envelope([[], {}, EMBED], id=""), "'id' header"),
        (v2_envelope([[], {}, EMBED], task=5), "'task' header"),
        (v2_envelope([[], {}, EMBED], eta="next tuesday"), "ISO 8601"),
        (v2_envelope([[], {}, EMBED], expires="2030-13-45T99:00:00"), "ISO 8601"),
        (v2_envelope([[], {}, EMBED], eta=1700000000), "ISO 8601"),
        (v2_envelope([[], {}, EMBED], timelimit=[1, 2, 3]), "timelimit"),
        (v1_envelope({"task": "tasks.add", "args": []}), "protocol 1"),
        (v1_envelope({"task": "tasks.add", "id": "x", "args": "oops"}), "args must be a list"),
        (v1_envelope({"task": "tasks.add", "id": "x", "kwargs": [1]}), "kwargs must be a mapping"),
        (v1_envelope([1, 2, 3]), "no 'task' header"),
    ],
)
def test_malformed_messages_raise_invalid_task_error(envelope: Envelope, match: str) -> None:
    with pytest.raises(InvalidTaskError, match=match):
        decode(envelope, JSON)


def test_decode_checks_content_type_before_body() -> None:
    envelope = Envelope(b"\x80\x04garbage", {"task": "t", "id": "i"}, {}, "application/x-python-serialize", "binary")
    with pytest.raises(ContentDisallowed):
        decode(envelope, JSON)
    with pytest.raises(DecodeError):
        decode(Envelope(b"[[1], {}", {"task": "t", "id": "i"}, {}, "application/json", "utf-8"), JSON)


@pytest.mark.parametrize("serializer", ["json", "msgpack", "yaml", "pickle"])
def test_round_trip_every_serializer(serializer: str) -> None:
    original = TaskMessage(
        id=TASK_ID,
        task="tasks.add",
        args=(1, "two", [3]),
        kwargs={"four": {"five": 5}},
        eta=ETA.isoformat(),
        time_limit=9.0,
        priority=3,
        extra_headers={"custom": "value"},
        origin="gen1@host",
    )
    decoded = decode(encode(original, serializer), prepare_accept_content([serializer]))
    assert decoded.with_changes(kwargsrepr=None, argsrepr=None, correlation_id=None, stamped_headers=None) == (
        original.with_changes(root_id=TASK_ID)
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-02T03:04:05+00:00", ETA),
        ("2030-01-02T03:04:05Z", ETA),
        ("2030-01-02T03:04:05", ETA),
        ("2030-01-02T08:34:05+05:30", ETA),
    ],
)
def test_parse_iso8601(text: str, expected: datetime) -> None:
    parsed = parse_iso8601(text)
    assert parsed == expected and parsed.tzinfo is not None
