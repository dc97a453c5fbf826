"""The Redis broker and result backend against the real server, with real workers."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
import redis

from celeriac import Celery
from celeriac.brokers import redis as redis_broker_module
from celeriac.brokers.base import Envelope, QueueSpec
from celeriac.brokers.redis import RedisBroker
from celeriac.exceptions import OperationalError
from tests.conftest import Project

TASKS = """
import os, time
from celeriac import Celery

app = Celery("tasks")
app.conf.broker_transport_options = {"visibility_timeout": float(os.environ.get("VT", "3600")),
                                     "consumer_timeout": float(os.environ.get("CT", "30"))}
GATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gate")


@app.task
def add(x, y):
    return x + y


@app.task
def double(i):
    while not os.path.exists(GATE):
        time.sleep(0.02)
    return i * 2


@app.task
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


@app.task
def fail():
    raise ValueError("bad value")
"""


def _envelope(priority: int | None = 0) -> Envelope:
    return Envelope(
        b"[[], {}, {}]",
        {"task": "tasks.add", "id": "x"},
        {"priority": priority, "delivery_mode": 2},
        "application/json",
        "utf-8",
    )


def test_layout_is_kombus(redis_url: str, rclient: redis.Redis) -> None:
    app = Celery("tasks", broker=redis_url, backend=redis_url)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    urgent = add.apply_async((1, 1), priority=9)  # celeriac's order: 9 is most urgent, kombu priority 0
    result = add.apply_async((2, 2), priority=0)  # ... and 0 is least urgent, kombu priority 9
    plain = add.delay(3, 3)  # no priority: the main list, as Celery sends it
    assert [json.loads(x)["headers"]["id"] for x in rclient.lrange("celery", 0, -1)] == [plain.id, urgent.id]
    assert rclient.llen("celery\x06\x169") == 1
    item = json.loads(rclient.lindex("celery\x06\x169", 0))
    assert set(item) == {"body", "content-encoding", "content-type", "headers", "properties"}
    props = item["properties"]
    assert props["body_encoding"] == "base64" and props["delivery_info"] == {"exchange": "", "routing_key": "celery"}
    assert props["correlation_id"] == result.id and isinstance(props["delivery_tag"], str)
    assert json.loads(base64.b64decode(item["body"])) == [
        [2, 2],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
    assert item["headers"]["task"] == "tests.integration.redis.test_redis_broker.add"
    assert item["headers"]["id"] == result.id
    app.close()


def test_a_route_survives_redis_losing_its_bindings(redis_url: str, rclient: redis.Redis) -> None:
    """Redis restarted without persistence (or flushed) has no bindings left: a client that declared
    its queue before still routes to it, instead of to a list named after the routing key."""
    broker = RedisBroker(redis_url)
    message = _envelope(priority=None)  # no priority: the main list
    broker.declare_queue(QueueSpec("images", exchange="media", routing_key="image.compress"))
    broker.publish(message, exchange="media", routing_key="image.compress")
    assert rclient.llen("images") == 1
    rclient.flushdb()
    broker.publish(message, exchange="media", routing_key="image.compress")
    assert rclient.llen("images") == 1 and rclient.llen("image.compress") == 0
    assert rclient.smembers("_kombu.binding.media") == {b"image.compress\x06\x16\x06\x16images"}
    # Declaring again writes the binding again, though this broker declared it before.
    rclient.flushdb()
    broker.declare_queue(QueueSpec("images", exchange="media", routing_key="image.compress"))
    assert rclient.smembers("_kombu.binding.media") == {b"image.compress\x06\x16\x06\x16images"}
    broker.close()


def test_each_client_restores_its_own_binding_on_a_shared_exchange(redis_url: str, rclient: redis.Redis) -> None:
    """After Redis lost its bindings, another client binding again first does not hide this one's."""
    message = _envelope(priority=None)  # no priority: the main list
    images, videos = RedisBroker(redis_url), RedisBroker(redis_url)
    images.declare_queue(QueueSpec("images", exchange="media", routing_key="image.compress"))
    videos.declare_queue(QueueSpec("videos", exchange="media", routing_key="video.encode"))
    rclient.flushdb()
    images.publish(message, exchange="media", routing_key="image.compress")  # binds images again, not videos
    videos.publish(message, exchange="media", routing_key="video.encode")
    assert (rclient.llen("images"), rclient.llen("videos"), rclient.llen("video.encode")) == (1, 1, 0)
    images.close()
    videos.close()


