"""Benchmark celeriac against Celery 5 on Redis, and against the broker floor and other task queues.

    python -m bench [--scenarios throughput,latency,delay,prefetch,peers,io,cpu,memory,floor,profile,cli] [--tasks N]
                    [--roundtrips M] [--concurrency C] [--systems celeriac,celery]
                    [--pools prefork,threads,solo,asyncio] [--brokers redis,amqp,sqlite] [--repeat R]
                    [--io-tasks N] [--io-sleep-ms MS] [--io-concurrency 10,100] [--cpu-tasks N] [--cpu-ms MS]
                    [--memory-tasks N] [--floor-messages N] [--other-broker-tasks N]
                    [--redis-url URL] [--amqp-url URL] [--json PATH] [--markdown PATH]

Installs nothing: the worker of each system runs as ``sys.executable -m <system> ... worker``, so each
must be importable by this interpreter; another task queue (Dramatiq, Huey, RQ) that is not is
skipped and the report says so.
See docs/benchmarks.md for what is measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import redis

from bench import (
    cli_start,
    core,
    cpu,
    delay,
    floor,
    io_bound,
    machine,
    memory,
    peers,
    plots,
    prefetch,
    profile,
    report,
    scenarios,
    targets,
)
from bench.brokers import make as make_broker
from bench.harness import clean_environ, clients, flush, progress
from bench.procs import WorkerError
from bench.section import Section
from bench.settings import Settings, display_command, from_args, parse_args


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def metadata(settings: Settings, argv: Sequence[str]) -> dict[str, object]:
    return {
        "command": display_command(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine.describe(settings.redis_url, settings.amqp_url),
        "settings": {
            **settings.to_json(),
            "warmup_roundtrips": scenarios.WARMUP_ROUNDTRIPS,
            "idle_roundtrips": scenarios.IDLE_ROUNDTRIPS,
            "idle_gap_s": scenarios.IDLE_GAP,
            "rss_sample_interval_s": 0.05,
        },
    }


def run_scenarios(settings: Settings, workdir: Path) -> tuple[list[report.Figures], list[Section]]:
    """The selected scenarios, one after the other, in the report's order (the targets first)."""
    names = dict.fromkeys(["redis", *settings.brokers])
    brokers = [make_broker(name, settings.redis_url, settings.amqp_url, workdir) for name in names]
    runs: list[report.Figures] = []
    sections: list[Section] = []
    with clients(settings.systems, brokers, workdir) as loaded:
        if settings.wants("cli"):
            sections.append(cli_start.run(settings.systems))
        if settings.wants("floor"):
            sections.append(floor.run(settings))
        if settings.wants("throughput") or settings.wants("latency"):
            runs = core.run_all(settings, loaded, workdir)
        if settings.wants("delay"):
            sections.append(delay.run(settings, loaded))
        if settings.wants("prefetch"):
            sections.append(prefetch.run(settings, loaded, workdir))
        if settings.wants("peers"):
            sections.append(peers.run(settings, workdir, report.medians(runs)))
        if settings.wants("io"):
            sections.append(io_bound.run(settings, loaded, workdir))
        if settings.wants("cpu"):
            sections.append(cpu.run(settings, loaded, workdir))
        if settings.wants("memory"):
            sections.append(memory.run(settings, loaded, workdir))
        if settings.wants("profile") and "celeriac" in settings.systems:
            sections.append(profile.run(settings, loaded, workdir))
    summary = report.medians(runs)
    sections.insert(0, targets.section(summary, {s.key: s.data for s in sections}))
    return runs, sections


def missing_tools(settings: Settings) -> list[str]:
    """The optional tools a report of these scenarios would need and this interpreter lacks.

    A run without them still works (their sections say what was left out), but a report regenerated
    that way would lose its plots or profiles, or compare with a Celery short of its best pool, after
    the whole run: better to say so before it starts."""
    missing = [] if plots.available() else ["matplotlib (the plots)"]
    if settings.wants("io") and "celery" in settings.systems and not io_bound.gevent_available():
        missing.append("gevent (Celery's -P gevent, its best io-bound pool)")
    if settings.wants("profile") and "celeriac" in settings.systems:
        if profile.py_spy() is None:
            missing.append("py-spy (the worker profiles)")
        if not profile.pyinstrument_available():
            missing.append("pyinstrument (the client profile)")
    return missing


def write_outputs(
    args: argparse.Namespace, meta: dict[str, object], runs: list[report.Figures], sections: list[Section]
) -> None:
    summary = report.medians(runs)
    print(report.render_text(summary, sections))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(meta, runs, summary, sections), indent=2) + "\n")
        progress(f"wrote {args.json}")
    if args.markdown:
        drawn = report.draw_all(summary, sections, args.markdown.parent / "img")
        args.markdown.write_text(report.render_markdown(meta, summary, drawn, args.markdown, sections))
        progress(f"wrote {args.markdown}" + (f" and {len(drawn)} plots" if drawn else ""))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    settings = from_args(args)
    missing = missing_tools(settings) if args.markdown else []
    if missing:
        progress(
            f"not run: the report would lack what needs {', '.join(missing)}; install them "
            "(pip install -e '.[bench]') or leave those scenarios out (--scenarios)"
        )
        return 2
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # stop the worker on SIGTERM too
    clean_environ()
    try:
        meta = metadata(settings, argv)
        with tempfile.TemporaryDirectory(prefix="celeriac-bench-") as tmp:
            try:
                runs, sections = run_scenarios(settings, Path(tmp))
            finally:
                flush(settings.redis_url)
    except KeyboardInterrupt:
        progress("interrupted; the worker was stopped")
        return 130
    except (WorkerError, redis.RedisError) as exc:
        progress(f"failed: {exc}")
        return 1
    write_outputs(args, meta, runs, sections)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
