"""Prefork children on Redis: forked before the worker opens its broker, they hand their results to
the worker with each outcome instead of writing them, so a child that only runs tasks never loads
redis-py (nor asyncio, which redis-py imports). What does need the store in a child still works:
a state update, a chord part, a task sent from a task."""

from __future__ import annotations

import time

import redis

from celeriac import Celery, chord
from tests.conftest import Project

TASKS = """
import sys

from celeriac import Celery

app = Celery("tasks")


@app.task
def loaded():
    return {name: name in sys.modules for name in ("redis", "asyncio")}


@app.task(bind=True)
def progress(self):
    self.update_state(state="PROGRESS", meta={"done": 1})
    return "ok"


@app.task
def add(x, y):
    return x + y


@app.task
def total(values):
    return sum(values)


@app.task
def send_add(x, y):
    return add.delay(x, y).id


@app.task
def network_sockets():
    # this process' pid and how many TCP sockets it holds (read from /proc: a socket object made
    # around a descriptor would change it under socket.setdefaulttimeout())
    import os

    inodes = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    tcp = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            tcp.update(line.split()[9] for line in list(lines)[1:])
    return os.getpid(), len(inodes & tcp)
"""


def _client(redis_url: str) -> Celery:
    return Celery("client", broker=redis_url, backend=redis_url, set_as_current=False)


def _wait_all_acked(rclient: redis.Redis, timeout: float = 10.0) -> None:
    """Each message is acked once its result is written, just after the client could read it."""
    deadline = time.monotonic() + timeout
    while rclient.hlen("unacked"):
        assert time.monotonic() < deadline, "messages left unacked"
        time.sleep(0.05)


def test_a_child_that_only_runs_tasks_never_loads_the_redis_client(redis_project: Project, redis_url: str) -> None:
    redis_project.write("tasks.py", TASKS)
    worker = redis_project.worker("tasks", "-P", "prefork", "-c", "2")
    client = _client(redis_url)
    try:
        results = [client.send_task("tasks.loaded") for _ in range(20)]
        assert [r.get(timeout=30) for r in results] == [{"redis": False, "asyncio": False}] * 20
        assert worker.stop() == 0
    finally:
        client.close()


def test_what_needs_the_store_in_a_child_still_works(
    redis_project: Project, redis_url: str, rclient: redis.Redis
) -> None:
    redis_project.write("tasks.py", TASKS)
    worker = redis_project.worker("tasks", "-P", "prefork", "-c", "2")
    client = _client(redis_url)
    try:
        # A state update is written by the child itself (only a final result is handed over).
        assert client.send_task("tasks.progress").get(timeout=30) == "ok"
        # A chord part writes its own result before it is counted, so the body reads every part's.
        header = [client.signature("tasks.add", (i, i)) for i in range(6)]
        assert chord(header, app=client)(client.signature("tasks.total")).get(timeout=30) == 30
        # A task sent from a task: the child opens its own connection to the broker.
        sent_id = client.send_task("tasks.send_add", (2, 3)).get(timeout=30)
        assert client.AsyncResult(sent_id).get(timeout=30) == 5
        _wait_all_acked(rclient)
        assert worker.stop() == 0
    finally:
        client.close()


def test_children_that_replace_others_hand_their_results_over_too(
    redis_project: Project, redis_url: str, rclient: redis.Redis
) -> None:
    """With one task per child, every task after the first two runs in a child forked from the
    running worker, which by then writes results behind its pool: the child must not use its copy
    of that writer (the worker's waiting writes and acks), only hand its own results over."""
    redis_project.write("tasks.py", TASKS)
    worker = redis_project.worker("tasks", "-P", "prefork", "-c", "2", "--max-tasks-per-child", "1")
    client = _client(redis_url)
    try:
        results = [client.send_task("tasks.add", (i, i)) for i in range(12)]
        assert [r.get(timeout=60) for r in results] == [2 * i for i in range(12)]
        # A chord part flushes the child's writes before counting itself.
        header = [client.signature("tasks.add", (i, 1)) for i in range(4)]
        assert chord(header, app=client)(client.signature("tasks.total")).get(timeout=60) == 10
        _wait_all_acked(rclient)
        assert worker.stop() == 0
        assert "Traceback" not in worker.output
    finally:
        client.close()


def test_a_replacement_child_does_not_hold_the_workers_connections(redis_project: Project, redis_url: str) -> None:
    """A child forked while the worker runs gets a copy of its descriptors: its broker and result
    connections. Held open by a child, a connection outlives a killed worker (RabbitMQ would not
    give its unacked messages back until the child's task ends), so a replacement child lets go of
    every TCP socket the first children did not have."""
    redis_project.write("tasks.py", TASKS)
    worker = redis_project.worker("tasks", "-P", "prefork", "-c", "2", "--max-tasks-per-child", "1")
    client = _client(redis_url)
    try:
        answers = [client.send_task("tasks.network_sockets").get(timeout=60) for _ in range(6)]
        assert len({pid for pid, _ in answers}) == 6  # one child per task: four of them replacements
        assert [count for _, count in answers] == [0] * 6
        # The worker itself still has its connections, and still works; a task sent from a replacement
        # child goes out on a connection of the child's own.
        sent_id = client.send_task("tasks.send_add", (2, 3)).get(timeout=30)
        assert client.AsyncResult(sent_id).get(timeout=30) == 5
        assert worker.stop() == 0
    finally:
        client.close()


def test_children_start_under_a_default_socket_timeout(redis_project: Project, redis_url: str) -> None:
    """A task module may set ``socket.setdefaulttimeout()``: looking for the sockets to let go of
    must not make any descriptor non-blocking (the pool's pipe to the child is a socket too)."""
    redis_project.write("tasks.py", TASKS + "\n\nimport socket\n\nsocket.setdefaulttimeout(30)\n")
    worker = redis_project.worker("tasks", "-P", "prefork", "-c", "2", "--max-tasks-per-child", "1")
    client = _client(redis_url)
    try:
        answers = [client.send_task("tasks.network_sockets").get(timeout=60) for _ in range(6)]
        assert len({pid for pid, _ in answers}) == 6 and [count for _, count in answers] == [0] * 6
        assert worker.stop() == 0
        assert "Traceback" not in worker.output
    finally:
        client.close()
