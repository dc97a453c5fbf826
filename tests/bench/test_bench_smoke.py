"""The benchmark script runs end to end on the real Redis (a smoke test: nothing about speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.redis.conftest import REDIS_HOST, REDIS_PORT, redis_available

SMOKE_DB = 13  # not the benchmark's default (14) nor the Redis tests' (11)

FIGURES = [
    "enqueue_rate",
    "e2e_rate",
    "worker_rate",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "idle_p50_ms",
    "rss_idle_mib",
    "rss_peak_mib",
    "ready_seconds",
]


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    if not redis_available():
        pytest.fail(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT} (scripts/services starts it)")
    redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{SMOKE_DB}"
    cmd = [sys.executable, "-m", "bench", "--systems", "celeriac", "--repeat", "1", "--redis-url", redis_url, *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the benchmark stops its worker before it exits
        stdout, stderr = proc.communicate(timeout=15)
        pytest.fail(f"the benchmark took over 100 s:\n{stdout}{stderr}")
    assert proc.returncode == 0, stdout + stderr
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def test_bench_runs_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_bench(
        *["--scenarios", "throughput,latency,delay", "--brokers", "redis", "--pools", "solo"],
        *["--tasks", "50", "--roundtrips", "20", "--json", str(out)],
    )
    assert "Throughput" in proc.stdout and "Round-trip latency" in proc.stdout
    assert "delay() on its own" in proc.stdout

    data = json.loads(out.read_text())
    assert {
        "command",
        "date",
        "machine",
        "settings",
        "runs",
        "summary",
        "best_celery",
        "targets",
        "delay",
    } <= data.keys()
    (alone,) = data["delay"]["summary"]  # celeriac alone: the queue held every message of each round
    assert (alone["system"], alone["broker"], alone["tasks"]) == ("celeriac", "redis", 50) and alone["rate"] > 0
    assert data["delay"]["ratios"] == {}
    assert data["settings"]["tasks"] == 50 and data["settings"]["roundtrips"] == 20
    assert data["machine"]["celeriac"] and data["machine"]["redis_server"]
    assert len(data["runs"]) == 1 and len(data["summary"]) == 1
    for row in [*data["runs"], *data["summary"]]:
        assert (row["system"], row["broker"], row["pool"]) == ("celeriac", "redis", "solo")
        for name in FIGURES:
            assert row[name] > 0, name
    # No Celery run, so no ratio against it.
    ratios = data["summary"][0]["ratios"]
    assert {v for k, v in ratios.items() if "celery" in k} == {None}


def test_bench_prefetch_section_runs_each_multiplier(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_bench(
        *["--scenarios", "prefetch", "--brokers", "redis", "--other-broker-tasks", "50", "--json", str(out)]
    )
    data = json.loads(out.read_text())
    # One threads worker per prefetch multiplier; each reports the window it was started with.
    prefetch = data["prefetch"]
    assert prefetch["multipliers"] == [1, 4, 16, 64] and prefetch["pool"] == "threads"
    assert [(r["broker"], r["multiplier"]) for r in prefetch["runs"]] == [("redis", m) for m in (1, 4, 16, 64)]
    assert [r["prefetch_count"] for r in prefetch["runs"]] == [
        r["concurrency"] * r["multiplier"] for r in prefetch["runs"]
    ]
    assert all(r["tasks"] == 50 and r["e2e_rate"] > 0 and r["worker_rate"] > 0 for r in prefetch["runs"])
    assert "Prefetch window" in proc.stdout


def test_bench_other_scenarios_write_markdown(tmp_path: Path) -> None:
    doc, out = tmp_path / "benchmarks.md", tmp_path / "bench.json"
    run_bench(
        *["--scenarios", "io,cpu,memory,floor,cli", "--amqp-url", "none", "--roundtrips", "20"],
        *["--io-tasks", "20", "--io-concurrency", "5", "--io-sleep-ms", "10", "--cpu-tasks", "10", "--cpu-ms", "1"],
        *["--memory-tasks", "200", "--floor-messages", "1000", "--json", str(out), "--markdown", str(doc)],
    )
    data = json.loads(out.read_text())
    assert {"io", "cpu", "memory", "floor", "cli", "targets"} <= data.keys()
    assert {row["pool"] for row in data["io"]["summary"]} == {"asyncio", "threads"}
    assert all(row["rate"] > 0 for row in [*data["io"]["summary"], *data["cpu"]["summary"]])
    assert all(row["end_mib"] > 0 for row in data["memory"]["summary"])
    assert [row["broker"] for row in data["floor"]["summary"]] == ["redis"]
    text = doc.read_text()
    for title in ("Targets", "io-bound tasks", "CPU-bound tasks", "Worker memory over many tasks", "Raw broker floor"):
        assert f"### {title}" in text, title


def test_bench_measures_the_other_task_queues(tmp_path: Path) -> None:
    """Dramatiq, Huey, RQ and arq (installed by scripts/bootstrap) each run a batch and round trips."""
    out = tmp_path / "bench.json"
    proc = run_bench("--scenarios", "peers", "--other-broker-tasks", "30", "--roundtrips", "10", "--json", str(out))
    peers = json.loads(out.read_text())["peers"]
    assert peers["notes"] == [], peers["notes"]  # none skipped, none failed
    assert [row["system"] for row in peers["summary"]] == ["dramatiq", "huey", "rq", "arq"]
    for row in peers["summary"]:
        assert row["tasks"] == 30 and row["e2e_rate"] > 0 and row["p50_ms"] > 0 and row["rss_peak_mib"] > 0, row
    assert "Other task queues" in proc.stdout
