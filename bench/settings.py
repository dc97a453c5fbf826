"""The command line: which scenarios run, at which sizes, against which systems."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCENARIOS = ("throughput", "latency", "peers", "io", "cpu", "memory", "floor", "profile", "cli")
SYSTEMS = ("celeriac", "celery")
POOLS = ("prefork", "threads", "solo", "asyncio")
CELERY_POOLS = ("prefork", "threads", "solo")  # Celery has no asyncio pool
BROKERS = ("redis", "amqp", "sqlite")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


@dataclass(frozen=True)
class Settings:
    scenarios: tuple[str, ...]
    tasks: int  # throughput: tasks per run on Redis
    roundtrips: int  # latency and the broker floor: timed round trips per run
    concurrency: int  # throughput, latency and memory: worker -c
    repeat: int
    systems: tuple[str, ...]
    pools: tuple[str, ...]  # throughput and latency only; the other scenarios pick their own pools
    brokers: tuple[str, ...]  # throughput and latency; the other scenarios run on Redis
    other_broker_tasks: int  # throughput tasks per run on a broker other than Redis
    io_tasks: int
    io_sleep_ms: float
    io_concurrency: tuple[int, ...]
    cpu_tasks: int
    cpu_ms: float
    memory_tasks: int
    floor_messages: int
    redis_url: str
    amqp_url: str | None

    def wants(self, scenario: str) -> bool:
        return scenario in self.scenarios

    def pools_of(self, system: str) -> tuple[str, ...]:
        return self.pools if system == "celeriac" else tuple(p for p in self.pools if p in CELERY_POOLS)

    def tasks_on(self, broker: str) -> int:
        return self.tasks if broker == "redis" else min(self.tasks, self.other_broker_tasks)

    def to_json(self) -> dict[str, Any]:
        return {name: list(v) if isinstance(v, tuple) else v for name, v in asdict(self).items()}


def _choices(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(allowed)}")
        return names

    return parse


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("expected a positive number")
    return value


def _positive_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(_positive(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark celeriac against Celery 5.")
    add = parser.add_argument
    add("--scenarios", type=_choices(SCENARIOS), default=SCENARIOS, help=f"default: {','.join(SCENARIOS)}")
    add("--tasks", type=_positive, default=20_000, help="tasks per throughput run on Redis (default 20000)")
    add("--other-broker-tasks", type=_positive, default=5000, help="tasks per throughput run on amqp/sqlite")
    add("--roundtrips", type=_positive, default=1000, help="timed round trips per run (default 1000)")
    add("--concurrency", type=_positive, default=os.cpu_count() or 2, help="worker -c (default: the core count)")
    add("--systems", type=_choices(SYSTEMS), default=SYSTEMS, help="default: celeriac,celery")
    add("--pools", type=_choices(POOLS), default=POOLS, help="throughput/latency pools (Celery: all but asyncio)")
    add("--brokers", type=_choices(BROKERS), default=BROKERS, help="throughput/latency brokers (default: all)")
    add("--repeat", type=_positive, default=3, help="runs per target; medians (default 3; memory and floor run once)")
    add("--io-tasks", type=_positive, default=1000, help="tasks per io-bound run (default 1000)")
    add("--io-sleep-ms", type=_positive_float, default=100.0, help="sleep of one io-bound task (default 100)")
    add("--io-concurrency", type=_positive_list, default=(10, 100), help="io-bound worker -c values (default 10,100)")
    add("--cpu-tasks", type=_positive, default=400, help="tasks per cpu-bound run (default 400)")
    add("--cpu-ms", type=_positive_float, default=10.0, help="pure-Python work of one cpu-bound task (default 10)")
    add("--memory-tasks", type=_positive, default=100_000, help="no-op tasks of the leak check; RSS at 1/10 and all")
    add("--floor-messages", type=_positive, default=100_000, help="messages of the pipelined Redis floor")
    add("--redis-url", default=DEFAULT_REDIS_URL, help=f"flushed before every run (default {DEFAULT_REDIS_URL})")
    add("--amqp-url", default=DEFAULT_AMQP_URL, help="RabbitMQ for the AMQP floor; 'none' skips it")
    add("--json", type=Path, help="write the raw figures to this JSON file")
    add("--markdown", type=Path, help="write docs/benchmarks.md-style Markdown here (plots in img/)")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return _parser().parse_args(argv)


def from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        scenarios=args.scenarios,
        tasks=args.tasks,
        roundtrips=args.roundtrips,
        concurrency=args.concurrency,
        repeat=args.repeat,
        systems=args.systems,
        pools=args.pools,
        brokers=tuple(b for b in args.brokers if b != "amqp" or args.amqp_url.lower() != "none"),
        other_broker_tasks=args.other_broker_tasks,
        io_tasks=args.io_tasks,
        io_sleep_ms=args.io_sleep_ms,
        io_concurrency=args.io_concurrency,
        cpu_tasks=args.cpu_tasks,
        cpu_ms=args.cpu_ms,
        memory_tasks=args.memory_tasks,
        floor_messages=args.floor_messages,
        redis_url=args.redis_url,
        amqp_url=None if args.amqp_url.lower() == "none" else args.amqp_url,
    )


def display_command(argv: Sequence[str]) -> str:
    """The command as typed from the current directory, e.g. ``.venv/bin/python -m bench --tasks 50``."""
    python = sys.executable
    if python.startswith(os.getcwd() + os.sep):
        python = os.path.relpath(python)
    return shlex.join([python, "-m", "bench", *argv])
