"""The SQS broker against a real SQS API (moto's server): layout, leases, ETA, limits, errors."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from celeriac.brokers import create_broker
from celeriac.brokers.base import Envelope, QueueSpec
from celeriac.brokers.sqs import MAX_DELAY_SECONDS, MessageTooLarge, SQSBroker, sqs_queue_name
from celeriac.exceptions import BrokerUnavailable, EncodeError, ImproperlyConfigured, OperationalError, QueueNotFound


def envelope(task_id: str = "id-1", body: bytes = b"[[2, 2], {}, {}]", **properties: Any) -> Envelope:
    props = {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2, **properties}
    return Envelope(body, {"task": "tasks.add", "id": task_id, "retries": 0}, props, "application/json", "utf-8")


@pytest.fixture
def broker(sqs_options: dict[str, Any]) -> Iterator[SQSBroker]:
    b = SQSBroker("sqs://", {**sqs_options, "visibility_timeout": 2})
    b.open()
    yield b
    b.close()


def _other(sqs_options: dict[str, Any]) -> SQSBroker:
    """A second consumer (another worker) on the same queues."""
    other = SQSBroker("sqs://", {**sqs_options, "visibility_timeout": 2})
    other.open()
    return other


def test_scheme_table_and_capabilities(sqs_options: dict[str, Any]) -> None:
    broker = create_broker("sqs://", sqs_options)
    assert isinstance(broker, SQSBroker)
    assert (broker.supports_fanout, broker.supports_priority, broker.native_delay) == (False, False, True)
    assert broker.lease_renew_interval < broker.visibility_timeout / 2


def test_queue_names_as_kombu() -> None:
    from kombu.transport.SQS import Channel

    for name in ("celery", "my.queue", "a:b/c", "orders.fifo", "x.y.fifo", "under_score-dash"):
        expected = Channel.entity_name(None, "pre." + name)  # type: ignore[arg-type]
        assert sqs_queue_name(name, "pre.") == expected


def test_message_layout_is_kombus(broker: SQSBroker, sqs: Any, sqs_prefix: str) -> None:
    broker.declare_queue(QueueSpec("my.queue"))
    broker.publish(envelope(), exchange="", routing_key="my.queue")
    url = sqs.get_queue_url(QueueName=f"{sqs_prefix}my-queue")["QueueUrl"]
    message = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]
    payload = json.loads(base64.b64decode(message["Body"]))
    assert set(payload) == {"body", "content-encoding", "content-type", "headers", "properties"}
    assert base64.b64decode(payload["body"]) == b"[[2, 2], {}, {}]"
    assert payload["content-type"] == "application/json"
    assert payload["headers"]["task"] == "tasks.add"
    props = payload["properties"]
    assert props["body_encoding"] == "base64"
    assert props["delivery_info"] == {"exchange": "", "routing_key": "my.queue"}
    assert props["correlation_id"] == "id-1" and props["priority"] == 0 and props["delivery_tag"]


def test_get_ack_requeue(broker: SQSBroker) -> None:
    broker.declare_queue(QueueSpec("celery"))
    broker.publish(envelope(), exchange="", routing_key="celery")
    assert broker.queue_size("celery") == 1
    [delivery] = broker.get(["celery"], max_messages=4, timeout=1)
    assert delivery.envelope.body == b"[[2, 2], {}, {}]" and not delivery.redelivered
    assert delivery.queue == "celery" and delivery.routing_key == "celery"
    assert broker.queue_size("celery") == 0  # held: in flight, not waiting
    broker.reject(delivery, requeue=True)
    [again] = broker.get(["celery"], max_messages=4, timeout=1)
    assert again.redelivered and again.envelope.properties["delivery_info"]["redelivered"] is True
    broker.ack(again)
    broker.ack(again)  # twice, or with a lost lease: a no-op
    assert broker.get(["celery"], max_messages=4, timeout=0) == []
    time.sleep(2.5)  # past the visibility timeout: acked means gone
    assert broker.get(["celery"], max_messages=4, timeout=0) == []


def test_long_poll_waits_and_returns_early(broker: SQSBroker) -> None:
    broker.declare_queue(QueueSpec("celery"))
    started = time.monotonic()
    assert broker.get(["celery"], max_messages=1, timeout=2) == []
    assert 1.5 <= time.monotonic() - started < 4
    timer = threading.Timer(0.5, broker.publish, (envelope(),), {"exchange": "", "routing_key": "celery"})
    timer.start()
    started = time.monotonic()
    got = broker.get(["celery"], max_messages=1, timeout=5)
    timer.join()
    assert len(got) == 1 and time.monotonic() - started < 3


def test_several_queues_are_all_served(broker: SQSBroker) -> None:
    for name in ("a", "b", "c"):
        broker.declare_queue(QueueSpec(name))
        broker.publish(envelope(name), exchange="", routing_key=name)
    seen = set()
    for _ in range(6):
        for delivery in broker.get(["a", "b", "c"], max_messages=10, timeout=1):
            seen.add(delivery.queue)
            broker.ack(delivery)
    assert seen == {"a", "b", "c"}


def test_held_message_is_not_redelivered_while_its_lease_is_kept(
    broker: SQSBroker, sqs_options: dict[str, Any]
) -> None:
    broker.declare_queue(QueueSpec("celery"))
    broker.publish(envelope(), exchange="", routing_key="celery")
    [held] = broker.get(["celery"], max_messages=1, timeout=1)
    other = _other(sqs_options)
    deadline = time.monotonic() + 3 * broker.visibility_timeout
    while time.monotonic() < deadline:
        broker.extend_leases([held])
        assert other.get(["celery"], max_messages=1, timeout=0) == []
        time.sleep(broker.lease_renew_interval)
    # Not renewed any more (its worker died): another consumer gets it, marked redelivered.
    time.sleep(broker.visibility_timeout + 0.5)
    [redelivered] = other.get(["celery"], max_messages=1, timeout=1)
    assert redelivered.redelivered
    broker.extend_leases([held])  # an outdated receipt: ignored, not an error
    other.ack(redelivered)


def test_defer_hides_until_the_eta(broker: SQSBroker, sqs_options: dict[str, Any]) -> None:
    broker.declare_queue(QueueSpec("celery"))
    broker.publish(envelope(), exchange="", routing_key="celery")
    [delivery] = broker.get(["celery"], max_messages=1, timeout=1)
    eta = datetime.now(timezone.utc) + timedelta(seconds=2.5)
    assert broker.defer(delivery, eta)
    other = _other(sqs_options)
    got: list[Any] = []
    while not got:
        got = other.get(["celery"], max_messages=1, timeout=0.5)
    assert datetime.now(timezone.utc) >= eta
    other.ack(got[0])


def test_publish_with_a_delay_is_not_visible_early(broker: SQSBroker) -> None:
    broker.declare_queue(QueueSpec("celery"))
    eta = datetime.now(timezone.utc) + timedelta(seconds=2)
    broker.publish(envelope(), exchange="", routing_key="celery", not_before=eta)
    assert broker.queue_size("celery") == 1  # delayed messages are waiting ones
    got: list[Any] = []
    while not got:
        got = broker.get(["celery"], max_messages=1, timeout=0.5)
    assert datetime.now(timezone.utc) >= eta
    broker.ack(got[0])
    # Further than SQS's 15 minutes: sent with the longest delay; the receiving worker hides it again.
    broker.publish(envelope("later"), exchange="", routing_key="celery", not_before=eta + timedelta(hours=3))
    assert broker.get(["celery"], max_messages=1, timeout=1) == []
    assert MAX_DELAY_SECONDS == 900


def test_reject_dead_letters_a_copy(broker: SQSBroker, sqs: Any, sqs_prefix: str) -> None:
    broker.declare_queue(QueueSpec("celery"))
    assert broker.dead_letters() == []  # and no dead-letter queue made just to look
    assert sqs.list_queues(QueueNamePrefix=f"{sqs_prefix}celeriac").get("QueueUrls") is None
    broker.publish(envelope(), exchange="", routing_key="celery")
    [delivery] = broker.get(["celery"], max_messages=1, timeout=1)
    broker.reject(delivery, requeue=False, reason="unregistered task 'tasks.nope'")
    [entry] = broker.dead_letters()
    assert entry["queue"] == "celery" and entry["reason"] == "unregistered task 'tasks.nope'"
    assert entry["headers"]["id"] == "id-1" and entry["rejected"] > 0
    time.sleep(2.5)
    assert broker.get(["celery"], max_messages=1, timeout=0) == []  # deleted from its queue


def test_purge_and_size(broker: SQSBroker, sqs: Any, sqs_prefix: str) -> None:
    assert broker.queue_size("nothing-here") == 0 and broker.purge("nothing-here") == 0
    assert sqs.list_queues(QueueNamePrefix=f"{sqs_prefix}nothing").get("QueueUrls") is None  # not created
    broker.declare_queue(QueueSpec("celery"))
    for i in range(25):
        broker.publish(envelope(f"id-{i}"), exchange="", routing_key="celery")
    [held] = broker.get(["celery"], max_messages=1, timeout=1)
    assert broker.queue_size("celery") == 24
    assert broker.purge("celery") == 24  # the held message is left to its consumer
    assert broker.queue_size("celery") == 0
    broker.ack(held)


def test_fifo_order_default_group_and_deduplication(broker: SQSBroker) -> None:
    broker.declare_queue(QueueSpec("jobs.fifo"))
    for i in range(12):
        broker.publish(envelope(f"id-{i}"), exchange="", routing_key="jobs.fifo")
    broker.publish(envelope("id-3"), exchange="", routing_key="jobs.fifo")  # the same publish again: dropped
    broker.publish(envelope("id-3", MessageDeduplicationId="explicit"), exchange="", routing_key="jobs.fifo")
    seen: list[str] = []
    while len(seen) < 13:
        got = broker.get(["jobs.fifo"], max_messages=10, timeout=1)
        assert got, seen
        for delivery in got:
            seen.append(delivery.envelope.headers["id"])
            broker.ack(delivery)
    assert seen == [f"id-{i}" for i in range(12)] + ["id-3"]
    assert broker.get(["jobs.fifo"], max_messages=10, timeout=0) == []


def test_fifo_groups(broker: SQSBroker, sqs_options: dict[str, Any]) -> None:
    broker.declare_queue(QueueSpec("groups.fifo"))
    for i in range(4):
        for group in ("a", "b"):
            broker.publish(envelope(f"{group}{i}", MessageGroupId=group), exchange="", routing_key="groups.fifo")
    first = broker.get(["groups.fifo"], max_messages=1, timeout=1)
    # A group with a message in flight is held back; the other group is served meanwhile.
    other = _other(sqs_options)
    got = [d.envelope.headers["id"] for d in other.get(["groups.fifo"], max_messages=10, timeout=1)]
    held_group = first[0].envelope.headers["id"][0]
    assert got and all(not task_id.startswith(held_group) for task_id in got)
    assert got == sorted(got)


def test_message_over_the_limit_is_refused_before_sending(broker: SQSBroker) -> None:
    broker.declare_queue(QueueSpec("celery"))
    big = envelope(body=json.dumps([["x" * 200_000], {}, {}]).encode())
    with pytest.raises(MessageTooLarge) as info:
        broker.publish(big, exchange="", routing_key="celery")
    assert isinstance(info.value, EncodeError)
    assert info.value.limit == 262_144 and info.value.size > 262_144 and info.value.queue == "celery"
    assert "262,144" in str(info.value) and f"{info.value.size:,}" in str(info.value)
    assert broker.queue_size("celery") == 0
    # Just under the limit is sent (the body is base64 twice: about 140 KiB of arguments fit).
    broker.publish(envelope(body=json.dumps([["x" * 140_000], {}, {}]).encode()), exchange="", routing_key="celery")
    assert broker.queue_size("celery") == 1


def test_no_fanout_and_no_junk_queues(broker: SQSBroker, sqs: Any, sqs_prefix: str) -> None:
    with pytest.raises(NotImplementedError, match="no fanout.*Redis or RabbitMQ"):
        broker.broadcast("celery.pidbox", envelope())
    with pytest.raises(NotImplementedError, match="no fanout"):
        broker.subscribe("celeryev", routing_key="#")
    assert sqs.list_queues(QueueNamePrefix=sqs_prefix).get("QueueUrls") is None


def test_url_with_credentials_and_host(moto_endpoint: str, sqs_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    host = moto_endpoint.removeprefix("http://")
    # A secret with '/' and '+' is URL-quoted, as Celery's docs say.
    for url, options in [
        ("sqs://AKIDEXAMPLE:se%2Fcr%2Bet@", {"endpoint_url": moto_endpoint}),
        (f"sqs://AKIDEXAMPLE:secret@{host}", {}),
    ]:
        broker = SQSBroker(url, {"queue_name_prefix": sqs_prefix, "region": "eu-west-1", **options})
        assert broker.info()["url"].startswith("sqs://AKIDEXAMPLE:**@")
        broker.open()
        broker.declare_queue(QueueSpec("celery"))
        broker.publish(envelope(), exchange="", routing_key="celery")
        [delivery] = broker.get(["celery"], max_messages=1, timeout=1)
        broker.ack(delivery)
    assert SQSBroker("sqs://AKIDEXAMPLE:se%2Fcr%2Bet@").secret_key == "se/cr+et"


def test_no_credentials_is_a_configuration_error(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # A region nobody else uses here: a fresh client, not one another test made with credentials.
    broker = SQSBroker("sqs://", {"endpoint_url": moto_endpoint, "region": "ap-south-2"})
    with pytest.raises(ImproperlyConfigured, match="no AWS credentials"):
        broker.open()


@pytest.fixture(params=["refused", "black hole", "silent"])
def dead_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    """An endpoint that refuses connections, never completes them, or accepts and never answers."""
    kind = request.param
    sockets = [socket.socket()]
    server = sockets[0]
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if kind == "refused":
        server.close()
    elif kind == "black hole":
        server.listen(0)  # one pending connection fills the backlog: later SYNs are dropped
        filler = socket.socket()
        sockets.append(filler)
        filler.connect(("127.0.0.1", port))
    else:
        server.listen(128)  # connections complete in the kernel; nobody reads them
    yield f"http://127.0.0.1:{port}"
    for sock in sockets:
        sock.close()


def test_unreachable_endpoint_fails_fast(dead_endpoint: str, aws_env: dict[str, str]) -> None:
    broker = SQSBroker("sqs://", {"endpoint_url": dead_endpoint, "connect_timeout": 1.5})
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        broker.open()
    assert time.monotonic() - started < 1.5 + 4
    started = time.monotonic()
    with pytest.raises(OperationalError):
        broker.publish(envelope(), exchange="", routing_key="celery")
    assert time.monotonic() - started < 1.5 + 4


def test_delay_fails_within_the_connection_timeout(dead_endpoint: str, aws_env: dict[str, str]) -> None:
    from celeriac import Celery

    app = Celery("unreachable", broker="sqs://", backend="disabled://", set_as_current=False)
    app.conf.broker_connection_timeout = 2
    app.conf.broker_transport_options = {"endpoint_url": dead_endpoint}

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    started = time.monotonic()
    with pytest.raises(OperationalError):
        add.delay(4, 4)
    # The margin covers importing boto3 and building its client on a busy machine; a hang is minutes.
    assert time.monotonic() - started < 2 + 4
    app.close()


def test_predefined_queues(sqs: Any, sqs_options: dict[str, Any], sqs_prefix: str) -> None:
    url = sqs.create_queue(QueueName=f"{sqs_prefix}somewhere-else")["QueueUrl"]
    options = {
        **sqs_options,
        "predefined_queues": {"celery": {"url": url, "access_key_id": "other", "secret_access_key": "keys"}},
    }
    broker = SQSBroker("sqs://", options)
    broker.open()
    broker.declare_queue(QueueSpec("celery"))
    broker.publish(envelope(), exchange="", routing_key="celery")
    [delivery] = broker.get(["celery"], max_messages=1, timeout=1)
    broker.ack(delivery)
    with pytest.raises(QueueNotFound, match="predefined_queues"):
        broker.publish(envelope(), exchange="", routing_key="other")
    # No dead-letter queue among them: a rejected message stays in its queue, hidden for hours
    # (not straight back to be rejected again, and not lost).
    broker.publish(envelope(), exchange="", routing_key="celery")
    [poisoned] = broker.get(["celery"], max_messages=1, timeout=1)
    broker.reject(poisoned, requeue=False)
    assert broker.get(["celery"], max_messages=1, timeout=1) == []
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert sqs.list_queues(QueueNamePrefix=sqs_prefix)["QueueUrls"] == [url]  # nothing created


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"sts_role_arn": "arn:aws:iam::1:role/x"}, "sts_role_arn is not supported"),
        ({"wait_time_seconds": 30}, "wait_time_seconds must be between 0 and 20"),
        ({"visibility_timeout": 50_000}, "visibility_timeout must be between 1 and 43200"),
        ({"predefined_queues": {"q.fifo": {"url": "https://sqs/1/q"}}}, "must both end with .fifo"),
        ({"predefined_queues": {"q": {}}}, "needs a 'url'"),
    ],
)
def test_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=match):
        SQSBroker("sqs://", options)


def test_malformed_bodies_are_handed_on_marked(broker: SQSBroker, sqs: Any) -> None:
    broker.declare_queue(QueueSpec("celery"))
    url = broker._require_url("celery")
    # kombu reads plain JSON envelopes too (sqs_base64_encoding=False).
    plain = {"body": "W1sxLCAxXSwge30sIHt9XQ==", "content-type": "application/json", "content-encoding": "utf-8",
             "headers": {"task": "tasks.add", "id": "plain"}, "properties": {"body_encoding": "base64"}}  # fmt: skip
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(plain))
    sqs.send_message(QueueUrl=url, MessageBody="not a kombu message")
    got = []
    while len(got) < 2:
        got += broker.get(["celery"], max_messages=10, timeout=1)
    by_type = {d.envelope.content_type: d for d in got}
    assert by_type["application/json"].envelope.body == b"[[1, 1], {}, {}]"
    assert by_type["application/x-celeriac-malformed"].raw == b"not a kombu message"


def test_queue_deleted_under_a_consumer_is_made_again(broker: SQSBroker, sqs: Any) -> None:
    broker.declare_queue(QueueSpec("celery"))
    sqs.delete_queue(QueueUrl=broker._require_url("celery"))
    with pytest.raises(OperationalError, match="receiving"):
        broker.get(["celery"], max_messages=1, timeout=0)
    assert broker.get(["celery"], max_messages=1, timeout=0) == []  # looked up again, and created
    broker.publish(envelope(), exchange="", routing_key="celery")
    [delivery] = broker.get(["celery"], max_messages=1, timeout=1)
    broker.ack(delivery)


def test_fifo_deduplication_id_of_a_long_task_id(broker: SQSBroker) -> None:
    """SQS takes at most 128 printable ASCII characters: a longer or unusual task id is hashed."""
    broker.declare_queue(QueueSpec("ids.fifo"))
    for task_id in ("x" * 200, "x" * 200, "ünïcode id", "ünïcode id", "x" * 199):
        broker.publish(envelope(task_id), exchange="", routing_key="ids.fifo")
    seen: list[str] = []
    while got := broker.get(["ids.fifo"], max_messages=10, timeout=1):
        seen += [d.envelope.headers["id"] for d in got]
        for delivery in got:
            broker.ack(delivery)
    assert seen == ["x" * 200, "ünïcode id", "x" * 199]
