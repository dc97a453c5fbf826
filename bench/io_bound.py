"""Scenario io: tasks that wait instead of computing (a 100 ms sleep), at two concurrencies.

With ``-c C`` and tasks that each sleep S seconds, no worker can complete more than C / S tasks per
second: that ceiling is what every figure is compared with, next to Celery's best pool.
celeriac runs an ``async def`` task on its asyncio pool and a sync ``time.sleep`` task on threads;
Celery runs the sync task on threads, prefork and, when gevent is installed, gevent.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import plots, scenarios
from bench.core import mib
from bench.harness import Loaded, progress, ready_worker, retrying
from bench.procs import descendants, tree_rss_kib
from bench.section import Section
from bench.settings import Settings
from bench.stats import medians
from bench.tables import rate, ratio, table, times

BASELINE = "celery"


@dataclass(frozen=True)
class Target:
    system: str
    pool: str
    task: str  # the task module's name for it: "asleep" is async def, "sleep" is sync


TARGETS = (
    Target("celeriac", "asyncio", "asleep"),
    Target("celeriac", "threads", "sleep"),
    Target("celery", "threads", "sleep"),
    Target("celery", "prefork", "sleep"),
    Target("celery", "gevent", "sleep"),
)


@dataclass
class IoFigures:
    system: str
    pool: str
    task: str
    concurrency: int
    tasks: int
    sleep_seconds: float
    enqueue_seconds: float  # sending every task (the worker already busy with the first ones)
    e2e_seconds: float  # from the first send until the last result was fetched
    done_seconds: float  # from the first send until the worker stored the last result
    ready_seconds: float  # the fresh worker's first ping, before the clock starts
    rss_mib: float  # the worker's process tree after the run

    @property
    def rate(self) -> float:
        """Completed tasks/s, by the worker's clock (the results' date_done): the client's fetching left out."""
        return self.tasks / self.done_seconds

    @property
    def e2e_rate(self) -> float:
        return self.tasks / self.e2e_seconds

    @property
    def ceiling(self) -> float:
        return self.concurrency / self.sleep_seconds


def gevent_available() -> bool:
    """Celery's gevent pool needs gevent importable by this interpreter (the workers run on it)."""
    return importlib.util.find_spec("gevent") is not None


def available_targets(settings: Settings) -> tuple[list[Target], list[str]]:
    """The targets of the selected systems that can run here, and a note for each one that cannot."""
    chosen, notes = [], []
    for target in TARGETS:
        if target.system not in settings.systems:
            continue
        if target.pool == "gevent" and not gevent_available():
            notes.append("Celery -P gevent was not run: gevent is not installed (pip install gevent).")
            continue
        chosen.append(target)
    return chosen, notes


def run_once(
    settings: Settings, client: scenarios.Client, target: Target, concurrency: int, workdir: Path
) -> IoFigures:
    seconds = settings.io_sleep_ms / 1000.0
    with ready_worker(client, target.pool, concurrency, workdir) as (worker, ready):
        result = scenarios.batch(
            scenarios.celery_send(client.task(target.task), seconds), scenarios.celery_fetch, settings.io_tasks
        )
        worker.check_alive()
        rss_kib, _ = tree_rss_kib(descendants(worker.pid))
        done = scenarios.last_done(client.broker.result_url, result.task_ids) - result.start_time
    return IoFigures(
        system=target.system,
        pool=target.pool,
        task=target.task,
        concurrency=concurrency,
        tasks=settings.io_tasks,
        sleep_seconds=seconds,
        enqueue_seconds=result.enqueue_seconds,
        e2e_seconds=result.e2e_seconds,
        done_seconds=max(done, 1e-6),
        ready_seconds=ready,
        rss_mib=mib(rss_kib),
    )


def run_all(settings: Settings, loaded: Loaded, workdir: Path, targets: Sequence[Target]) -> list[IoFigures]:
    runs = []
    for repeat in range(1, settings.repeat + 1):
        for concurrency in settings.io_concurrency:
            for target in targets:
                progress(f"io {repeat}/{settings.repeat}: {target.system} -P {target.pool} -c {concurrency}")
                client = loaded[target.system, "redis"]
                figures = retrying("the run", run_once, settings, client, target, concurrency, workdir)
                progress(
                    f"  {figures.rate:,.0f} tasks/s ({figures.rate / figures.ceiling:.0%} of {figures.ceiling:,.0f}),"
                    f" worker ready in {figures.ready_seconds:.1f}s"
                )
                runs.append(figures)
    return runs


