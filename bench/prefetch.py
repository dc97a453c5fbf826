"""Scenario prefetch: end to end on ``-P threads`` at several ``--prefetch-multiplier`` values.

The throughput run of the main table (no-op tasks with results, sent one after the other, then
fetched), by both systems, at the task count of the brokers other than Redis (``--other-broker-tasks``)
on both brokers, to keep Celery's runs short; the worker's prefetch window (``-c`` x the multiplier)
is the one thing that changes. It shows which broker's figures are bound by that window rather than by the
worker's CPU: RabbitMQ pushes at most the window's count of unacknowledged messages, so a worker
whose acks come late (celeriac acks each message once its task ran and its result was written)
waits for the broker between windows; on Redis the worker pulls, and the window matters less.
The main table runs at the default multiplier, 4, for both systems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import plots, scenarios
from bench.harness import Loaded, progress, ready_worker, retrying
from bench.section import Section
from bench.settings import Settings
from bench.tables import rate, ratio, table, times

MULTIPLIERS = (1, 4, 16, 64)
POOL = "threads"
TITLES = {"redis": "Redis", "amqp": "RabbitMQ"}


@dataclass
class PrefetchFigures:
    system: str
    broker: str
    multiplier: int
    concurrency: int
    tasks: int
    enqueue_rate: float
    e2e_rate: float
    worker_rate: float
    prefetch_count: int | None  # as the worker reports it (inspect stats), to show the option took


def reported_prefetch(client: scenarios.Client) -> int | None:
    """The prefetch count the worker reports in ``inspect().stats()``, None when it does not answer."""
    try:
        replies = client.app.control.inspect(timeout=10.0, limit=1).stats() or {}
    except Exception as exc:  # the figure is informative: a worker that does not answer doesn't sink the run
        progress(f"  no stats from the worker ({exc.__class__.__name__}: {exc})")
        return None
    for stats in replies.values():
        count = stats.get("prefetch_count")
        if isinstance(count, int):
            return count
    return None


def run_once(
    client: scenarios.Client, multiplier: int, settings: Settings, tasks: int, workdir: Path
) -> PrefetchFigures:
    options = ["--prefetch-multiplier", str(multiplier)]
    with ready_worker(client, POOL, settings.concurrency, workdir, options) as (worker, _ready):
        result = scenarios.throughput(client, tasks, POOL)
        worker.check_alive()
        worker_rate = scenarios.worker_rate(result, client.broker.result_url)
        prefetch_count = reported_prefetch(client)
    return PrefetchFigures(
        system=client.system,
        broker=client.broker.name,
        multiplier=multiplier,
        concurrency=settings.concurrency,
        tasks=tasks,
        enqueue_rate=result.enqueue_rate,
        e2e_rate=result.e2e_rate,
        worker_rate=worker_rate,
        prefetch_count=prefetch_count,
    )


def brokers_of(settings: Settings) -> list[str]:
    """RabbitMQ (where the window binds) and Redis (for contrast), those of this run."""
    return [b for b in ("amqp", "redis") if b == "redis" or b in settings.brokers]


def body(runs: Sequence[PrefetchFigures]) -> str:
    figures = {(f.system, f.broker, f.multiplier): f for f in runs}
    rows = []
    for broker in dict.fromkeys(f.broker for f in runs):
        for multiplier in MULTIPLIERS:
            ours, theirs = figures.get(("celeriac", broker, multiplier)), figures.get(("celery", broker, multiplier))
            some = ours or theirs
            if some is None:
                continue
            rows.append(
                [
                    TITLES.get(broker, broker),
                    str(multiplier),
                    str(some.concurrency * multiplier),
                    rate(ours.e2e_rate) if ours else "-",
                    rate(theirs.e2e_rate) if theirs else "-",
                    times(ratio(ours.e2e_rate, theirs.e2e_rate if theirs else None)) if ours else "-",
                ]
            )
    headers = ["broker", "multiplier", "window", "celeriac e2e (tasks/s)", "Celery e2e (tasks/s)", "celeriac / Celery"]
    note = (
        "Window: the most messages the worker holds unacknowledged (`-c` x multiplier). "
        "Celery acknowledges a message as its task starts, celeriac once the task ran and its result was "
        "written, so celeriac's window also holds the tasks that are running or whose result is being written. "
        "Higher is better."
    )
    return table(headers, rows) + "\n\n" + note


def run(settings: Settings, loaded: Loaded, workdir: Path) -> Section:
    runs: list[PrefetchFigures] = []
    brokers = brokers_of(settings)
    tasks = min(settings.tasks, settings.other_broker_tasks)
    for broker in brokers:
        for multiplier in MULTIPLIERS:
            for system in settings.systems:
                client = loaded.get((system, broker))
                if client is None:
                    continue
                progress(f"prefetch {broker}: {system} -P {POOL} -c {settings.concurrency} -m {multiplier}")
                figures = retrying("the run", run_once, client, multiplier, settings, tasks, workdir)
                progress(f"  end-to-end {figures.e2e_rate:,.0f}/s")
                runs.append(figures)
    method = (
        f"The throughput run ({tasks:,} no-op tasks with results) on "
        f"`-P {POOL} -c {settings.concurrency}`, with `--prefetch-multiplier` "
        f"{', '.join(str(m) for m in MULTIPLIERS)}, on {' and '.join(TITLES[b] for b in brokers)}; one run each."
    )
    return Section(
        key="prefetch",
        title="Prefetch window",
        method=method,
        body=body(runs),
        data={"multipliers": list(MULTIPLIERS), "pool": POOL, "runs": [asdict(f) for f in runs]},
        draw=lambda img_dir: {"prefetch-e2e": _plot(img_dir, runs)},
    )


def _plot(img_dir: Path, runs: Sequence[PrefetchFigures]) -> Path:
    figures = {(f.system, f.broker, f.multiplier): f.e2e_rate for f in runs}
    groups = [(b, m) for b in dict.fromkeys(f.broker for f in runs) for m in MULTIPLIERS]
    systems = list(dict.fromkeys(f.system for f in runs))
    return plots.bar_chart(
        img_dir / "bench-prefetch.png",
        [f"{TITLES.get(b, b)}\n-m {m}" for b, m in groups],
        {s: [figures.get((s, b, m), 0.0) for b, m in groups] for s in systems},
        f"End to end by prefetch multiplier (-P {POOL})",
        "tasks/s (higher is better)",
    )
