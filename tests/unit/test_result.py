"""AsyncResult on the memory and SQLite stores: states, errors, layout, and Celery interop both ways."""

from __future__ import annotations

import builtins
import json
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import celery
import celery.exceptions
import pytest

from celeriac import Celery, states
from celeriac.backends.base import KeyValueBackend
from celeriac.backends.memory import MemoryBackend
from celeriac.exceptions import RemoteTaskError, SecurityError, TimeLimitExceeded, TimeoutError
from celeriac.result import allow_join_result
from celeriac.task import Context


class ModuleLevelError(Exception):
    """A task's own exception class, importable where the result is read."""


class NeedsKeyword(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")


@pytest.fixture(params=["memory", "sqlite"])
def app(request: pytest.FixtureRequest, broker_url: str, tmp_path: Path) -> Iterator[Celery]:
    backend = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'results.db'}"
    with Celery("t", broker=broker_url, backend=backend) as application:
        yield application


def new_id() -> str:
    return str(uuid.uuid4())


def store_raw(app: Celery, task_id: str, meta: dict[str, Any]) -> None:
    backend = app.backend
    assert isinstance(backend, KeyValueBackend)
    backend._set(backend.task_key(task_id), json.dumps({**meta, "task_id": task_id}).encode(), None)


def stored_json(app: Celery, task_id: str) -> dict[str, Any]:
    backend = app.backend
    assert isinstance(backend, KeyValueBackend)
    raw = backend._get(backend.task_key(task_id))
    assert raw is not None
    data: dict[str, Any] = json.loads(raw)
    return data


def failure_meta(exc_module: str, exc_type: str, *message: Any) -> dict[str, Any]:
    result = {"exc_module": exc_module, "exc_type": exc_type, "exc_message": list(message)}
    return {"status": "FAILURE", "result": result, "traceback": None, "children": [], "date_done": None}


def test_unknown_id_is_pending(app: Celery) -> None:
    result = app.AsyncResult(new_id())
    assert result.state == states.PENDING == result.status
    assert result.result is None and not result.ready() and not result.successful()
    assert result.exists() is False


def test_get_on_pending_times_out(app: Celery) -> None:
    result = app.AsyncResult(new_id())
    with pytest.raises(TimeoutError) as info:
        result.get(timeout=0.2, interval=0.05)
    assert isinstance(info.value, builtins.TimeoutError)


def test_success(app: Celery) -> None:
    task_id = new_id()
    before = datetime.now(timezone.utc)
    app.backend.store_result(task_id, {"total": [1, 2, 3]}, states.SUCCESS)
    result = app.AsyncResult(task_id)
    assert result.get(timeout=1) == {"total": [1, 2, 3]}
    assert result.ready() and result.successful() and not result.failed()
    assert result.result == {"total": [1, 2, 3]} and result.state == states.SUCCESS
    assert result.date_done is not None and result.date_done.tzinfo is not None
    assert before <= result.date_done <= datetime.now(timezone.utc)
    assert result.traceback is None and result.exists()


def test_failure_reraises_builtin_type_with_traceback(app: Celery) -> None:
    task_id = new_id()
    app.backend.store_result(task_id, ValueError("bad", 2), states.FAILURE, traceback="Traceback...\nValueError: bad")
    result = app.AsyncResult(task_id)
    with pytest.raises(ValueError) as info:
        result.get(timeout=1)
    assert info.value.args == ("bad", 2)
    assert result.failed() and result.ready() and not result.successful()
    assert result.traceback == "Traceback...\nValueError: bad"
    returned = result.get(timeout=1, propagate=False)
    assert type(returned) is ValueError and returned.args == ("bad", 2)
    assert isinstance(result.result, ValueError)


def test_failure_reraises_module_level_custom_exception(app: Celery) -> None:
    task_id = new_id()
    app.backend.store_result(task_id, ModuleLevelError("custom"), states.FAILURE)
    assert stored_json(app, task_id)["result"] == {
        "exc_type": "ModuleLevelError",
        "exc_message": ["custom"],
        "exc_module": __name__,
    }
    with pytest.raises(ModuleLevelError, match="custom"):
        app.AsyncResult(task_id).get(timeout=1)


def test_unimportable_exception_becomes_remote_task_error(app: Celery) -> None:
    task_id = new_id()
    store_raw(app, task_id, failure_meta("nowhere.in.particular", "GoneError", "it failed"))
    with pytest.raises(RemoteTaskError) as info:
        app.AsyncResult(task_id).get(timeout=1)
    exc = info.value
    assert type(exc).__name__ == "GoneError"
    assert str(exc) == "it failed"
    assert (exc.exc_type, exc.exc_module) == ("GoneError", "nowhere.in.particular")


def test_exception_that_cannot_be_rebuilt_becomes_stand_in(app: Celery) -> None:
    task_id = new_id()
    store_raw(app, task_id, failure_meta(__name__, "NeedsKeyword", "code 3"))
    with pytest.raises(RemoteTaskError, match="code 3") as info:
        app.AsyncResult(task_id).get(timeout=1)
    assert type(info.value).__name__ == "NeedsKeyword"


