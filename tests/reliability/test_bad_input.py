"""Bad input: whatever arrives in a queue, the worker logs it, dead-letters it and carries on.

The decoder is fuzzed with hypothesis (random bytes, truncated envelopes, headers of the wrong
type, huge ``argsrepr``, deeply nested JSON, non-UTF-8); then real workers on SQLite and Redis get
a queue of poisoned messages between good ones: unknown task names, pickle when only JSON is
accepted (a payload whose ``__reduce__`` would create a file: the file never appears), and bodies
over ``task_max_message_size``.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celeriac import Celery
from celeriac.brokers import broker_class
from celeriac.brokers.base import Envelope
from celeriac.exceptions import ContentDisallowed, DecodeError, EncodeError, InvalidTaskError
from celeriac.protocol import TaskMessage, decode, encode
from celeriac.serialization import prepare_accept_content
from tests.conftest import Project

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
ACCEPT = prepare_accept_content(["json"])
REFUSALS = (ContentDisallowed, DecodeError, InvalidTaskError)
CONTENT_TYPES = ["application/json", "application/x-python-serialize", "application/x-msgpack",
                 "application/x-yaml", "text/plain", ""]  # fmt: skip
HEADER_NAMES = ["task", "id", "eta", "expires", "retries", "timelimit", "argsrepr", "kwargsrepr", "group",
                "group_index", "root_id", "parent_id", "ignore_result", "stamps", "stamped_headers", "shadow",
                "replaced_task_nesting", "origin", "lang", "x-custom"]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
headers = st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(max_size=10), json_values, max_size=12)


def _good() -> Envelope:
    return encode(TaskMessage(id="5b0f7a4e-0000-4000-8000-000000000001", task="tasks.add", args=(1, 2)))


def _check(envelope: Envelope) -> None:
    """decode() returns a well-formed TaskMessage or refuses with one of its documented errors."""
    try:
        message = decode(envelope, ACCEPT)
    except REFUSALS:
        return
    assert isinstance(message.task, str) and message.task
    assert isinstance(message.id, str) and message.id
    assert isinstance(message.args, tuple)
    assert isinstance(message.kwargs, Mapping)


@FUZZ
@given(body=st.binary(max_size=512), content_type=st.sampled_from(CONTENT_TYPES), hdrs=headers)
def test_random_bytes_and_headers(body: bytes, content_type: str, hdrs: dict[str, Any]) -> None:
    _check(Envelope(body, hdrs, {}, content_type, "utf-8"))


@FUZZ
@given(cut=st.integers(min_value=0, max_value=200), hdrs=headers)
def test_truncated_bodies_and_wrong_header_types(cut: int, hdrs: dict[str, Any]) -> None:
    good = _good()
    _check(Envelope(good.body[:cut], {**good.headers, **hdrs}, good.properties, good.content_type, "utf-8"))


@FUZZ
@given(call=st.tuples(json_values, json_values, json_values) | st.lists(json_values, max_size=5) | json_values)
def test_any_json_body(call: Any) -> None:
    good = _good()
    _check(Envelope(json.dumps(call).encode(), good.headers, good.properties, "application/json", "utf-8"))


@pytest.mark.parametrize("depth", [10, 1_000, 100_000])
def test_deeply_nested_json(depth: int) -> None:
    good = _good()
    nested = b"[" * depth + b"]" * depth
    _check(Envelope(b"[[" + nested + b"], {}, {}]", good.headers, good.properties, "application/json", "utf-8"))
    _check(Envelope(nested, good.headers, good.properties, "application/json", "utf-8"))


def test_non_utf8_and_huge_argsrepr() -> None:
    good = _good()
    with pytest.raises(DecodeError):
        decode(Envelope(b'[["\xff\xfe"], {}, {}]', good.headers, {}, "application/json", "utf-8"), ACCEPT)
    huge = {**good.headers, "argsrepr": "x" * 5_000_000, "kwargsrepr": "y" * 5_000_000}
    message = decode(Envelope(good.body, huge, {}, "application/json", "utf-8"), ACCEPT)
    assert message.args == (1, 2)  # the repr headers are only shown, never evaluated


class CreatesAFile:
    """Unpickling this creates ``path``: proof that a payload was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _pickled(path: Path) -> bytes:
    return pickle.dumps([[CreatesAFile(path)], {}, {}], protocol=4)


def test_pickle_is_never_unpickled_when_not_accepted(tmp_path: Path) -> None:
    proof = tmp_path / "unpickled"
    good = _good()
    envelope = Envelope(_pickled(proof), good.headers, {}, "application/x-python-serialize", "binary")
    with pytest.raises(ContentDisallowed):
        decode(envelope, ACCEPT)
    with pytest.raises(ContentDisallowed):
        decode(envelope, prepare_accept_content(["json", "msgpack", "yaml"]))
    assert not proof.exists()
    # The payload really is live: accepting pickle would run it (which is why it is off by default).
    with pytest.raises(InvalidTaskError):  # a file object is no task argument list, but it was created
        _check_open(decode(envelope, prepare_accept_content(["pickle"])))
    assert proof.exists()


def _check_open(message: TaskMessage) -> None:
    for arg in message.args:
        arg.close()
    raise InvalidTaskError("unpickled")


