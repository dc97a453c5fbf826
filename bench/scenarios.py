"""The task module, its client side, and the timed primitives every scenario is made of."""

from __future__ import annotations

import datetime
import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

from bench.brokers import Broker
from bench.procs import Worker, WorkerError

READY_TIMEOUT = 120.0  # seconds for a fresh worker to answer its first ping
GET_TIMEOUT = 300.0  # seconds for any one result
WARMUP_ROUNDTRIPS = 20
IDLE_ROUNDTRIPS = 100  # round trips after a pause, at most (no more than --roundtrips)
IDLE_GAP = 0.05  # seconds of pause before each: the worker has gone idle, as between sporadic tasks

TASK_MODULE = '''\
"""Written by bench/run.py: the tasks of the {system} benchmark."""

import time

from {system} import Celery

app = Celery("{module}", broker={broker_url!r}, backend={result_url!r})


def burn(loops):
    """Pure-Python work: the body of the cpu task, and what the benchmark calibrates it with."""
    total = 0
    for n in range(loops):
        total += n * n % 7
    return total


@app.task
def ping():
    return "pong"


@app.task
def noop(i):
    return i


@app.task
def sleep(i, seconds):
    time.sleep(seconds)
    return i


@app.task
def cpu(i, loops):
    burn(loops)
    return i
'''

# Celery runs no coroutine tasks: only celeriac's module gets one. asyncio is imported inside the
# task, so that the sync scenarios' workers load the same modules from both task modules (a
# module-level import would put asyncio, and ssl with it, in each prefork child's memory).
ASYNC_TASKS = """

@app.task
async def asleep(i, seconds):
    import asyncio

    await asyncio.sleep(seconds)
    return i


@app.task
async def anoop(i):
    return i
"""


@dataclass
class Client:
    """The benchmark's own side of one system: the app and its tasks, imported from the task module."""

    system: str
    broker: Broker
    module: str
    app: Any
    ping: Any
    noop: Any
    tasks: ModuleType

    def task(self, name: str) -> Any:
        return getattr(self.tasks, name)

    def close(self) -> None:
        self.app.close()


def module_name(system: str, broker: str) -> str:
    return f"bench_tasks_{system}_{broker}"


def write_task_module(directory: Path, system: str, broker: Broker) -> str:
    """Write the task module for ``system`` on ``broker`` into ``directory``; return its module name."""
    module = module_name(system, broker.name)
    source = TASK_MODULE.format(system=system, module=module, broker_url=broker.url, result_url=broker.result_url)
    if system == "celeriac":
        source += ASYNC_TASKS
    (directory / f"{module}.py").write_text(source)
    return module


def load_client(system: str, broker: Broker, module: str) -> Client:
    """Import the task module (its directory must be on sys.path) as the worker does."""
    mod = importlib.import_module(module)
    return Client(system=system, broker=broker, module=module, app=mod.app, ping=mod.ping, noop=mod.noop, tasks=mod)


def wait_until_ready(client: Client, worker: Worker, timeout: float = READY_TIMEOUT) -> float:
    """Send one ping and poll until the worker has answered it; return the seconds that took."""
    start = time.perf_counter()
    deadline = time.monotonic() + timeout
    result = client.ping.delay()
    while not result.ready():
        worker.check_alive()
        if time.monotonic() > deadline:
            raise WorkerError(f"the worker did not answer a ping in {timeout:.0f}s:\n{worker.log_tail()}")
        time.sleep(0.05)
    if result.get(timeout=GET_TIMEOUT) != "pong":
        raise WorkerError("the ping task answered something else than 'pong'")
    return time.perf_counter() - start


def check_value(got: object, expected: int) -> None:
    if got != expected:
        raise WorkerError(f"task {expected} returned {got!r}")


Send = Callable[[int], Any]  # sends task number i, returns a handle
Fetch = Callable[[Any], object]  # waits for a handle's result


def celery_send(task: Any, *args: object) -> Send:
    """``task.delay(i, *args)``."""
    return lambda i: task.delay(i, *args)


def celery_fetch(result: Any) -> object:
    return result.get(timeout=GET_TIMEOUT)


