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

SCENARIOS = ("throughput", "latency", "delay", "prefetch", "peers", "io", "cpu", "memory", "floor", "profile", "cli")
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


@dataclass(frozen=True)
class Option:
    """One command-line option and the Settings field of the same name (``--io-tasks`` -> ``io_tasks``)."""

    field: str
    parse: Callable[[str], Any] | None  # None: the value is the string as typed
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


# Every option that becomes a Settings field as typed, in --help's order. brokers and amqp_url are
# among them; from_args() then drops the AMQP broker when --amqp-url is 'none'.
OPTIONS = (
    Option("scenarios", _choices(SCENARIOS), SCENARIOS, f"default: {','.join(SCENARIOS)}"),
    Option("tasks", _positive, 20_000, "tasks per throughput run on Redis (default 20000)"),
    Option("other_broker_tasks", _positive, 5000, "tasks per throughput run on amqp/sqlite"),
    Option("roundtrips", _positive, 1000, "timed round trips per run (default 1000)"),
    Option("concurrency", _positive, os.cpu_count() or 2, "worker -c (default: the core count)"),
    Option("systems", _choices(SYSTEMS), SYSTEMS, "default: celeriac,celery"),
    Option("pools", _choices(POOLS), POOLS, "throughput/latency pools (Celery: all but asyncio)"),
    Option("brokers", _choices(BROKERS), BROKERS, "throughput/latency brokers (default: all)"),
    Option("repeat", _positive, 3, "runs per target; medians (default 3; memory and floor run once)"),
    Option("io_tasks", _positive, 1000, "tasks per io-bound run (default 1000)"),
    Option("io_sleep_ms", _positive_float, 100.0, "sleep of one io-bound task (default 100)"),
    Option("io_concurrency", _positive_list, (10, 100), "io-bound worker -c values (default 10,100)"),
    Option("cpu_tasks", _positive, 400, "tasks per cpu-bound run (default 400)"),
    Option("cpu_ms", _positive_float, 10.0, "pure-Python work of one cpu-bound task (default 10)"),
    Option("memory_tasks", _positive, 100_000, "no-op tasks of the leak check; RSS at 1/10 and all"),
    Option("floor_messages", _positive, 100_000, "messages of the pipelined Redis floor"),
    Option("redis_url", None, DEFAULT_REDIS_URL, f"flushed before every run (default {DEFAULT_REDIS_URL})"),
    Option("amqp_url", None, DEFAULT_AMQP_URL, "RabbitMQ for the AMQP floor; 'none' skips it"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark celeriac against Celery 5.")
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"default": option.default, "help": option.help}
        if option.parse is not None:
            kwargs["type"] = option.parse
        parser.add_argument(option.flag, **kwargs)
    parser.add_argument("--json", type=Path, help="write the raw figures to this JSON file")
    parser.add_argument("--markdown", type=Path, help="write docs/benchmarks.md-style Markdown here (plots in img/)")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return _parser().parse_args(argv)


def from_args(args: argparse.Namespace) -> Settings:
    values = {option.field: getattr(args, option.field) for option in OPTIONS}
    no_amqp = values["amqp_url"].lower() == "none"
    values["amqp_url"] = None if no_amqp else values["amqp_url"]
    values["brokers"] = tuple(b for b in values["brokers"] if b != "amqp" or not no_amqp)
    return Settings(**values)


def display_command(argv: Sequence[str]) -> str:
    """The command as typed from the current directory, e.g. ``.venv/bin/python -m bench --tasks 50``."""
    python = sys.executable
    if python.startswith(os.getcwd() + os.sep):
        python = os.path.relpath(python)
    return shlex.join([python, "-m", "bench", *argv])
