"""The no-op scenarios: throughput (with the worker's peak RSS) and sequential round-trip latency."""

from __future__ import annotations

import gc
from pathlib import Path

from bench import scenarios
from bench.harness import Loaded, progress, ready_worker, retrying
from bench.procs import RssSampler, descendants, tree_rss_kib
from bench.report import Figures
from bench.settings import Settings
from bench.stats import percentile

NAN = float("nan")  # a figure of a scenario that was not selected


def mib(kib: float) -> float:
    return kib / 1024.0


def run_once(settings: Settings, client: scenarios.Client, pool: str, workdir: Path) -> Figures:
    """A fresh worker on a flushed broker: ping, warm up, throughput (RSS sampled), round trips."""
    with ready_worker(client, pool, settings.concurrency, workdir) as (worker, ready):
        idle_kib, _ = tree_rss_kib(descendants(worker.pid))
        throughput, worker_rate, peak_kib = None, NAN, idle_kib
        if settings.wants("throughput"):
            gc.collect()
            with RssSampler(worker.pid) as sampler:
                throughput = scenarios.throughput(client, settings.tasks_on(client.broker.name), pool)
            peak_kib = max(sampler.peak_kib, idle_kib)
            worker.check_alive()
            worker_rate = scenarios.worker_rate(throughput, client.broker.result_url)
        latencies: list[float] = []
        idle: list[float] = []
        if settings.wants("latency"):
            gc.collect()
            scenarios.warm_up(client, pool=pool)
            latencies = scenarios.roundtrips(client, settings.roundtrips, pool)
            idle = scenarios.idle_roundtrips(client, min(scenarios.IDLE_ROUNDTRIPS, settings.roundtrips), pool)
    return Figures(
        system=client.system,
        broker=client.broker.name,
        pool=pool,
        enqueue_rate=throughput.enqueue_rate if throughput else NAN,
        e2e_rate=throughput.e2e_rate if throughput else NAN,
        worker_rate=worker_rate,
        p50_ms=percentile(latencies, 50) if latencies else NAN,
        p90_ms=percentile(latencies, 90) if latencies else NAN,
        p99_ms=percentile(latencies, 99) if latencies else NAN,
        idle_p50_ms=percentile(idle, 50) if idle else NAN,
        rss_idle_mib=mib(idle_kib),
        rss_peak_mib=mib(peak_kib),
        ready_seconds=ready,
    )


def run_all(settings: Settings, loaded: Loaded, workdir: Path) -> list[Figures]:
    """Every broker, system and pool once per repeat (round-robin), one worker at a time.

    Redis runs ``--repeat`` times; the other brokers once each (they are there to compare brokers).
    """
    runs = []
    for broker in settings.brokers:
        repeats = settings.repeat if broker == "redis" else 1
        for repeat in range(1, repeats + 1):
            for system in settings.systems:
                if (system, broker) not in loaded:
                    continue
                for pool in settings.pools_of(system):
                    progress(f"{broker} {repeat}/{repeats}: {system} -P {pool} -c {settings.concurrency}")
                    client = loaded[system, broker]
                    figures = retrying("the run", run_once, settings, client, pool, workdir)
                    progress(
                        f"  enqueue {figures.enqueue_rate:,.0f}/s, end-to-end {figures.e2e_rate:,.0f}/s "
                        f"(worker {figures.worker_rate:,.0f}/s), p50 {figures.p50_ms:.2f} ms, "
                        f"peak RSS {figures.rss_peak_mib:.1f} MiB"
                    )
                    runs.append(figures)
    return runs