@dataclass
class Throughput:
    tasks: int
    enqueue_seconds: float
    e2e_seconds: float
    start_time: float  # time.time() at the first send, to compare with the results' date_done
    task_ids: list[str]

    @property
    def enqueue_rate(self) -> float:
        return self.tasks / self.enqueue_seconds

    @property
    def e2e_rate(self) -> float:
        return self.tasks / self.e2e_seconds


def batch(send: Send, fetch: Fetch, tasks: int) -> Throughput:
    """Send ``tasks`` tasks one after the other, then fetch every result in order; each returns its number."""
    start_time, start = time.time(), time.perf_counter()
    handles = [send(i) for i in range(tasks)]
    sent = time.perf_counter()
    for i, handle in enumerate(handles):
        check_value(fetch(handle), i)
    done = time.perf_counter()
    return Throughput(
        tasks=tasks,
        enqueue_seconds=sent - start,
        e2e_seconds=done - start,
        start_time=start_time,
        task_ids=[str(getattr(handle, "id", None) or getattr(handle, "message_id", "")) for handle in handles],
    )


def worker_rate(result: Throughput, redis_url: str) -> float:
    """Tasks/s from the first send until the worker stored the last result (the client's fetching left out)."""
    return result.tasks / max(last_done(redis_url, result.task_ids) - result.start_time, 1e-6)


def noop_task(client: Client, pool: str) -> Any:
    """The no-op task a pool runs: ``async def anoop`` on celeriac's asyncio pool, ``def noop`` elsewhere."""
    return client.task("anoop") if pool == "asyncio" else client.noop


def throughput(client: Client, tasks: int, pool: str = "solo") -> Throughput:
    """Send ``tasks`` no-op tasks, then fetch every result in order with ``get()``."""
    return batch(celery_send(noop_task(client, pool)), celery_fetch, tasks)


def timed_roundtrips(send: Send, fetch: Fetch, count: int, pause: float = 0.0) -> list[float]:
    """``count`` sequential send-then-fetch round trips: their latencies in milliseconds. With
    ``pause``, each comes that many seconds after the last (the pause is not timed)."""
    latencies = []
    for i in range(count):
        if pause:
            time.sleep(pause)
        start = time.perf_counter()
        check_value(fetch(send(i)), i)
        latencies.append((time.perf_counter() - start) * 1000.0)
    return latencies


def warm_up(client: Client, count: int = WARMUP_ROUNDTRIPS, pool: str = "solo") -> None:
    timed_roundtrips(celery_send(noop_task(client, pool)), celery_fetch, count)


def roundtrips(client: Client, count: int, pool: str = "solo") -> list[float]:
    """``count`` sequential ``noop.delay(i).get()`` round trips (after warm_up()), in milliseconds."""
    return timed_roundtrips(celery_send(noop_task(client, pool)), celery_fetch, count)


def idle_roundtrips(client: Client, count: int, pool: str = "solo", gap: float = IDLE_GAP) -> list[float]:
    """``count`` round trips as sporadic tasks make them: each after ``gap`` seconds with nothing to
    do, so the worker waits on an empty queue in its idle rhythm (a poll interval, a wake-up), in
    milliseconds. Only the round trip is timed, not the pause."""
    return timed_roundtrips(celery_send(noop_task(client, pool)), celery_fetch, count, pause=gap)


def last_done(redis_url: str, task_ids: list[str]) -> float:
    """The latest ``date_done`` (Unix time) among the stored results of ``task_ids``.

    Both systems store ``celery-task-meta-<id>`` with the same JSON, ``date_done`` in ISO 8601
    (UTC when it has no offset): when the worker finished, apart from how fast the client fetches.
    """
    client = redis.Redis.from_url(redis_url)
    try:
        latest = 0.0
        for start in range(0, len(task_ids), 1000):
            keys = [f"celery-task-meta-{tid}" for tid in task_ids[start : start + 1000]]
            for raw in client.mget(keys):
                if raw is None:
                    raise WorkerError("a result is missing from the backend")
                done = datetime.datetime.fromisoformat(json.loads(raw)["date_done"])
                if done.tzinfo is None:
                    done = done.replace(tzinfo=datetime.timezone.utc)
                latest = max(latest, done.timestamp())
        return latest
    finally:
        client.close()
