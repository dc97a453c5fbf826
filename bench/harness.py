"""What every scenario shares: a clean environment, a flushed Redis, and a worker that has answered a ping."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from bench import scenarios
from bench.brokers import Broker, flush_redis
from bench.procs import Worker, worker_command

ROOT = Path(__file__).resolve().parent.parent


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


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
    flush_redis(redis_url)


Loaded = dict[tuple[str, str], scenarios.Client]  # (system, broker name) -> its client


@contextmanager
def clients(systems: Sequence[str], brokers: Sequence[Broker], workdir: Path) -> Iterator[Loaded]:
    """Write a task module per system and broker into ``workdir`` and import it; close the apps afterwards."""
    sys.path.insert(0, str(workdir))
    loaded: Loaded = {}
    try:
        for broker in brokers:
            for system in systems:
                if broker.supports(system):
                    module = scenarios.write_task_module(workdir, system, broker)
                    loaded[system, broker.name] = scenarios.load_client(system, broker, module)
        yield loaded
    finally:
        gc.collect()  # Celery's AsyncResult.__del__ needs its app open
        for client in loaded.values():
            client.close()
        sys.path.remove(str(workdir))


@contextmanager
def ready_worker(
    client: scenarios.Client, pool: str, concurrency: int, workdir: Path, options: Sequence[str] = ()
) -> Iterator[tuple[Worker, float]]:
    """A fresh worker on a flushed broker that has answered a ping and a warm-up: (worker, ready seconds).

    ``options``: more worker options, the same for both systems (e.g. ``--prefetch-multiplier 16``)."""
    client.broker.flush()
    cmd = [*worker_command(client.system, client.module, pool, concurrency), *options]
    name = "-".join([client.system, client.broker.name, pool, f"c{concurrency}", *(o.lstrip("-") for o in options)])
    with Worker(cmd, workdir, worker_env(workdir), name) as worker:
        ready = scenarios.wait_until_ready(client, worker)
        scenarios.warm_up(client, pool=pool)
        yield worker, ready


T = TypeVar("T")
RETRIES = 2  # another run after a failure (a broker restarted under the benchmark, say), twice at most


def retrying(what: str, run: Callable[..., T], *args: Any) -> T:
    """``run(*args)``, run again when it fails: one lost connection (a restarted broker) must not sink the run.

    A run that fails every time raises its last error. The worker of a failed run has been stopped by then.
    """
    for attempt in range(RETRIES + 1):
        try:
            return run(*args)
        except Exception as exc:
            if attempt == RETRIES:
                raise
            progress(f"{what} failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}); running it again")
            time.sleep(3.0)
    raise AssertionError("unreachable")
