"""Scenario floor: what the broker itself does with no task queue around it.

Redis (redis-py, hiredis when installed): a round trip is one ``LPUSH`` then one ``BRPOP`` of the same
message on one connection; the pipelined rate pushes messages in pipelines of ``BATCH`` and pops them
with ``RPOP key BATCH``. RabbitMQ (py-amqp, kombu's client): a round trip is one ``basic_publish`` then
the delivery of that message to a consumer on the same connection (``no_ack``); the pipelined rate
publishes every message (no confirms) and then consumes them all with a prefetch of ``BATCH``, acking
in batches. Every message is ``MESSAGE_BYTES`` long, about the size of a no-op task's message.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from bench.brokers import amqp_connection
from bench.harness import progress, retrying
from bench.section import Section
from bench.settings import Settings
from bench.stats import percentile
from bench.tables import ms, rate, table

BATCH = 1000
MESSAGE_BYTES = 1024
KEY = "bench-floor"


@dataclass
class FloorFigures:
    broker: str
    client: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    pipelined_rate: float  # messages/s pushed and popped
    messages: int


def redis_floor(url: str, roundtrips: int, messages: int) -> FloorFigures:
    client = redis.Redis.from_url(url)
    body = b"x" * MESSAGE_BYTES
    try:
        client.delete(KEY)
        latencies = []
        for i in range(roundtrips + 20):
            start = time.perf_counter()
            client.lpush(KEY, body)
            client.brpop([KEY], timeout=5)
            if i >= 20:
                latencies.append((time.perf_counter() - start) * 1000.0)
        start = time.perf_counter()
        for n in range(0, messages, BATCH):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(BATCH, messages - n)):
                pipe.lpush(KEY, body)
            pipe.execute()
        popped = 0
        while popped < messages:
            popped += len(client.rpop(KEY, BATCH) or [])
        seconds = time.perf_counter() - start
        client.delete(KEY)
    finally:
        client.close()
    return FloorFigures(
        broker="redis",
        client="redis-py " + redis.__version__,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        pipelined_rate=messages / seconds,
        messages=messages,
    )


def amqp_floor(url: str, roundtrips: int, messages: int) -> FloorFigures:
    import amqp  # type: ignore[import-untyped]

    conn: Any = amqp_connection(url)
    body = b"x" * MESSAGE_BYTES
    try:
        channel = conn.channel()
        channel.queue_declare(KEY, durable=False, auto_delete=False)
        channel.queue_purge(KEY)
        got: list[Any] = []
        tag = channel.basic_consume(KEY, callback=got.append, no_ack=True)
        latencies = []
        for i in range(roundtrips + 20):
            start = time.perf_counter()
            channel.basic_publish(amqp.Message(body), exchange="", routing_key=KEY)
            while not got:
                conn.drain_events(timeout=5)
            got.clear()
            if i >= 20:
                latencies.append((time.perf_counter() - start) * 1000.0)
        channel.basic_cancel(tag)
        channel.basic_qos(0, BATCH, False)
        start = time.perf_counter()
        for _ in range(messages):
            channel.basic_publish(amqp.Message(body), exchange="", routing_key=KEY)
        received: list[Any] = []
        tag = channel.basic_consume(KEY, callback=received.append)
        acked = 0
        while acked < messages:
            conn.drain_events(timeout=10)
            if len(received) - acked >= BATCH // 2 or len(received) >= messages:
                channel.basic_ack(received[-1].delivery_tag, multiple=True)
                acked = len(received)
        seconds = time.perf_counter() - start
        channel.basic_cancel(tag)
        channel.queue_delete(KEY)
    finally:
        conn.close()
    return FloorFigures(
        broker="amqp",
        client="py-amqp " + amqp.__version__,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        pipelined_rate=messages / seconds,
        messages=messages,
    )


def run(settings: Settings) -> Section:
    figures = []
    progress("floor: redis")
    figures.append(retrying("the floor", redis_floor, settings.redis_url, settings.roundtrips, settings.floor_messages))
    if settings.amqp_url:
        progress("floor: amqp")
        url = settings.amqp_url
        figures.append(
            retrying("the floor", amqp_floor, url, settings.roundtrips, min(settings.floor_messages, 50_000))
        )
    for f in figures:
        progress(f"  {f.broker}: round trip p50 {f.p50_ms:.3f} ms, pipelined {f.pipelined_rate:,.0f} messages/s")
    rows = [
        [f.broker, f.client, ms(f.p50_ms), ms(f.p90_ms), ms(f.p99_ms), rate(f.pipelined_rate), f"{f.messages:,}"]
        for f in figures
    ]
    headers = ["broker", "client", "p50 (ms)", "p90 (ms)", "p99 (ms)", "pipelined (messages/s)", "messages"]
    method = (
        f"{settings.roundtrips} round trips after 20 warm-up; messages of {MESSAGE_BYTES} bytes. "
        "Redis: `LPUSH` + `BRPOP` on one connection; pipelined: `LPUSH` in pipelines of "
        f"{BATCH}, then `RPOP key {BATCH}`. RabbitMQ: `basic_publish` + delivery to a consumer on the same "
        f"connection; pipelined: publish all (no confirms), then consume with prefetch {BATCH} and batched acks. "
        "A task with a result needs at least one message each way plus a result write and read, so these "
        "figures bound any task queue from above."
    )
    return Section(
        key="floor",
        title="Raw broker floor",
        method=method,
        body=table(headers, rows) + "\n\nHigher rate and lower latency are better.",
        data={"summary": [asdict(f) for f in figures]},
    )
