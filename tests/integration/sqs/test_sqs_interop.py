"""Celery 5 (kombu's SQS transport) and celeriac on the same SQS queues (moto), in both directions.

Results go through Redis (127.0.0.1:6379, database 12), which both read and write the same way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from celeriac.brokers.base import Envelope, QueueSpec
from celeriac.brokers.sqs import SQSBroker
from tests.conftest import Project, WorkerProcess
from tests.integration.redis.conftest import redis_available

# Celery and kombu import modules that emit DeprecationWarnings on this Python; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REDIS_URL = "redis://127.0.0.1:6379/12"

CELERY_TASKS = """
import os, time
from celery import Celery

app = Celery("tasks", broker={broker!r}, backend={backend!r})
app.conf.broker_transport_options = {{
    "region": "us-east-1",
    "queue_name_prefix": {prefix!r},
    "visibility_timeout": 30,
    "wait_time_seconds": 1,
    "polling_interval": 0.1,
}}
app.conf.broker_connection_retry_on_startup = True
HERE = os.path.dirname(os.path.abspath(__file__))


class Oops(Exception):
    pass


@app.task(name="tasks.add")
def add(x, y):
    return x + y


@app.task(name="tasks.mul")
def mul(x, y):
    return x * y


@app.task(name="tasks.fail")
def fail():
    raise Oops("from " + __name__)


@app.task(name="tasks.stamp")
def stamp():
    return time.time()


@app.task(name="tasks.record")
def record(group, i):
    with open(os.path.join(HERE, "log.txt"), "a") as f:
        f.write(f"{{group}}:{{i}}\\n")
