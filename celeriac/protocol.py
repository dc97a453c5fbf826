"""Celery's task message protocol, version 2 (and reading version 1).

The only module that knows the wire layout of a task call::

    properties  correlation_id=<task id>, reply_to, delivery_mode, priority,
                content_type, content_encoding
    headers     lang, task, id, shadow, eta, expires, group, group_index, retries,
                timelimit=[hard, soft], root_id, parent_id, argsrepr, kwargsrepr,
                origin, ignore_result, replaced_task_nesting, stamped_headers, stamps
    body        [args, kwargs, {callbacks, errbacks, chain, chord}]

``timelimit`` is ``[hard, soft]``: that is what Celery's code sends and reads,
whatever its docs say.
"""

from __future__ import annotations

import itertools
import reprlib
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from . import _process
from ._process import new_id
from .brokers.base import Envelope
from .exceptions import InvalidTaskError
from .serialization import dumps, loads

__all__ = ["TaskMessage", "decode", "encode", "new_id", "parse_iso8601", "saferepr"]

# Headers that map onto TaskMessage fields; anything else is a custom header.
_KNOWN_HEADERS = frozenset(
    {
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
        "replaced_task_nesting",
        "stamped_headers",
        "stamps",
        "redelivered",
    }
)


class _Repr(reprlib.Repr):
    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        # reprlib sorts dict keys; kwargsrepr keeps the caller's order, as repr() and Celery do.
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [
            f"{self.repr1(key, level - 1)}: {self.repr1(value, level - 1)}"
            for key, value in itertools.islice(x.items(), self.maxdict)
        ]
        if len(x) > self.maxdict:
            pieces.append("...")
        return "{" + ", ".join(pieces) + "}"


_repr = _Repr()
_repr.maxstring = 1024
_repr.maxother = 1024
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 64


