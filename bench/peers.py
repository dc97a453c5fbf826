"""Scenario peers: other Python task queues on the same Redis, with results (Dramatiq, Huey, RQ, arq).

Each peer gets a task module like celeriac's and Celery's (a no-op task that returns its argument,
its result stored in Redis), its own worker command at ``-c`` workers, and the same two timed loops:
a batch of tasks (enqueue rate, end-to-end rate until every result is fetched) and sequential round
trips. A peer that is not installed is skipped and the report says so. arq's client is asyncio only:
its calls run to completion on an event loop of the client's own, one call at a time like the others.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import plots, scenarios
from bench.brokers import flush_redis
from bench.core import mib
from bench.harness import progress, retrying, worker_env
from bench.procs import RssSampler, Worker, WorkerError, descendants, tree_rss_kib
from bench.report import Figures
from bench.section import Section
from bench.settings import Settings
from bench.stats import medians, percentile
from bench.tables import ms, rate, table, times

PEERS = ("dramatiq", "huey", "rq", "arq")
ARQ_POLL = 0.005  # seconds between two polls of arq's worker queue and of a job's result (its default is 0.5)
GET_TIMEOUT_MS = 300_000
ARQ_MAX_JOBS = 10  # arq's default: jobs run at once in its one process

MODULES = {
    "dramatiq": """\
import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

broker = RedisBroker(url={url!r})
broker.add_middleware(Results(backend=RedisBackend(url={url!r})))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True, max_retries=0)
def noop(i):
    return i
""",
    "huey": """\
from huey import RedisHuey

huey = RedisHuey("bench", url={url!r})


@huey.task()
def noop(i):
    return i
""",
    "rq": """\
def noop(i):
    return i
""",
    "arq": """\
from arq.connections import RedisSettings

REDIS = RedisSettings.from_dsn({url!r})
LOGGING = {{"version": 1, "loggers": {{"arq": {{"level": "WARNING"}}}}}}  # no line per job, like the others' -q


async def noop(ctx, i):
    return i


class WorkerSettings:
    functions = [noop]
    redis_settings = REDIS
    max_jobs = {max_jobs}
    poll_delay = {poll}
