"""Soak test: keep a worker busy for a long time and report throughput and memory over time.

    .venv/bin/python scripts/soak.py                                  # 1 hour, embedded SQLite broker
    .venv/bin/python scripts/soak.py --duration 10m --broker redis://127.0.0.1:6379/9 --workers 4
    .venv/bin/python scripts/soak.py --duration 2h --csv soak.csv

The script writes a small task module to a temporary directory, starts the workers
(``celeriac worker``), and keeps ``--inflight`` tasks outstanding for ``--duration``. Every result is
checked. Each ``--every`` seconds it prints a line: tasks done, throughput over the interval, each
worker's resident memory (main process plus pool processes) and the queue length. At the end the
queue must be empty and every result correct; the exit status is 1 otherwise.

Not part of the test suite (it runs for an hour by default); tests/reliability/test_load.py is the
short version that CI runs.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASKS = """
from celeriac import Celery

app = Celery("soaktasks")


@app.task
def square(i):
    return i * i
"""


def parse_duration(text: str) -> float:
    """``3600``, ``90s``, ``10m``, ``2h`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 90s, 10m, 2h)")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children, in KiB (0 once it has gone)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        pids += [int(p) for p in children.read_text().split()]
    except OSError:
        pass
    total = 0
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=parse_duration, default=3600.0, help="how long to run (default 1h)")
    parser.add_argument("--broker", default=None, help="broker URL (default: a SQLite file in a temporary directory)")
    parser.add_argument("--backend", default=None, help="result backend URL (default: the broker URL)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size of each worker (default 2)")
    parser.add_argument("--pool", default="prefork", help="worker pool (default prefork)")
    parser.add_argument("--inflight", type=int, default=2000, help="tasks kept outstanding (default 2000)")
    parser.add_argument("--every", type=parse_duration, default=60.0, help="seconds between reports (default 60)")
    parser.add_argument("--csv", type=Path, default=None, help="also write the reports to this CSV file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="celeriac-soak-") as tmp:
        here = Path(tmp)
        (here / "soaktasks.py").write_text(TASKS)
        broker = args.broker or f"sqlite:///{here / 'soak.db'}"
        env = dict(os.environ, CELERIAC_BROKER_URL=broker, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join([str(here), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["CELERIAC_RESULT_BACKEND"] = args.backend or broker
        os.environ.update({k: env[k] for k in ("CELERIAC_BROKER_URL", "CELERIAC_RESULT_BACKEND", "PYTHONPATH")})
        sys.path.insert(0, str(here))
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celeriac",
                    "-A",
                    "soaktasks",
                    "worker",
                    "-l",
                    "warning",
                    "-P",
                    args.pool,
                    "-c",
                    str(args.concurrency),
                    "-n",
                    f"soak{k}@%h",
                ],
                cwd=here,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            for k in range(args.workers)
        ]
        try:
            return _run(args, broker, workers)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()


def _run(args: argparse.Namespace, broker_url: str, workers: list[subprocess.Popen[bytes]]) -> int:
    from soaktasks import app, square  # type: ignore[import-not-found]

    from celeriac.brokers import broker_class

    broker = broker_class(broker_url)(broker_url, {})
    backend = app.backend
    rows: list[dict[str, object]] = []
    print(f"soak: {args.workers} worker(s) x {args.concurrency} ({args.pool}) on {broker_url}, "
          f"{args.inflight} in flight, for {args.duration:.0f}s", flush=True)  # fmt: skip
    print(f"{'elapsed':>8} {'done':>10} {'tasks/s':>8} {'queue':>7}  worker RSS MiB", flush=True)
    started = time.monotonic()
    next_report = started + args.every
    last_done, last_time = 0, started
    outstanding: dict[str, int] = {}
    sent = done = wrong = 0
    sending = True
    while outstanding or sending:
        now = time.monotonic()
        if sending and now - started >= args.duration:
            sending = False
        while sending and len(outstanding) < args.inflight:
            outstanding[square.delay(sent).id] = sent
            sent += 1
        batch = list(outstanding)[:1000]
        finished = 0
        for task_id, meta in zip(batch, backend.load_many(batch), strict=True):
            if meta is not None and meta.ready:
                i = outstanding.pop(task_id)
                wrong += int(meta.status != "SUCCESS" or meta.result != i * i)
                backend.forget(task_id)  # the store stays small over hours
                finished += 1
        done += finished
        if any(w.poll() is not None for w in workers):
            print("soak: a worker exited", file=sys.stderr)
            return 1
        if now >= next_report or not (outstanding or sending):
            rate = (done - last_done) / max(now - last_time, 1e-9)
            mem = [rss_kib(w.pid) / 1024 for w in workers]
            queue = broker.queue_size("celery")
            rows.append({"elapsed_s": round(now - started), "done": done, "tasks_per_s": round(rate),
                         "queue": queue, **{f"worker{k}_rss_mib": round(m, 1) for k, m in enumerate(mem)}})  # fmt: skip
            print(f"{now - started:8.0f} {done:10d} {rate:8.0f} {queue:7d}  " + " ".join(f"{m:.1f}" for m in mem),
                  flush=True)  # fmt: skip
            last_done, last_time, next_report = done, now, now + args.every
        if not finished:
            time.sleep(0.05)
    queue = broker.queue_size("celery")
    broker.close()
    elapsed = time.monotonic() - started
    print(f"soak: {done} tasks in {elapsed:.0f}s ({done / elapsed:.0f} tasks/s), {wrong} wrong, queue left {queue}")
    if args.csv and rows:
        with args.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[-1]))
            writer.writeheader()
            writer.writerows(rows)
    return 0 if wrong == 0 and queue == 0 and done == sent else 1


if __name__ == "__main__":
    raise SystemExit(main())