# -- report ----------------------------------------------------------------------------------------


def best_celery(summary: Sequence[IoFigures], concurrency: int) -> IoFigures | None:
    celery = [f for f in summary if f.system == BASELINE and f.concurrency == concurrency]
    return max(celery, key=lambda f: f.rate) if celery else None


def ratios(row: IoFigures, summary: Sequence[IoFigures]) -> dict[str, float | None]:
    base = best_celery(summary, row.concurrency)
    return {
        "vs_ceiling": row.rate / row.ceiling,
        "vs_best_celery": ratio(row.rate, base.rate if base else None),
    }


def body(summary: Sequence[IoFigures], notes: Sequence[str]) -> str:
    rows = []
    for f in summary:
        r = ratios(f, summary)
        rows.append(
            [
                f.system,
                f.pool,
                "async def" if f.task == "asleep" else "def",
                str(f.concurrency),
                rate(f.rate),
                rate(f.e2e_rate),
                rate(f.ceiling),
                f"{r['vs_ceiling']:.0%}" if r["vs_ceiling"] is not None else "n/a",
                times(r["vs_best_celery"]),
                f"{f.ready_seconds:.1f}",
                f"{f.rss_mib:.0f}",
            ]
        )
    headers = [
        "system",
        "pool",
        "task",
        "-c",
        "completed (tasks/s)",
        "incl. fetching (tasks/s)",
        "ceiling",
        "of ceiling",
        "/ best Celery same -c",
        "ready (s)",
        "RSS (MiB)",
    ]
    best = [f"-c {c}: -P {b.pool}" for c in sorted({f.concurrency for f in summary}) if (b := best_celery(summary, c))]
    lines = [table(headers, rows), ""]
    lines.append("Best Celery: " + ("; ".join(best) if best else "n/a (Celery not run)") + ". Higher is better.")
    lines += ["", *notes] if notes else []
    return "\n".join(lines)


def method(settings: Settings) -> str:
    return (
        f"{settings.io_tasks} tasks that each sleep {settings.io_sleep_ms:g} ms, at `-c` "
        f"{' and '.join(str(c) for c in settings.io_concurrency)}: celeriac's `async def` task "
        "(`await asyncio.sleep`) on `-P asyncio` and a `def` task (`time.sleep`) on `-P threads`; Celery's "
        "`def` task on `-P threads`, `-P prefork` and `-P gevent`. *Completed* runs from the first `delay()` "
        "until the worker stored the last result (the latest `date_done` in the backend); *incl. fetching* "
        "until the client's last `.get()` returned. Both start once the fresh worker has answered a ping "
        "(*ready* is how long that took). "
        "The ceiling is `-c` / sleep time. RSS is the worker's process tree after the run. "
        f"{settings.repeat} run(s), median."
    )


def draw(summary: Sequence[IoFigures], img_dir: Path) -> dict[str, Path]:
    targets = list(dict.fromkeys((f.system, f.pool) for f in summary))
    labels = [f"{system}\n{pool}" for system, pool in targets]
    by_key = {(f.system, f.pool, f.concurrency): f for f in summary}
    series = {}
    for c in sorted({f.concurrency for f in summary}):
        values = [
            by_key[(s, p, c)].rate / by_key[(s, p, c)].ceiling if (s, p, c) in by_key else 0.0 for s, p in targets
        ]
        series[f"-c {c}"] = values
    path = plots.bar_chart(
        img_dir / "bench-io-ceiling.png",
        labels,
        series,
        "io-bound tasks: completed tasks/s as a fraction of the ceiling",
        "fraction of -c / sleep (higher is better)",
        value_format="{:.2f}",
    )
    return {"io-ceiling": path}


def run(settings: Settings, loaded: Loaded, workdir: Path) -> Section:
    targets, notes = available_targets(settings)
    for note in notes:
        progress(note)
    runs = run_all(settings, loaded, workdir, targets)
    summary = medians(runs, key=lambda f: (f.system, f.pool, f.concurrency))
    return Section(
        key="io",
        title="io-bound tasks",
        method=method(settings),
        body=body(summary, notes),
        data={
            "runs": [asdict(f) for f in runs],
            "summary": [
                {**asdict(f), "rate": f.rate, "ceiling": f.ceiling, "ratios": ratios(f, summary)} for f in summary
            ],
            "not_run": notes,
        },
        draw=lambda img_dir: draw(summary, img_dir),
    )