# Values whose repr() is exactly what _repr gives them (short ones: see _plain).
_PLAIN_SCALARS = frozenset({int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    """Is ``value`` a scalar that reprlib would show unshortened, as repr() does?"""
    kind = type(value)
    if kind is str:
        return len(value) <= 200  # repr() of 200 characters is under maxstring (1024)
    if kind is int:
        return bool(-(10**38) < value < 10**38)  # reprlib shortens ints over maxlong (40) characters
    return kind in _PLAIN_SCALARS


def saferepr(obj: Any, maxlen: int = 1024) -> str:
    """``repr`` that can't fail and is bounded, for argsrepr/kwargsrepr and logs."""
    kind = type(obj)
    # The usual arguments (a few numbers and short strings) and return values are shown by repr()
    # itself: the same text as reprlib's, in a fraction of the time.
    if kind is tuple:
        plain = len(obj) <= 64 and all(_plain(item) for item in obj)
    elif kind is dict:
        plain = len(obj) <= 64 and all(type(k) is str and _plain(k) and _plain(v) for k, v in obj.items())
    else:
        plain = _plain(obj)
    if plain:
        text = repr(obj)
    else:
        try:
            text = _repr.repr(obj)
        except Exception as exc:  # a broken __repr__ in user data must not fail a publish
            text = f"<unrepresentable {type(obj).__name__}: {exc!r}>"
    return text if len(text) <= maxlen else text[: maxlen - 3] + "..."


_origin: str | None = None


def origin() -> str:
    """``gen<pid>@<host>``, as Celery puts in the ``origin`` header."""
    global _origin, _origin_pid
    pid = _process.pid()
    if _origin is None or _origin_pid != pid:
        _origin, _origin_pid = f"gen{pid}@{socket.gethostname()}", pid
    return _origin


_origin_pid = 0


@dataclass(slots=True)  # not frozen: one is made per task, and a frozen field costs a call to set
class TaskMessage:
    """A task call as it travels: what the client sends and the worker executes."""

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    callbacks: list[Any] | None = None
    errbacks: list[Any] | None = None
    chain: list[Any] | None = None
    chord: Any = None
    eta: str | None = None
    expires: str | None = None
    retries: int = 0
    time_limit: float | None = None
    soft_time_limit: float | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    shadow: str | None = None
    origin: str | None = None
    ignore_result: bool = False
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    replaced_task_nesting: int = 0
    stamped_headers: list[str] | None = None
    stamps: Mapping[str, Any] = field(default_factory=dict)
    reply_to: str = ""
    correlation_id: str | None = None
    priority: int | None = None
    delivery_mode: int = 2
    extra_headers: Mapping[str, Any] = field(default_factory=dict)

    def with_changes(self, **changes: Any) -> TaskMessage:
        return replace(self, **changes)

    @property
    def eta_datetime(self) -> datetime | None:
        return parse_iso8601(self.eta) if self.eta else None

    @property
    def expires_datetime(self) -> datetime | None:
        return parse_iso8601(self.expires) if self.expires else None

    @property
    def embed(self) -> dict[str, Any]:
        return {"callbacks": self.callbacks, "errbacks": self.errbacks, "chain": self.chain, "chord": self.chord}


def parse_iso8601(value: str | datetime) -> datetime:
    """Parse an ETA/expires value; naive times are taken as UTC, as Celery's worker does with enable_utc."""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def encode(message: TaskMessage, serializer: str = "json") -> Envelope:
    """Build the protocol-v2 envelope for ``message``."""
    args, kwargs = message.args, message.kwargs
    if type(args) is not tuple:
        args = tuple(args)
    if type(kwargs) is not dict:
        kwargs = dict(kwargs)
    task_id = message.id
    headers: dict[str, Any] = {
        "lang": "py",
        "task": message.task,
        "id": task_id,
        "shadow": message.shadow,
        "eta": message.eta,
        "expires": message.expires,
        "group": message.group,
        "group_index": message.group_index,
        "retries": message.retries,
        "timelimit": [message.time_limit, message.soft_time_limit],
        "root_id": message.root_id or task_id,
        "parent_id": message.parent_id,
        "argsrepr": message.argsrepr if message.argsrepr is not None else saferepr(args),
        "kwargsrepr": message.kwargsrepr if message.kwargsrepr is not None else saferepr(kwargs),
        "origin": message.origin or origin(),
        "ignore_result": message.ignore_result,
        "replaced_task_nesting": message.replaced_task_nesting,
        "stamped_headers": message.stamped_headers,
        "stamps": dict(message.stamps) if message.stamps else {},
    }
    if message.extra_headers:
        for key, value in message.extra_headers.items():
            headers.setdefault(key, value)
    content_type, content_encoding, body = dumps([list(args), kwargs, message.embed], serializer)
    properties: dict[str, Any] = {
        "correlation_id": message.correlation_id or task_id,
        "reply_to": message.reply_to or "",
        "delivery_mode": message.delivery_mode,
    }
    if message.priority is not None:
        # Left out when unset: each broker has its own meaning for "no priority".
        properties["priority"] = message.priority
    return Envelope(body, headers, properties, content_type, content_encoding)


def decode(envelope: Envelope, accept: frozenset[str] | None) -> TaskMessage:
    """Turn an envelope into a TaskMessage.

    Raises:
        ContentDisallowed: the content type isn't accepted (the body was not decoded).
        DecodeError: the body is not valid for its content type.
        InvalidTaskError: the message decodes but isn't a task call.
    """
    headers = envelope.headers or {}
    if not isinstance(headers, Mapping):
        raise InvalidTaskError(f"message headers must be a mapping, got {type(headers).__name__}")
    body = loads(envelope.body, envelope.content_type, envelope.content_encoding, accept)
    try:
        if "task" in headers:
            return _decode_v2(headers, body, envelope.properties)
        if isinstance(body, Mapping) and "task" in body:
            return _decode_v1(body, envelope.properties)
    except InvalidTaskError:
        raise
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        # e.g. retries="many", or Infinity: a malformed field is a malformed message.
        raise InvalidTaskError(f"malformed task message: {exc}") from exc
    raise InvalidTaskError("message has no 'task' header (protocol 2) nor a task dict body (protocol 1)")


def _decode_v2(headers: Mapping[str, Any], body: Any, properties: Mapping[str, Any]) -> TaskMessage:
    name, task_id = headers.get("task"), headers.get("id")
    if not isinstance(name, str) or not name:
        raise InvalidTaskError(f"'task' header must be a non-empty string, got {name!r}")
    if not isinstance(task_id, str) or not task_id:
        raise InvalidTaskError(f"'id' header must be a non-empty string, got {task_id!r}")
    if not isinstance(body, (list, tuple)) or len(body) != 3:
        raise InvalidTaskError(f"task {name}[{task_id}]: body must be [args, kwargs, embed]")
    args, kwargs, embed = body
    _check_call(name, task_id, args, kwargs)
    embed = embed if isinstance(embed, Mapping) else {}
    hard, soft = _timelimit(headers.get("timelimit"))
    return TaskMessage(
        id=task_id,
        task=name,
        args=tuple(args),
        kwargs=kwargs,
        callbacks=embed.get("callbacks"),
        errbacks=embed.get("errbacks"),
        chain=embed.get("chain"),
        chord=embed.get("chord"),
        eta=_iso_or_none(headers.get("eta")),
        expires=_iso_or_none(headers.get("expires")),
        retries=int(headers.get("retries") or 0),
        time_limit=hard,
        soft_time_limit=soft,
        root_id=headers.get("root_id"),
        parent_id=headers.get("parent_id"),
        group=headers.get("group"),
        group_index=headers.get("group_index"),
        shadow=headers.get("shadow"),
        origin=headers.get("origin"),
        ignore_result=bool(headers.get("ignore_result", False)),
        argsrepr=headers.get("argsrepr"),
        kwargsrepr=headers.get("kwargsrepr"),
        replaced_task_nesting=int(headers.get("replaced_task_nesting") or 0),
        stamped_headers=headers.get("stamped_headers"),
        stamps=headers.get("stamps") or {},
        reply_to=str(properties.get("reply_to") or ""),
        correlation_id=properties.get("correlation_id"),
        priority=properties.get("priority"),
        delivery_mode=properties.get("delivery_mode") or 2,
        extra_headers={k: v for k, v in headers.items() if k not in _KNOWN_HEADERS},
    )


def _decode_v1(body: Mapping[str, Any], properties: Mapping[str, Any]) -> TaskMessage:
    name, task_id = body.get("task"), body.get("id")
    if not isinstance(name, str) or not name or not isinstance(task_id, str) or not task_id:
        raise InvalidTaskError("protocol 1 body needs non-empty string 'task' and 'id'")
    args, kwargs = body.get("args") or (), body.get("kwargs") or {}
    _check_call(name, task_id, args, kwargs)
    hard, soft = _timelimit(body.get("timelimit"))
    return TaskMessage(
        id=task_id,
        task=name,
        args=tuple(args),
        kwargs=kwargs,
        callbacks=body.get("callbacks"),
        errbacks=body.get("errbacks"),
        chord=body.get("chord"),
        eta=_iso_or_none(body.get("eta")),
        expires=_iso_or_none(body.get("expires")),
        retries=int(body.get("retries") or 0),
        time_limit=hard,
        soft_time_limit=soft,
        group=body.get("taskset"),
        reply_to=str(properties.get("reply_to") or ""),
        correlation_id=properties.get("correlation_id"),
        priority=properties.get("priority"),
    )


def _check_call(name: str, task_id: str, args: Any, kwargs: Any) -> None:
    if not isinstance(args, (list, tuple)):
        raise InvalidTaskError(f"task {name}[{task_id}]: args must be a list, got {type(args).__name__}")
    if not isinstance(kwargs, Mapping):
        raise InvalidTaskError(f"task {name}[{task_id}]: kwargs must be a mapping, got {type(kwargs).__name__}")


def _timelimit(value: Any) -> tuple[float | None, float | None]:
    if not value:
        return None, None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InvalidTaskError(f"'timelimit' must be [hard, soft], got {value!r}")
    hard, soft = value
    return (float(hard) if hard else None), (float(soft) if soft else None)


def _iso_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, str):
        raise InvalidTaskError(f"eta/expires must be an ISO 8601 string, got {value!r}")
    try:
        parse_iso8601(value)
    except ValueError:
        raise InvalidTaskError(f"eta/expires is not ISO 8601: {value!r}") from None
    return value
