"""The no-op figures (their medians and ratios against Celery), and the whole report: text, JSON, Markdown."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bench import plots
from bench.section import Section
from bench.tables import mib, ms, rate, table, times

BASELINE = "celery"  # the system every ratio compares against


@dataclass
class Figures:
    """What one run of one system and pool measured (or, in a summary, the medians over the runs).

    A figure of a scenario that was not selected (throughput or latency) is NaN.
    """

    system: str
    broker: str
    pool: str
    enqueue_rate: float  # tasks/s while sending
    e2e_rate: float  # tasks/s from the first send until the last result was fetched
    worker_rate: float  # tasks/s from the first send until the worker stored the last result
    p50_ms: float
    p90_ms: float
    p99_ms: float
    idle_p50_ms: float  # round trips made after a pause (sporadic tasks)
    rss_idle_mib: float  # the worker's tree after the warm-up, before the throughput scenario
    rss_peak_mib: float  # the worker's tree during the throughput scenario
    ready_seconds: float  # from sending the first ping until its answer

    @property
    def target(self) -> tuple[str, str, str]:
        return self.system, self.broker, self.pool


NUMERIC_FIELDS = [f.name for f in fields(Figures) if f.name not in ("system", "broker", "pool")]


def medians(runs: Sequence[Figures]) -> list[Figures]:
    """One Figures per (system, broker, pool), each field the median over its runs, in first-run order."""
    by_target: dict[tuple[str, str, str], list[Figures]] = {}
    for run in runs:
        by_target.setdefault(run.target, []).append(run)
    return [
        Figures(
            system,
            broker,
            pool,
            **{name: statistics.median(getattr(r, name) for r in group) for name in NUMERIC_FIELDS},
        )
        for (system, broker, pool), group in by_target.items()
    ]


@dataclass
class Baselines:
    """Celery's best pool on one broker for each headline figure (None when Celery was not run there)."""

    enqueue: Figures | None
    e2e: Figures | None
    worker: Figures | None
    p50: Figures | None
    by_pool: dict[str, Figures]


def baselines(summary: Sequence[Figures], broker: str) -> Baselines:
    """Celery's best pools on ``broker``."""
    celery = [f for f in summary if f.system == BASELINE and f.broker == broker]
    if not celery:
        return Baselines(None, None, None, None, {})
    return Baselines(
        enqueue=max(celery, key=lambda f: f.enqueue_rate),
        e2e=max(celery, key=lambda f: f.e2e_rate),
        worker=max(celery, key=lambda f: f.worker_rate),
        p50=min(celery, key=lambda f: f.p50_ms),
        by_pool={f.pool: f for f in celery},
    )


def _ratio(value: float, base: Figures | None, key: Callable[[Figures], float]) -> float | None:
    if base is None or key(base) == 0 or math.isnan(key(base)) or math.isnan(value):
        return None
    return value / key(base)


def ratios(row: Figures, base: Baselines) -> dict[str, float | None]:
    """Rates: row / best Celery. Latency: row p50 / best Celery p50. RSS: row / Celery, same pool. Same broker."""
    return {
        "enqueue_vs_best_celery": _ratio(row.enqueue_rate, base.enqueue, lambda f: f.enqueue_rate),
        "e2e_vs_best_celery": _ratio(row.e2e_rate, base.e2e, lambda f: f.e2e_rate),
        "worker_vs_best_celery": _ratio(row.worker_rate, base.worker, lambda f: f.worker_rate),
        "p50_vs_best_celery": _ratio(row.p50_ms, base.p50, lambda f: f.p50_ms),
        "rss_peak_vs_celery_same_pool": _ratio(row.rss_peak_mib, base.by_pool.get(row.pool), lambda f: f.rss_peak_mib),
        "rss_peak_vs_celery_prefork": _ratio(row.rss_peak_mib, base.by_pool.get("prefork"), lambda f: f.rss_peak_mib),
    }


def all_ratios(summary: Sequence[Figures]) -> list[dict[str, float | None]]:
    return [ratios(f, baselines(summary, f.broker)) for f in summary]


def best(
    summary: Sequence[Figures],
    system: str,
    key: Callable[[Figures], float],
    lowest: bool = False,
    broker: str = "redis",
) -> Figures | None:
    """The row of ``system`` on ``broker`` with the highest (or lowest) measured ``key``; None when there is none."""
    rows = [f for f in summary if f.system == system and f.broker == broker and not math.isnan(key(f))]
    if not rows:
        return None
    return min(rows, key=key) if lowest else max(rows, key=key)


