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

FIGURES = ["enqueue_rate", "e2e_rate", "p50_ms", "p90_ms", "p99_ms", "rss_idle_mib", "rss_peak_mib", "ready_seconds"]


def test_bench_runs_and_writes_json(tmp_path: Path) -> None:
    if not redis_available():
        pytest.fail(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT} (scripts/services starts it)")
    out = tmp_path / "bench.json"
    args = ["--tasks", "50", "--roundtrips", "20", "--repeat", "1", "--systems", "celeriac", "--pools", "solo"]
    args += ["--redis-url", f"redis://{REDIS_HOST}:{REDIS_PORT}/{SMOKE_DB}", "--json", str(out)]
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Throughput" in proc.stdout and "Round-trip latency" in proc.stdout

    data = json.loads(out.read_text())
    assert {"command", "date", "machine", "settings", "runs", "summary", "best_celery"} <= data.keys()
    assert data["settings"]["tasks"] == 50 and data["settings"]["roundtrips"] == 20
    assert data["machine"]["celeriac"] and data["machine"]["redis_server"]
    assert len(data["runs"]) == 1 and len(data["summary"]) == 1
    for row in [*data["runs"], *data["summary"]]:
        assert (row["system"], row["pool"]) == ("celeriac", "solo")
        for name in FIGURES:
            assert row[name] > 0, name
    # No Celery run, so no ratio against it.
    assert set(data["summary"][0]["ratios"].values()) == {None}