def test_non_exception_class_is_a_security_error(app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *args: called.append(args))
    task_id = new_id()
    store_raw(app, task_id, failure_meta("os", "system", "touch /tmp/pwned"))
    with pytest.raises(SecurityError, match="os.system"):
        app.AsyncResult(task_id).get(timeout=1)
    assert called == []


def test_unimported_module_is_never_imported(app: Celery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stored result must not make this process import code, even code that is importable.
    (tmp_path / "unit_never_imported.py").write_text("class BoomError(Exception):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    task_id = new_id()
    store_raw(app, task_id, failure_meta("unit_never_imported", "BoomError", "no"))
    with pytest.raises(RemoteTaskError) as info:
        app.AsyncResult(task_id).get(timeout=1)
    assert type(info.value).__name__ == "BoomError"
    assert "unit_never_imported" not in sys.modules


@pytest.mark.parametrize("module", ["celery.exceptions", "billiard.exceptions"])
def test_celery_exception_names_map_to_ours(app: Celery, module: str) -> None:
    task_id = new_id()
    store_raw(app, task_id, failure_meta(module, "TimeLimitExceeded", 30.0))
    with pytest.raises(TimeLimitExceeded) as info:
        app.AsyncResult(task_id).get(timeout=1)
    assert type(info.value) is TimeLimitExceeded and info.value.args == (30.0,)


def test_forget_makes_it_pending_again(app: Celery) -> None:
    task_id = new_id()
    app.backend.store_result(task_id, 42, states.SUCCESS)
    result = app.AsyncResult(task_id)
    assert result.get(timeout=1) == 42
    result.forget()
    assert result.state == states.PENDING and result.result is None
    assert app.AsyncResult(task_id).state == states.PENDING


def test_stored_bytes_use_celerys_layout(app: Celery) -> None:
    task_id = new_id()
    app.backend.store_result(task_id, [1, "two"], states.SUCCESS)
    data = stored_json(app, task_id)
    assert list(data) == ["status", "result", "traceback", "children", "date_done", "task_id"]
    assert (data["status"], data["result"], data["traceback"], data["children"]) == ("SUCCESS", [1, "two"], None, [])
    assert data["task_id"] == task_id
    assert datetime.fromisoformat(data["date_done"]).tzinfo is not None


def test_unready_state_has_no_date_done(app: Celery) -> None:
    task_id = new_id()
    app.backend.store_result(task_id, {"done": 3}, "PROGRESS")
    assert stored_json(app, task_id)["date_done"] is None
    result = app.AsyncResult(task_id)
    assert result.state == "PROGRESS" and result.info == {"done": 3} and not result.ready()


def test_result_extended_fields(app: Celery) -> None:
    app.conf.result_extended = True
    task_id = new_id()
    request = Context(
        id=task_id,
        task="tasks.add",
        args=(1, 2),
        kwargs={"z": 3},
        hostname="celery@host",
        retries=2,
        delivery_info={"routing_key": "math"},
        group="g1",
        parent_id="p1",
    )
    app.backend.store_result(task_id, 6, states.SUCCESS, request=request)
    data = stored_json(app, task_id)
    assert {k: data[k] for k in ("name", "args", "kwargs", "worker", "retries", "queue")} == {
        "name": "tasks.add",
        "args": [1, 2],
        "kwargs": {"z": 3},
        "worker": "celery@host",
        "retries": 2,
        "queue": "math",
    }
    assert (data["group_id"], data["parent_id"]) == ("g1", "p1")
    result = app.AsyncResult(task_id)
    assert (result.name, result.args, result.kwargs) == ("tasks.add", [1, 2], {"z": 3})
    assert (result.worker, result.retries, result.queue) == ("celery@host", 2, "math")


def test_without_result_extended_no_extra_fields(app: Celery) -> None:
    task_id = new_id()
    app.backend.store_result(task_id, 6, states.SUCCESS, request=Context(id=task_id, task="tasks.add", args=(1,)))
    assert "name" not in stored_json(app, task_id)


def test_eager_result_stored_when_asked(app: Celery) -> None:
    app.conf.update(task_store_eager_result=True, result_extended=True)

    @app.task(name="tasks.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    eager = mul.apply((6, 7))
    stored = app.AsyncResult(eager.id)
    assert stored.get(timeout=1) == 42
    assert (stored.name, stored.args) == ("tasks.mul", [6, 7])


def test_get_inside_a_task_raises_runtime_error(app: Celery) -> None:
    done = new_id()
    app.backend.store_result(done, "inner", states.SUCCESS)

    @app.task
    def waits() -> Any:
        return app.AsyncResult(done).get(timeout=1)

    @app.task
    def waits_anyway() -> Any:
        return app.AsyncResult(done).get(timeout=1, disable_sync_subtasks=False)

    @app.task
    def waits_allowed() -> Any:
        with allow_join_result():
            return app.AsyncResult(done).get(timeout=1)

    failed = waits.apply()
    assert isinstance(failed.result, RuntimeError) and "Never call result.get() within a task" in str(failed.result)
    assert waits_anyway.apply().get() == "inner"
    assert waits_allowed.apply().get() == "inner"


def test_backend_repr_shows_class_and_url(app: Celery, tmp_path: Path) -> None:
    text = repr(app.AsyncResult(new_id()).backend)
    assert str(app.backend) == text
    if isinstance(app.backend, MemoryBackend):
        assert text == "<celeriac.backends.memory.MemoryBackend memory://>"
    else:
        assert text == f"<celeriac.backends.sqlite.SQLiteBackend sqlite:///{tmp_path / 'results.db'}>"


def test_backend_repr_masks_password() -> None:
    backend = MemoryBackend("memory://user:hunter2@host")
    assert "hunter2" not in repr(backend) and "user:**@host" in repr(backend)


def test_disabled_backend_says_how_to_configure_one(broker_url: str) -> None:
    with Celery("t", broker=broker_url) as app:
        result = app.AsyncResult(new_id())
        with pytest.raises(NotImplementedError) as info:
            result.get(timeout=1)
        assert "result_backend" in str(info.value) and "backend=" in str(info.value)
        with pytest.raises(NotImplementedError):
            result.state  # noqa: B018
        assert "DisabledBackend" in repr(result.backend)


# -- result-store compatibility with Celery, both directions ---------------------------


@pytest.fixture
def celery_app() -> Iterator[celery.Celery]:
    capp = celery.Celery("c", broker="memory://", backend="cache+memory://", set_as_current=False)
    yield capp
    capp.close()


def copy_to_celery(app: Celery, capp: celery.Celery, task_id: str) -> None:
    backend = app.backend
    assert isinstance(backend, KeyValueBackend)
    capp.backend.client.set(capp.backend.get_key_for_task(task_id), backend._get(backend.task_key(task_id)))


def copy_from_celery(capp: celery.Celery, app: Celery, task_id: str) -> None:
    backend = app.backend
    assert isinstance(backend, KeyValueBackend)
    raw = capp.backend.client.get(capp.backend.get_key_for_task(task_id))
    backend._set(backend.task_key(task_id), raw.encode() if isinstance(raw, str) else raw, None)


def test_celery_reads_celeriac_results(app: Celery, celery_app: celery.Celery) -> None:
    ok, failed = new_id(), new_id()
    app.backend.store_result(ok, {"x": [1, 2], "when": datetime(2024, 1, 2, tzinfo=timezone.utc)}, states.SUCCESS)
    app.backend.store_result(failed, KeyError("missing"), states.FAILURE, traceback="tb")
    copy_to_celery(app, celery_app, ok)
    copy_to_celery(app, celery_app, failed)
    theirs = celery_app.AsyncResult(ok)
    assert theirs.get(timeout=1) == {"x": [1, 2], "when": datetime(2024, 1, 2, tzinfo=timezone.utc)}
    assert theirs.state == "SUCCESS" and theirs.date_done is not None
    with pytest.raises(KeyError, match="missing"):
        celery_app.AsyncResult(failed).get(timeout=1)
    assert celery_app.AsyncResult(failed).traceback == "tb"


def test_celeriac_reads_celery_results(app: Celery, celery_app: celery.Celery) -> None:
    ok, limit, custom = new_id(), new_id(), new_id()
    celery_app.backend.store_result(ok, {"y": "z"}, "SUCCESS")
    celery_app.backend.store_result(limit, celery.exceptions.TimeLimitExceeded(30), "FAILURE", traceback="tb")
    celery_app.backend.store_result(custom, ModuleLevelError("theirs"), "FAILURE")
    for task_id in (ok, limit, custom):
        copy_from_celery(celery_app, app, task_id)
    ours = app.AsyncResult(ok)
    assert ours.get(timeout=1) == {"y": "z"} and ours.date_done is not None
    with pytest.raises(TimeLimitExceeded):
        app.AsyncResult(limit).get(timeout=1)
    assert app.AsyncResult(limit).traceback == "tb"
    with pytest.raises(ModuleLevelError, match="theirs"):
        app.AsyncResult(custom).get(timeout=1)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_late_update_never_undoes_success(kind: str, tmp_path: Path) -> None:
    url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path}/final.db"
    app = Celery("final", broker="memory://", backend=url)
    backend = app.backend
    task_id = f"final-{kind}-{uuid.uuid4()}"
    backend.store_result(task_id, 42, "SUCCESS")
    backend.store_result(task_id, ValueError("late duplicate"), "FAILURE")
    backend.store_result(task_id, None, "RETRY")
    assert app.AsyncResult(task_id).get(timeout=5) == 42
    other = f"other-{uuid.uuid4()}"
    backend.store_result(other, None, "STARTED")
    backend.store_result(other, ValueError("x"), "FAILURE")
    assert app.AsyncResult(other).state == "FAILURE"
    app.close()
