"""Publishing without a wait per message: the outstanding buffer, re-publishing after a lost
connection, backpressure, nacks, the flush at exit, and acks that wait for a task's follow-ups."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from celeriac.brokers.amqp import AMQPBroker
from celeriac.brokers.base import Envelope, QueueSpec
from celeriac.exceptions import OperationalError
from tests.integration.amqp.conftest import AMQP_HOST, AMQP_PORT, queue_counts, rabbitmqctl

Q = QueueSpec("q", "q", "q")


def envelope(n: int) -> Envelope:
    return Envelope(json.dumps(n).encode(), {"task": "t", "id": f"id-{n}"}, {"delivery_mode": 2},
                    "application/json", "utf-8")  # fmt: skip


def drain(broker: AMQPBroker, queue: str, expected: int, timeout: float = 30) -> list[int]:
    """Every message body in ``queue`` (acked), until ``expected`` are in and the queue is quiet."""
    got: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = broker.get([queue], max_messages=500, timeout=0.5 if len(got) >= expected else 2)
        if not batch and len(got) >= expected:
            break
        for delivery in batch:
            got.append(json.loads(delivery.envelope.body))
            broker.ack(delivery)
    return got


@pytest.fixture
def brokers(amqp_url: str) -> Iterator[Callable[..., AMQPBroker]]:
    made: list[AMQPBroker] = []

    def make(url: str = amqp_url, **options: Any) -> AMQPBroker:
        # No confirm wait after a pause (the tests below hold the IO loop still), unless asked.
        options = {"connect_timeout": 5, "confirm_after_idle": math.inf, **options}
        broker = AMQPBroker(url, options)
        broker.open()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


class LoopBlocked:
    """Holds this process's AMQP IO loop still: nothing is sent, no confirm is read, until released."""

    def __init__(self, broker: AMQPBroker) -> None:
        self.io = broker._loop()
        self.entered = threading.Event()
        self.release = threading.Event()

    def _hold(self) -> None:
        self.entered.set()
        self.release.wait(60)

    def __enter__(self) -> LoopBlocked:
        self.io.call_soon(self._hold)
        assert self.entered.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()


class Proxy:
    """A TCP proxy to RabbitMQ that can hold back what clients send, and cut every connection."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = int(self.server.getsockname()[1])
        self.upstream_open = threading.Event()
        self.upstream_open.set()
        self.accepting = True
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.accepting:
                client.close()
                continue
            upstream = socket.create_connection((AMQP_HOST, AMQP_PORT))
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if to_upstream:
                    self.upstream_open.wait()  # held back; cut() drops it
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Drop every connection (what was held back is lost)."""
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.upstream_open.set()

    def close(self) -> None:
        self.accepting = False
        self.cut()
        self.server.close()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = Proxy()
    yield p
    p.close()


def test_publish_returns_before_the_confirm_and_flush_waits_for_it(brokers: Callable[..., AMQPBroker]) -> None:
    broker = brokers()
    broker.declare_queue(Q)
    with LoopBlocked(broker):
        for n in range(3):
            broker.publish(envelope(n), exchange="", routing_key="q")  # returns: nothing has been sent yet
        assert not broker.flush(0.2)
    assert broker.flush(10)
    assert broker.queue_size("q") == 3
    assert drain(broker, "q", 3) == [0, 1, 2]


