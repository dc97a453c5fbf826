"""Scenario delay: the client's ``delay()`` rate on its own, with no worker running.

The throughput scenario's enqueue rate is taken while each system's worker drains the same queue on
the same cores, so it measures the client and the worker's share of the machine together: a worker
that gets through more tasks takes more of the CPU and of the broker the client shares. Here the
client is alone: ``noop.delay(i)`` in a loop into an empty queue, the two systems alternated round by
round so that a drift of the machine's speed hits both. The client's CPU time (every thread of the
process) is taken with it.

On RabbitMQ, celeriac's publishes are confirmed by the broker in the background; the time includes
waiting for the last confirm, so a figure counts only messages RabbitMQ has taken. Celery publishes
without confirms by default. Each round ends by checking that the queue holds every message sent.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from bench import scenarios
from bench.brokers import QUEUES, amqp_connection
from bench.harness import Loaded, progress, retrying
from bench.procs import WorkerError
from bench.section import Section
from bench.settings import Settings
from bench.tables import rate, ratio, table, times

BASELINE = "celery"
WARMUP = 200  # calls before the first timed round: connections made, code paths warm
COUNT_TIMEOUT = 30.0  # seconds for the broker's queue count to show every message sent
CONFIRM_TIMEOUT = 60.0


@dataclass(frozen=True)
class Round:
    rate: float  # delay() calls per second
    cpu_us: float  # the client process's CPU time per call, all its threads


@dataclass(frozen=True)
class Figures:
    system: str
    broker: str
    tasks: int
    rate: float  # median over the rounds
    cpu_us: float  # median over the rounds
    rounds: list[float]  # every round's rate, in run order


def queued(client: scenarios.Client) -> int:
    """Messages waiting in the default queue of the client's broker."""
    queue = QUEUES[0]
    if client.broker.name == "redis":
        conn = redis.Redis.from_url(client.broker.url)
        try:
            # kombu's priority steps live in lists named "<queue>\x06\x16<priority>" next to "<queue>".
            keys = [queue, *(k.decode() for k in conn.scan_iter(match=f"{queue}\x06\x16*"))]
            return sum(int(conn.llen(key)) for key in keys)
        finally:
            conn.close()
    amqp: Any = amqp_connection(client.broker.url)
    try:
        channel = amqp.channel()
        _, count, _ = channel.queue_declare(queue, passive=True)
        return int(count)
    finally:
        amqp.close()


def wait_for_confirms(client: scenarios.Client) -> None:
    """celeriac's AMQP broker publishes in the background: wait until RabbitMQ has confirmed it all."""
    broker = client.app.connection_for_write() if client.system == "celeriac" else None
    flush = getattr(broker, "flush", None)
    if flush is not None and not flush(CONFIRM_TIMEOUT):
        raise WorkerError(f"{client.system}: RabbitMQ did not confirm every message in {CONFIRM_TIMEOUT:.0f}s")


def one_round(client: scenarios.Client, tasks: int) -> Round:
    """``tasks`` calls of ``noop.delay(i)`` into an emptied queue; then check the queue holds them all."""
    client.broker.flush()
    gc.collect()
    send = client.noop.delay
    start, cpu = time.perf_counter(), time.process_time()
    handles = [send(i) for i in range(tasks)]  # kept, as a caller that fetches the results later keeps them
    wait_for_confirms(client)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    del handles
    deadline = time.monotonic() + COUNT_TIMEOUT
    while (found := queued(client)) != tasks:
        if time.monotonic() > deadline:
            raise WorkerError(f"{client.system}: {tasks:,} delay() calls left {found:,} messages in the queue")
        time.sleep(0.1)
    return Round(rate=tasks / seconds, cpu_us=cpu_seconds / tasks * 1e6)


def warm_up(client: scenarios.Client) -> None:
    client.broker.flush()
    for i in range(WARMUP):
        client.noop.delay(i)
    wait_for_confirms(client)


def run_broker(settings: Settings, loaded: Loaded, broker: str) -> list[Figures]:
    clients = [loaded[system, broker] for system in settings.systems if (system, broker) in loaded]
    tasks = settings.tasks_on(broker)
    for client in clients:
        warm_up(client)
    rounds: dict[str, list[Round]] = {client.system: [] for client in clients}
    for n in range(1, settings.repeat + 1):
        for client in clients:
            found = retrying("the delay() round", one_round, client, tasks)
            progress(
                f"delay {broker} {n}/{settings.repeat}: {client.system} {found.rate:,.0f}/s, {found.cpu_us:.0f} µs CPU"
            )
            rounds[client.system].append(found)
    for client in clients:
        client.broker.flush()
    return [
        Figures(
            system=system,
            broker=broker,
            tasks=tasks,
            rate=statistics.median(r.rate for r in found),
            cpu_us=statistics.median(r.cpu_us for r in found),
            rounds=[r.rate for r in found],
        )
        for system, found in rounds.items()
    ]


def ratios(figures: list[Figures]) -> dict[str, float | None]:
    """celeriac's rate over Celery's, per broker where both ran."""
    out: dict[str, float | None] = {}
    for f in figures:
        base = next((b for b in figures if b.system == BASELINE and b.broker == f.broker), None)
        if f.system == "celeriac" and base is not None:
            out[f.broker] = ratio(f.rate, base.rate)
    return out


def run(settings: Settings, loaded: Loaded) -> Section:
    brokers = [b for b in settings.brokers if any((s, b) in loaded for s in settings.systems) and b != "sqlite"]
    figures = [f for broker in brokers for f in run_broker(settings, loaded, broker)]
    by_broker = ratios(figures)
    titles = {"redis": "Redis", "amqp": "RabbitMQ"}
    rows = []
    for f in figures:
        if f.broker not in by_broker:  # Celery did not run on this broker
            shown = "n/a"
        else:
            shown = "1.00x" if f.system == BASELINE else times(by_broker[f.broker])
        rows.append(
            [
                f.system,
                titles.get(f.broker, f.broker),
                rate(f.rate),
                ", ".join(f"{r:,.0f}" for r in f.rounds),
                f"{f.cpu_us:.0f}",
                shown,
            ]
        )
    headers = ["system", "broker", "delay() (calls/s)", "per round", "client CPU per call (µs)", "vs Celery"]
    sizes = " and ".join(f"{settings.tasks_on(b):,} on {titles.get(b, b)}" for b in brokers)
    method = (
        f"`noop.delay(i)` in a loop with no worker running, into an emptied queue, {sizes} calls per round, "
        f"{settings.repeat} rounds, the systems alternated round by round (after {WARMUP} warm-up calls); "
        "the median round. CPU is the client process's, all its threads. On RabbitMQ celeriac's time "
        "includes waiting for the broker's confirm of the last message (Celery publishes without confirms). "
        "Each round ends by checking that the queue holds every message. The enqueue rate of the "
        "throughput table is the same loop with the worker draining the queue on the same cores."
    )
    return Section(
        key="delay",
        title="delay() on its own",
        method=method,
        body=table(headers, rows) + "\n\nHigher rate and lower CPU are better.",
        data={"summary": [asdict(f) for f in figures], "ratios": by_broker},
    )