def test_a_consuming_broker_writes_its_bindings_again(redis_url: str, rclient: redis.Redis) -> None:
    """A worker's broker puts back the bindings of its queues on its maintenance rounds, for clients
    that look them up after Redis lost them (kombu's consumers declare again when they reconnect)."""
    broker = RedisBroker(redis_url)
    broker.declare_queue(QueueSpec("images", exchange="media", routing_key="image.compress"))
    rclient.flushdb()
    assert broker.get(["images"], max_messages=1, timeout=0) == []
    assert rclient.smembers("_kombu.binding.media") == set()  # not at every round: every REDECLARE_INTERVAL
    broker._next_redeclare = broker._next_maintenance = 0.0  # as when the interval has passed
    assert broker.get(["images"], max_messages=1, timeout=0) == []
    assert rclient.smembers("_kombu.binding.media") == {b"image.compress\x06\x16\x06\x16images"}
    broker.close()


def test_priorities_both_orders(redis_url: str) -> None:
    broker = RedisBroker(redis_url, {"priority_order": "celeriac"})
    for p in (0, 9, 5):
        broker.publish(_envelope(p), exchange="", routing_key="q")
    got = broker.get(["q"], max_messages=3, timeout=0)
    assert [d.envelope.priority for d in got] == [9, 5, 0]
    for d in got:
        broker.ack(d)
    celery_order = RedisBroker(redis_url, {"priority_order": "celery"})
    for p in (9, 0, 5):
        celery_order.publish(_envelope(p), exchange="", routing_key="q")
    got = celery_order.get(["q"], max_messages=3, timeout=0)
    # Celery's Redis meaning: 0 first; 5 lands in step 3 and 9 in step 9.
    assert [d.envelope.priority for d in got] == [0, 5, 9]


def test_ack_reject_and_dead_letter(redis_url: str, rclient: redis.Redis) -> None:
    broker = RedisBroker(redis_url)
    broker.publish(_envelope(), exchange="", routing_key="q")
    (first,) = broker.get(["q"], max_messages=1, timeout=1)
    assert rclient.hexists("unacked", first.tag) and rclient.zscore("unacked_index", first.tag)
    broker.reject(first, requeue=True)
    (again,) = broker.get(["q"], max_messages=1, timeout=1)
    assert again.tag == first.tag and again.redelivered
    broker.reject(again, requeue=False, reason="poison")
    assert broker.get(["q"], max_messages=1, timeout=0) == []
    assert not rclient.hexists("unacked", first.tag)
    (dead,) = broker.dead_letters()
    assert dead["reason"] == "poison" and json.loads(dead["raw"])["properties"]["delivery_tag"] == first.tag


