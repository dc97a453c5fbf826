"""task_routes and task_annotations, checked by where messages land on a memory broker."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.exceptions import ImproperlyConfigured, QueueNotFound
from celeriac.protocol import decode
from celeriac.task import Task


@pytest.fixture
def make_app(broker_url: str) -> Iterator[Any]:
    apps: list[Celery] = []

    def make(**settings: Any) -> Celery:
        application = Celery("t", broker=broker_url, backend="memory://", **settings)
        apps.append(application)
        return application

    yield make
    for application in apps:
        application.close()


def landed(app: Celery, queue: str) -> list[str]:
    """Names of the tasks waiting in ``queue`` (taken off the queue)."""
    deliveries = app.connection_for_write().get([queue], max_messages=100, timeout=0)
    return [d.envelope.headers["task"] for d in deliveries]


def test_exact_name_to_queue_string(make_app: Any) -> None:
    app = make_app(task_routes={"tasks.add": "math"})
    app.send_task("tasks.add", (1, 2))
    app.send_task("tasks.other")
    assert landed(app, "math") == ["tasks.add"]
    assert landed(app, "celery") == ["tasks.other"]


def test_exact_name_to_options_dict(make_app: Any) -> None:
    app = make_app(task_routes={"tasks.mul": {"queue": "mulq", "routing_key": "mul.key", "priority": 6}})
    app.send_task("tasks.mul", (2, 3))
    (delivery,) = app.connection_for_write().get(["mulq"], max_messages=1, timeout=0)
    assert delivery.envelope.headers["task"] == "tasks.mul"
    assert delivery.envelope.properties["priority"] == 6
    assert landed(app, "celery") == []


def test_glob_patterns(make_app: Any) -> None:
    app = make_app(task_routes={"feed.*": "feeds", "tasks.?dd": {"queue": "globq"}})
    for name in ("feed.fetch", "feed.parse.deep", "tasks.add", "tasks.addd", "feeds"):
        app.send_task(name)
    assert landed(app, "feeds") == ["feed.fetch", "feed.parse.deep"]
    assert landed(app, "globq") == ["tasks.add"]
    assert landed(app, "celery") == ["tasks.addd", "feeds"]


def test_compiled_regex_keys(make_app: Any) -> None:
    app = make_app(task_routes={re.compile(r"(image|video)\."): {"queue": "media"}})
    for name in ("image.resize", "video.encode", "audio.mix"):
        app.send_task(name)
    assert landed(app, "media") == ["image.resize", "video.encode"]
    assert landed(app, "celery") == ["audio.mix"]


def test_exact_name_beats_pattern(make_app: Any) -> None:
    app = make_app(task_routes={"tasks.*": "pattern", "tasks.special": "exact"})
    app.send_task("tasks.special")
    app.send_task("tasks.plain")
    assert landed(app, "exact") == ["tasks.special"]
    assert landed(app, "pattern") == ["tasks.plain"]


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, Any] | None:
    if name.startswith("video."):
        return {"queue": "video", "priority": 9}
    if kwargs.get("urgent"):
        return {"queue": "urgent"}
    return None


def test_list_of_routers_tried_in_order(make_app: Any) -> None:
    app = make_app(task_routes=[route_task, {"video.encode": "never", "mail.send": "mail"}])
    app.send_task("video.encode")
    app.send_task("mail.send")
    app.send_task("mail.send", kwargs={"urgent": True})
    app.send_task("misc")
    assert landed(app, "video") == ["video.encode"]
    assert landed(app, "never") == []
    assert landed(app, "mail") == ["mail.send"]
    assert landed(app, "urgent") == ["mail.send"]
    assert landed(app, "celery") == ["misc"]


def test_router_function_receives_the_task(make_app: Any) -> None:
    seen: list[tuple[str, Any, Any, Any]] = []

    def spy(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> None:
        seen.append((name, args, kwargs, task))

    app = make_app(task_routes=(spy,))

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(1, y=2)
    assert seen == [("t.add", (1,), {"y": 2}, add)]
    assert landed(app, "celery") == ["t.add"]


def test_router_by_import_path(make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "unit_routers.py").write_text(
        textwrap.dedent(
            """
            def route_task(name, args, kwargs, options, task=None, **kw):
                return "imported" if name == "tasks.add" else None
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = make_app(task_routes=["unit_routers.route_task"])
    app.send_task("tasks.add")
    app.send_task("tasks.sub")
    assert landed(app, "imported") == ["tasks.add"]
    assert landed(app, "celery") == ["tasks.sub"]


def test_bad_router_import_path(make_app: Any) -> None:
    app = make_app(task_routes="no_such_module_for_routes.route")
    with pytest.raises(ImproperlyConfigured, match="task_routes"):
        app.send_task("tasks.add")