# -- tables ----------------------------------------------------------------------------------------

BROKER_TITLES = {"redis": "Redis", "amqp": "RabbitMQ", "sqlite": "SQLite"}


def _best_label(base: Figures | None) -> str:
    return "n/a" if base is None else f"-P {base.pool}"


def _brokers(summary: Sequence[Figures]) -> list[str]:
    return list(dict.fromkeys(f.broker for f in summary))


def _best_note(summary: Sequence[Figures], what: Callable[[Baselines], str]) -> str:
    parts = [f"{BROKER_TITLES.get(b, b)}: {what(baselines(summary, b))}" for b in _brokers(summary)]
    return "Best Celery on the same broker - " + "; ".join(parts) + "."


def throughput_table(summary: Sequence[Figures]) -> str:
    rows = []
    for f, r in zip(summary, all_ratios(summary), strict=True):
        rows.append(
            [
                f.system,
                f"{BROKER_TITLES.get(f.broker, f.broker)} {f.pool}",
                rate(f.enqueue_rate),
                rate(f.e2e_rate),
                rate(f.worker_rate),
                times(r["enqueue_vs_best_celery"]),
                times(r["e2e_vs_best_celery"]),
                times(r["worker_vs_best_celery"]),
            ]
        )
    headers = [
        "system",
        "broker, pool",
        "enqueue (tasks/s)",
        "end-to-end (tasks/s)",
        "worker done (tasks/s)",
        "enqueue / best Celery",
        "e2e / best Celery",
        "worker / best Celery",
    ]
    note = _best_note(
        summary, lambda b: f"{_best_label(b.enqueue)} (enqueue), {_best_label(b.e2e)} (e2e), {_best_label(b.worker)}"
    )
    return table(headers, rows) + "\n\n" + note + " Higher is better."


def latency_table(summary: Sequence[Figures]) -> str:
    rows = [
        [
            f.system,
            f"{BROKER_TITLES.get(f.broker, f.broker)} {f.pool}",
            ms(f.p50_ms),
            ms(f.p90_ms),
            ms(f.p99_ms),
            times(r["p50_vs_best_celery"]),
            ms(f.idle_p50_ms),
        ]
        for f, r in zip(summary, all_ratios(summary), strict=True)
    ]
    headers = [
        "system",
        "broker, pool",
        "p50 (ms)",
        "p90 (ms)",
        "p99 (ms)",
        "p50 / best Celery p50",
        "p50 after idle (ms)",
    ]
    return table(headers, rows) + "\n\n" + _best_note(summary, lambda b: _best_label(b.p50)) + " Lower is better."


def memory_table(summary: Sequence[Figures]) -> str:
    rows = []
    for f, r in zip(summary, all_ratios(summary), strict=True):
        same = "-" if f.system == BASELINE else times(r["rss_peak_vs_celery_same_pool"])
        rows.append(
            [
                f.system,
                f"{BROKER_TITLES.get(f.broker, f.broker)} {f.pool}",
                mib(f.rss_idle_mib),
                mib(f.rss_peak_mib),
                same,
                times(r["rss_peak_vs_celery_prefork"]),
            ]
        )
    headers = ["system", "broker, pool", "idle RSS (MiB)", "peak RSS (MiB)", "/ Celery same pool", "/ Celery prefork"]
    note = (
        "Worker process tree (main process + pool processes) at `-c` as in the settings, during the throughput"
        " run. Lower is better."
    )
    return table(headers, rows) + "\n\n" + note


def _measured(summary: Sequence[Figures], key: Callable[[Figures], float]) -> bool:
    return any(not math.isnan(key(f)) for f in summary)


def tables(summary: Sequence[Figures]) -> dict[str, str]:
    """The no-op tables, each only when its scenario ran."""
    out = {}
    if _measured(summary, lambda f: f.e2e_rate):
        out["Throughput"] = throughput_table(summary)
    if _measured(summary, lambda f: f.p50_ms):
        out["Round-trip latency"] = latency_table(summary)
    if summary:
        out["Worker memory"] = memory_table(summary)
    return out


def render_text(summary: Sequence[Figures], sections: Sequence[Section] = ()) -> str:
    parts = [f"## {title}\n\n{body}" for title, body in tables(summary).items()]
    parts += [f"## {section.title}\n\n{section.body}" for section in sections]
    return "\n\n".join(parts)


