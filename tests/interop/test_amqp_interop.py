"""Celery 5 and celeriac on the same RabbitMQ queues, in both directions, with rpc:// and redis:// results."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, WorkerProcess
from tests.integration.amqp.conftest import (  # noqa: F401 - fixtures
    _close_apps,
    _vhost_cleanup,
    amqp_url,
    close_amqp_apps,
    redis_results,
    vhost,
)

# kombu and Celery raise DeprecationWarnings of their own (e.g. utcnow) in this process.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CELERY_TASKS = """
import os
from celery import Celery

app = Celery("tasks", broker=os.environ["TEST_BROKER_URL"], backend=os.environ["TEST_RESULT_BACKEND"])
app.conf.result_backend_transport_options = {"global_keyprefix": os.environ.get("TEST_KEYPREFIX", "")}
HERE = os.path.dirname(os.path.abspath(__file__))


class Oops(Exception):
    pass


@app.task(name="tasks.add")
def add(x, y):
    return x + y


@app.task(name="tasks.fail")
def fail():
    raise Oops("from celery")


@app.task(name="tasks.touch", ignore_result=True)
def touch(name):
    open(os.path.join(HERE, name), "w").close()
"""

CELERIAC_TASKS = CELERY_TASKS.replace("from celery import Celery", "from celeriac import Celery").replace(
    'Oops("from celery")', 'Oops("from celeriac")'
)

# Celery's native delayed delivery needs quorum queues on a topic exchange.
QUORUM_QUEUES = """
from {package} import Exchange, Queue

app.conf.task_queues = [
    Queue("celery", Exchange("celery", type="topic"), routing_key="celery",
          queue_arguments={{"x-queue-type": "quorum"}}),
]


@app.task(name="tasks.came_through", bind=True)
def came_through(self):
    return self.request.delivery_info.get("exchange")
"""


def celery_worker(project: Project, module: str, *args: str) -> WorkerProcess:
    """A real Celery worker process on the project's broker and results."""
    worker = WorkerProcess(project.path, module, [], project.env())
    worker.cmd = [sys.executable, "-m", "celery", "-A", module, "worker", "-l", "info", *args]
    project.workers.append(worker)
    return worker.start(60)


