"""Scenario cpu: pure-Python tasks at ``-c`` = the core count.

Each task runs ``burn(loops)`` from the task module, with ``loops`` calibrated in the benchmark process
to take ``--cpu-ms``. With C cores no worker completes more than C / work-time tasks per second (the
ceiling); the client and Redis share those cores, so nobody reaches it. Threads share one GIL, so
``-P threads`` is shown for contrast: it cannot pass one core's worth.
"""

from __future__ import annotations

import os
import time
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

TARGETS = (("celeriac", "prefork"), ("celeriac", "threads"), ("celery", "prefork"), ("celery", "threads"))


@dataclass
class CpuFigures:
    system: str
    pool: str
    concurrency: int
    tasks: int
    work_seconds: float  # the calibrated time of one task's burn() in this process
    done_seconds: float  # from the first send until the worker stored the last result
    e2e_seconds: float  # until the client's last .get() returned
    rss_mib: float

    @property
    def rate(self) -> float:
        return self.tasks / self.done_seconds

    @property
    def ceiling(self) -> float:
        return self.concurrency / self.work_seconds


def calibrate(burn: object, ms: float) -> int:
    """How many ``burn`` loops take ``ms`` milliseconds of CPU time here (the best of a few tries)."""
    assert callable(burn)
    loops, best = 200_000, float("inf")
    for _ in range(5):  # CPU time, not wall time: another process taking the core does not count
        start = time.process_time()
        burn(loops)
        best = min(best, time.process_time() - start)
    return max(1, int(loops * (ms / 1000.0) / best))


def run_once(client: scenarios.Client, pool: str, settings: Settings, loops: int, workdir: Path) -> CpuFigures:
    concurrency = os.cpu_count() or 2
    with ready_worker(client, pool, concurrency, workdir) as (worker, _ready):
        result = scenarios.batch(
            scenarios.celery_send(client.task("cpu"), loops), scenarios.celery_fetch, settings.cpu_tasks
        )
        worker.check_alive()
        rss_kib, _ = tree_rss_kib(descendants(worker.pid))
        done = scenarios.last_done(client.broker.result_url, result.task_ids) - result.start_time
    return CpuFigures(
        system=client.system,
        pool=pool,
        concurrency=concurrency,
        tasks=settings.cpu_tasks,
        work_seconds=settings.cpu_ms / 1000.0,
        done_seconds=max(done, 1e-6),
        e2e_seconds=result.e2e_seconds,
        rss_mib=mib(rss_kib),
    )


def best_celery(summary: Sequence[CpuFigures]) -> CpuFigures | None:
    celery = [f for f in summary if f.system == "celery"]
    return max(celery, key=lambda f: f.rate) if celery else None


def body(summary: Sequence[CpuFigures], loops: int) -> str:
    base = best_celery(summary)
    rows = [
        [
            f.system,
            f.pool,
            str(f.concurrency),
            rate(f.rate),
            rate(f.ceiling),
            f"{f.rate / f.ceiling:.0%}",
            times(ratio(f.rate, base.rate if base else None)),
            f"{f.rss_mib:.0f}",
        ]
        for f in summary
    ]
    headers = ["system", "pool", "-c", "completed (tasks/s)", "ceiling", "of ceiling", "/ best Celery", "RSS (MiB)"]
    note = f"One task: `burn({loops:,})`. Best Celery: {'-P ' + base.pool if base else 'n/a'}. Higher is better."
    return table(headers, rows) + "\n\n" + note


def run(settings: Settings, loaded: Loaded, workdir: Path) -> Section:
    any_client = next(c for (s, b), c in loaded.items() if b == "redis")
    loops = calibrate(any_client.task("burn"), settings.cpu_ms)
    targets = [(s, p) for s, p in TARGETS if s in settings.systems]
    runs = []
    for repeat in range(1, settings.repeat + 1):
        for system, pool in targets:
            progress(f"cpu {repeat}/{settings.repeat}: {system} -P {pool}")
            client = loaded[system, "redis"]
            figures = retrying("the run", run_once, client, pool, settings, loops, workdir)
            progress(f"  {figures.rate:,.0f} tasks/s ({figures.rate / figures.ceiling:.0%} of {figures.ceiling:,.0f})")
            runs.append(figures)
    summary = medians(runs, key=lambda f: (f.system, f.pool))
    method = (
        f"{settings.cpu_tasks} tasks of about {settings.cpu_ms:g} ms of pure-Python work each, at `-c` = "
        f"{os.cpu_count()} (the core count), on Redis. *Completed* is by the worker's clock (the last result's "
        "`date_done`); the ceiling is cores / work time. "
        f"{settings.repeat} run(s), median."
    )
    return Section(
        key="cpu",
        title="CPU-bound tasks",
        method=method,
        body=body(summary, loops),
        data={
            "loops": loops,
            "runs": [asdict(f) for f in runs],
            "summary": [{**asdict(f), "rate": f.rate, "ceiling": f.ceiling} for f in summary],
        },
        draw=lambda img_dir: {
            "cpu-rate": plots.bar_chart(
                img_dir / "bench-cpu.png",
                [f"{f.system}\n{f.pool}" for f in summary],
                {"completed": [f.rate for f in summary]},
                f"CPU-bound tasks ({settings.cpu_ms:g} ms each) at -c {os.cpu_count()}",
                "tasks/s (higher is better)",
            )
        },
    )