def test_many_delays_then_exit_lose_nothing(amqp_url: str, vhost: str, tmp_path: Any) -> None:
    """A script that sends tasks and exits without closing anything: the exit waits for the confirms."""
    count = 3000
    script = tmp_path / "send.py"
    script.write_text(
        "import sys\n"
        "from celeriac import Celery\n"
        f"app = Celery('s', broker={amqp_url!r}, set_as_current=False)\n"
        f"for i in range({count}):\n"
        "    app.send_task('tasks.add', (i, i))\n"
        "print('sent', flush=True)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=os.getcwd())  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sent" in done.stdout
    assert queue_counts(vhost)["celery"] == (count, 0)


def test_messages_in_flight_when_the_connection_drops_are_published_again(
    brokers: Callable[..., AMQPBroker], vhost: str
) -> None:
    broker = brokers()
    broker.declare_queue(Q)
    broker.publish(envelope(-1), exchange="", routing_key="q")
    assert broker.flush(10)
    with LoopBlocked(broker):
        for n in range(200):
            broker.publish(envelope(n), exchange="", routing_key="q")
        # RabbitMQ drops the connection while the messages are on their way, none confirmed.
        rabbitmqctl("close_all_connections", "-p", vhost, "test: connection lost")
    # Nobody publishes any more: the broker reconnects by itself to publish them again.
    assert broker.flush(30)
    got = drain(brokers(), "q", 201)
    assert set(got) == set(range(-1, 200))  # at least once: a message may come twice, none is missing


def test_accepted_messages_survive_an_outage_and_delay_fails_fast_during_it(
    brokers: Callable[..., AMQPBroker], proxy: Proxy, vhost: str
) -> None:
    broker = brokers(proxy.url(vhost), confirm_timeout=30)
    broker.declare_queue(Q)
    proxy.upstream_open.clear()  # what the client sends stays in the proxy: no confirms
    for n in range(50):
        broker.publish(envelope(n), exchange="", routing_key="q")
    assert not broker.flush(0.3)
    proxy.accepting = False
    proxy.cut()  # the held-back messages are lost on the way; the broker is unreachable now
    refused = 0
    for _ in range(200):
        try:
            broker.publish(envelope(1000), exchange="", routing_key="q")
        except OperationalError as exc:
            assert f"127.0.0.1:{proxy.port}" in str(exc)
            refused += 1
            break
        time.sleep(0.05)  # until the client has noticed the lost connection
    assert refused == 1, "publish() kept accepting messages with the broker unreachable"
    proxy.accepting = True
    assert broker.flush(30)
    got = drain(brokers(), "q", 50)
    assert set(range(50)) <= set(got)


def test_after_a_pause_a_publish_waits_for_its_confirm(
    brokers: Callable[..., AMQPBroker], proxy: Proxy, vhost: str
) -> None:
    """A stalled connection looks alive: delay() finds out by waiting for its confirm after a pause."""
    broker = brokers(proxy.url(vhost), confirm_after_idle=0, confirm_timeout=1)
    broker.declare_queue(Q)
    broker.publish(envelope(0), exchange="", routing_key="q")
    proxy.upstream_open.clear()  # the network stalls: nothing gets through, nothing is closed
    with pytest.raises(OperationalError, match="no confirm from RabbitMQ within 1 seconds"):
        broker.publish(envelope(1), exchange="", routing_key="q")
    proxy.cut()  # the stall ends with the connection gone; what failed is not published again
    for _ in range(20):
        try:
            broker.publish(envelope(2), exchange="", routing_key="q")
            break
        except OperationalError:  # not reconnected within the second yet
            continue
    assert broker.flush(10)
    got = drain(brokers(), "q", 2)
    assert got[0] == 0 and set(got) == {0, 2}


def test_publish_blocks_while_the_outstanding_buffer_is_full(brokers: Callable[..., AMQPBroker]) -> None:
    broker = brokers(max_unconfirmed=5, confirm_timeout=60)
    broker.declare_queue(Q)
    sent: list[int] = []

    def send() -> None:
        for n in range(12):
            broker.publish(envelope(n), exchange="", routing_key="q")
            sent.append(n)

    with LoopBlocked(broker):
        thread = threading.Thread(target=send)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive() and sent == [0, 1, 2, 3, 4]  # the sixth waits for room
    thread.join(30)
    assert not thread.is_alive() and len(sent) == 12
    assert broker.flush(10)
    assert drain(broker, "q", 12) == list(range(12))


def test_a_full_buffer_without_confirms_raises(brokers: Callable[..., AMQPBroker]) -> None:
    broker = brokers(max_unconfirmed=2, confirm_timeout=0.5)
    broker.declare_queue(Q)
    with LoopBlocked(broker):
        broker.publish(envelope(0), exchange="", routing_key="q")
        broker.publish(envelope(1), exchange="", routing_key="q")
        with pytest.raises(OperationalError, match="waiting for RabbitMQ's confirm"):
            broker.publish(envelope(2), exchange="", routing_key="q")
    assert broker.flush(10)
    assert drain(broker, "q", 2) == [0, 1]


def test_order_is_kept_per_thread(brokers: Callable[..., AMQPBroker]) -> None:
    broker = brokers()
    broker.declare_queue(Q)

    def send(base: int) -> None:
        for n in range(500):
            broker.publish(envelope(base + n), exchange="", routing_key="q")

    threads = [threading.Thread(target=send, args=(base,)) for base in (0, 10_000, 20_000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert broker.flush(10)
    got = drain(broker, "q", 1500)
    for base in (0, 10_000, 20_000):
        assert [n for n in got if base <= n < base + 10_000] == list(range(base, base + 500))


def test_publishes_behind_a_busy_channel_are_not_overtaken(brokers: Callable[..., AMQPBroker]) -> None:
    """Publishes made while the channel's lock is held (an RPC on it) wait for it in a task. Those
    that come as it is released must queue behind them: the lock looks free then, but its next
    holder is woken and not yet running."""
    import asyncio

    broker = brokers()
    broker.declare_queue(Q)
    broker.publish(envelope(0), exchange="", routing_key="q")
    assert broker.flush(10)
    io = broker._loop()
    lock = broker._pub_channel._Channel__lock  # type: ignore[union-attr]
    asyncio.run_coroutine_threadsafe(lock.acquire(), io.loop).result(10)
    for n in (1, 2, 3):
        broker.publish(envelope(n), exchange="", routing_key="q")
    deadline = time.monotonic() + 10
    while not lock._waiters and time.monotonic() < deadline:  # their task waits for the lock
        time.sleep(0.01)
    with LoopBlocked(broker):  # what follows runs in this order once the loop goes on
        io.loop.call_soon_threadsafe(lock.release)
        for n in (4, 5, 6):
            broker.publish(envelope(n), exchange="", routing_key="q")
    assert broker.flush(10)
    assert drain(broker, "q", 7) == list(range(7))


def test_a_nacked_message_is_sent_again_then_dead_lettered(
    brokers: Callable[..., AMQPBroker], caplog: pytest.LogCaptureFixture
) -> None:
    broker = brokers()
    # RabbitMQ nacks what doesn't fit in a full queue with x-overflow=reject-publish.
    broker.declare_queue(QueueSpec("small", queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"}))
    with caplog.at_level(logging.WARNING, logger="celeriac.brokers.amqp"):
        broker.publish(envelope(1), exchange="", routing_key="small")
        broker.publish(envelope(2), exchange="", routing_key="small")
        assert broker.flush(30)
        deadline = time.monotonic() + 10
        while broker.queue_size("celeriac.deadletter") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert "Could not publish task t[id-2]" in caplog.text
    assert drain(broker, "small", 1) == [1]
    (dead,) = broker.get(["celeriac.deadletter"], max_messages=5, timeout=5)
    assert json.loads(dead.envelope.body) == 2 and "nack" in dead.envelope.headers["x-celeriac-reason"]


def test_a_publish_to_a_missing_exchange_raises(brokers: Callable[..., AMQPBroker]) -> None:
    broker = brokers()
    with pytest.raises(OperationalError, match="'nowhere' does not exist"):
        broker.publish(envelope(0), exchange="nowhere", routing_key="x")
    broker.declare_queue(Q)
    broker.publish(envelope(1), exchange="", routing_key="q")  # the channel is still fine
    assert drain(broker, "q", 1) == [1]


def test_an_ack_waits_for_the_confirm_of_what_the_task_published(
    brokers: Callable[..., AMQPBroker], proxy: Proxy, vhost: str
) -> None:
    """A worker acks a task only once RabbitMQ confirmed its follow-up; if the follow-up's connection
    drops, it is published again and the ack goes after."""
    consumer = brokers()
    consumer.declare_queue(Q)
    consumer.declare_queue(QueueSpec("followups"))
    consumer.publish(envelope(0), exchange="", routing_key="q")
    (task,) = consumer.get(["q"], max_messages=1, timeout=10)
    publisher = brokers(proxy.url(vhost), confirm_timeout=30)  # the app's own connection, as in a worker
    publisher.declare_queue(QueueSpec("followups"))
    proxy.upstream_open.clear()
    publisher.publish(envelope(1), exchange="", routing_key="followups")  # the task's follow-up
    consumer.ack(task)  # returns at once; the ack waits
    consumer.queue_size("q")  # a round trip on the consumer's connection
    assert queue_counts(vhost)["q"] == (0, 1), "the task was acked before its follow-up was confirmed"
    proxy.cut()  # the follow-up is lost on the way; the publisher reconnects and sends it again
    assert publisher.flush(30)
    deadline = time.monotonic() + 10
    while queue_counts(vhost)["q"] != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queue_counts(vhost)["q"] == (0, 0)
    assert drain(consumer, "followups", 1) == [1]


def test_close_waits_for_outstanding_confirms(brokers: Callable[..., AMQPBroker], vhost: str) -> None:
    broker = brokers()
    broker.declare_queue(Q)
    for n in range(500):
        broker.publish(envelope(n), exchange="", routing_key="q")
    broker.close()
    assert queue_counts(vhost)["q"] == (500, 0)
