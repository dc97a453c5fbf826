"""Real celeriac workers on SQS (moto's server): the tutorial, killed workers, long tasks, FIFO, ETA."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from celeriac.brokers.sqs import MessageTooLarge, SQSBroker
from celeriac.exceptions import QueueNotFound
from tests.conftest import Project
from tests.integration.sqs.conftest import tasks_source

GATED = """

GATE = os.path.join(HERE, "gate")


@app.task
def double(i):
    while not os.path.exists(GATE):
        time.sleep(0.02)
    return i * 2
"""

LOGGED = """

def _log(line):
    with open(os.path.join(HERE, "log.txt"), "a") as f:
        f.write(line + "\\n")


@app.task(bind=True)
def slow(self, seconds):
    _log(f"start {self.request.id} {os.getpid()}")
    time.sleep(seconds)
    _log(f"end {self.request.id}")
    return seconds


@app.task
def record(group, i):
    _log(f"{group}:{i}")


@app.task
def stamp():
    return time.time()


@app.task
def relay(x, y):
    # Publishes from a prefork pool process: its own SQS client, not the parent's.
    return add.delay(x, y).id
"""


def _lines(project: Project) -> list[str]:
    path = project.path / "log.txt"
    return path.read_text().splitlines() if path.exists() else []


def _broker(moto_endpoint: str, sqs_prefix: str) -> SQSBroker:
    return SQSBroker("sqs://", {"endpoint_url": moto_endpoint, "queue_name_prefix": sqs_prefix})


def test_tutorial(sqs_project: Project, moto_endpoint: str, sqs_prefix: str) -> None:
    sqs_project.write("tasks.py", tasks_source(moto_endpoint, sqs_prefix, extra=LOGGED))
    worker = sqs_project.worker("tasks")
    from tasks import add, echo, relay  # type: ignore[import-not-found]

    assert add.delay(4, 4).get(timeout=30) == 8
    big = "y" * 100_000
    assert echo.delay(big).get(timeout=30) == big
    inner = relay.delay(40, 2).get(timeout=30)
    assert add.AsyncResult(inner).get(timeout=30) == 42
    results = [add.delay(i, i) for i in range(40)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(40)]
    started = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - started < 10  # long polls end within a second
    assert _broker(moto_endpoint, sqs_prefix).queue_size("celery") == 0


def test_sigkilled_worker_loses_nothing(sqs_project: Project, moto_endpoint: str, sqs_prefix: str) -> None:
    """A worker holding 20 messages (two running) is SIGKILLed; a second worker completes all 20."""
    sqs_project.write("tasks.py", tasks_source(moto_endpoint, sqs_prefix, visibility_timeout=3, extra=GATED))
    from tasks import double  # type: ignore[import-not-found]

    results = [double.delay(i) for i in range(20)]
    first = sqs_project.worker("tasks", "-c", "2", "--prefetch-multiplier", "10")
    first.wait_for("received", count=20, timeout=60)
    first.kill_group()
    assert "succeeded" not in first.output  # the gate was closed: nothing finished

    (sqs_project.path / "gate").touch()
    second = sqs_project.worker("tasks", "-c", "2")
    assert [r.get(timeout=90) for r in results] == [i * 2 for i in range(20)]
    assert second.stop() == 0
    assert second.output.count("succeeded in") >= 20
    assert _broker(moto_endpoint, sqs_prefix).queue_size("celery") == 0


def test_long_task_runs_once_while_its_worker_lives(sqs_project: Project, moto_endpoint: str, sqs_prefix: str) -> None:
    """Tasks three times longer than the visibility timeout, two workers waiting: each runs once."""
    sqs_project.write("tasks.py", tasks_source(moto_endpoint, sqs_prefix, visibility_timeout=2, extra=LOGGED))
    first = sqs_project.worker("tasks", "-c", "3", "-n", "first@%h")
    second = sqs_project.worker("tasks", "-c", "3", "-n", "second@%h")
    from tasks import slow  # type: ignore[import-not-found]

    results = [slow.delay(6) for _ in range(3)]
    assert [r.get(timeout=60) for r in results] == [6, 6, 6]
    time.sleep(3)  # a lost lease would have handed a message out again by now
    starts = [line for line in _lines(sqs_project) if line.startswith("start")]
    assert sorted(line.split()[1] for line in starts) == sorted(r.id for r in results)
    assert first.output.count("received") + second.output.count("received") == 3
    assert first.stop() == 0 and second.stop() == 0


def test_fifo_queue_keeps_order_within_a_group(sqs_project: Project, moto_endpoint: str, sqs_prefix: str) -> None:
    sqs_project.write("tasks.py", tasks_source(moto_endpoint, sqs_prefix, extra=LOGGED))
    from tasks import record  # type: ignore[import-not-found]

    for i in range(15):
        for group in ("red", "blue"):
            record.apply_async((group, i), queue="orders.fifo", MessageGroupId=group)
    for _ in range(2):  # the same task id again: SQS deduplicates it
        record.apply_async(("dup", 0), queue="orders.fifo", task_id="same-task-id")
    record.apply_async(("nogroup", 0), queue="orders.fifo")  # the default group
    worker = sqs_project.worker("tasks", "-Q", "orders.fifo", "-c", "1")
    deadline = time.monotonic() + 60
    while len(_lines(sqs_project)) < 32 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    lines = _lines(sqs_project)
    assert [line for line in lines if line.startswith("red")] == [f"red:{i}" for i in range(15)]
    assert [line for line in lines if line.startswith("blue")] == [f"blue:{i}" for i in range(15)]
    assert lines.count("dup:0") == 1 and lines.count("nogroup:0") == 1
    assert len(lines) == 32
    assert worker.stop() == 0


def test_countdown_is_never_early(sqs_project: Project, moto_endpoint: str, sqs_prefix: str) -> None:
    """Standard queue: SQS's DelaySeconds. FIFO queue (no per-message delay): the worker hands the
    message back to SQS, hidden until due, instead of holding it."""
    sqs_project.write("tasks.py", tasks_source(moto_endpoint, sqs_prefix, extra=LOGGED))
    worker = sqs_project.worker("tasks", "-Q", "celery,later.fifo")
    from tasks import stamp  # type: ignore[import-not-found]

    sent = time.time()
    standard = stamp.apply_async(countdown=3)
    fifo = stamp.apply_async(countdown=3, queue="later.fifo")
    assert standard.get(timeout=30) >= sent + 3
    assert fifo.get(timeout=30) >= sent + 3
    worker.wait_for("kept by the broker", timeout=5)  # the FIFO one was deferred, not held
    assert worker.stop() == 0


def test_predefined_queues(sqs_project: Project, sqs: Any, moto_endpoint: str, sqs_prefix: str) -> None:
    url = sqs.create_queue(QueueName=f"{sqs_prefix}made-by-ops")["QueueUrl"]
    dead = sqs.create_queue(QueueName=f"{sqs_prefix}made-by-ops-dead")["QueueUrl"]
    extra = f"""