# -- JSON ------------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """NaN (a figure not measured) as null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def to_json(
    meta: dict[str, Any], runs: Sequence[Figures], summary: Sequence[Figures], sections: Sequence[Section] = ()
) -> dict[str, Any]:
    data: dict[str, Any] = _json_safe(
        {
            **meta,
            "runs": [asdict(run) for run in runs],
            "summary": [{**asdict(f), "ratios": r} for f, r in zip(summary, all_ratios(summary), strict=True)],
            "best_celery": {
                broker: {
                    "enqueue_rate": base.enqueue.pool if base.enqueue else None,
                    "e2e_rate": base.e2e.pool if base.e2e else None,
                    "worker_rate": base.worker.pool if base.worker else None,
                    "p50_ms": base.p50.pool if base.p50 else None,
                }
                for broker in _brokers(summary)
                for base in [baselines(summary, broker)]
            },
            **{section.key: section.data for section in sections},
        }
    )
    return data


# -- plots -----------------------------------------------------------------------------------------


PLOTS = {
    "throughput": "bench-throughput.png",
    "latency": "bench-latency-p50.png",
    "memory": "bench-rss-peak.png",
}


def make_plots(summary: Sequence[Figures], img_dir: Path) -> dict[str, Path]:
    """Bar charts of the no-op figures under ``img_dir``, each only when its scenario ran."""
    labels = [f"{f.system}\n{BROKER_TITLES.get(f.broker, f.broker)}\n{f.pool}" for f in summary]
    paths = {}
    if _measured(summary, lambda f: f.e2e_rate):
        rates = {
            "enqueue": [f.enqueue_rate for f in summary],
            "end-to-end": [f.e2e_rate for f in summary],
            "worker done": [f.worker_rate for f in summary],
        }
        paths["throughput"] = plots.bar_chart(
            img_dir / PLOTS["throughput"], labels, rates, "Throughput (no-op tasks)", "tasks/s (higher is better)"
        )
    if _measured(summary, lambda f: f.p50_ms):
        p50 = {"p50": [f.p50_ms for f in summary]}
        paths["latency"] = plots.bar_chart(
            img_dir / PLOTS["latency"], labels, p50, "Round trip delay().get(), p50", "ms (lower is better)"
        )
    if summary:
        rss = {"peak RSS": [f.rss_peak_mib for f in summary]}
        paths["memory"] = plots.bar_chart(
            img_dir / PLOTS["memory"], labels, rss, "Worker peak RSS (process tree)", "MiB (lower is better)"
        )
    return paths


def draw_all(summary: Sequence[Figures], sections: Sequence[Section], img_dir: Path) -> dict[str, Path] | None:
    """Every plot of the report; None (with a message) when matplotlib is not installed."""
    if not plots.available():
        print("bench: matplotlib is not installed; skipping the plots (pip install matplotlib to get them)")
        return None
    paths = make_plots(summary, img_dir)
    for section in sections:
        if section.draw is not None:
            paths.update(section.draw(img_dir))
    return paths


# -- Markdown --------------------------------------------------------------------------------------


