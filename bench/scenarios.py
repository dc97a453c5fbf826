"""The task module, its client side, and the timed scenarios."""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Worker, WorkerError

READY_TIMEOUT = 120.0  # seconds for a fresh worker to answer its first ping
GET_TIMEOUT = 300.0  # seconds for any one result
WARMUP_ROUNDTRIPS = 20

TASK_MODULE = '''\
"""Written by bench/run.py: the tasks of the {system} benchmark."""

from {system} import Celery

app = Celery("{module}", broker={url!r}, backend={url!r})


@app.task
def ping():
    return "pong"


@app.task
def noop(i):
    return i
'''


@dataclass
class Client:
    """The benchmark's own side of one system: the app and its two tasks, imported from the task module."""

    system: str
    module: str
    app: Any
    ping: Any
    noop: Any

    def close(self) -> None:
        self.app.close()


def module_name(system: str) -> str:
    return f"bench_tasks_{system}"


def write_task_module(directory: Path, system: str, redis_url: str) -> str:
    """Write the task module for ``system`` into ``directory``; return its module name."""
    module = module_name(system)
    source = TASK_MODULE.format(system=system, module=module, url=redis_url)
    (directory / f"{module}.py").write_text(source)
    return module


def load_client(system: str, module: str) -> Client:
    """Import the task module (its directory must be on sys.path) as the worker does."""
    mod = importlib.import_module(module)
    return Client(system=system, module=module, app=mod.app, ping=mod.ping, noop=mod.noop)


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
        raise WorkerError(f"noop({expected}) returned {got!r}")


@dataclass
class Throughput:
    tasks: int
    enqueue_seconds: float
    e2e_seconds: float

    @property
    def enqueue_rate(self) -> float:
        return self.tasks / self.enqueue_seconds

    @property
    def e2e_rate(self) -> float:
        return self.tasks / self.e2e_seconds


def throughput(client: Client, tasks: int) -> Throughput:
    """Send ``tasks`` no-op tasks, then fetch every result in order with ``get()``."""
    start = time.perf_counter()
    results = [client.noop.delay(i) for i in range(tasks)]
    sent = time.perf_counter()
    for i, result in enumerate(results):
        check_value(result.get(timeout=GET_TIMEOUT), i)
    done = time.perf_counter()
    return Throughput(tasks=tasks, enqueue_seconds=sent - start, e2e_seconds=done - start)


def roundtrip(client: Client, i: int) -> float:
    """One ``noop.delay(i).get()``: its latency in seconds."""
    start = time.perf_counter()
    check_value(client.noop.delay(i).get(timeout=GET_TIMEOUT), i)
    return time.perf_counter() - start


def warm_up(client: Client, count: int = WARMUP_ROUNDTRIPS) -> None:
    for i in range(count):
        roundtrip(client, i)


def roundtrips(client: Client, count: int) -> list[float]:
    """``count`` sequential round trips (after warm_up()): their latencies in milliseconds."""
    return [roundtrip(client, i) * 1000.0 for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
