"""Benchmark celeriac against Celery 5 on Redis: throughput, round-trip latency and worker memory.

    python -m bench [--tasks N] [--roundtrips M] [--concurrency C] [--systems celeriac,celery]
                    [--pools prefork,threads,solo] [--repeat R] [--redis-url URL]
                    [--json PATH] [--markdown PATH]

Installs nothing: the worker of each system runs as ``sys.executable -m <system> ... worker``, so both
must be importable by this interpreter. See docs/benchmarks.md for what is measured.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import redis

from bench import machine, report, scenarios
from bench.procs import RssSampler, Worker, WorkerError, descendants, tree_rss_kib

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("celeriac", "celery")
POOLS = ("prefork", "threads", "solo")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


@dataclass(frozen=True)
class Settings:
    tasks: int
    roundtrips: int
    concurrency: int
    repeat: int
    systems: tuple[str, ...]
    pools: tuple[str, ...]
    redis_url: str


# -- command line ----------------------------------------------------------------------------------


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
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=_positive, default=5000, help="tasks per throughput run (default 5000)")
    parser.add_argument("--roundtrips", type=_positive, default=500, help="timed round trips per run (default 500)")
    parser.add_argument(
        "--concurrency", type=_positive, default=os.cpu_count() or 2, help="worker -c (default: the core count)"
    )
    parser.add_argument("--systems", type=_choices(SYSTEMS), default=SYSTEMS, help="default: celeriac,celery")
    parser.add_argument("--pools", type=_choices(POOLS), default=POOLS, help="default: prefork,threads,solo")
    parser.add_argument("--repeat", type=_positive, default=3, help="runs per system and pool; medians (default 3)")
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help=f"flushed before every run (default {DEFAULT_REDIS_URL})"
    )
    parser.add_argument("--json", type=Path, help="write the raw figures to this JSON file")
    parser.add_argument("--markdown", type=Path, help="write docs/benchmarks.md-style Markdown here (plots in img/)")
    return parser.parse_args(argv)


def display_command(argv: Sequence[str]) -> str:
    """The command as typed from the current directory, e.g. ``.venv/bin/python -m bench --tasks 50``."""
    python = sys.executable
    if python.startswith(os.getcwd() + os.sep):
        python = os.path.relpath(python)
    return shlex.join([python, "-m", "bench", *argv])


# -- environment -----------------------------------------------------------------------------------


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def clean_environ() -> None:
    """Drop CELERY_*/CELERIAC_* variables: they would override the task module's broker and backend."""
    for name in [n for n in os.environ if n.startswith(("CELERY_", "CELERIAC_"))]:
        del os.environ[name]


def worker_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(workdir), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONFAULTHANDLER"] = "1"  # a worker that hangs on SIGTERM shows its stacks on SIGABRT (procs.py)
    return env


def flush(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


@contextmanager
def clients(settings: Settings, workdir: Path) -> Iterator[dict[str, scenarios.Client]]:
    """Write each system's task module into ``workdir`` and import it; close the apps afterwards."""
    sys.path.insert(0, str(workdir))
    loaded: dict[str, scenarios.Client] = {}
    try:
        for system in settings.systems:
            module = scenarios.write_task_module(workdir, system, settings.redis_url)
            loaded[system] = scenarios.load_client(system, module)
        yield loaded
    finally:
        gc.collect()  # Celery's AsyncResult.__del__ needs its app open
        for client in loaded.values():
            client.close()
        sys.path.remove(str(workdir))


# -- one run ---------------------------------------------------------------------------------------


def mib(kib: float) -> float:
    return kib / 1024.0


def run_once(settings: Settings, client: scenarios.Client, pool: str, workdir: Path) -> report.Figures:
    """A fresh worker on a flushed database: ping, warm up, throughput (RSS sampled), round trips."""
    flush(settings.redis_url)
    worker = Worker(client.system, client.module, pool, settings.concurrency, workdir, worker_env(workdir))
    with worker:
        ready = scenarios.wait_until_ready(client, worker)
        scenarios.warm_up(client)
        idle_kib, _ = tree_rss_kib(descendants(worker.pid))
        gc.collect()
        with RssSampler(worker.pid) as sampler:
            throughput = scenarios.throughput(client, settings.tasks)
        worker.check_alive()
        gc.collect()
        scenarios.warm_up(client)
        latencies = scenarios.roundtrips(client, settings.roundtrips)
    return report.Figures(
        system=client.system,
        pool=pool,
        enqueue_rate=throughput.enqueue_rate,
        e2e_rate=throughput.e2e_rate,
        p50_ms=scenarios.percentile(latencies, 50),
        p90_ms=scenarios.percentile(latencies, 90),
        p99_ms=scenarios.percentile(latencies, 99),
        rss_idle_mib=mib(idle_kib),
        rss_peak_mib=mib(max(sampler.peak_kib, idle_kib)),
        ready_seconds=ready,
    )


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run_all(settings: Settings, loaded: dict[str, scenarios.Client], workdir: Path) -> list[report.Figures]:
    """Every system and pool once per repeat, round-robin, one worker at a time."""
    runs = []
    for repeat in range(1, settings.repeat + 1):
        for system in settings.systems:
            for pool in settings.pools:
                progress(f"run {repeat}/{settings.repeat}: {system} -P {pool} -c {settings.concurrency}")
                figures = run_once(settings, loaded[system], pool, workdir)
                progress(
                    f"  enqueue {figures.enqueue_rate:,.0f}/s, end-to-end {figures.e2e_rate:,.0f}/s, "
                    f"p50 {figures.p50_ms:.2f} ms, peak RSS {figures.rss_peak_mib:.1f} MiB"
                )
                runs.append(figures)
    return runs


# -- output ----------------------------------------------------------------------------------------


def metadata(settings: Settings, argv: Sequence[str]) -> dict[str, object]:
    return {
        "command": display_command(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine.describe(settings.redis_url),
        "settings": {
            "tasks": settings.tasks,
            "roundtrips": settings.roundtrips,
            "warmup_roundtrips": scenarios.WARMUP_ROUNDTRIPS,
            "concurrency": settings.concurrency,
            "repeat": settings.repeat,
            "systems": list(settings.systems),
            "pools": list(settings.pools),
            "redis_url": settings.redis_url,
            "rss_sample_interval_s": 0.05,
        },
    }


def write_outputs(args: argparse.Namespace, meta: dict[str, object], runs: list[report.Figures]) -> None:
    summary = report.medians(runs)
    print(report.render_text(summary))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(meta, runs, summary), indent=2) + "\n")
        progress(f"wrote {args.json}")
    if args.markdown:
        plots = report.make_plots(summary, args.markdown.parent / "img")
        args.markdown.write_text(report.render_markdown(meta, summary, plots, args.markdown))
        progress(f"wrote {args.markdown}" + (f" and {len(plots)} plots" if plots else ""))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    settings = Settings(
        args.tasks, args.roundtrips, args.concurrency, args.repeat, args.systems, args.pools, args.redis_url
    )
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # stop the worker on SIGTERM too
    clean_environ()
    try:
        meta = metadata(settings, argv)
        with tempfile.TemporaryDirectory(prefix="celeriac-bench-") as tmp, clients(settings, Path(tmp)) as loaded:
            try:
                runs = run_all(settings, loaded, Path(tmp))
            finally:
                flush(settings.redis_url)
    except KeyboardInterrupt:
        progress("interrupted; the worker was stopped")
        return 130
    except (WorkerError, redis.RedisError) as exc:
        progress(f"failed: {exc}")
        return 1
    write_outputs(args, meta, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