def test_client_refuses_a_message_over_task_max_message_size() -> None:
    app = Celery("big", broker="memory://", set_as_current=False)
    app.conf.task_max_message_size = 1000

    @app.task
    def echo(data: str) -> str:
        return data

    with pytest.raises(EncodeError, match="over task_max_message_size"):
        echo.delay("x" * 2000)
    app.conf.task_max_message_size = None  # no limit
    assert echo.delay("x" * 2000).id
    assert Celery("d", set_as_current=False).conf.task_max_message_size == 10 * 1024 * 1024
    app.close()


# -- real workers -----------------------------------------------------------------------------

TASKS = """
from celeriac import Celery

app = Celery("tasks")
app.conf.task_max_message_size = 64 * 1024


@app.task
def add(x, y):
    return x + y


@app.task
def size(data):
    return len(data)
"""


def _raw(body: bytes, headers: Mapping[str, Any], content_type: str = "application/json") -> Envelope:
    return Envelope(body, dict(headers), {"delivery_mode": 2}, content_type, "utf-8")


def _poison(proof: Path) -> dict[str, Envelope]:
    def h(task_id: str, task: str = "tasks.add", **extra: Any) -> dict[str, Any]:
        return {"task": task, "id": task_id, "lang": "py", **extra}

    call = json.dumps([[1, 2], {}, {}]).encode()
    return {
        "truncated": _raw(call[:7], h("truncated")),
        "not-utf8": _raw(b'[["\xff\xfe\xfd"], {}, {}]', h("not-utf8")),
        "nested": _raw(b"[" * 50_000 + b"]" * 50_000, h("nested")),
        "wrong-types": _raw(call, h("wrong-types", retries="many", timelimit="soon")),
        "bad-eta": _raw(call, h("bad-eta", eta=12)),
        "unknown": _raw(call, h("unknown", task="tasks.does_not_exist")),
        "pickle": _raw(_pickled(proof), h("pickle"), "application/x-python-serialize"),
        "too-big": _raw(json.dumps([["x" * 100_000], {}, {}]).encode(), h("too-big", task="tasks.size")),
        "huge-argsrepr": _raw(call, h("huge-argsrepr", argsrepr="(" + "1, " * 1_000_000 + ")")),
    }


def test_poisoned_queue_is_dead_lettered_and_the_worker_keeps_going(broker_project: Project) -> None:
    project = broker_project
    project.write("tasks.py", TASKS)
    proof = project.path / "unpickled"
    broker = broker_class(project.broker_url)(project.broker_url, {})
    poison = _poison(proof)
    for envelope in poison.values():
        broker.publish(envelope, exchange="", routing_key="celery")
        broker.publish(_raw(json.dumps([[1, 1], {}, {}]).encode(), {"task": "tasks.add", "id": f"good-{len(poison)}"}),
                       exchange="", routing_key="celery")  # fmt: skip
    worker = project.worker("tasks", "-c", "2")
    from tasks import add, app, size  # type: ignore[import-not-found]

    assert add.delay(20, 22).get(timeout=30) == 42
    assert size.delay("x" * 1000).get(timeout=30) == 1000
    assert app.AsyncResult("huge-argsrepr").get(timeout=30) == 3  # a long argsrepr is only shown
    worker.wait_for("Received invalid task message", count=7, timeout=30)
    output = worker.output
    assert "Received unregistered task of type 'tasks.does_not_exist'" in output
    assert "Refusing to deserialize" in output
    assert "over task_max_message_size (65536 bytes)" in output
    assert not proof.exists(), "a pickle payload was unpickled"
    assert worker.proc is not None and worker.proc.poll() is None
    assert worker.stop() == 0
    refused = set(poison) - {"huge-argsrepr"}
    if project.broker_url.startswith("redis"):
        dead = [json.loads(d["raw"])["headers"]["id"] for d in broker.dead_letters()]  # type: ignore[attr-defined]
    else:
        dead = [d["headers"]["id"] for d in broker.dead_letters()]  # type: ignore[attr-defined]
    assert sorted(dead) == sorted(refused)
    for task_id in refused - {"unknown"}:
        assert app.AsyncResult(task_id).state == "PENDING"  # never executed
    assert broker.queue_size("celery") == 0
    broker.close()


def test_malformed_redis_items_with_a_delivery_tag_are_dead_lettered(
    project: Project, redis_url: str, rclient: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON that carries a delivery tag but isn't an envelope: dead-lettered, not stuck in ``unacked``."""
    project.broker_url = project.result_backend = redis_url
    monkeypatch.setenv("CELERIAC_BROKER_URL", redis_url)
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", redis_url)
    project.write("tasks.py", TASKS)
    items = [
        {"body": "abc", "properties": {"delivery_tag": "bad-base64", "body_encoding": "base64"}},
        {"body": "x", "headers": [1, 2], "properties": {"delivery_tag": "list-headers"}},
        {"body": "x", "properties": {"delivery_tag": "int-info", "delivery_info": 5}},
    ]
    for item in items:
        rclient.lpush("celery", json.dumps(item))
    worker = project.worker("tasks", "-c", "1")
    from tasks import add  # type: ignore[import-not-found]

    assert [add.delay(i, i).get(timeout=30) for i in range(3)] == [0, 2, 4]
    worker.wait_for("Received invalid task message", count=3, timeout=30)
    assert "Cannot reach the broker" not in worker.output
    assert worker.stop() == 0  # acks go out in batches: count after the worker has flushed them
    assert rclient.hlen("unacked") == 0 and rclient.llen("celery") == 0
    assert rclient.llen("celeriac.deadletter") == 3