def test_precedence_explicit_then_task_then_route_then_default(make_app: Any) -> None:
    app = make_app(task_routes={"t.*": {"queue": "routed", "priority": 4}}, task_default_queue="fallback")

    @app.task(name="t.routed")
    def routed() -> None: ...

    @app.task(name="t.own_queue", queue="own")
    def own_queue() -> None: ...

    routed.delay()
    routed.apply_async(queue="explicit")
    own_queue.delay()
    app.send_task("other.task")

    assert landed(app, "routed") == ["t.routed"]
    (explicit,) = app.connection_for_write().get(["explicit"], max_messages=1, timeout=0)
    assert explicit.envelope.headers["task"] == "t.routed"
    assert explicit.envelope.properties["priority"] == 4  # the route's other options still apply
    assert landed(app, "own") == ["t.own_queue"]
    assert landed(app, "fallback") == ["other.task"]


def test_signature_set_queue(make_app: Any) -> None:
    app = make_app(task_routes={"t.add": "routed"})

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    add.s(1, 2).set(queue="from_sig").delay()
    assert landed(app, "from_sig") == ["t.add"]


def test_missing_queue_refused_when_creation_disabled(make_app: Any) -> None:
    app = make_app(
        task_queues={"known": {}},
        task_create_missing_queues=False,
        task_routes={"tasks.add": "known", "tasks.lost": "unknown"},
    )
    app.send_task("tasks.add")
    assert landed(app, "known") == ["tasks.add"]
    with pytest.raises(QueueNotFound, match="unknown"):
        app.send_task("tasks.lost")
    with pytest.raises(QueueNotFound, match="celery"):
        app.send_task("tasks.unrouted")  # the default queue is not among task_queues either
    with pytest.raises(QueueNotFound):
        app.send_task("tasks.add", queue="elsewhere")
    assert landed(app, "unknown") == [] and landed(app, "elsewhere") == []


def test_missing_queue_created_by_default(make_app: Any) -> None:
    app = make_app(task_queues={"known": {}})
    app.send_task("tasks.add", queue="brand_new")
    assert landed(app, "brand_new") == ["tasks.add"]


# -- annotations ---------------------------------------------------------------------


def test_annotation_dict_per_task_and_star(make_app: Any) -> None:
    app = make_app(task_annotations={"*": {"acks_late": False}, "t.add": {"rate_limit": "10/s"}})

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    app.finalize()
    assert add.rate_limit == "10/s" and add.acks_late is False
    assert mul.rate_limit is None and mul.acks_late is False


class MaxRetriesAnnotator:
    def annotate(self, task: Task[Any, Any]) -> dict[str, Any] | None:
        return {"max_retries": 7} if task.name.endswith("add") else None


def test_annotation_list_and_object(make_app: Any) -> None:
    app = make_app(task_annotations=[{"t.add": {"time_limit": 30}}, MaxRetriesAnnotator()])

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.other")
    def other() -> None: ...

    app.finalize()
    assert (add.time_limit, add.max_retries) == (30, 7)
    assert (other.time_limit, other.max_retries) == (None, 3)


def test_annotation_applied_at_finalize_on_first_send(make_app: Any) -> None:
    app = make_app(task_annotations={"t.add": {"rate_limit": "5/m"}})

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    assert app.finalized is False
    assert add.rate_limit is None  # not yet: annotations apply when the app is finalized
    add.delay(1, 2)
    assert app.finalized is True
    assert add.rate_limit == "5/m"


def test_annotation_set_after_definition_before_first_use(make_app: Any) -> None:
    app = make_app()

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    app.conf.task_annotations = {"t.add": {"rate_limit": "2/s", "soft_time_limit": 4}}
    add.delay(1, 2)
    assert add.rate_limit == "2/s" and add.soft_time_limit == 4
    (delivery,) = app.connection_for_write().get(["celery"], max_messages=1, timeout=0)
    assert decode(delivery.envelope, None).soft_time_limit == 4


def test_task_defined_after_finalize_is_annotated(make_app: Any) -> None:
    app = make_app(task_annotations={"t.late": {"rate_limit": "1/s"}})
    app.finalize()

    @app.task(name="t.late")
    def late() -> None: ...

    assert late.rate_limit == "1/s"


def test_annotation_function_becomes_a_method(make_app: Any) -> None:
    def on_failure(self: Task[Any, Any], exc: BaseException, task_id: str, *rest: Any) -> tuple[str, str]:
        return (self.name, task_id)

    app = make_app(task_annotations={"t.fails": {"on_failure": on_failure}})

    @app.task(name="t.fails")
    def fails() -> None: ...

    app.finalize()
    assert fails.on_failure(ValueError(), "id-1", (), {}, None) == ("t.fails", "id-1")


def test_annotation_import_path(make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "unit_annotations.py").write_text("ANNOTATIONS = {'t.add': {'priority': 8}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = make_app(task_annotations="unit_annotations:ANNOTATIONS")

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(1, 2)
    assert add.priority == 8
    (delivery,) = app.connection_for_write().get(["celery"], max_messages=1, timeout=0)
    assert delivery.envelope.properties["priority"] == 8
