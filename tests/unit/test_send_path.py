"""The send path's shortcuts give what the general code gives: reprs, ids, argument checks, JSON."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest

from celeriac import Celery, _process
from celeriac.protocol import _repr, saferepr
from celeriac.serialization import json_loads


def slow_saferepr(obj: Any, maxlen: int = 1024) -> str:
    text = _repr.repr(obj)
    return text if len(text) <= maxlen else text[: maxlen - 3] + "..."


@pytest.mark.parametrize(
    "value",
    [
        (),
        (1,),
        (1, "a", None, True, 2.5, -7),
        ("x" * 200,),
        ("x" * 201,),
        ("caf\u00e9\x00\n'\"",),
        (10**37, -(10**37)),
        (10**40,),
        (float("nan"), float("inf")),
        tuple(range(64)),
        tuple(range(65)),
        tuple("y" * 150 for _ in range(10)),  # longer than maxlen once shown
        ([1, 2],),
        {},
        {"a": 1, "b": "c", "z": None},
        {"b": 1, "a": 2},  # the caller's order, not sorted
        {"a": [1]},
        {1: "int key"},
        {f"k{i}": i for i in range(65)},
        # single values: a task's return value
        8,
        -(10**37),
        10**40,
        2.5,
        float("nan"),
        None,
        True,
        "z" * 200,
        "z" * 1500,
        "caf\u00e9\x00\n'\"",
        b"bytes",
    ],
    ids=repr,
)
def test_saferepr_shortcut_gives_reprlibs_text(value: Any) -> None:
    assert saferepr(value) == slow_saferepr(value)
    assert saferepr(value, 20) == slow_saferepr(value, 20)


def test_new_id_is_a_version_4_uuid() -> None:
    ids = {_process.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:100]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_pid_follows_a_fork() -> None:
    assert _process.pid() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, b"1" if _process.pid() == os.getpid() else b"0")
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.close(write)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_makes_ids_of_its_own() -> None:
    _process.new_id()  # the stock of ready ids is filled
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, "".join(_process.new_id() for _ in range(64)).encode())
        os._exit(0)
    os.waitpid(child, 0)
    theirs = os.read(read, 64 * 36).decode()
    ours = {_process.new_id() for _ in range(64)}
    assert len(theirs) == 64 * 36 and not ours & {theirs[i : i + 36] for i in range(0, len(theirs), 36)}
    os.close(read)
    os.close(write)


def test_argument_check_counts_plain_positional_arguments() -> None:
    app = Celery("check", broker="memory://", set_as_current=False)

    @app.task
    def two(a: int, b: int = 0) -> int:
        return a + b

    @app.task(bind=True)
    def bound(self: Any, a: int) -> int:
        return a

    @app.task
    def star(*args: int, key: int = 0) -> int:
        return len(args)

    two.check_arguments((1,), {})
    two.check_arguments((1, 2), {})
    two.check_arguments((), {"a": 1})
    with pytest.raises(TypeError, match="two"):
        two.check_arguments((), {})
    with pytest.raises(TypeError, match="two"):
        two.check_arguments((1, 2, 3), {})
    bound.check_arguments((1,), {})
    with pytest.raises(TypeError):
        bound.check_arguments((1, 2), {})
    star.check_arguments((1, 2, 3), {})
    with pytest.raises(TypeError):
        star.check_arguments((), {"nope": 1})
    app.close()


@pytest.mark.parametrize(
    "data",
    [b'{"a": [1, 2.5, null, "x"]}', b"NaN", b"123456789012345678901234567890", '{"s": "\\u00e9"}'.encode("utf-16")],
)
def test_json_loads_bytes_reads_as_json_loads(data: bytes) -> None:
    got, expected = json_loads(data), json.loads(data)
    assert repr(got) == repr(expected) and type(got) is type(expected)


def test_send_settings_follow_changes() -> None:
    app = Celery("settings", broker="memory://", set_as_current=False)
    first = app._sending()
    assert app._sending() is first
    app.conf.task_default_priority = 5
    assert app._sending().default_priority == 5
    app.conf.task_always_eager = True
    assert app._sending().always_eager
    app.close()