INTRO = """\
# Benchmarks

`bench/` compares celeriac with Celery 5 on the same machine, the same brokers and the same Redis result
backend, in one run. For each system, broker and worker pool it writes a task module
(`@app.task def noop(i): return i`, and the sleeping and CPU-bound tasks of the sections below), starts
that system's worker as a subprocess (`python -m celeriac|celery -A <module> worker -l warning -P <pool>
-c <concurrency>`, every other setting left at its default), waits until the worker answers a ping task,
and measures from a client in the benchmark process:

- **throughput**: N no-op tasks sent with `delay()` one after the other; the *enqueue* rate is tasks per
  second while sending (the client's `delay()` rate), the *end-to-end* rate counts from the first send
  until every result has been fetched with `.get()`, and *worker done* until the worker stored the last
  result (the latest `date_done` in the backend), which leaves the client's fetching out;
- **round-trip latency**: sequential `noop.delay(i).get()` calls after a short warm-up; p50/p90/p99;
  then *after idle*: the p50 of up to 100 more, each after a 50 ms pause, as sporadic tasks come (the
  worker has gone back to waiting on an empty queue);
- **worker memory**: the summed VmRSS of the worker's process tree (main process and pool processes),
  sampled every 50 ms during the throughput scenario, and once when idle before it.

The sections after those add the client's `delay()` with no worker running, the throughput run at
several prefetch multipliers, other task queues, io-bound and CPU-bound tasks, memory over many tasks,
the raw broker floor, command-line start-up and profiles of the hot path; each says how it was
measured. celeriac's `-P asyncio` runs `async def` tasks (`anoop`, `asleep`); every other pool runs
plain `def` tasks.
Celery runs on Redis and RabbitMQ; it has no embedded SQLite broker, so SQLite rows are celeriac's only.

Every run starts a fresh worker on a flushed broker; the systems run one after the other, never at the
same time, round-robin over the repeats, and each figure is the median over the repeats. The machine's
cores are shared by the worker, the client and the broker, so the figures are noisy and say as much
about the client side as about the worker. Ratios compare with Celery's best pool on the same broker
for each figure (memory: with Celery's same pool, and with Celery prefork). This whole page is written
by one command; the `bench` extra brings matplotlib for the plots, gevent for Celery's gevent pool, and
py-spy and pyinstrument for the profiles (a run without one skips what needs it and says so, but a run
that writes this page refuses to start without them, rather than write a page with holes):

```bash
.venv/bin/pip install -e '.[dev,bench]'
.venv/bin/python -m bench --markdown docs/benchmarks.md --json docs/benchmarks.json
```

`--scenarios throughput,latency,delay,prefetch,peers,io,cpu,memory,floor,profile,cli` picks the sections
(all by default), `--brokers redis,amqp,sqlite` the brokers of the throughput and latency tables, and
`python -m bench --help` lists the sizes. Dramatiq, Huey, RQ and arq run on the same Redis when installed
(`pip install -e '.[peers]'` and `pip install --no-deps arq`: arq pins redis-py below 6 but runs
on the redis-py that celeriac's `redis` extra installs).
"""

NOTES = Path(__file__).with_name("notes.md")  # the reading of the figures, written after a full run


def _machine_lines(machine: dict[str, Any]) -> list[str]:
    memory = machine.get("memory_gib")
    return [
        f"- CPU: {machine['cpu']}, {machine['cores']} cores"
        + (f"; memory: {memory:.1f} GiB" if isinstance(memory, float) else ""),
        f"- Kernel: {machine['kernel']}; Python {machine['python']}",
        f"- celeriac {machine['celeriac']} (orjson {machine.get('orjson', 'not installed')}); "
        f"celery {machine['celery']}, kombu {machine['kombu']}; "
        f"redis-py {machine['redis_py']} (hiredis {machine['hiredis']}); Redis server {machine['redis_server']}",
        f"- RabbitMQ server {machine.get('rabbitmq_server')} (celeriac: aio-pika {machine.get('aio_pika')}; "
        f"Celery and the floor: py-amqp {machine.get('amqp')}); SQLite {machine.get('sqlite')}",
    ]


def _settings_line(settings: dict[str, Any]) -> str:
    return (
        f"- Settings: {settings['tasks']:,} tasks per throughput run on Redis "
        f"({settings['other_broker_tasks']:,} on RabbitMQ and SQLite), {settings['roundtrips']:,} round trips "
        f"(after {settings['warmup_roundtrips']} warm-up), `-c {settings['concurrency']}`, "
        f"{settings['repeat']} run(s) per system and pool on Redis (one on the other brokers), median reported"
    )


def _images(paths: dict[str, Path], keys: Sequence[str], doc: Path) -> list[str]:
    lines = []
    for key in keys:
        if key in paths:
            rel = Path(os.path.relpath(paths[key], doc.parent)).as_posix()
            lines += [f"![{key}]({rel})", ""]
    return lines


def render_markdown(
    meta: dict[str, Any],
    summary: Sequence[Figures],
    plot_paths: dict[str, Path] | None,
    doc: Path,
    sections: Sequence[Section] = (),
) -> str:
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
    first = [section for section in sections if section.key == "targets"]
    for section in first:
        lines += [f"### {section.title}", "", section.method, "", section.body, ""]
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip(), ""]
    sections = [section for section in sections if section.key != "targets"]
    for title, body in tables(summary).items():
        lines += [f"### {title}", "", body, ""]
    if plot_paths is None:
        lines += ["(No plots: matplotlib was not installed when this was written.)", ""]
    elif summary:
        lines += ["### Plots", "", *_images(plot_paths, list(PLOTS), doc)]
    for section in sections:
        lines += [f"### {section.title}", "", section.method, "", section.body, ""]
        if plot_paths:
            lines += _images(plot_paths, [k for k in plot_paths if k.startswith(section.key + "-")], doc)
    return "\n".join(lines).rstrip() + "\n"
