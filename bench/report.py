"""Figures per run, their medians, ratios against Celery, and the tables, JSON, Markdown and plots."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

BASELINE = "celery"  # the system every ratio compares against


@dataclass
class Figures:
    """What one run of one system and pool measured (or, in a summary, the medians over the runs)."""

    system: str
    pool: str
    enqueue_rate: float  # tasks/s while sending
    e2e_rate: float  # tasks/s from the first send until the last result was fetched
    p50_ms: float
    p90_ms: float
    p99_ms: float
    rss_idle_mib: float  # the worker's tree after the warm-up, before the throughput scenario
    rss_peak_mib: float  # the worker's tree during the throughput scenario
    ready_seconds: float  # from sending the first ping until its answer

    @property
    def target(self) -> tuple[str, str]:
        return self.system, self.pool


NUMERIC_FIELDS = [f.name for f in fields(Figures) if f.name not in ("system", "pool")]


def medians(runs: Sequence[Figures]) -> list[Figures]:
    """One Figures per (system, pool), each field the median over that target's runs, in first-run order."""
    by_target: dict[tuple[str, str], list[Figures]] = {}
    for run in runs:
        by_target.setdefault(run.target, []).append(run)
    return [
        Figures(system, pool, **{name: statistics.median(getattr(r, name) for r in group) for name in NUMERIC_FIELDS})
        for (system, pool), group in by_target.items()
    ]


@dataclass
class Baselines:
    """Celery's best pool for each headline figure (None when Celery was not run)."""

    enqueue: Figures | None
    e2e: Figures | None
    p50: Figures | None
    by_pool: dict[str, Figures]


def baselines(summary: Sequence[Figures]) -> Baselines:
    celery = [f for f in summary if f.system == BASELINE]
    if not celery:
        return Baselines(None, None, None, {})
    return Baselines(
        enqueue=max(celery, key=lambda f: f.enqueue_rate),
        e2e=max(celery, key=lambda f: f.e2e_rate),
        p50=min(celery, key=lambda f: f.p50_ms),
        by_pool={f.pool: f for f in celery},
    )


def _ratio(value: float, base: Figures | None, key: Callable[[Figures], float]) -> float | None:
    return None if base is None or key(base) == 0 else value / key(base)


def ratios(row: Figures, base: Baselines) -> dict[str, float | None]:
    """Throughput: row / best Celery. Latency: row p50 / best Celery p50. RSS: row / Celery, same pool."""
    return {
        "enqueue_vs_best_celery": _ratio(row.enqueue_rate, base.enqueue, lambda f: f.enqueue_rate),
        "e2e_vs_best_celery": _ratio(row.e2e_rate, base.e2e, lambda f: f.e2e_rate),
        "p50_vs_best_celery": _ratio(row.p50_ms, base.p50, lambda f: f.p50_ms),
        "rss_peak_vs_celery_same_pool": _ratio(row.rss_peak_mib, base.by_pool.get(row.pool), lambda f: f.rss_peak_mib),
    }


# -- tables ----------------------------------------------------------------------------------------


