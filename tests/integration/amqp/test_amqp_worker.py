"""Real ``celeriac worker`` processes on RabbitMQ: the tutorial with rpc:// results, Redis results, prefetch,
acks_late through kills, a RabbitMQ restart, priorities, topic routing, and 1,000 ETA tasks on a quorum queue."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from tests.conftest import Project
from tests.integration.amqp.conftest import queue_counts, rabbitmqctl

# The tutorial's module, as written: the broker URL comes from CELERIAC_BROKER_URL (the test's vhost).
TASKS = """
import os
import time
from pathlib import Path

from celeriac import Celery

app = Celery("tasks", backend="rpc://", broker="pyamqp://")
HERE = Path(__file__).resolve().parent


class Oops(Exception):
    pass


@app.task
def add(x, y):
    return x + y


@app.task
def fail():
    raise Oops("went wrong")


@app.task(ignore_result=True)
def touch(name):
    (HERE / name).touch()


@app.task
def hold(name, timeout=60):
    # Runs until the test creates the file ``name``.
    (HERE / f"started-{name}").touch()
    deadline = time.monotonic() + timeout
    while not (HERE / name).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(name)
        time.sleep(0.02)
    return name


@app.task
def record(tag):
    with open(HERE / "order.txt", "a") as f:
        f.write(f"{tag}\\n")
    return tag


@app.task(bind=True, reject_on_worker_lost=True)
def die_once(self):
    marker = HERE / f"died-{self.request.id}"
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), 9)  # the pool process dies mid-task
    return "survived"
"""


def wait_for_file(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} did not appear within {timeout}s")
        time.sleep(0.02)


def write_tasks(project: Project, extra: str = "") -> None:
    project.write("tasks.py", TASKS + extra)


def test_tutorial_with_rpc_results(amqp_project: Project, vhost: str) -> None:
    write_tasks(amqp_project)
    worker = amqp_project.worker("tasks", "-c", "2")  # prefork: results leave from the pool processes
    from tasks import add, app, fail, touch  # type: ignore[import-not-found]

    assert add.delay(2, 3).get(timeout=30) == 5
    # The reply queue is Celery's: named by the client's oid, auto-delete, x-expires = result_expires.
    queues = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", vhost, "name", "auto_delete", "arguments")
    assert f'{app.oid}\ttrue\t[{{"x-expires",86400000}}]' in queues.splitlines()
    sent = time.time()
    assert add.apply_async((1, 1), countdown=2).get(timeout=30) == 2
    assert time.time() - sent >= 2
    assert "(kept by the broker)" in worker.output
    with pytest.raises(Exception, match="went wrong") as info:
        fail.delay().get(timeout=30)
    assert type(info.value).__name__ == "Oops"
    touch.delay("touched")
    wait_for_file(amqp_project.path / "touched")
    results = [add.delay(i, i) for i in range(300)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(300)]
    # Another process can't read an rpc:// result, and says why.
    done = add.delay(20, 22)
    assert done.get(timeout=30) == 42
    other = amqp_project.python(
        f"""
        from tasks import app
        try:
            app.AsyncResult({done.id!r}).get(timeout=5)
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert "BackendGetMetaError" in other.stdout and "redis://" in other.stdout, other.stdout + other.stderr
    assert worker.stop() == 0


