"""Tasks: definition and naming, eager execution, signatures, callbacks in messages, and retries."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac import Celery, EagerResult, Task, shared_task, signals, signature, states
from celeriac.canvas import Signature
from celeriac.exceptions import MaxRetriesExceededError, Retry
from celeriac.protocol import TaskMessage, decode

# The keys of a serialized Celery signature (celery.canvas.Signature is a dict with these).
CELERY_SIGNATURE_KEYS = {"task", "args", "kwargs", "options", "subtask_type", "immutable"}


def sent(app: Celery, queue: str = "celery") -> list[TaskMessage]:
    deliveries = app.connection_for_write().get([queue], max_messages=100, timeout=0)
    return [decode(d.envelope, None) for d in deliveries]


def test_task_decorator_without_and_with_options(app: Celery) -> None:
    @app.task
    def plain(x: int) -> int:
        return x

    @app.task(max_retries=9, rate_limit="5/s", ignore_result=True)
    def configured(x: int) -> int:
        return x

    assert plain.name == f"{__name__}.plain"
    assert app.tasks[plain.name] is plain
    assert (configured.max_retries, configured.rate_limit, configured.ignore_result) == (9, "5/s", True)
    assert plain(3) == 3  # calling the task object runs the function here
    assert plain.__name__ == "plain" and plain.__wrapped__ is not None


def test_decorator_rejects_positional_options(app: Celery) -> None:
    with pytest.raises(TypeError):
        app.task("not-a-function", name="x")  # type: ignore[call-overload]


def test_explicit_name(app: Celery) -> None:
    @app.task(name="custom.name")
    def anything() -> None: ...

    assert anything.name == "custom.name"
    assert "custom.name" in app.tasks


def test_task_in_main_module_is_named_after_app_main() -> None:
    def job() -> None: ...

    job.__module__ = "__main__"
    with Celery("proj", broker="memory://") as named, Celery(broker="memory://") as unnamed:
        assert named.task(job).name == "proj.job"
        assert unnamed.task(job).name == "__main__.job"


def test_decorating_twice_returns_the_same_task(app: Celery) -> None:
    def twice() -> None: ...

    assert app.task(twice) is app.task(twice)


def test_bind_gives_self_and_request_in_eager_apply(app: Celery) -> None:
    seen: dict[str, Any] = {}

    @app.task(bind=True)
    def introspect(self: Task[Any, Any], x: int, *, y: int = 0) -> int:
        seen.update(
            task=self,
            id=self.request.id,
            args=self.request.args,
            kwargs=self.request.kwargs,
            retries=self.request.retries,
            is_eager=self.request.is_eager,
            called_directly=self.request.called_directly,
        )
        return x + y

    result = introspect.apply((1,), {"y": 2}, task_id="fixed-id")
    assert result.get() == 3
    assert seen == {
        "task": introspect,
        "id": "fixed-id",
        "args": (1,),
        "kwargs": {"y": 2},
        "retries": 0,
        "is_eager": True,
        "called_directly": False,
    }
    assert introspect(5) == 5  # type: ignore[call-arg,arg-type]  # bind=True: self is not the caller's
    assert seen["called_directly"] is True and seen["id"] is None


def test_shared_task_registered_on_apps_before_and_after(broker_url: str) -> None:
    with Celery("before", broker=broker_url) as before:

        @shared_task(name="shared.unit.double")
        def double(x: int) -> int:
            return x * 2

        with Celery("after", broker=broker_url) as after:
            assert before.tasks["shared.unit.double"] is double
            assert after.tasks["shared.unit.double"] is double
            assert double.app is after  # resolves to the current app when used
            assert double.apply((4,)).get() == 8
            double.delay(1)
            assert [m.task for m in sent(after)] == ["shared.unit.double"]


def test_shared_task_default_name() -> None:
    @shared_task
    def shared_plain() -> str:
        return "ok"

    assert shared_plain.name == f"{__name__}.shared_plain"


class AuditedTask(Task[Any, Any]):
    events: list[tuple[str, Any]] = []

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.events.append(("success", retval))

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self.events.append(("failure", type(exc).__name__))


def test_base_class_hooks_run(app: Celery) -> None:
    AuditedTask.events = []

    @app.task(base=AuditedTask)
    def ok() -> int:
        return 1

    @app.task(base=AuditedTask)
    def bad() -> None:
        raise LookupError("x")

    assert isinstance(ok, AuditedTask)
    ok.apply()
    bad.apply()
    assert AuditedTask.events == [("success", 1), ("failure", "LookupError")]


def test_class_based_task(app: Celery) -> None:
    class Hundred(app.Task):  # type: ignore[name-defined,misc]
        def run(self, x: int) -> int:
            return x + 100

    task = app.register_task(Hundred())
    assert task.name == f"{__name__}.Hundred"
    assert app.tasks[task.name] is task
    assert task.apply((1,)).get() == 101
    with pytest.raises(TypeError):
        task.delay()  # run() needs x


def test_apply_returns_eager_result(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def div(x: int, y: int) -> float:
        return x / y

    ok = add.apply((2, 3))
    assert isinstance(ok, EagerResult)
    assert (ok.state, ok.result, ok.get(), ok.ready(), ok.successful()) == ("SUCCESS", 5, 5, True, True)
    failed = div.apply((1, 0))
    assert failed.state == states.FAILURE and failed.failed()
    assert isinstance(failed.result, ZeroDivisionError)
    assert failed.traceback is not None and "ZeroDivisionError" in failed.traceback
    with pytest.raises(ZeroDivisionError):
        failed.get()
    assert isinstance(failed.get(propagate=False), ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        div.apply((1, 0), throw=True)


def test_always_eager_and_eager_propagates(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def boom() -> None:
        raise KeyError("k")

    app.conf.task_always_eager = True
    result = add.delay(2, 3)
    assert isinstance(result, EagerResult) and result.get() == 5
    assert boom.delay().state == states.FAILURE
    app.conf.task_eager_propagates = True
    with pytest.raises(KeyError):
        boom.delay()
    assert app.connection_for_write().queue_size("celery") == 0  # nothing went to the broker


def test_delay_checks_arguments_before_sending(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError, match="add"):
        add.delay(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        add.apply_async((1, 2, 3))
    with pytest.raises(TypeError):
        add.apply_async((1,), {"z": 2})
    assert sent(app) == []
    add.delay(1, y=2)
    assert [(m.args, dict(m.kwargs)) for m in sent(app)] == [((1,), {"y": 2})]


def test_argument_check_can_be_disabled(app: Celery) -> None:
    @app.task(typing=False)
    def loose(x: int) -> int:
        return x

    loose.delay(1, 2, 3)  # type: ignore[call-arg]
    assert [m.args for m in sent(app)] == [(1, 2, 3)]


def test_partial_signature_prepends_new_args(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    partial = add.s(2)
    assert isinstance(partial, Signature) and partial.args == (2,)
    partial.delay(3)
    assert [m.args for m in sent(app)] == [(3, 2)]  # Celery: new args go first
    assert partial.args == (2,)  # the signature itself is unchanged
    assert add.s(2).apply((40,)).get() == 42
    assert add.s(y=1)(1) == 2


def test_immutable_signature_ignores_new_args(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    frozen = add.si(2, 2)
    assert frozen.immutable is True
    assert frozen.apply((10,)).get() == 4
    frozen.delay(99)
    assert [m.args for m in sent(app)] == [(2, 2)]


def test_signature_by_name_and_set_queue(app: Celery) -> None:
    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    sig = signature("tasks.add", args=(1, 2), app=app)
    assert (sig.task, sig.args, sig.kwargs) == ("tasks.add", (1, 2), {})
    assert sig.apply().get() == 3
    assert sig.set(queue="special", priority=3) is sig
    sig.delay()
    (message,) = sent(app, "special")
    assert (message.task, message.args, message.priority) == ("tasks.add", (1, 2), 3)
    # A signature is a dict with Celery's keys, so it can travel in messages.
    assert set(sig) == CELERY_SIGNATURE_KEYS
    assert signature(dict(sig)) == sig


def test_link_and_link_error_travel_in_the_embed(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    add.apply_async((1, 2), link=add.s(10), link_error=signature("tasks.on_error", app=app))
    add.apply_async((3, 4), link=[add.s(1), add.si(5, 5)])
    first, second = sent(app)
    assert first.callbacks is not None and first.errbacks is not None
    (callback,) = first.callbacks
    assert set(callback) == CELERY_SIGNATURE_KEYS
    assert (callback["task"], list(callback["args"]), callback["immutable"]) == (add.name, [10], False)
    (errback,) = first.errbacks
    assert errback["task"] == "tasks.on_error"
    assert second.callbacks is not None
    assert [(c["task"], list(c["args"]), c["immutable"]) for c in second.callbacks] == [
        (add.name, [1], False),
        (add.name, [5, 5], True),
    ]
    assert second.errbacks is None


def test_self_retry_then_success_in_eager_apply(app: Celery) -> None:
    retried: list[tuple[Any, Any]] = []
    attempts: list[int] = []

    def on_retry(sender: Any, request: Any, reason: Any, **kw: Any) -> None:
        retried.append((request.retries, reason))

    @app.task(bind=True, max_retries=3, default_retry_delay=0)
    def flaky(self: Task[Any, Any]) -> str:
        attempts.append(self.request.retries)
        if self.request.retries < 1:
            raise self.retry(exc=ConnectionError("try again"))
        return "done"

    signals.task_retry.connect(on_retry)
    try:
        result = flaky.apply()
    finally:
        signals.task_retry.disconnect(on_retry)
    assert attempts == [0, 1]
    assert len(retried) == 1 and retried[0][0] == 0 and isinstance(retried[0][1], ConnectionError)
    assert result.state == states.SUCCESS and result.get() == "done"


def test_self_retry_raises_retry(app: Celery) -> None:
    @app.task(bind=True, default_retry_delay=0)
    def once(self: Task[Any, Any]) -> None:
        raise self.retry()

    with pytest.raises(Retry):
        once.retry()  # called directly: no request to retry
    assert once.apply().state == states.FAILURE  # max_retries (3) retries, then MaxRetriesExceededError


def test_max_retries_exceeded(app: Celery) -> None:
    attempts: list[int] = []

    @app.task(bind=True, max_retries=2, default_retry_delay=0)
    def always(self: Task[Any, Any], n: int) -> None:
        attempts.append(self.request.retries)
        raise self.retry()

    result = always.apply((7,))
    assert attempts == [0, 1, 2]
    assert result.state == states.FAILURE
    assert isinstance(result.result, MaxRetriesExceededError)
    assert result.result.task_args == (7,)
    with pytest.raises(MaxRetriesExceededError):
        result.get()


def test_retry_with_exc_reraises_it_when_exhausted(app: Celery) -> None:
    @app.task(bind=True, max_retries=1, default_retry_delay=0)
    def always(self: Task[Any, Any]) -> None:
        raise self.retry(exc=OSError("disk"))

    result = always.apply()
    assert isinstance(result.result, OSError) and result.result.args == ("disk",)


def test_autoretry_for_eventually_raises_the_exception(app: Celery) -> None:
    attempts: list[int] = []

    @app.task(bind=True, autoretry_for=(ValueError,), max_retries=3, default_retry_delay=0)
    def auto(self: Task[Any, Any]) -> None:
        attempts.append(self.request.retries)
        raise ValueError(f"attempt {len(attempts)}")

    result = auto.apply()
    assert attempts == [0, 1, 2, 3]
    assert result.state == states.FAILURE
    assert isinstance(result.result, ValueError) and result.result.args == ("attempt 4",)
    app.conf.task_eager_propagates = True
    with pytest.raises(ValueError, match="attempt 8"):
        auto.apply()


def test_autoretry_retry_kwargs_and_unlisted_exceptions(app: Celery) -> None:
    attempts: list[str] = []

    @app.task(autoretry_for=(ValueError,), retry_kwargs={"max_retries": 1, "countdown": 0})
    def selective(kind: str) -> None:
        attempts.append(kind)
        raise (ValueError if kind == "value" else KeyError)(kind)

    assert isinstance(selective.apply(("value",)).result, ValueError)
    assert attempts == ["value", "value"]  # retry_kwargs' max_retries wins over the default 3
    attempts.clear()
    assert isinstance(selective.apply(("key",)).result, KeyError)
    assert attempts == ["key"]  # not in autoretry_for: no retry
