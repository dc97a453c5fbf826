"""Scenario memory: the worker's RSS over many no-op tasks (a leak check).

The client sends ``--memory-tasks`` no-op tasks in chunks, fetching each chunk's results before the
next, so the queue stays short and the worker's memory reflects what it keeps, not what waits.
The summed RSS of the worker's process tree is read after every chunk. Growth is the RSS at the end
minus the RSS after the first tenth (by then caches and allocator pools have grown to their size).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import plots, scenarios
from bench.core import mib
from bench.harness import Loaded, progress, ready_worker, retrying
from bench.procs import RssSampler, descendants, tree_pss_kib, tree_rss_kib
from bench.section import Section
from bench.settings import Settings
from bench.tables import table

TARGETS = (("celeriac", "prefork"), ("celeriac", "threads"), ("celeriac", "asyncio"), ("celery", "prefork"))
CHUNK = 1000


@dataclass
class MemoryFigures:
    system: str
    pool: str
    concurrency: int
    tasks: int
    idle_mib: float  # after the warm-up
    peak_mib: float  # sampled every 50 ms through the run
    tenth_mib: float  # after the first tenth of the tasks
    end_mib: float  # after all of them
    pss_end_mib: float  # summed PSS after all of them: shared pages divided among their sharers
    curve: list[tuple[int, float]] = field(default_factory=list)  # (tasks done, MiB) after each chunk

    @property
    def growth_mib(self) -> float:
        return self.end_mib - self.tenth_mib


def run_once(client: scenarios.Client, pool: str, settings: Settings, workdir: Path) -> MemoryFigures:
    task = scenarios.noop_task(client, pool)
    total = settings.memory_tasks
    curve: list[tuple[int, float]] = []
    with ready_worker(client, pool, settings.concurrency, workdir) as (worker, _ready):
        idle = mib(tree_rss_kib(descendants(worker.pid))[0])
        with RssSampler(worker.pid) as sampler:
            for start in range(0, total, CHUNK):
                handles = [task.delay(i) for i in range(start, min(start + CHUNK, total))]
                for i, handle in enumerate(handles, start):
                    scenarios.check_value(scenarios.celery_fetch(handle), i)
                del handles
                worker.check_alive()
                done = min(start + CHUNK, total)
                curve.append((done, mib(tree_rss_kib(descendants(worker.pid))[0])))
                if done % (total // 10 or 1) < CHUNK:
                    progress(f"  {done:,} tasks: {curve[-1][1]:.1f} MiB")
                    gc.collect()
        pss_end = mib(tree_pss_kib(descendants(worker.pid)))
    tenth = next(m for n, m in curve if n >= total // 10)
    return MemoryFigures(
        system=client.system,
        pool=pool,
        concurrency=settings.concurrency,
        tasks=total,
        idle_mib=idle,
        peak_mib=max(mib(sampler.peak_kib), idle),
        tenth_mib=tenth,
        end_mib=curve[-1][1],
        pss_end_mib=pss_end,
        curve=curve,
    )


def celery_prefork(summary: Sequence[MemoryFigures]) -> MemoryFigures | None:
    return next((f for f in summary if f.system == "celery" and f.pool == "prefork"), None)


def body(summary: Sequence[MemoryFigures]) -> str:
    base = celery_prefork(summary)
    rows = [
        [
            f.system,
            f.pool,
            str(f.concurrency),
            f"{f.idle_mib:.1f}",
            f"{f.peak_mib:.1f}",
            f"{f.tenth_mib:.1f}",
            f"{f.end_mib:.1f}",
            f"{f.growth_mib:+.1f}",
            f"{f.peak_mib / base.peak_mib:.2f}x" if base else "n/a",
            f"{f.pss_end_mib:.1f}",
        ]
        for f in summary
    ]
    headers = [
        "system",
        "pool",
        "-c",
        "idle (MiB)",
        "peak (MiB)",
        "after 1/10 (MiB)",
        "after all (MiB)",
        "growth (MiB)",
        "peak / Celery prefork",
        "PSS after all (MiB)",
    ]
    note = (
        "Worker process tree, summed VmRSS (a page shared by several processes counts in each). Lower is "
        "better; growth near 0 means no leak. The last column, for information only, is the summed PSS "
        "(each shared page divided among the processes sharing it) after all the tasks; the ratio is "
        "taken on VmRSS."
    )
    return table(headers, rows) + "\n\n" + note


def draw(summary: Sequence[MemoryFigures], img_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.0))
    for f in summary:
        ax.plot([n for n, _ in f.curve], [m for _, m in f.curve], label=f"{f.system} -P {f.pool}")
    ax.set_title(f"Worker RSS over {summary[0].tasks:,} no-op tasks (process tree)")
    ax.set_xlabel("tasks done")
    ax.set_ylabel("MiB")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    path = img_dir / "bench-memory-leak.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"memory-leak": path}


def run(settings: Settings, loaded: Loaded, workdir: Path) -> Section:
    summary = []
    for system, pool in TARGETS:
        if system in settings.systems:
            progress(f"memory: {system} -P {pool} -c {settings.concurrency}, {settings.memory_tasks:,} tasks")
            client = loaded[system, "redis"]
            summary.append(retrying("the run", run_once, client, pool, settings, workdir))
    method = (
        f"{settings.memory_tasks:,} no-op tasks on Redis at `-c {settings.concurrency}`, sent in chunks of {CHUNK}; "
        "each chunk's results are fetched before the next chunk is sent. RSS is the worker's process tree, "
        "read after every chunk (and sampled every 50 ms for the peak). One run each."
    )
    return Section(
        key="memory",
        title="Worker memory over many tasks",
        method=method,
        body=body(summary),
        data={"summary": [{**asdict(f), "growth_mib": f.growth_mib} for f in summary]},
        draw=(lambda img_dir: draw(summary, img_dir)) if summary and plots.available() else None,
    )