def test_a_claim_whose_reply_is_lost_puts_its_messages_back(
    redis_url: str, rclient: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = RedisBroker(redis_url)
    for _ in range(3):
        broker.publish(_envelope(), exchange="", routing_key="q")
    (held,) = broker.get(["q"], max_messages=1, timeout=1)
    real = redis_broker_module.execute_raw

    def run_then_lose_the_reply(client: redis.Redis, *commands: tuple[object, ...]) -> list[object]:
        real(client, *commands)  # Redis ran the claim...
        raise redis.exceptions.ConnectionError("connection reset")  # ...and its reply never came

    monkeypatch.setattr(redis_broker_module, "execute_raw", run_then_lose_the_reply)
    with pytest.raises(OperationalError):
        broker.get(["q"], max_messages=5, timeout=0)
    monkeypatch.setattr(redis_broker_module, "execute_raw", real)
    assert rclient.llen("q") == 0 and rclient.hlen("unacked") == 3  # recorded as this worker's, unseen by it
    again = broker.get(["q"], max_messages=5, timeout=1)
    # Back at once, not after visibility_timeout, and the message still held is not handed out twice.
    assert len(again) == 2 and held.tag not in {d.tag for d in again}
    assert all(d.redelivered for d in again)
    for d in [held, *again]:
        broker.ack(d)
    broker.flush_acks()
    assert rclient.hlen("unacked") == 0 and rclient.llen("q") == 0


def _blocked_in(rclient: redis.Redis, command: str, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    db = str(rclient.get_connection_kwargs()["db"])  # CLIENT LIST is server-wide
    while sum(c.get("cmd") == command and c.get("db") == db for c in rclient.client_list()) < count:
        assert time.monotonic() < deadline, f"nobody waited in {command}"
        time.sleep(0.01)


def test_waiting_for_a_message_takes_nothing_until_it_is_claimed(redis_url: str, rclient: redis.Redis) -> None:
    broker = RedisBroker(redis_url)
    got: list[object] = []
    waiting = threading.Thread(target=lambda: got.extend(broker.get(["q"], max_messages=1, timeout=10)))
    waiting.start()
    _blocked_in(rclient, "blmove", 4)  # one wait per list of the queue (its priority steps)
    # A Celery worker waiting on the same list with BRPOP, since after the celeriac worker...
    popper = redis.Redis.from_url(redis_url)
    popped: list[object] = []
    celery_like = threading.Thread(target=lambda: popped.append(popper.brpop(["q"], timeout=10)))
    celery_like.start()
    _blocked_in(rclient, "brpop")
    rclient.lpush("q", b"first")
    celery_like.join(10)
    # ...still gets the message: the celeriac worker's wait saw it without taking it.
    assert popped == [(b"q", b"first")] and got == []
    broker.publish(_envelope(), exchange="", routing_key="q")
    waiting.join(10)
    assert len(got) == 1 and rclient.llen("q") == 0 and rclient.hlen("unacked") == 1
    broker.close()
    popper.close()


def test_dead_consumer_messages_are_restored_but_live_ones_are_not(redis_url: str) -> None:
    live = RedisBroker(redis_url, {"consumer_timeout": 0.5, "visibility_timeout": 1})
    dying = RedisBroker(redis_url, {"consumer_timeout": 0.5, "visibility_timeout": 1})
    for _ in range(2):
        live.publish(_envelope(), exchange="", routing_key="q")
    (held_by_live,) = live.get(["q"], max_messages=1, timeout=1)
    (held_by_dying,) = dying.get(["q"], max_messages=1, timeout=1)
    dying.extend_leases([held_by_dying])  # it was alive once...
    deadline = time.time() + 10
    restored: list[str] = []
    while time.time() < deadline and not restored:
        live.extend_leases([held_by_live])  # ...but only this one keeps beating
        live._next_maintenance = 0
        restored = [d.tag for d in live.get(["q"], max_messages=5, timeout=0.2)]
    assert restored == [held_by_dying.tag]
    # Well past the visibility timeout, the live consumer's message was never handed out again.
    assert held_by_live.tag not in restored


def test_malformed_envelope_is_dead_lettered_by_the_worker(redis_project: Project, rclient: redis.Redis) -> None:
    redis_project.write("tasks.py", TASKS)
    rclient.lpush("celery", b"this is not json")
    rclient.lpush("celery", json.dumps({"body": "!!", "properties": {}}))
    worker = redis_project.worker("tasks", "-c", "1")
    from tasks import add  # type: ignore[import-not-found]

    assert add.delay(20, 22).get(timeout=30) == 42
    assert worker.output.count("Received invalid task message") == 2
    dead = [json.loads(x) for x in rclient.lrange("celeriac.deadletter", 0, -1)]
    assert {d["raw"] for d in dead} == {"this is not json", json.dumps({"body": "!!", "properties": {}})}
    assert worker.stop() == 0


def test_sigkilled_worker_messages_are_redelivered(redis_project: Project) -> None:
    redis_project.write("tasks.py", TASKS)
    from tasks import double  # type: ignore[import-not-found]

    results = [double.delay(i) for i in range(20)]
    env = redis_project.env(CT="1")
    first = redis_project.worker("tasks", "-c", "2", "--prefetch-multiplier", "10", env=env)
    first.wait_for("received", count=20, timeout=60)
    first.kill_group()
    (redis_project.path / "gate").touch()
    second = redis_project.worker("tasks", "-c", "2", env=env)
    assert [r.get(timeout=60) for r in results] == [i * 2 for i in range(20)]
    assert second.stop() == 0


def test_long_task_is_not_redelivered_past_the_visibility_timeout(redis_project: Project) -> None:
    redis_project.write("tasks.py", TASKS)
    from tasks import sleepy  # type: ignore[import-not-found]

    env = redis_project.env(VT="1", CT="2")
    workers = [redis_project.worker("tasks", "-c", "1", "-n", f"w{i}@%h", env=env) for i in range(2)]
    result = sleepy.delay(4)  # four times the visibility timeout
    assert result.get(timeout=60) == 4
    received = sum(w.output.count(f"Task tasks.sleepy[{result.id}] received") for w in workers)
    assert received == 1
    for w in workers:
        assert w.stop() == 0


def test_countdown_is_parked_in_redis(redis_project: Project, rclient: redis.Redis) -> None:
    redis_project.write("tasks.py", TASKS)
    worker = redis_project.worker("tasks", "-c", "1")
    from tasks import add  # type: ignore[import-not-found]

    sent = time.time()
    result = add.apply_async((1, 2), countdown=3)
    worker.wait_for("kept by the broker")
    assert rclient.zcard("celeriac.delayed") == 1
    assert rclient.hlen("unacked") == 0  # nothing held, nothing to time out
    assert result.get(timeout=30) == 3
    assert time.time() - sent >= 3
    assert rclient.zcard("celeriac.delayed") == 0
    assert worker.stop() == 0


def test_results_and_failures_on_redis(redis_project: Project, rclient: redis.Redis) -> None:
    redis_project.write("tasks.py", TASKS)
    worker = redis_project.worker("tasks", "-c", "2")
    from tasks import add, app, fail  # type: ignore[import-not-found]

    result = add.delay(4, 4)
    assert result.get(timeout=30) == 8
    meta = json.loads(rclient.get(f"celery-task-meta-{result.id}"))
    assert meta["status"] == "SUCCESS" and meta["result"] == 8 and meta["task_id"] == result.id
    assert 0 < rclient.ttl(f"celery-task-meta-{result.id}") <= 86400
    failed = fail.delay()
    with pytest.raises(ValueError, match="bad value"):
        failed.get(timeout=30)
    assert "ValueError" in (failed.traceback or "")
    result.forget()
    assert result.state == "PENDING" and not rclient.exists(f"celery-task-meta-{result.id}")
    assert "RedisBackend" in repr(app.backend)
    # get() unsubscribes (asynchronously, through the listener thread): nothing stays subscribed.
    # (This test's channels only: PUBSUB CHANNELS is server-wide, other databases' clients share it.)
    ours = [f"celery-task-meta-{r.id}".encode() for r in (result, failed)]
    deadline = time.time() + 10
    while any(rclient.pubsub_channels(c) for c in ours) and time.time() < deadline:
        time.sleep(0.05)
    assert [rclient.pubsub_channels(c) for c in ours] == [[], []]
    assert worker.stop() == 0


def test_delay_fails_fast_when_redis_is_down() -> None:
    app = Celery("down", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0", broker_connection_timeout=1)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    started = time.monotonic()
    with pytest.raises(OperationalError) as info:
        add.delay(1, 2)
    assert time.monotonic() - started < 5
    assert "127.0.0.1:1" in str(info.value)
    app.close()


def test_success_is_final_and_groups_use_celerys_keys(redis_url: str, rclient: redis.Redis) -> None:
    app = Celery("final", broker=redis_url, backend=redis_url)
    backend = app.backend
    backend.store_result("t1", 42, "SUCCESS")
    backend.store_result("t1", ValueError("late duplicate"), "FAILURE")
    backend.store_result("t1", None, "STARTED")
    assert app.AsyncResult("t1").get(timeout=5) == 42
    backend.store_result("t2", None, "STARTED")
    backend.store_result("t2", 7, "SUCCESS")
    assert app.AsyncResult("t2").get(timeout=5) == 7
    backend.save_group("g1", (("g1", None), [(("t1", None), None), (("t2", None), None)]))  # type: ignore[attr-defined]
    stored = json.loads(rclient.get("celery-taskset-meta-g1"))
    assert stored == {"result": [["g1", None], [[["t1", None], None], [["t2", None], None]]]}
    assert backend.restore_group("g1") == stored["result"]  # type: ignore[attr-defined]
    backend.delete_group("g1")  # type: ignore[attr-defined]
    assert backend.restore_group("g1") is None  # type: ignore[attr-defined]
    app.close()


def test_fanout_is_kombus_in_both_directions(redis_url: str) -> None:
    import kombu

    broker = RedisBroker(redis_url)
    with kombu.Connection(redis_url) as conn:
        exchange = kombu.Exchange("fan.test", type="fanout", durable=False)
        queue = kombu.Queue("fan.test.q", exchange=exchange, auto_delete=True)
        received: list[dict[str, object]] = []
        with conn.Consumer(queue, callbacks=[lambda body, message: received.append(body)], accept=["json"]):
            with broker.subscribe("fan.test") as subscription:
                # kombu -> celeriac
                conn.Producer().publish({"hello": "celeriac"}, exchange=exchange, serializer="json")
                envelope = subscription.get(5)
                assert envelope is not None and json.loads(envelope.body) == {"hello": "celeriac"}
                # celeriac -> kombu (and to our own subscriber); kombu subscribes on its first drain.
                try:
                    conn.drain_events(timeout=0.3)
                except TimeoutError:
                    pass
                broker.broadcast("fan.test", Envelope(b'{"hello": "kombu"}', {}, {}, "application/json", "utf-8"))
                deadline = time.time() + 5
                while not received and time.time() < deadline:
                    try:
                        conn.drain_events(timeout=0.2)
                    except TimeoutError:
                        pass
                assert received == [{"hello": "kombu"}]
                again = subscription.get(5)
                assert again is not None and json.loads(again.body) == {"hello": "kombu"}
                assert subscription.get(0.1) is None


def test_shared_rate_limit_bucket(redis_url: str) -> None:
    first, second = RedisBroker(redis_url), RedisBroker(redis_url)
    assert first.take_rate_token("tasks.x", 5.0) == 0.0
    wait = second.take_rate_token("tasks.x", 5.0)  # the other worker sees the same bucket
    assert 0.0 < wait <= 0.2
    time.sleep(wait + 0.05)
    assert second.take_rate_token("tasks.x", 5.0) == 0.0


def test_global_rate_limit_across_two_workers_on_redis(redis_project: Project) -> None:
    from tests.integration.sqlite.test_worker_features import _span_of_two_workers

    assert _span_of_two_workers(redis_project, "global") >= 3.4
