"""Serializers: json (with kombu's type tags), msgpack, yaml, pickle and auth.

Bodies are decoded only after their content type has passed the ``accept``
check, so an unaccepted (e.g. pickle) payload is never unpickled. ``accept_content``
is ``["json"]`` by default: pickle is off unless a worker lists it.

``auth`` (``application/data``) is the message-signing serializer of
:mod:`celeriac.security`; until ``app.setup_security()`` installs it, it refuses to
sign or to decode.

The json encoding tags values json can't carry exactly as kombu does, so a
Celery 5 peer reads them back as the same types::

    datetime -> {"__type__": "datetime", "__value__": "2024-01-02T03:04:05"}
    date, time, Decimal, UUID ({"hex": ...}), bytes (utf-8 or base64)
"""

from __future__ import annotations

import base64
import json
import pickle
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from .exceptions import ContentDisallowed, DecodeError, EncodeError, SecurityError

__all__ = [
    "Serializer",
    "dumps",
    "loads",
    "prepare_accept_content",
    "register",
    "registry",
]


@dataclass(frozen=True, slots=True)
class Serializer:
    name: str
    content_type: str
    content_encoding: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _tag(kind: str, value: Any) -> dict[str, Any]:
    return {"__type__": kind, "__value__": value}


def _json_default(obj: Any) -> Any:
    reducer = getattr(obj, "__json__", None)
    if reducer is not None:
        return reducer()
    # datetime before date: a datetime is also a date.
    if isinstance(obj, datetime):
        return _tag("datetime", obj.isoformat())
    if isinstance(obj, date):
        return _tag("date", obj.isoformat())
    if isinstance(obj, time):
        return _tag("time", obj.isoformat())
    # Read from sys.modules: a Decimal or UUID exists only once its module is loaded, and not
    # loading them here keeps every worker process (prefork children too) smaller.
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(obj, decimal.Decimal):
        return _tag("decimal", str(obj))
    uuid = sys.modules.get("uuid")
    if uuid is not None and isinstance(obj, uuid.UUID):
        return _tag("uuid", {"hex": obj.hex})
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        try:
            return _tag("bytes", raw.decode("utf-8"))
        except UnicodeDecodeError:
            return _tag("base64", base64.b64encode(raw).decode("ascii"))
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(obj, pydantic.BaseModel):
        # Sent as the dict a pydantic=True task validates back into the model.
        return obj.model_dump(mode="json")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_JSON_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.fromisoformat,
    "date": lambda v: datetime.fromisoformat(v).date(),
    "time": time.fromisoformat,
    "decimal": lambda v: __import__("decimal").Decimal(v),
    "uuid": lambda v: __import__("uuid").UUID(**v),
    "bytes": lambda v: v.encode("utf-8"),
    "base64": lambda v: base64.b64decode(v.encode("ascii")),
}


def _json_object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        decoder = _JSON_DECODERS.get(obj["__type__"])
        if decoder is None:
            raise ValueError(f"unsupported json type tag {obj['__type__']!r}")
        return decoder(obj["__value__"])
    return obj


# One encoder for every call: json.dumps(obj, default=...) would build a new one each time.
# Task bodies and results are written by json even when orjson is installed: byte for byte what
# kombu writes (json's separators, ASCII only), which orjson can't write. (A broker's envelope,
# which only has to read back the same, may be written by orjson: json_dumps_plain.)
_json_encoder = json.JSONEncoder(default=_json_default)


def json_dumps(obj: Any) -> str:
    """JSON as kombu writes it, byte for byte (json's default separators, ASCII only)."""
    return _json_encoder.encode(obj)


_orjson: Any
try:  # celeriac[orjson]: reads JSON three to five times as fast as json
    import orjson as _orjson
except ImportError:  # without it (tests monkeypatch _orjson to None), json reads everything
    _orjson = None

# Every digit becomes "0", everything else a space: a run of 19 "0"s is a number of 19 digits or more.
_DIGITS = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_NUMBER = b"0" * 19
_MAX_OPENINGS = 100


def _orjson_reads_as_json(data: bytes) -> bool:
    """Whether orjson gives what json would for ``data``: it does, except for kombu's type tags (json
    turns them into values through its object hook) and integers past 64 bits (orjson turns them
    into floats without a word; they have 19 digits or more), and for JSON that may be nested deeper
    than json goes (orjson reads 1,024 levels, and what a deeper value meets next, a repr, an
    encoder, is no deeper than json). What orjson refuses and json takes (NaN, lone surrogates,
    UTF-16) raises, and json reads it then."""
    return b'"__type__"' not in data and _orjson_reads_as_plain_json(data)


def _orjson_reads_as_plain_json(data: bytes) -> bool:
    """Whether orjson gives what ``json.loads`` with no object hook would for ``data`` (see above)."""
    return (
        data.count(b"[") + data.count(b"{") < _MAX_OPENINGS  # the depth is at most the openings
        and _LONG_NUMBER not in data.translate(_DIGITS)
    )


def json_loads(data: str | bytes) -> Any:
    """Read JSON (as ``json.loads`` does), turning kombu's type tags back into values."""
    if type(data) is bytes:
        if _orjson is not None and _orjson_reads_as_json(data):
            try:
                return _orjson.loads(data)
            except _orjson.JSONDecodeError:
                pass  # json decides: it takes some of what orjson refuses, or raises its own error
        # json.loads(bytes) does this, then builds a new decoder for the object hook each call.
        return _json_decoder.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
    return json.loads(data, object_hook=_json_object_hook)


_json_decoder = json.JSONDecoder(object_hook=_json_object_hook)