""",
}


def worker_cmd(peer: str, module: str, concurrency: int, url: str) -> list[str]:
    bin_dir = Path(sys.executable).parent
    if peer == "dramatiq":
        return [str(bin_dir / "dramatiq"), module, "--processes", str(concurrency), "--threads", "1"]
    if peer == "huey":
        return [str(bin_dir / "huey_consumer"), f"{module}.huey", "-w", str(concurrency), "-k", "process", "-q"]
    if peer == "arq":  # one asyncio process; concurrency is its max_jobs (default 10)
        return [str(bin_dir / "arq"), f"{module}.WorkerSettings", "--custom-log-dict", f"{module}.LOGGING"]
    # rq: one work horse process forked per job (its default), `worker-pool` for C of them
    return [str(bin_dir / "rq"), "worker-pool", "-u", url, "-n", str(concurrency), "-q", "default"]


class PeerClient:
    """send(i) -> handle and fetch(handle) -> result for one peer, from its task module."""

    def __init__(self, peer: str, module: str, url: str) -> None:
        self.peer = peer
        self.mod: Any = importlib.import_module(module)
        self.url = url
        if peer == "rq":
            import redis
            import rq

            self.conn = redis.Redis.from_url(url)
            self.queue = rq.Queue("default", connection=self.conn)
        if peer == "arq":
            import asyncio

            from arq import create_pool

            self.loop = asyncio.new_event_loop()
            try:
                self.pool = self.loop.run_until_complete(create_pool(self.mod.REDIS))
            except BaseException:
                self.loop.close()
                raise

    def close(self) -> None:
        if self.peer == "arq":
            self.loop.run_until_complete(self.pool.aclose())
            self.loop.close()

    def sender(self) -> Callable[[int], Any]:
        if self.peer == "dramatiq":
            return lambda i: self.mod.noop.send(i)
        if self.peer == "huey":
            return lambda i: self.mod.noop(i)
        if self.peer == "arq":
            return lambda i: self.loop.run_until_complete(self.pool.enqueue_job("noop", i))
        return lambda i: self.queue.enqueue(self.mod.noop, i)

    def fetch(self, handle: Any) -> object:
        if self.peer == "dramatiq":
            return handle.get_result(block=True, timeout=GET_TIMEOUT_MS)
        if self.peer == "huey":
            return handle.get(blocking=True, timeout=GET_TIMEOUT_MS / 1000)
        if self.peer == "arq":
            return self.arq_result(handle, GET_TIMEOUT_MS / 1000)
        deadline = time.monotonic() + GET_TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            result = handle.latest_result(timeout=1)
            if result is not None:
                return result.return_value
        raise WorkerError("rq: no result")

    def arq_result(self, job: Any, timeout: float) -> object:
        return self.loop.run_until_complete(job.result(timeout=timeout, poll_delay=ARQ_POLL))


def ready(client: PeerClient, worker: Worker) -> float:
    start = time.perf_counter()
    handle = client.sender()(-1)
    deadline = time.monotonic() + scenarios.READY_TIMEOUT
    while True:
        worker.check_alive()
        try:
            if client.peer == "dramatiq":
                value = handle.get_result(block=True, timeout=1000)
            elif client.peer == "huey":
                value = handle.get(blocking=True, timeout=1)
            elif client.peer == "arq":
                value = client.arq_result(handle, 1)
            else:
                result = handle.latest_result(timeout=1)
                value = None if result is None else result.return_value
            if value == -1:
                return time.perf_counter() - start
        except Exception:
            pass  # not done yet (each peer has its own timeout error)
        if time.monotonic() > deadline:
            raise WorkerError(f"{client.peer}: the worker did not answer:\n{worker.log_tail()}")


@dataclass
class PeerFigures:
    system: str
    pool: str
    tasks: int
    enqueue_rate: float
    e2e_rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    rss_peak_mib: float


def run_once(peer: str, settings: Settings, workdir: Path, module: str) -> PeerFigures:
    flush_redis(settings.redis_url)
    client = PeerClient(peer, module, settings.redis_url)
    cmd = worker_cmd(peer, module, settings.concurrency, settings.redis_url)
    tasks = settings.other_broker_tasks
    try:
        with Worker(cmd, workdir, worker_env(workdir), f"{peer}-c{settings.concurrency}") as worker:
            ready(client, worker)
            scenarios.timed_roundtrips(client.sender(), client.fetch, scenarios.WARMUP_ROUNDTRIPS)
            gc.collect()
            with RssSampler(worker.pid) as sampler:
                result = scenarios.batch(client.sender(), client.fetch, tasks)
            worker.check_alive()
            latencies = scenarios.timed_roundtrips(client.sender(), client.fetch, settings.roundtrips)
            peak = max(sampler.peak_kib, tree_rss_kib(descendants(worker.pid))[0])
    finally:
        client.close()
    pool = {"dramatiq": "processes", "huey": "process", "rq": "worker-pool", "arq": "asyncio"}[peer]
    return PeerFigures(
        system=peer,
        pool=pool,
        tasks=tasks,
        enqueue_rate=result.enqueue_rate,
        e2e_rate=result.e2e_rate,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        rss_peak_mib=mib(peak),
    )


def run(settings: Settings, workdir: Path, core: list[Figures]) -> Section:
    notes, installed = [], []
    for peer in PEERS:
        if importlib.util.find_spec(peer) is None:
            notes.append(f"{peer} is not installed: not run (pip install {peer}).")
        else:
            installed.append(peer)
    modules = {}
    for peer in installed:
        modules[peer] = f"bench_tasks_{peer}"
        source = MODULES[peer].format(url=settings.redis_url, max_jobs=ARQ_MAX_JOBS, poll=ARQ_POLL)
        (workdir / f"{modules[peer]}.py").write_text(source)
    runs, failed = [], set()
    for repeat in range(1, settings.repeat + 1):
        for peer in [p for p in installed if p not in failed]:
            progress(f"peers {repeat}/{settings.repeat}: {peer} -c {settings.concurrency}")
            try:
                module = modules[peer]
                figures = retrying("the run", run_once, peer, settings, workdir, module)
            except (WorkerError, Exception) as exc:  # a peer's failure is reported, not fatal
                notes.append(f"{peer} failed: {str(exc).splitlines()[0]}")
                failed.add(peer)
                continue
            progress(f"  enqueue {figures.enqueue_rate:,.0f}/s, end-to-end {figures.e2e_rate:,.0f}/s, "
                     f"p50 {figures.p50_ms:.2f} ms")  # fmt: skip
            runs.append(figures)
    summary = medians(runs, key=lambda f: f.system)
    ours = [f for f in core if f.broker == "redis" and f.system in ("celeriac", "celery")]
    shown: list[Figures | PeerFigures] = [*ours, *summary]
    rows = [
        [f.system, f.pool, rate(f.enqueue_rate), rate(f.e2e_rate), ms(f.p50_ms), ms(f.p99_ms), f"{f.rss_peak_mib:.1f}"]
        for f in shown
    ]
    best_ours = max((f.e2e_rate for f in ours if f.system == "celeriac"), default=None)
    for row, f in zip(rows, shown, strict=True):
        row.append(times(best_ours / f.e2e_rate if best_ours and f.e2e_rate else None))
    headers = ["system", "pool", "enqueue (tasks/s)", "end-to-end (tasks/s)", "p50 (ms)", "p99 (ms)", "peak RSS (MiB)"]
    headers.append("best celeriac e2e / this")
    method = (
        f"Dramatiq (`--processes {settings.concurrency} --threads 1`, Results middleware on Redis), Huey "
        f"(`-w {settings.concurrency} -k process`), RQ (`worker-pool -n {settings.concurrency}`, a process forked "
        f"per job) and arq (one asyncio process, `max_jobs = {ARQ_MAX_JOBS}`, its queue and results polled every "
        f"{ARQ_POLL * 1000:g} ms instead of its default 500 ms), each with a no-op task whose result is stored in "
        f"the same Redis; {settings.other_broker_tasks:,} tasks per batch and {settings.roundtrips:,} round trips, "
        f"{settings.repeat} run(s), median. celeriac's and Celery's rows are those of the throughput table above "
        "(their batches are larger)."
    )
    return Section(
        key="peers",
        title="Other task queues",
        method=method,
        body=table(headers, rows)
        + "\n\nHigher rates and lower latency are better."
        + "".join(f"\n\n{n}" for n in notes),
        data={"runs": [asdict(f) for f in runs], "summary": [asdict(f) for f in summary], "notes": notes},
        draw=(
            (
                lambda img_dir: {
                    "peers-e2e": plots.bar_chart(
                        img_dir / "bench-peers.png",
                        [f"{f.system}\n{f.pool}" for f in shown],
                        {"end-to-end": [f.e2e_rate for f in shown]},
                        "End-to-end throughput on Redis, no-op tasks with results",
                        "tasks/s (higher is better)",
                    )
                }
            )
            if summary
            else None
        ),
    )
