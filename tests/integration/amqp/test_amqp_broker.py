"""The AMQP broker against a real RabbitMQ: declarations, properties, acks, prefetch, priorities, delays, fanout."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import celery
import kombu
import pytest

from celeriac import Celery, Exchange, Queue
from celeriac.brokers.amqp import AMQPBroker
from celeriac.brokers.base import Envelope, QueueSpec
from celeriac.exceptions import ImproperlyConfigured, OperationalError, QueueNotFound
from tests.integration.amqp.conftest import queue_counts, rabbitmqctl

# kombu's py-amqp transport, used here as Celery's side of the wire.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def broker(amqp_url: str) -> Iterator[AMQPBroker]:
    b = AMQPBroker(amqp_url, {"connect_timeout": 5})
    b.open()
    yield b
    b.close()


def envelope(body: bytes = b"[]", **headers: Any) -> Envelope:
    props = {"correlation_id": "cid", "reply_to": "rto", "delivery_mode": 2}
    return Envelope(body, {"task": "t", **headers}, props, "application/json", "utf-8")


def test_publish_get_ack(broker: AMQPBroker, vhost: str) -> None:
    broker.declare_queue(QueueSpec("q", "q", "q"))
    headers = {"timelimit": [1.5, None], "stamps": {"a": [1, "b"]}, "ignore_result": True, "retries": 2}
    broker.publish(envelope(b'{"x": 1}', **headers), exchange="", routing_key="q")
    assert broker.queue_size("q") == 1
    (delivery,) = broker.get(["q"], max_messages=5, timeout=5)
    assert delivery.envelope.body == b'{"x": 1}'
    assert delivery.envelope.headers == {"task": "t", **headers}
    props = delivery.envelope.properties
    assert (props["correlation_id"], props["reply_to"], props["delivery_mode"]) == ("cid", "rto", 2)
    assert delivery.envelope.content_type == "application/json" and delivery.envelope.content_encoding == "utf-8"
    assert (delivery.queue, delivery.exchange, delivery.routing_key, delivery.redelivered) == ("q", "", "q", False)
    assert queue_counts(vhost)["q"] == (0, 1)
    broker.ack(delivery)
    broker.ack(delivery)  # twice: a no-op, not a channel error
    assert broker.get(["q"], max_messages=1, timeout=0.2) == []
    assert queue_counts(vhost)["q"] == (0, 0)


def test_declared_exactly_as_celery_declares(amqp_url: str, vhost: str) -> None:
    """celeriac and Celery declare the same queues; RabbitMQ would refuse any difference."""
    settings: dict[str, Any] = {
        "task_queues": [
            Queue("celery", Exchange("celery"), routing_key="celery"),
            Queue("video", Exchange("media", type="topic"), routing_key="media.video", max_priority=10),
            Queue("jobs", queue_arguments={"x-queue-type": "quorum"}),
        ],
    }
    app = Celery("t", broker=amqp_url, set_as_current=False, **settings)
    for name in ("celery", "video", "jobs"):
        app.connection_for_write().declare_queue(app.queue_spec(name))
    capp = celery.Celery("c", broker=amqp_url.replace("amqp://", "pyamqp://"), set_as_current=False)
    capp.conf.task_queues = [
        kombu.Queue("celery", kombu.Exchange("celery"), routing_key="celery"),
        kombu.Queue("video", kombu.Exchange("media", type="topic"), routing_key="media.video", max_priority=10),
        kombu.Queue("jobs", queue_arguments={"x-queue-type": "quorum"}),
    ]
    with capp.connection_for_write() as conn:
        channel = conn.default_channel
        for name in ("celery", "video", "jobs"):
            capp.amqp.queues[name].bind(channel).declare()  # PreconditionFailed on any difference
    capp.close()
    queues = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", vhost, "name", "durable", "arguments")
    assert "x-queue-type" in next(line for line in queues.splitlines() if line.startswith("jobs"))
    bindings = rabbitmqctl("list_bindings", "-q", "--no-table-headers", "-p", vhost, "source_name", "destination_name",
                           "routing_key")  # fmt: skip
    assert "media\tvideo\tmedia.video" in bindings and "celery\tcelery\tcelery" in bindings
    # A queue declared differently elsewhere is a clear configuration error.
    other = Celery("t2", broker=amqp_url, set_as_current=False, task_default_queue_type="quorum")
    with pytest.raises(ImproperlyConfigured, match="refused to declare queue 'celery'"):
        other.connection_for_write().declare_queue(other.queue_spec("celery"))
    other.close()
    app.close()


def test_missing_queues_are_created_before_the_first_task(amqp_url: str, vhost: str) -> None:
    app = Celery("t", broker=amqp_url, set_as_current=False)
    app.send_task("tasks.add", (1, 2), queue="fresh")  # published to "", so the queue must exist first
    assert queue_counts(vhost)["fresh"] == (1, 0)
    strict = Celery("s", broker=amqp_url, set_as_current=False, task_create_missing_queues=False,
                    task_queues=[Queue("known")])  # fmt: skip
    with pytest.raises(QueueNotFound):
        strict.send_task("tasks.add", queue="unknown")
    app.close()
    strict.close()


def test_task_messages_carry_celerys_properties(amqp_url: str) -> None:
    """The same call sent by Celery and by celeriac arrives with the same properties and header types."""
    capp = celery.Celery("c", broker=amqp_url.replace("amqp://", "pyamqp://"), set_as_current=False)
    app = Celery("t", broker=amqp_url, set_as_current=False)
    options = {"priority": 5, "time_limit": 1.1, "retries": 0}
    capp.send_task("tasks.add", (1, 2.5), task_id="c-1", **options)
    app.send_task("tasks.add", (1, 2.5), task_id="c-2", **options)
    app.send_task("tasks.add", (1, 2), task_id="c-3")
    with capp.connection_for_write() as conn:
        queue = kombu.Queue("celery", kombu.Exchange("celery"), routing_key="celery").bind(conn.default_channel)
        theirs, ours, plain = (queue.get(no_ack=True) for _ in range(3))
    for key in ("content_type", "content_encoding"):
        assert getattr(ours, key) == getattr(theirs, key)
    tp, op = dict(theirs.properties), dict(ours.properties)
    assert "message_id" not in op  # as kombu sends it
    tp.pop("correlation_id"), op.pop("correlation_id")
    tp.pop("reply_to"), op.pop("reply_to")
    tp.pop("application_headers"), op.pop("application_headers")  # compared below
    assert op == tp == {"content_type": "application/json", "content_encoding": "utf-8", "delivery_mode": 2,
                        "priority": 5}  # fmt: skip
    assert plain.properties["priority"] == 0  # unset: 0, as kombu sends it
    skip = {"id", "root_id", "origin"}
    th, oh = theirs.headers, ours.headers
    assert {k: v for k, v in oh.items() if k not in skip} == {k: v for k, v in th.items() if k not in skip}
    assert oh["timelimit"] == [1.1, None]  # a double, as py-amqp sends it
    assert ours.delivery_info["exchange"] == "" and ours.delivery_info["routing_key"] == "celery"
    capp.close()
    app.close()


def test_reject_requeues_or_dead_letters(broker: AMQPBroker) -> None:
    broker.declare_queue(QueueSpec("q", "q", "q"))
    broker.publish(envelope(b"1"), exchange="", routing_key="q")
    (first,) = broker.get(["q"], max_messages=1, timeout=5)
    broker.reject(first, requeue=True)
    (again,) = broker.get(["q"], max_messages=1, timeout=5)
    assert again.redelivered and again.envelope.body == b"1"
    broker.reject(again, requeue=False, reason="poison")
    (dead,) = broker.get(["celeriac.deadletter"], max_messages=1, timeout=5)
    assert dead.envelope.body == b"1"
    assert dead.envelope.headers["x-celeriac-reason"] == "poison" and dead.envelope.headers["x-celeriac-queue"] == "q"
    broker.ack(dead)
    # A queue with its own dead-letter exchange keeps RabbitMQ's way.
    broker.declare_queue(QueueSpec("dlq", "dlq", "dlq"))
    broker.declare_queue(
        QueueSpec(
            "q2", "q2", "q2", queue_arguments={"x-dead-letter-exchange": "dlq", "x-dead-letter-routing-key": "dlq"}
        )
    )
    broker.publish(envelope(b"2"), exchange="", routing_key="q2")
    (message,) = broker.get(["q2"], max_messages=1, timeout=5)
    broker.reject(message, requeue=False)
    (dead,) = broker.get(["dlq"], max_messages=1, timeout=5)
    assert dead.envelope.body == b"2" and dead.envelope.headers["x-death"][0]["reason"] == "rejected"


def test_prefetch_bounds_unacked_messages(broker: AMQPBroker, vhost: str) -> None:
    broker.declare_queue(QueueSpec("q", "q", "q"))
    for i in range(10):
        broker.publish(envelope(str(i).encode()), exchange="", routing_key="q")
    broker.set_prefetch(3)
    got = broker.get(["q"], max_messages=10, timeout=5)
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        got += broker.get(["q"], max_messages=10, timeout=0.2)
    time.sleep(0.5)  # room for RabbitMQ to send more, if it (wrongly) would
    got += broker.get(["q"], max_messages=10, timeout=0)
    assert len(got) == 3
    assert queue_counts(vhost)["q"] == (7, 3)
    for delivery in got:
        broker.ack(delivery)
    more = broker.get(["q"], max_messages=10, timeout=5)
    assert 1 <= len(more) <= 3


def fill_and_take(broker: AMQPBroker, count: int) -> list[Any]:
    """Publish ``count`` messages to queue ``q`` and receive them all, unacked."""
    broker.declare_queue(QueueSpec("q", "q", "q"))
    for i in range(count):
        broker.publish(envelope(str(i).encode()), exchange="", routing_key="q")
    broker.set_prefetch(count)
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        got += broker.get(["q"], max_messages=count, timeout=1)
    assert len(got) == count
    return got


def test_acks_wait_for_room_when_the_write_queue_is_full(amqp_url: str, vhost: str) -> None:
    """A full write queue (a burst of publishes on the connection) when acks are handed over: they
    wait for room and still reach RabbitMQ, rather than being dropped with an error in the IO loop."""
    broker = AMQPBroker(amqp_url, {"connect_timeout": 5})
    got = fill_and_take(broker, 50)
    queue = broker._held[got[0].tag].channel.write_queue
    real = queue.put_nowait
    refused: list[object] = []

    def full_once(item: object) -> None:
        if not refused:
            refused.append(item)
            raise asyncio.QueueFull
        real(item)

    queue.put_nowait = full_once  # type: ignore[method-assign]
    try:
        for delivery in got:
            broker.ack(delivery)
        broker.close()
    finally:
        queue.put_nowait = real  # type: ignore[method-assign]
    assert refused  # the acks did find the queue full
    assert queue_counts(vhost)["q"] == (0, 0)


def test_acks_handed_to_the_io_loop_all_reach_rabbitmq_before_close(amqp_url: str, vhost: str) -> None:
    """ack() returns before its frame is written; close() still sends every ack handed over before it,
    so a worker that stops right after its last tasks gets none of them delivered again."""
    broker = AMQPBroker(amqp_url, {"connect_timeout": 5})
    got = fill_and_take(broker, 200)
    for delivery in got:
        broker.ack(delivery)
    broker.close()  # at once: the acks may still be on their way through the IO loop
    assert queue_counts(vhost)["q"] == (0, 0)
    again = AMQPBroker(amqp_url, {"connect_timeout": 5})
    try:
        assert again.get(["q"], max_messages=10, timeout=0.5) == []
    finally:
        again.close()


def test_acks_leave_in_batches_each_tag_once(broker: AMQPBroker, vhost: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Acks handed over faster than the IO loop runs share its wake-up and one frame write, and every
    delivery is acked exactly once (an ack twice would make RabbitMQ close the channel)."""
    import celeriac.brokers.amqp as amqp_module

    writes: list[list[int]] = []
    marshall = amqp_module.ChannelFrame.marshall

    def spy(*args: Any, **kwargs: Any) -> Any:
        acks = [f.delivery_tag for f in kwargs.get("frames", ()) if isinstance(f, amqp_module.Basic.Ack)]
        if acks:
            writes.append(acks)
        return marshall(*args, **kwargs)

    monkeypatch.setattr(amqp_module.ChannelFrame, "marshall", spy)
    got = fill_and_take(broker, 300)
    threads = [threading.Thread(target=lambda part=got[i::3]: [broker.ack(d) for d in part]) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 10
    while queue_counts(vhost)["q"] != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queue_counts(vhost)["q"] == (0, 0)
    tags = sorted(tag for write in writes for tag in write)
    assert tags == list(range(1, 301))
    assert len(writes) < 300  # some acks shared a write
    assert broker.get(["q"], max_messages=1, timeout=0.3) == []


def test_a_delivery_whose_properties_cannot_be_read_is_dead_lettered(
    broker: AMQPBroker, vhost: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer never raises in the IO loop (the message would stay unacked, unseen): a delivery
    it can't turn into an envelope goes to the dead-letter queue with the reason, and the rest flow."""
    import celeriac.brokers.amqp as amqp_module

    readable = amqp_module.incoming_envelope

    def incoming_envelope(message: Any) -> Envelope:
        if message.body == b"unreadable":
            raise ValueError("a property no one can read")
        return readable(message)

    monkeypatch.setattr(amqp_module, "incoming_envelope", incoming_envelope)
    broker.declare_queue(QueueSpec("q", "q", "q"))
    for body in (b"1", b"unreadable", b"2"):
        broker.publish(envelope(body), exchange="", routing_key="q")
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        got += broker.get(["q"], max_messages=10, timeout=1)
    assert [d.envelope.body for d in got] == [b"1", b"2"]
    for delivery in got:
        broker.ack(delivery)
    monkeypatch.undo()  # readable again, to look at the copy
    deadline = time.monotonic() + 10
    while queue_counts(vhost).get("celeriac.deadletter") != (1, 0) and time.monotonic() < deadline:
        time.sleep(0.05)  # the copy is made in the background
    (dead,) = broker.get(["celeriac.deadletter"], max_messages=1, timeout=5)
    assert dead.envelope.body == b"unreadable"
    assert "a property no one can read" in dead.envelope.headers["x-celeriac-reason"]
    assert dead.envelope.headers["x-celeriac-queue"] == "q"
    broker.ack(dead)
    assert broker.get(["q"], max_messages=1, timeout=0.3) == []


def test_priorities_nine_is_most_urgent(broker: AMQPBroker) -> None:
    broker.declare_queue(QueueSpec("p", "p", "p", max_priority=10))
    for priority in (1, 9, 5, 0):
        e = envelope(str(priority).encode())
        broker.publish(Envelope(e.body, e.headers, {**e.properties, "priority": priority}, "", ""), exchange="",
                       routing_key="p")  # fmt: skip
    broker.set_prefetch(1)
    order = []
    for _ in range(4):
        (delivery,) = broker.get(["p"], max_messages=1, timeout=5)
        order.append(int(delivery.envelope.body))
        assert delivery.envelope.priority == order[-1]
        broker.ack(delivery)
    assert order == [9, 5, 1, 0]


def test_defer_parks_the_message_in_the_broker_until_due(broker: AMQPBroker, vhost: str) -> None:
    broker.declare_queue(QueueSpec("q", "q", "q"))
    broker.publish(envelope(b"later"), exchange="", routing_key="q")
    (delivery,) = broker.get(["q"], max_messages=1, timeout=5)
    due = datetime.now(timezone.utc) + timedelta(seconds=2)
    assert broker.defer(delivery, due)
    assert queue_counts(vhost)["q"] == (0, 0)  # acked here: the worker holds nothing
    assert broker.queue_size("celery_delayed_1") == 1  # 2 seconds = bit 1 of Celery's layout
    assert "x-queue-type" in rabbitmqctl("list_queues", "-p", vhost, "name", "arguments")
    (back,) = broker.get(["q"], max_messages=1, timeout=10)
    assert datetime.now(timezone.utc) >= due
    assert back.envelope.body == b"later" and back.routing_key == "q"
    broker.ack(back)


def test_defer_many_parks_a_batch(broker: AMQPBroker) -> None:
    broker.declare_queue(QueueSpec("q", "q", "q"))
    for i in range(20):
        broker.publish(envelope(str(i).encode()), exchange="", routing_key="q")
    broker.set_prefetch(20)
    deliveries: list[Any] = []
    while len(deliveries) < 20:
        deliveries += broker.get(["q"], max_messages=20, timeout=5)
    now = datetime.now(timezone.utc)
    due = now + timedelta(seconds=1.5)
    handled = broker.defer_many([(d, due) for d in deliveries[:19]] + [(deliveries[19], now)])
    assert handled == [True] * 19 + [False]  # the last one is due already: the worker keeps it
    broker.ack(deliveries[19])
    back: list[Any] = []
    while len(back) < 19:
        back += broker.get(["q"], max_messages=20, timeout=10)
    assert datetime.now(timezone.utc) >= due
    assert sorted(int(d.envelope.body) for d in back) == list(range(19))


def test_publish_with_not_before_goes_through_the_delay_layout(broker: AMQPBroker) -> None:
    broker.declare_queue(QueueSpec("q", "q", "q"))
    due = datetime.now(timezone.utc) + timedelta(seconds=1.2)
    broker.publish(envelope(b"x"), exchange="", routing_key="q", not_before=due)
    assert broker.queue_size("q") == 0
    (delivery,) = broker.get(["q"], max_messages=1, timeout=10)
    assert datetime.now(timezone.utc) >= due and delivery.envelope.body == b"x"


def test_ack_of_a_delivery_from_a_lost_connection_is_a_no_op(broker: AMQPBroker, vhost: str) -> None:
    broker.declare_queue(QueueSpec("q", "q", "q"))
    broker.publish(envelope(b"x"), exchange="", routing_key="q")
    (stale,) = broker.get(["q"], max_messages=1, timeout=5)
    rabbitmqctl("close_all_connections", "-p", vhost, "test: connection lost")
    with pytest.raises(OperationalError, match="lost"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            broker.get(["q"], max_messages=1, timeout=0.5)
    broker.ack(stale)  # logged, not raised: RabbitMQ has requeued the message
    (fresh,) = broker.get(["q"], max_messages=1, timeout=10)
    assert fresh.redelivered and fresh.envelope.body == b"x"
    broker.ack(fresh)
    assert broker.get(["q"], max_messages=1, timeout=0.3) == []


def test_fanout_reaches_every_subscriber_and_kombu(broker: AMQPBroker, amqp_url: str) -> None:
    first = broker.subscribe("celery.pidbox")
    second = broker.subscribe("celery.pidbox")
    with kombu.Connection(amqp_url.replace("amqp://", "pyamqp://")) as conn:
        # kombu's own broadcast consumer on the same exchange (declared the way Celery declares it).
        exchange = kombu.Exchange("celery.pidbox", type="fanout", durable=False, delivery_mode="transient")
        theirs = kombu.Queue("kombu.sub", exchange, exclusive=True, auto_delete=True, durable=False)
        received: list[Any] = []
        with conn.Consumer(theirs, callbacks=[lambda body, msg: received.append(body)], accept=["json"]):
            broker.broadcast("celery.pidbox", envelope(b'{"method": "ping"}'))
            assert first.get(5) is not None and second.get(5) is not None
            deadline = time.monotonic() + 5
            while not received and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
        assert received == [{"method": "ping"}]
        # ...and what kombu sends reaches ours.
        producer = conn.Producer()
        producer.publish({"method": "stats"}, exchange=exchange, routing_key="", serializer="json")
    got = first.get(5)
    assert got is not None and got.body == b'{"method": "stats"}'
    first.close()
    second.close()


def test_topic_subscription_for_events(broker: AMQPBroker) -> None:
    with broker.subscribe("celeryev", routing_key="task.#") as sub:
        broker.broadcast("celeryev", envelope(b"1"), routing_key="worker.heartbeat")
        broker.broadcast("celeryev", envelope(b"2"), routing_key="task.succeeded")
        got = sub.get(5)
        assert got is not None and got.body == b"2"
        assert sub.get(0.3) is None


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung broker)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_delay_fails_fast_when_the_broker_is_unreachable(kind: str, request: pytest.FixtureRequest) -> None:
    port = _free_port() if kind == "refused" else request.getfixturevalue("silent_port")
    app = Celery("t", broker=f"amqp://guest:guest@127.0.0.1:{port}//", broker_connection_timeout=1,
                 set_as_current=False)  # fmt: skip
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            app.send_task("tasks.add", (1, 2))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    thread.join(30)  # a generous bound: the point is that it returns, with the broker's error
    assert not thread.is_alive(), "delay() hung on an unreachable broker"
    assert len(outcome) == 1 and isinstance(outcome[0], OperationalError), outcome
    assert f"127.0.0.1:{port}" in str(outcome[0])
    app.close()


def test_heartbeat_is_negotiated(amqp_url: str, vhost: str) -> None:
    app = Celery("t", broker=amqp_url, broker_heartbeat=7, set_as_current=False)
    app.connection_for_write()
    out = rabbitmqctl("list_connections", "-q", "--no-table-headers", "vhost", "timeout")
    assert f"{vhost}\t7" in out.splitlines()
    app.close()