@pytest.fixture(params=["rpc", "redis"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "rpc":
        return "rpc://"
    url, prefix = request.getfixturevalue("redis_results")
    monkeypatch.setenv("TEST_KEYPREFIX", prefix)  # results under this test's own keys, in both apps
    return str(url)


def _setup(project: Project, url: str, backend: str, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> None:
    celery_url = url.replace("amqp://", "pyamqp://")
    monkeypatch.setenv("TEST_BROKER_URL", celery_url)
    monkeypatch.setenv("TEST_RESULT_BACKEND", backend)
    monkeypatch.setenv("CELERIAC_BROKER_URL", celery_url)  # the seed's scheme, read by celeriac
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", backend)
    project.broker_url, project.result_backend = celery_url, backend
    project.write("ctasks.py", CELERY_TASKS + extra.format(package="kombu"))
    project.write("tasks.py", CELERIAC_TASKS + extra.format(package="celeriac"))


@pytest.fixture
def mixed(project: Project, amqp_url: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:  # noqa: F811
    _setup(project, amqp_url, backend, monkeypatch)
    yield project
    _close_celery()


def _close_celery() -> None:
    # Celery's AsyncResult.__del__ talks to its app: let it run now, while everything is whole.
    gc.collect()
    ctasks = sys.modules.get("ctasks")
    if ctasks is not None:
        ctasks.app.close()
    close_amqp_apps()


def _wait_for_file(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def _finished(workers: WorkerProcess | list[WorkerProcess], *results: object) -> None:
    """Wait for the worker to log each task as finished.

    Celery 5.6.3's rpc:// client takes a second without replies for a lost connection and
    reconnects, and a reply that arrives meanwhile is lost (celery/backends/asynchronous.py,
    fixed after 5.6.3). Reading a result only once it has been sent keeps its waits short.
    """
    workers = workers if isinstance(workers, list) else [workers]
    deadline = time.monotonic() + 60
    for result in results:
        task_id = result.id  # type: ignore[attr-defined]
        while True:
            output = "\n".join(worker.output for worker in workers)
            if f"{task_id}] succeeded" in output or f"{task_id}] raised" in output:
                break
            assert time.monotonic() < deadline, f"task {task_id} never finished:\n{output}"
            time.sleep(0.02)


def _in_finishing_order(worker: WorkerProcess, results: list[Any]) -> list[Any]:
    """``results`` in the order ``worker`` logged their tasks as finished."""
    output = worker.output
    return sorted(results, key=lambda result: output.find(f"{result.id}] succeeded"))


def _exercise(client: object, worker: WorkerProcess, project: Project, error: str, tag: str) -> None:
    """delay, countdown, a failing task, ignore_result, 300 tasks in a row."""
    add, fail, touch = client.add, client.fail, client.touch  # type: ignore[attr-defined]
    first = add.delay(2, 3)
    _finished(worker, first)
    assert first.get(timeout=30) == 5
    sent = time.time()
    later = add.apply_async((1, 1), countdown=2)
    _finished(worker, later)
    assert later.get(timeout=30) == 2
    assert time.time() - sent >= 2
    failing = fail.delay()
    _finished(worker, failing)
    with pytest.raises(Exception, match=error) as info:
        failing.get(timeout=30)
    assert type(info.value).__name__ == "Oops"
    # Celery keeps the exception in its result cache: without its traceback it keeps no frame alive.
    info.value.__traceback__ = None
    touch.delay(tag)
    _wait_for_file(project.path / tag)
    results = [add.delay(i, i) for i in range(300)]
    _finished(worker, *results)
    # Read in the order the worker finished them. Celery 5.6.3's rpc:// client buffers a reply that
    # comes before its get(), and that get() still waits a drain interval (1 s) before it looks in
    # its buffer (so it does with Celery's own prefork worker): read in sending order, the 300 took
    # 60 to 100 s of this test's 120 s. Every result is still read, and by that client.
    expected = {r.id: 2 * i for i, r in enumerate(results)}
    assert {r.id: r.get(timeout=60) for r in _in_finishing_order(worker, results)} == expected


def test_celery_client_to_celeriac_worker(mixed: Project) -> None:
    worker = mixed.worker("tasks", "-c", "2")
    import ctasks  # type: ignore[import-not-found]

    _exercise(ctasks, worker, mixed, "from celeriac", "from-celery-client")
    assert worker.stop() == 0


def test_celeriac_client_to_celery_worker(mixed: Project) -> None:
    worker = celery_worker(mixed, "ctasks", "-P", "threads", "-c", "2")
    import tasks  # type: ignore[import-not-found]

    _exercise(tasks, worker, mixed, "from celery", "from-celeriac-client")
    assert worker.stop() == 0


@pytest.mark.parametrize("backend", ["rpc"], indirect=True)
def test_both_workers_share_one_queue(mixed: Project) -> None:
    celery = celery_worker(mixed, "ctasks", "-P", "threads", "-c", "2", "-n", "celery1@%h")
    celeriac = mixed.worker("tasks", "-c", "2", "-P", "threads", "-n", "celeriac1@%h")
    import ctasks  # type: ignore[import-not-found]
    import tasks  # type: ignore[import-not-found]

    results = [(ctasks if i % 2 else tasks).add.delay(i, 1) for i in range(200)]
    _finished([celery, celeriac], *results)
    assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(200)]
    assert "succeeded in" in celery.output and "succeeded in" in celeriac.output
    assert celery.stop() == 0 and celeriac.stop() == 0


@pytest.fixture
def quorum(project: Project, amqp_url: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:  # noqa: F811
    _setup(project, amqp_url, backend, monkeypatch, QUORUM_QUEUES)
    yield project
    _close_celery()


@pytest.mark.parametrize("backend", ["redis"], indirect=True)  # Celery's rpc:// client: see _finished
def test_quorum_queue_delays_shared_by_both_fleets(quorum: Project) -> None:
    """Countdown tasks from both clients on a quorum queue, run by both workers, each exactly once."""
    celery = celery_worker(quorum, "ctasks", "-P", "threads", "-c", "2", "-n", "celery1@%h")
    celeriac = quorum.worker("tasks", "-c", "2", "-P", "threads", "-n", "celeriac1@%h")
    import ctasks  # type: ignore[import-not-found]
    import tasks  # type: ignore[import-not-found]

    sent = time.time()
    # Celery's client publishes these into the delay layout itself (native delayed delivery);
    # celeriac's client publishes to the queue and the worker that receives them parks them.
    results = [(ctasks if i % 2 else tasks).add.apply_async((i, 1), countdown=3) for i in range(40)]
    assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(40)]
    assert time.time() - sent >= 3
    # Each worker logs "succeeded" just after it stores the result the client has just read.
    deadline = time.monotonic() + 10
    while celery.output.count("succeeded in") + celeriac.output.count("succeeded in") < 40:
        assert time.monotonic() < deadline, (celery.output, celeriac.output)
        time.sleep(0.05)
    time.sleep(0.5)  # room for a (wrong) second run to show
    ran = celery.output.count("succeeded in") + celeriac.output.count("succeeded in")
    assert ran == 40, (celery.output, celeriac.output)
    # Celery's client took the delay layout (the message left it through a celery_delayed_* exchange).
    assert ctasks.came_through.apply_async(countdown=2).get(timeout=30).startswith("celery_delayed_")
    assert celery.stop() == 0 and celeriac.stop() == 0