def json_dumps_plain(obj: Any) -> str | bytes:
    """``json.dumps(obj)`` for a broker's envelope, written for every message sent.

    By orjson where what it writes reads back as ``obj`` (compact UTF-8 instead of json's spaced
    ASCII, which every JSON reader, kombu's included, reads the same); else by json. The check
    (orjson reading it back, a comparison) costs half of what json's encoder does, and sends to json
    whatever orjson would write differently or json refuses: NaN (null in orjson), a datetime, a
    UUID or an Enum (which orjson writes and json refuses), a tuple, an int past 64 bits.
    """
    if _orjson is not None:
        try:
            written: bytes = _orjson.dumps(obj)
        except _orjson.JSONEncodeError:
            pass
        else:
            if _orjson.loads(written) == obj:
                return written
    return json.dumps(obj)


def json_loads_plain(data: str | bytes) -> Any:
    """``json.loads(data)``, kombu's type tags left as they are: a broker's envelope, read for every
    message a worker takes, by orjson where it gives the same."""
    if _orjson is not None:
        try:
            raw = data if type(data) is bytes else str(data).encode()
        except UnicodeEncodeError:  # a lone surrogate: json reads it
            raw = b""
        if raw and _orjson_reads_as_plain_json(raw):
            try:
                return _orjson.loads(raw)
            except _orjson.JSONDecodeError:
                pass  # json decides, as in json_loads
    return json.loads(data)


def _json_encode(obj: Any) -> bytes:
    return _json_encoder.encode(obj).encode("utf-8")


def _pickle_encode(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=4)


def _msgpack_encode(obj: Any) -> bytes:
    import msgpack

    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _msgpack_decode(data: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _yaml_encode(obj: Any) -> bytes:
    import yaml

    text: str = yaml.safe_dump(obj)
    return text.encode("utf-8")


def _yaml_decode(data: bytes) -> Any:
    import yaml

    return yaml.safe_load(data)


def _auth_not_set_up(_: Any) -> Any:
    raise SecurityError("the auth serializer is not set up: call app.setup_security() first")


registry: dict[str, Serializer] = {
    s.name: s
    for s in (
        Serializer("json", "application/json", "utf-8", _json_encode, json_loads),
        Serializer("pickle", "application/x-python-serialize", "binary", _pickle_encode, pickle.loads),
        Serializer("msgpack", "application/x-msgpack", "binary", _msgpack_encode, _msgpack_decode),
        Serializer("yaml", "application/x-yaml", "utf-8", _yaml_encode, _yaml_decode),
        Serializer("auth", "application/data", "utf-8", _auth_not_set_up, _auth_not_set_up),
    )
}
_by_content_type: dict[str, Serializer] = {s.content_type: s for s in registry.values()}
# Content types other producers use for the same formats.
_by_content_type.update(
    {
        "application/text": Serializer("raw", "application/text", "utf-8", bytes, bytes),
        "application/msgpack": registry["msgpack"],
        "application/yaml": registry["yaml"],
        "text/yaml": registry["yaml"],
    }
)


def register(serializer: Serializer) -> None:
    """Add or replace a serializer (by name and by content type), e.g. ``auth`` after ``setup_security()``."""
    registry[serializer.name] = serializer
    _by_content_type[serializer.content_type] = serializer


def get_serializer(name: str) -> Serializer:
    try:
        return registry[name]
    except KeyError:
        raise EncodeError(f"unknown serializer {name!r} (known: {', '.join(sorted(registry))})") from None


def prepare_accept_content(accept: Iterable[str] | None) -> frozenset[str]:
    """Turn an ``accept_content`` list (names or content types) into a set of content types."""
    if accept is None:
        accept = ("json",)
    types: set[str] = set()
    for item in accept:
        if item in registry:
            types.add(registry[item].content_type)
        elif "/" in item:
            types.add(item)
        else:
            raise ValueError(f"unknown serializer {item!r} in accept_content (known: {', '.join(sorted(registry))})")
    if "application/x-msgpack" in types:
        types.add("application/msgpack")
    if "application/x-yaml" in types:
        types.update({"application/yaml", "text/yaml"})
    return frozenset(types)


def dumps(obj: Any, serializer: str) -> tuple[str, str, bytes]:
    """Serialize ``obj``; returns ``(content_type, content_encoding, payload)``."""
    ser = get_serializer(serializer)
    try:
        return ser.content_type, ser.content_encoding, ser.encode(obj)
    except SecurityError as exc:
        raise EncodeError(f"can't sign with {serializer}: {exc}") from exc
    except Exception as exc:
        raise EncodeError(f"can't serialize with {serializer}: {exc}") from exc


def loads(data: bytes | str, content_type: str, content_encoding: str, accept: frozenset[str] | None) -> Any:
    """Deserialize ``data`` after checking ``content_type`` against ``accept``.

    Raises:
        ContentDisallowed: the content type is not accepted; nothing was decoded.
        DecodeError: the payload is not valid for its content type.
    """
    if accept is not None and content_type not in accept:
        raise ContentDisallowed(
            f"Refusing to deserialize untrusted content of type {content_type} "
            f"(accepted: {', '.join(sorted(accept)) or 'nothing'})"
        )
    ser = _by_content_type.get(content_type)
    if ser is None:
        raise ContentDisallowed(f"no serializer for content type {content_type!r}")
    if isinstance(data, str):
        data = data.encode(content_encoding if content_encoding not in ("binary", "") else "utf-8")
    try:
        return ser.decode(data)
    except SecurityError as exc:
        raise DecodeError(f"signature check failed, message refused: {exc}") from exc
    except Exception as exc:
        raise DecodeError(f"can't decode {content_type} payload: {exc}") from exc
