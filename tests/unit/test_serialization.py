"""Serializers: kombu-compatible json tags, the other formats, and accept checks before any decode."""

from __future__ import annotations

import enum
import pickle
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kombu import serialization as kombu_serialization
from kombu.utils import json as kombu_json

from celeriac import serialization
from celeriac.exceptions import ContentDisallowed, DecodeError, EncodeError
from celeriac.serialization import dumps, json_dumps, json_loads, loads, prepare_accept_content

JSON_ONLY = prepare_accept_content(["json"])

TAGGED_VALUES: list[Any] = [
    datetime(2024, 1, 2, 3, 4, 5),
    datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc),
    datetime(2024, 1, 2, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    date(2024, 2, 29),
    time(13, 14, 15, 16),
    Decimal("3.14159265358979323846264338327950288"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"hello",
    "caf\u00e9".encode(),
    b"\xff\x00\xfe\x80",
    {"nested": [datetime(2020, 1, 1), b"x", {"d": Decimal("1.5")}]},
]


@pytest.mark.parametrize("value", TAGGED_VALUES, ids=repr)
def test_json_round_trip(value: Any) -> None:
    decoded = json_loads(json_dumps(value))
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize("value", TAGGED_VALUES, ids=repr)
def test_json_bytes_identical_to_kombu(value: Any) -> None:
    assert json_dumps(value) == kombu_json.dumps(value)


@pytest.mark.parametrize("value", TAGGED_VALUES, ids=repr)
def test_json_interop_with_kombu_both_directions(value: Any) -> None:
    assert kombu_json.loads(json_dumps(value)) == value  # we write, kombu reads
    assert json_loads(kombu_json.dumps(value)) == value  # kombu writes, we read


def test_json_tags_are_kombus_format() -> None:
    assert json_dumps(b"hi") == '{"__type__": "bytes", "__value__": "hi"}'
    assert json_dumps(b"\xff") == '{"__type__": "base64", "__value__": "/w=="}'
    assert (
        json_dumps(uuid.UUID(int=1)) == '{"__type__": "uuid", "__value__": {"hex": "00000000000000000000000000000001"}}'
    )
    assert json_dumps(Decimal("0.1")) == '{"__type__": "decimal", "__value__": "0.1"}'
    assert json_dumps(date(2024, 1, 2)) == '{"__type__": "date", "__value__": "2024-01-02"}'


def test_non_utf8_bytes_use_base64_and_utf8_bytes_do_not() -> None:
    assert json_dumps(b"\xc3\xa9") == '{"__type__": "bytes", "__value__": "\\u00e9"}'  # utf-8 for "é"
    assert json_dumps(b"\xe9") == '{"__type__": "base64", "__value__": "6Q=="}'  # latin-1 "é": not utf-8
    assert json_loads(json_dumps(b"\xe9")) == b"\xe9"
    assert json_loads(json_dumps(bytearray(b"\x00\xff"))) == b"\x00\xff"


def test_object_with_json_hook_is_encoded_with_it() -> None:
    class Point:
        def __json__(self) -> dict[str, int]:
            return {"x": 1, "y": 2}

    assert json_loads(json_dumps([Point()])) == [{"x": 1, "y": 2}]


def test_unknown_tag_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        loads(b'{"__type__": "nope", "__value__": 1}', "application/json", "utf-8", JSON_ONLY)


def test_plain_dict_with_extra_keys_is_not_a_tag() -> None:
    value = {"__type__": "datetime", "__value__": "x", "other": 1}
    assert json_loads(json_dumps(value)) == value


def test_dumps_returns_content_type_and_encoding() -> None:
    assert dumps({"a": 1}, "json") == ("application/json", "utf-8", b'{"a": 1}')


@pytest.mark.parametrize(
    ("name", "content_type", "encoding"),
    [
        ("json", "application/json", "utf-8"),
        ("msgpack", "application/x-msgpack", "binary"),
        ("yaml", "application/x-yaml", "utf-8"),
        ("pickle", "application/x-python-serialize", "binary"),
    ],
)
def test_round_trip_each_serializer(name: str, content_type: str, encoding: str) -> None:
    value = {"args": [1, 2.5, "x", None, True], "kwargs": {"k": [1, {"n": "é"}]}}
    ctype, cenc, payload = dumps(value, name)
    assert (ctype, cenc) == (content_type, encoding)
    assert isinstance(payload, bytes)
    assert loads(payload, ctype, cenc, prepare_accept_content([name])) == value


@pytest.mark.parametrize("name", ["json", "msgpack", "yaml", "pickle"])
def test_kombu_reads_ours_and_we_read_kombus(name: str) -> None:
    value = {"args": [1, 2, "three"], "kwargs": {"a": None, "b": [True, False]}}
    ctype, cenc, payload = dumps(value, name)
    assert kombu_serialization.loads(payload, ctype, cenc, accept=[ctype]) == value
    k_ctype, k_cenc, k_payload = kombu_serialization.dumps(value, serializer=name)
    assert (k_ctype, k_cenc) == (ctype, cenc)
    raw = k_payload.encode(k_cenc) if isinstance(k_payload, str) else k_payload
    assert loads(raw, k_ctype, k_cenc, prepare_accept_content([name])) == value
    if name in ("json", "msgpack", "yaml"):
        assert raw == payload  # deterministic formats: the same bytes as kombu


def test_pickle_keeps_python_types() -> None:
    value = {"when": datetime(2024, 1, 1), "items": {1, 2}, "tuple": (1, 2)}
    assert loads(dumps(value, "pickle")[2], "application/x-python-serialize", "binary", None) == value


def test_loads_accepts_str_payload() -> None:
    assert loads('{"a": "é"}', "application/json", "utf-8", JSON_ONLY) == {"a": "é"}


class _Detonator:
    """Unpickling this calls ``_detonate``, which records that it ran."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_detonate, ())


_detonations: list[str] = []


def _detonate() -> None:
    _detonations.append("unpickled")


def test_content_disallowed_never_unpickles() -> None:
    payload = pickle.dumps(_Detonator())
    # The payload is live: unpickling it does run the hook (so the check below means something).
    pickle.loads(payload)
    assert _detonations == ["unpickled"]
    _detonations.clear()
    with pytest.raises(ContentDisallowed, match="application/x-python-serialize"):
        loads(payload, "application/x-python-serialize", "binary", JSON_ONLY)
    assert _detonations == []


def test_content_disallowed_never_calls_the_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    original = serialization._by_content_type["application/x-msgpack"]
    spy = serialization.Serializer(
        original.name, original.content_type, original.content_encoding, original.encode, calls.append
    )
    monkeypatch.setitem(serialization._by_content_type, "application/x-msgpack", spy)
    with pytest.raises(ContentDisallowed):
        loads(b"\x81\xa1a\x01", "application/x-msgpack", "binary", JSON_ONLY)
    assert calls == []
    loads(b"\x81\xa1a\x01", "application/x-msgpack", "binary", prepare_accept_content(["msgpack"]))
    assert calls == [b"\x81\xa1a\x01"]


def test_accept_by_name_allows_pickle() -> None:
    payload = pickle.dumps({"ok": True})
    accept = prepare_accept_content(["json", "pickle"])
    assert loads(payload, "application/x-python-serialize", "binary", accept) == {"ok": True}


def test_yaml_is_safe_loaded() -> None:
    payload = b"!!python/object/apply:os.system ['echo unsafe']"
    with pytest.raises(DecodeError):
        loads(payload, "application/x-yaml", "utf-8", prepare_accept_content(["yaml"]))


def test_unknown_content_type_is_refused() -> None:
    with pytest.raises(ContentDisallowed):
        loads(b"x", "application/x-unknown", "binary", None)


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"\xc1", "application/x-msgpack"),
        (b"a: [unclosed", "application/x-yaml"),
        (b"not a pickle", "application/x-python-serialize"),
    ],
)
def test_garbage_is_a_decode_error(payload: bytes, content_type: str) -> None:
    with pytest.raises(DecodeError):
        loads(payload, content_type, "binary", None)


def test_unserializable_value_is_an_encode_error() -> None:
    with pytest.raises(EncodeError):
        dumps(object(), "json")
    with pytest.raises(EncodeError, match="xml"):
        dumps(1, "xml")


def test_prepare_accept_content_names_and_types() -> None:
    assert prepare_accept_content(["json"]) == {"application/json"}
    assert prepare_accept_content(None) == {"application/json"}
    got = prepare_accept_content(["json", "application/x-python-serialize", "msgpack", "yaml", "application/x-foo"])
    # The same content types kombu derives from the same list (plus aliases other producers use).
    kombu_types = kombu_serialization.prepare_accept_content(
        ["json", "application/x-python-serialize", "msgpack", "yaml", "application/x-foo"]
    )
    assert kombu_types <= got
    assert got - kombu_types == {"application/msgpack", "application/yaml", "text/yaml"}


def test_prepare_accept_content_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="bogus"):
        prepare_accept_content(["json", "bogus"])


# -- reading JSON through orjson (celeriac[orjson], in the dev extra) ---------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)

# Where orjson alone would differ from json: integers past 64 bits (floats in orjson, without an
# error), NaN and infinities, lone surrogates, UTF-16 and a UTF-8 BOM (refused by orjson), kombu's tags.
_EDGES = [
    b"[18446744073709551616]",
    b"[-9223372036854775809]",
    b"[18446744073709551615, -9223372036854775808]",
    b"[NaN, Infinity, -Infinity, 1e400]",
    b'["\\ud800"]',
    '["x"]'.encode("utf-16"),
    b"\xef\xbb\xbf[1]",
    b'{"__type__": "decimal", "__value__": "1.10"}',
    b'["a \\"__type__\\" in a string", {"k": [1, 2.5, true, null]}]',
    b'{"a": 1, "a": 2}',
]


def test_orjson_is_installed_for_the_tests() -> None:
    assert serialization._orjson is not None  # else the tests below only test json against itself


@pytest.mark.parametrize("data", _EDGES)
def test_reading_json_gives_what_json_gives_with_or_without_orjson(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = serialization.json_loads(data)
    monkeypatch.setattr(serialization, "_orjson", None)
    slow = serialization.json_loads(data)
    assert repr(fast) == repr(slow)  # repr: NaN != NaN, and 1 == 1.0 would hide an int read as a float


@pytest.mark.parametrize("data", [b"[" * 990 + b"]" * 990, b"[" * 5000 + b"]" * 5000])
def test_json_nested_deeper_than_json_goes_is_refused_as_json_refuses_it(data: bytes) -> None:
    """orjson would read these (up to 1,024 levels); what a value so deep meets next would not."""
    assert serialization._orjson is not None
    with pytest.raises(RecursionError):
        serialization.json_loads(data)


@pytest.mark.parametrize("data", [b"[1, 2", b"{'a': 1}", b"[\x01]", b"", b"[1] x"])
def test_malformed_json_raises_what_json_raises(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError) as fast:
        serialization.json_loads(data)
    monkeypatch.setattr(serialization, "_orjson", None)
    with pytest.raises(ValueError) as slow:
        serialization.json_loads(data)
    assert type(fast.value) is type(slow.value) and str(fast.value) == str(slow.value)


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_any_json_celeriac_or_kombu_writes_reads_back_the_same_through_orjson(value: Any) -> None:
    for data in (json_dumps(value).encode(), kombu_json.dumps(value).encode()):
        assert repr(serialization.json_loads(data)) == repr(json_stdlib_loads(data))


def json_stdlib_loads(data: bytes) -> Any:
    import json

    return json.loads(data, object_hook=serialization._json_object_hook)


# -- a broker's envelope: json.loads with no object hook, through orjson where it gives the same ----------
_ENVELOPE = (
    b'{"body": "W1s0LCA0XSwge30sIHt9XQ==", "content-encoding": "utf-8", "content-type": "application/json", '
    b'"headers": {"task": "tasks.add", "eta": {"__type__": "datetime", "__value__": "2026-01-01T00:00:00"}}, '
    b'"properties": {"delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0}}'
)


@pytest.mark.parametrize("data", [*_EDGES, _ENVELOPE, _ENVELOPE.decode(), '["\ud800", "\\ud800"]'])
def test_reading_an_envelope_gives_what_json_loads_gives(data: str | bytes) -> None:
    import json

    assert repr(serialization.json_loads_plain(data)) == repr(json.loads(data))  # tags stay dicts


def test_an_envelope_is_read_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoJson:
        def loads(self, data: Any) -> Any:
            raise AssertionError("read by json, not orjson")

    monkeypatch.setattr(serialization, "json", NoJson())
    assert serialization.json_loads_plain(_ENVELOPE)["headers"]["task"] == "tasks.add"
    assert serialization.json_loads_plain(_ENVELOPE.decode())["properties"]["priority"] == 0


@pytest.mark.parametrize("data", [b"[" * 5000 + b"]" * 5000, b"[1, 2", b"", "[1] x"])
def test_a_malformed_or_too_deep_envelope_raises_what_json_loads_raises(data: str | bytes) -> None:
    import json

    with pytest.raises((ValueError, RecursionError)) as fast:
        serialization.json_loads_plain(data)
    with pytest.raises((ValueError, RecursionError)) as slow:
        json.loads(data)
    assert type(fast.value) is type(slow.value) and str(fast.value) == str(slow.value)


# -- writing a broker's envelope: orjson where it reads back the same, else json ----------------------------
def test_an_envelope_is_written_by_orjson_and_reads_as_json_would_write_it() -> None:
    import json

    envelope = json.loads(_ENVELOPE)
    envelope["headers"].update({"argsrepr": "('\u00e9t\u00e9',)", "timelimit": [None, 2.5], "retries": 2**63 - 1})
    written = serialization.json_dumps_plain(envelope)
    assert isinstance(written, bytes) and b'","' in written  # orjson's compact UTF-8, not json's ", "
    assert json.loads(written) == json.loads(json.dumps(envelope)) == envelope


class _Color(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),  # orjson writes null
        float("inf"),
        (1, 2),  # a list once read back
        2**64,  # past orjson's 64 bits
        "\ud800",  # not UTF-8
        {1: "a"},  # a key json turns into "1"
    ],
)
def test_what_orjson_would_write_otherwise_is_written_by_json(value: Any) -> None:
    import json

    obj = {"headers": {"x": value}}
    assert serialization.json_dumps_plain(obj) == json.dumps(obj)


@pytest.mark.parametrize("value", [uuid.UUID(int=1), datetime(2026, 1, 1), _Color.RED, b"bytes"])
def test_what_json_refuses_is_refused_as_json_refuses_it(value: Any) -> None:
    import json

    obj = {"headers": {"x": value}}  # orjson would write the first three
    with pytest.raises(TypeError) as fast:
        serialization.json_dumps_plain(obj)
    with pytest.raises(TypeError) as slow:
        json.dumps(obj)
    assert str(fast.value) == str(slow.value)
