"""Queue declarations (``task_queues``, Celery's defaults) and where a task is published, against Celery's own."""

from __future__ import annotations

from typing import Any

import celery
import kombu
import pytest

from celeriac import Celery, Exchange, Queue
from celeriac.brokers.base import QueueSpec
from celeriac.queues import destination, queue_spec, spec_from_queue


def celery_queue(settings: dict[str, Any], name: str) -> QueueSpec:
    """How Celery itself would declare ``name`` under ``settings`` (its ``app.amqp.queues``)."""
    app = celery.Celery("c", broker="memory://", set_as_current=False, **settings)
    try:
        return spec_from_queue(app.amqp.queues[name])
    finally:
        app.close()


def ours(settings: dict[str, Any], name: str) -> QueueSpec:
    app = Celery("t", broker="memory://", set_as_current=False, **settings)
    try:
        return queue_spec(app, name)
    finally:
        app.close()


CASES = [
    ({}, "celery"),
    ({}, "missing"),
    ({"task_default_queue_type": "quorum"}, "celery"),
    ({"task_queue_max_priority": 10}, "celery"),
    ({"task_create_missing_queue_type": "quorum"}, "extra"),
    ({"task_default_queue": "jobs", "task_default_exchange": "ex", "task_default_routing_key": "rk"}, "jobs"),
    ({"task_default_exchange_type": "topic"}, "celery"),
]


@pytest.mark.parametrize(("settings", "name"), CASES)
def test_default_and_missing_queues_are_declared_as_celery_declares_them(settings: dict[str, Any], name: str) -> None:
    assert ours(settings, name) == celery_queue(settings, name)


def kombu_and_ours(**kwargs: Any) -> tuple[list[Any], list[Any]]:
    exchange = kwargs.pop("exchange", None)
    theirs = kombu.Queue(
        exchange=kombu.Exchange(exchange[0], type=exchange[1]) if exchange else None,
        **kwargs,
    )
    ours_q = Queue(exchange=Exchange(exchange[0], type=exchange[1]) if exchange else None, **kwargs)
    return [theirs], [ours_q]


QUEUES = [
    {"name": "plain"},
    {"name": "video", "exchange": ("media", "topic"), "routing_key": "media.video"},
    {"name": "prio", "max_priority": 10},
    {"name": "quorum", "queue_arguments": {"x-queue-type": "quorum"}},
    {"name": "ttl", "message_ttl": 1.5, "expires": 60, "max_length": 10},
    {"name": "fan", "exchange": ("broadcast", "fanout"), "durable": False},
]


@pytest.mark.parametrize("kwargs", QUEUES, ids=[q["name"] for q in QUEUES])
def test_task_queues_with_celeriac_or_kombu_objects_declare_what_celery_declares(kwargs: dict[str, Any]) -> None:
    name = kwargs["name"]
    theirs, ours_list = kombu_and_ours(**dict(kwargs))
    settings: dict[str, Any] = {"task_queue_max_priority": 5}
    expected = celery_queue({**settings, "task_queues": theirs}, name)
    assert ours({**settings, "task_queues": ours_list}, name) == expected
    # kombu's objects in a celeriac app work the same (read by attribute).
    theirs_again, _ = kombu_and_ours(**dict(kwargs))
    assert ours({**settings, "task_queues": theirs_again}, name) == expected


def test_dict_form_of_task_queues() -> None:
    settings = {"task_queues": {"known": {"exchange": "ex", "exchange_type": "topic", "routing_key": "k.#"}}}
    assert ours(settings, "known") == celery_queue(settings, "known")


def test_configured_queue_names_accept_both_kinds_of_objects() -> None:
    app = Celery("t", broker="memory://", task_queues=[Queue("a"), kombu.Queue("b")], set_as_current=False)
    assert app.configured_queue_names() == ["a", "b"]
    app.close()


@pytest.mark.parametrize(
    ("spec", "route", "expected"),
    [
        # Direct exchanges: the default exchange, the queue's name as routing key (Celery's shortcut).
        (QueueSpec("celery", "celery", "celery", "direct"), {}, ("", "celery")),
        (QueueSpec("q", "q", "q", "direct"), {"routing_key": "other"}, ("", "q")),
        # Topic exchanges: the exchange and the queue's (or the route's) routing key.
        (QueueSpec("video", "media", "media.video", "topic"), {}, ("media", "media.video")),
        (QueueSpec("video", "media", "media.#", "topic"), {"routing_key": "media.hd"}, ("media", "media.hd")),
        (QueueSpec("q", "q", "q", "direct"), {"exchange": "explicit", "routing_key": "rk"}, ("explicit", "rk")),
    ],
)
def test_destination(spec: QueueSpec, route: dict[str, Any], expected: tuple[str, str]) -> None:
    assert destination(spec, route) == expected


def test_queue_object_in_a_route_is_declared_as_given() -> None:
    target = Queue("video", Exchange("media", type="topic"), routing_key="media.video")
    app = Celery("t", broker="memory://", task_routes={"tasks.encode": {"queue": target}}, set_as_current=False)
    route = app.router.route({}, "tasks.encode")
    assert route["queue"] == "video"
    spec = app.queue_spec("video", route["queue_object"])
    assert (spec.exchange, spec.exchange_type, spec.routing_key) == ("media", "topic", "media.video")
    assert destination(spec, route) == ("media", "media.video")
    app.close()


def test_queue_and_exchange_take_kombus_arguments() -> None:
    queue = Queue("q", "ex", "rk", max_priority=9, durable=False, exclusive=True)
    assert queue.exchange == Exchange("ex")
    assert queue.auto_delete  # exclusive implies auto-delete, as in kombu
    assert spec_from_queue(queue).queue_arguments == {"x-max-priority": 9}
    with pytest.raises(NotImplementedError, match="bindings"):
        Queue("q", bindings=[object()])