def test_amqp_broker_with_redis_results(
    amqp_project: Project, redis_results: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, prefix = redis_results
    client = redis.Redis.from_url(url)
    amqp_project.result_backend = url
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", url)
    write_tasks(amqp_project, f"\napp.conf.result_backend_transport_options = {{'global_keyprefix': {prefix!r}}}\n")
    worker = amqp_project.worker("tasks", "-c", "2", "-P", "threads")
    from tasks import add, fail  # type: ignore[import-not-found]

    result = add.delay(4, 4)
    assert result.get(timeout=30) == 8
    with pytest.raises(Exception, match="went wrong"):
        fail.delay().get(timeout=30)
    assert client.get(f"{prefix}celery-task-meta-{result.id}") is not None
    # Any process reads a Redis result.
    other = amqp_project.python(f"from tasks import app; print(app.AsyncResult({result.id!r}).get(timeout=10))")
    assert other.stdout.strip() == "8", other.stderr
    assert worker.stop() == 0
    client.close()


def test_prefetch_one_leaves_queued_tasks_to_free_workers(amqp_project: Project, vhost: str) -> None:
    write_tasks(amqp_project)
    from tasks import add, hold  # type: ignore[import-not-found]

    long = hold.delay("long-done")
    short = add.delay(1, 2)
    first = amqp_project.worker("tasks", "-c", "1", "-P", "threads", "--prefetch-multiplier", "1", "-n", "w1@%h")
    wait_for_file(amqp_project.path / "started-long-done")
    # The busy worker took only what it runs: the short task still waits in the queue...
    assert queue_counts(vhost)["celery"] == (1, 1)
    second = amqp_project.worker("tasks", "-c", "1", "-P", "threads", "--prefetch-multiplier", "1", "-n", "w2@%h")
    # ...so the second worker runs it while the first is still busy.
    assert short.get(timeout=30) == 3
    assert not long.ready()
    (amqp_project.path / "long-done").touch()
    assert long.get(timeout=30) == "long-done"
    assert "Task tasks.add[" in second.output and "Task tasks.add[" not in first.output
    # basic.qos: each worker asked RabbitMQ for concurrency x multiplier = 1 message at a time.
    consumers = rabbitmqctl("list_consumers", "-q", "--no-table-headers", "-p", vhost, "queue_name", "prefetch_count")
    assert [line for line in consumers.splitlines() if line.startswith("celery\t")] == ["celery\t1"] * 2, consumers
    # Unacked messages never exceed concurrency x multiplier.
    held = [hold.delay(f"h{i}") for i in range(6)]
    wait_for_file(amqp_project.path / "started-h0")
    wait_for_file(amqp_project.path / "started-h1")
    assert queue_counts(vhost)["celery"] == (4, 2)
    for i in range(6):
        (amqp_project.path / f"h{i}").touch()
    assert [r.get(timeout=30) for r in held] == [f"h{i}" for i in range(6)]
    assert first.stop() == 0 and second.stop() == 0


def test_acks_late_survives_killed_workers_and_pool_processes(amqp_project: Project) -> None:
    write_tasks(amqp_project)
    from tasks import die_once, hold  # type: ignore[import-not-found]

    worker = amqp_project.worker("tasks", "-c", "2")
    results = [hold.delay(f"k{i}") for i in range(4)]
    wait_for_file(amqp_project.path / "started-k0")
    wait_for_file(amqp_project.path / "started-k1")
    worker.kill_group()  # SIGKILL, mid-task: nothing was acked
    for i in range(4):
        (amqp_project.path / f"k{i}").touch()
    replacement = amqp_project.worker("tasks", "-c", "2")
    assert [r.get(timeout=60) for r in results] == [f"k{i}" for i in range(4)]
    # A pool process dying mid-task: the message is requeued (reject_on_worker_lost) and runs again.
    assert die_once.delay().get(timeout=60) == "survived"
    assert "WorkerLostError" in replacement.output or "exited" in replacement.output
    assert replacement.stop() == 0


def test_worker_and_client_come_back_after_a_rabbitmq_restart(restarts_rabbitmq: None, amqp_project: Project) -> None:
    write_tasks(amqp_project)
    from tasks import add  # type: ignore[import-not-found]

    from celeriac.exceptions import OperationalError

    worker = amqp_project.worker("tasks", "-c", "2", "-P", "threads")
    assert add.delay(1, 1).get(timeout=30) == 2
    rabbitmqctl("stop_app", timeout=120)
    try:
        with pytest.raises(OperationalError):
            add.delay(2, 2)  # fails fast while RabbitMQ is down
        worker.wait_for("Cannot reach the broker", timeout=30)
    finally:
        rabbitmqctl("start_app", timeout=120)
    restarted = time.monotonic()
    while True:
        try:
            assert add.delay(3, 3).get(timeout=5) == 6
            break
        except Exception:
            if time.monotonic() - restarted > 30:
                raise
    assert [add.delay(i, 1).get(timeout=30) for i in range(20)] == [i + 1 for i in range(20)]
    assert "Connected to the broker again; resuming" in worker.output
    assert worker.stop() == 0


def test_priorities_on_a_priority_queue(amqp_project: Project) -> None:
    write_tasks(amqp_project, "\napp.conf.task_queue_max_priority = 10\napp.conf.task_default_priority = 5\n")
    from tasks import hold, record  # type: ignore[import-not-found]

    worker = amqp_project.worker("tasks", "-c", "1", "-P", "threads", "--prefetch-multiplier", "1")
    blocker = hold.delay("unblock")
    wait_for_file(amqp_project.path / "started-unblock")
    results = [record.apply_async((tag,), priority=priority) for tag, priority in [("low", 1), ("high", 9), ("mid", 5)]]
    # delay() returned once RabbitMQ confirmed each: all three wait in the queue behind the blocker.
    (amqp_project.path / "unblock").touch()
    assert blocker.get(timeout=30) == "unblock"
    assert [r.get(timeout=30) for r in results] == ["low", "high", "mid"]
    assert (amqp_project.path / "order.txt").read_text().split() == ["high", "mid", "low"]
    assert worker.stop() == 0


def test_topic_exchange_queues_and_routes(amqp_project: Project, vhost: str) -> None:
    extra = """
from celeriac import Exchange, Queue

app.conf.task_queues = [
    Queue("celery", Exchange("celery"), routing_key="celery"),
    Queue("media", Exchange("media", type="topic"), routing_key="media.#"),
]
app.conf.task_routes = {"tasks.record": {"queue": "media", "routing_key": "media.video"}}
"""
    write_tasks(amqp_project, extra)
    from tasks import add, record  # type: ignore[import-not-found]

    worker = amqp_project.worker("tasks", "-c", "2", "-P", "threads", "-Q", "celery,media")
    assert record.delay("routed").get(timeout=30) == "routed"
    assert add.delay(1, 2).get(timeout=30) == 3
    sent = time.time()
    assert record.apply_async(("later",), countdown=1.5).get(timeout=30) == "later"
    assert time.time() - sent >= 1.5
    bindings = rabbitmqctl("list_bindings", "-q", "--no-table-headers", "-p", vhost, "source_name", "destination_name",
                           "routing_key")  # fmt: skip
    assert "media\tmedia\tmedia.#" in bindings
    assert worker.stop() == 0


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_thousand_eta_tasks_on_a_quorum_queue_wait_in_the_broker(amqp_project: Project, vhost: str) -> None:
    write_tasks(amqp_project, '\napp.conf.task_default_queue_type = "quorum"\n')
    from tasks import add  # type: ignore[import-not-found]

    worker = amqp_project.worker("tasks", "-c", "4", "-P", "threads", "--prefetch-multiplier", "2")
    assert add.delay(0, 0).get(timeout=30) == 0
    assert "x-queue-type" in rabbitmqctl("list_queues", "-p", vhost, "name", "arguments")
    rss_before = _rss_kb(worker.pid)
    countdown = 12  # sending 1,000 confirmed messages takes seconds: every ETA is still ahead when parked
    sent = time.time()
    results = [add.apply_async((i, 1), countdown=countdown) for i in range(1000)]
    samples: list[tuple[int, int]] = []
    while time.time() - sent < countdown - 2:
        samples.append(queue_counts(vhost)["celery"])
        time.sleep(0.5)
    values = [r.get(timeout=120) for r in results]
    assert values == [i + 1 for i in range(1000)]
    assert time.time() - sent >= countdown
    # Parked in RabbitMQ (a worker keeps an ETA less than a second away itself, within its prefetch)...
    assert worker.output.count("(kept by the broker)") >= 900
    # ...and the worker never held more than its prefetch (4 x 2) unacked.
    assert samples and all(unacked <= 8 for _, unacked in samples), samples
    rss_after = _rss_kb(worker.pid)
    assert rss_after - rss_before < 30 * 1024, (rss_before, rss_after)
    assert worker.stop() == 0