def _x(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table with padded columns, readable as plain text too (first two columns left-aligned)."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i >= 2 else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _best_label(base: Figures | None) -> str:
    return "n/a (Celery not run)" if base is None else f"-P {base.pool}"


def throughput_table(summary: Sequence[Figures], base: Baselines) -> str:
    rows = []
    for f in summary:
        r = ratios(f, base)
        rows.append(
            [
                f.system,
                f.pool,
                f"{f.enqueue_rate:,.0f}",
                f"{f.e2e_rate:,.0f}",
                _x(r["enqueue_vs_best_celery"]),
                _x(r["e2e_vs_best_celery"]),
            ]
        )
    headers = [
        "system",
        "pool",
        "enqueue (tasks/s)",
        "end-to-end (tasks/s)",
        "enqueue / best Celery",
        "e2e / best Celery",
    ]
    note = (
        f"Best Celery: {_best_label(base.enqueue)} for enqueue, {_best_label(base.e2e)} for end-to-end."
        " Higher is better."
    )
    return _table(headers, rows) + "\n\n" + note


def latency_table(summary: Sequence[Figures], base: Baselines) -> str:
    rows = [
        [
            f.system,
            f.pool,
            f"{f.p50_ms:.2f}",
            f"{f.p90_ms:.2f}",
            f"{f.p99_ms:.2f}",
            _x(ratios(f, base)["p50_vs_best_celery"]),
        ]
        for f in summary
    ]
    headers = ["system", "pool", "p50 (ms)", "p90 (ms)", "p99 (ms)", "p50 / best Celery p50"]
    note = f"Best Celery: {_best_label(base.p50)}. Lower is better."
    return _table(headers, rows) + "\n\n" + note


def memory_table(summary: Sequence[Figures], base: Baselines) -> str:
    rows = []
    for f in summary:
        ratio = ratios(f, base)["rss_peak_vs_celery_same_pool"]
        shown = "-" if f.system == BASELINE else _x(ratio)
        rows.append([f.system, f.pool, f"{f.rss_idle_mib:.1f}", f"{f.rss_peak_mib:.1f}", shown])
    headers = ["system", "pool", "idle RSS (MiB)", "peak RSS (MiB)", "peak / Celery same pool"]
    note = "Worker process tree (main process + pool processes). Lower is better."
    return _table(headers, rows) + "\n\n" + note


def tables(summary: Sequence[Figures]) -> dict[str, str]:
    base = baselines(summary)
    return {
        "Throughput": throughput_table(summary, base),
        "Round-trip latency": latency_table(summary, base),
        "Worker memory": memory_table(summary, base),
    }


def render_text(summary: Sequence[Figures]) -> str:
    return "\n\n".join(f"## {title}\n\n{body}" for title, body in tables(summary).items())


# -- JSON ------------------------------------------------------------------------------------------


def to_json(meta: dict[str, Any], runs: Sequence[Figures], summary: Sequence[Figures]) -> dict[str, Any]:
    base = baselines(summary)
    return {
        **meta,
        "runs": [asdict(run) for run in runs],
        "summary": [{**asdict(f), "ratios": ratios(f, base)} for f in summary],
        "best_celery": {
            "enqueue_rate": base.enqueue.pool if base.enqueue else None,
            "e2e_rate": base.e2e.pool if base.e2e else None,
            "p50_ms": base.p50.pool if base.p50 else None,
        },
    }


# -- plots -----------------------------------------------------------------------------------------


SYSTEM_COLORS = {"celeriac": "tab:green", BASELINE: "tab:blue"}
PLOTS = {
    "throughput": "bench-throughput.png",
    "latency": "bench-latency-p50.png",
    "memory": "bench-rss-peak.png",
}


def _bar_chart(
    path: Path, summary: Sequence[Figures], series: dict[str, Callable[[Figures], float]], title: str, ylabel: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{f.system}\n{f.pool}" for f in summary]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(summary)), 4.0))
    for n, (name, value) in enumerate(series.items()):
        offsets = [i + (n - (len(series) - 1) / 2) * width for i in range(len(summary))]
        # One series: one colour per system. Several: one colour per series.
        colors = [SYSTEM_COLORS.get(f.system, "grey") for f in summary] if len(series) == 1 else None
        bars = ax.bar(offsets, [value(f) for f in summary], width, label=name, color=colors)
        ax.bar_label(bars, fmt="{:,.0f}" if max(value(f) for f in summary) >= 100 else "{:.2f}", fontsize=8)
    ax.set_xticks(range(len(summary)), labels)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_plots(summary: Sequence[Figures], img_dir: Path) -> dict[str, Path] | None:
    """Bar charts under ``img_dir``; None (with a message) when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("bench: matplotlib is not installed; skipping the plots (pip install matplotlib to get them)")
        return None
    img_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: img_dir / name for key, name in PLOTS.items()}
    rates = {"enqueue": lambda f: f.enqueue_rate, "end-to-end": lambda f: f.e2e_rate}
    _bar_chart(paths["throughput"], summary, rates, "Throughput (no-op tasks)", "tasks/s (higher is better)")
    p50 = {"p50": lambda f: f.p50_ms}
    _bar_chart(paths["latency"], summary, p50, "Round trip delay().get(), p50", "ms (lower is better)")
    rss = {"peak RSS": lambda f: f.rss_peak_mib}
    _bar_chart(paths["memory"], summary, rss, "Worker peak RSS (process tree)", "MiB (lower is better)")
    return paths


# -- Markdown --------------------------------------------------------------------------------------


INTRO = """\
# Benchmarks

`bench/` compares celeriac with Celery 5 on the same machine and the same Redis (broker and result
backend). For each system and worker pool it writes a task module (`@app.task def noop(i): return i`),
starts that system's worker as a subprocess (`python -m celeriac|celery -A <module> worker -l warning
-P <pool> -c <concurrency>`, every other setting left at its default), waits until the worker answers a
ping task, and measures from a client in the benchmark process:

- **throughput**: N no-op tasks sent with `delay()` one after the other; the *enqueue* rate is tasks per
  second while sending, the *end-to-end* rate counts from the first send until every result has been
  fetched with `.get()`;
- **round-trip latency**: sequential `noop.delay(i).get()` calls after a short warm-up; p50/p90/p99;
- **worker memory**: the summed VmRSS of the worker's process tree (main process and pool processes),
  sampled every 50 ms during the throughput scenario, and once when idle before it.

Every run starts a fresh worker on a flushed Redis database; the systems run one after the other, never
at the same time, round-robin over the repeats, and each figure is the median over the repeats. The
machine's cores are shared by the worker, the client and Redis, so the figures are noisy and say as
much about the client side as about the worker. Ratios compare with Celery's best pool for each figure
(memory: with Celery's same pool). To reproduce (matplotlib is needed for the plots only):

```bash
.venv/bin/pip install matplotlib
.venv/bin/python -m bench --markdown docs/benchmarks.md
```
"""


def _machine_lines(machine: dict[str, Any]) -> list[str]:
    memory = machine.get("memory_gib")
    return [
        f"- CPU: {machine['cpu']}, {machine['cores']} cores"
        + (f"; memory: {memory:.1f} GiB" if isinstance(memory, float) else ""),
        f"- Kernel: {machine['kernel']}; Python {machine['python']}",
        f"- celeriac {machine['celeriac']}; celery {machine['celery']}, kombu {machine['kombu']}; "
        f"redis-py {machine['redis_py']} (hiredis {machine['hiredis']}); Redis server {machine['redis_server']}",
    ]


def _settings_line(settings: dict[str, Any]) -> str:
    return (
        f"- Settings: {settings['tasks']} tasks per throughput run, {settings['roundtrips']} round trips "
        f"(after {settings['warmup_roundtrips']} warm-up), `-c {settings['concurrency']}`, "
        f"{settings['repeat']} run(s) per system and pool, median reported"
    )


def render_markdown(meta: dict[str, Any], summary: Sequence[Figures], plots: dict[str, Path] | None, doc: Path) -> str:
    lines = [
        INTRO,
        f"## Results of {meta['date'][:10]}",
        "",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}",
        *_machine_lines(meta["machine"]),
        _settings_line(meta["settings"]),
        "",
    ]
    for title, body in tables(summary).items():
        lines += [f"### {title}", "", body, ""]
    if plots:
        lines += ["### Plots", ""]
        for key, path in plots.items():
            rel = Path(os.path.relpath(path, doc.parent)).as_posix()
            lines += [f"![{key}]({rel})", ""]
    else:
        lines += ["(No plots: matplotlib was not installed when this was written.)", ""]
    return "\n".join(lines).rstrip() + "\n"