app.conf.broker_transport_options = {{
    "endpoint_url": {moto_endpoint!r},
    "polling_interval": 0.1,
    "predefined_queues": {{
        "celery": {{"url": {url!r}, "access_key_id": "ops", "secret_access_key": "secret"}},
        "celeriac-dead-letter": {{"url": {dead!r}, "access_key_id": "ops", "secret_access_key": "secret"}},
    }},
}}
"""
    sqs_project.write("tasks.py", tasks_source(moto_endpoint, "unused-", extra=extra))
    worker = sqs_project.worker("tasks")
    from tasks import add, app  # type: ignore[import-not-found]

    assert add.delay(4, 4).get(timeout=30) == 8
    with pytest.raises(QueueNotFound, match="predefined_queues"):
        add.apply_async((1, 1), queue="elsewhere")
    app.send_task("tasks.nope")  # dead-lettered into the predefined dead-letter queue
    worker.wait_for("Received unregistered task")
    deadline = time.monotonic() + 10
    while not sqs.receive_message(QueueUrl=dead, VisibilityTimeout=0).get("Messages"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert worker.stop() == 0
    assert sorted(sqs.list_queues(QueueNamePrefix=sqs_prefix)["QueueUrls"]) == sorted([url, dead])
    assert sqs.list_queues(QueueNamePrefix="unused-").get("QueueUrls") is None


def test_poisoned_messages_are_dead_lettered(
    sqs_project: Project, sqs: Any, moto_endpoint: str, sqs_prefix: str
) -> None:
    worker = sqs_project.worker("tasks")
    from tasks import add, app  # type: ignore[import-not-found]

    broker = _broker(moto_endpoint, sqs_prefix)
    sqs.send_message(QueueUrl=broker._require_url("celery"), MessageBody="garbage, not a kombu envelope")
    app.send_task("tasks.nope", (1,))
    assert add.delay(1, 2).get(timeout=30) == 3  # the worker carries on
    deadline = time.monotonic() + 15
    letters: list[dict[str, Any]] = []
    while len(letters) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
        letters = broker.dead_letters()
    reasons = sorted(str(letter["reason"]) for letter in letters)
    assert len(reasons) == 2 and "unregistered task 'tasks.nope'" in reasons
    assert worker.stop() == 0
    assert broker.queue_size("celery") == 0


def test_message_too_large_for_sqs(sqs_project: Project, moto_endpoint: str, sqs_prefix: str) -> None:
    from tasks import echo  # type: ignore[import-not-found]

    with pytest.raises(MessageTooLarge, match=r"over the limit of 262,144 bytes"):
        echo.delay("z" * 300_000)
    assert _broker(moto_endpoint, sqs_prefix).queue_size("celery") == 0


def test_warm_shutdown_gives_back_unstarted_messages(sqs_project: Project, moto_endpoint: str, sqs_prefix: str) -> None:
    """Prefetched messages are visible again at once on a warm stop, not after the visibility timeout."""
    sqs_project.write("tasks.py", tasks_source(moto_endpoint, sqs_prefix, visibility_timeout=600, extra=GATED))
    from tasks import double  # type: ignore[import-not-found]

    results = [double.delay(i) for i in range(8)]
    first = sqs_project.worker("tasks", "-c", "1", "--prefetch-multiplier", "8")
    first.wait_for("received", count=8, timeout=60)
    first.signal(signal.SIGTERM)
    first.wait_for("Returned 7 unstarted messages to the queue")
    (sqs_project.path / "gate").touch()  # lets the running task finish, so the warm stop ends
    assert first.stop() == 0
    second = sqs_project.worker("tasks", "-c", "2")
    assert [r.get(timeout=30) for r in results] == [i * 2 for i in range(8)]
    assert second.stop() == 0