"""


@pytest.fixture
def results_redis() -> Iterator[str]:
    if not redis_available():
        pytest.fail("Redis is not running on 127.0.0.1:6379 (scripts/services starts it)")
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def mixed(
    sqs_project: Project, moto_endpoint: str, sqs_prefix: str, results_redis: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Project]:
    """``ctasks`` (Celery) and ``tasks`` (celeriac): the same tasks, broker URL and options."""
    # kombu reads the endpoint from the URL's host (it has no endpoint_url option): both sides use that form.
    broker = f"sqs://testing:testing@{moto_endpoint.removeprefix('http://')}"
    source = CELERY_TASKS.format(broker=broker, backend=results_redis, prefix=sqs_prefix)
    sqs_project.write("ctasks.py", source)
    sqs_project.write("tasks.py", source.replace("from celery import Celery", "from celeriac import Celery"))
    sqs_project.broker_url = broker
    sqs_project.result_backend = results_redis
    monkeypatch.setenv("CELERIAC_BROKER_URL", broker)
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", results_redis)
    yield sqs_project
    import gc

    gc.collect()  # Celery's AsyncResult.__del__ needs its app: run it now, not at interpreter exit
    ctasks = sys.modules.get("ctasks")
    if ctasks is not None:
        ctasks.app.close()


def celery_worker(project: Project, *args: str) -> WorkerProcess:
    worker = WorkerProcess(project.path, "ctasks", [], project.env())
    worker.cmd = [sys.executable, "-m", "celery", "-A", "ctasks", "worker", "-l", "info", "-P", "threads", *args]
    project.workers.append(worker)
    return worker.start(60)


def _lines(project: Project, count: int, timeout: float = 60) -> list[str]:
    path = project.path / "log.txt"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"only {path.read_text() if path.exists() else ''!r}")


def test_celery_client_to_celeriac_worker(mixed: Project) -> None:
    # One process: SQS hands a group's messages out in order; running them concurrently could reorder them.
    worker = mixed.worker("tasks", "-c", "1", "-Q", "celery,ordered.fifo")
    import ctasks  # type: ignore[import-not-found]

    assert ctasks.add.delay(2, 3).get(timeout=30) == 5
    sent = time.time()
    # Celery sends no DelaySeconds: the celeriac worker hides the message in SQS until due (an ETA
    # less than a second away would be kept by the worker; with two queues, receiving may take one).
    assert ctasks.stamp.apply_async(countdown=4).get(timeout=30) >= sent + 4
    worker.wait_for("kept by the broker", timeout=5)
    with pytest.raises(Exception, match="from tasks") as info:
        ctasks.fail.delay().get(timeout=30)
    assert type(info.value).__name__ == "Oops"
    results = [ctasks.add.delay(i, i) for i in range(50)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(50)]
    chained = (ctasks.add.s(2, 2) | ctasks.mul.s(10) | ctasks.add.s(1)).apply_async()
    assert chained.get(timeout=30) == 41
    for i in range(10):
        ctasks.record.apply_async(("g", i), queue="ordered.fifo", MessageGroupId="g")
    assert _lines(mixed, 10) == [f"g:{i}" for i in range(10)]
    assert worker.stop() == 0


def test_celeriac_client_to_celery_worker(mixed: Project) -> None:
    worker = celery_worker(mixed, "-c", "1", "-Q", "celery,ordered.fifo")
    import tasks  # type: ignore[import-not-found]

    assert tasks.add.delay(2, 3).get(timeout=30) == 5
    sent = time.time()
    assert tasks.stamp.apply_async(countdown=2).get(timeout=30) >= sent + 2  # SQS's DelaySeconds
    with pytest.raises(Exception, match="from ctasks") as info:
        tasks.fail.delay().get(timeout=30)
    assert type(info.value).__name__ == "Oops"
    results = [tasks.add.delay(i, i) for i in range(50)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(50)]
    linked = tasks.add.apply_async((2, 2), link=tasks.mul.s(10))
    assert linked.get(timeout=30) == 4
    for i in range(10):
        tasks.record.apply_async(("g", i), queue="ordered.fifo", MessageGroupId="g")
    assert _lines(mixed, 10) == [f"g:{i}" for i in range(10)]
    assert worker.stop() == 0


def test_both_workers_share_one_queue(mixed: Project) -> None:
    celery = celery_worker(mixed, "-c", "2", "-n", "celery1@%h")
    celeriac = mixed.worker("tasks", "-c", "2", "-n", "celeriac1@%h")
    import ctasks  # type: ignore[import-not-found]
    import tasks  # type: ignore[import-not-found]

    results = [(ctasks if i % 2 else tasks).add.delay(i, 1) for i in range(100)]
    assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(100)]
    assert "succeeded in" in celery.output and "succeeded in" in celeriac.output
    assert celery.stop() == 0 and celeriac.stop() == 0


def test_kombu_channel_and_celeriac_broker_read_each_other(
    moto_endpoint: str, sqs_prefix: str, sqs_options: dict[str, Any]
) -> None:
    """Message by message, in this process: kombu's SQS channel publishes, celeriac reads, and back."""
    from kombu import Connection, Exchange, Queue

    broker = SQSBroker("sqs://", sqs_options)
    broker.declare_queue(QueueSpec("swap.q"))
    options = {"region": "us-east-1", "queue_name_prefix": sqs_prefix, "wait_time_seconds": 1}
    host = moto_endpoint.removeprefix("http://")
    with Connection(f"sqs://testing:testing@{host}", transport_options=options) as conn:
        queue = Queue("swap.q", Exchange("swap.q"), routing_key="swap.q")
        producer = conn.Producer()
        producer.publish(
            {"hello": "celeriac"},
            exchange=queue.exchange,
            routing_key="swap.q",
            declare=[queue],
            headers={"task": "tasks.add", "id": "from-kombu"},
            correlation_id="from-kombu",
            serializer="json",
        )
        [delivery] = broker.get(["swap.q"], max_messages=1, timeout=2)
        envelope = delivery.envelope
        assert envelope.content_type == "application/json" and envelope.body == b'{"hello": "celeriac"}'
        assert envelope.headers["id"] == "from-kombu" and envelope.properties["correlation_id"] == "from-kombu"
        assert delivery.exchange == "swap.q" and delivery.routing_key == "swap.q"
        broker.ack(delivery)

        props = {"correlation_id": "from-celeriac", "reply_to": "r", "delivery_mode": 2}
        out = Envelope(b'{"hello": "kombu"}', {"id": "from-celeriac"}, props, "application/json", "utf-8")
        broker.publish(out, exchange="", routing_key="swap.q")
        simple = conn.SimpleQueue(queue)
        message = simple.get(timeout=5)
        assert message.payload == {"hello": "kombu"}
        assert message.headers["id"] == "from-celeriac"
        assert message.properties["correlation_id"] == "from-celeriac"
        message.ack()
        simple.close()
    assert broker.queue_size("swap.q") == 0
