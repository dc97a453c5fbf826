"""Scenario cli: how long ``celeriac --help`` and ``celery --help`` take, the whole process included."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import progress
from bench.section import Section
from bench.tables import table

RUNS = 15
COMMANDS = {"celeriac": "celeriac", "celery": "celery"}


def command(system: str) -> list[str]:
    script = Path(sys.executable).parent / COMMANDS[system]
    return [str(script), "--help"] if script.exists() else [sys.executable, "-m", system, "--help"]


def wall_seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run(systems: tuple[str, ...]) -> Section:
    cmds = {system: command(system) for system in systems}
    times: dict[str, list[float]] = {system: [] for system in systems}
    for cmd in cmds.values():
        wall_seconds(cmd)  # warm the page cache
    for _ in range(RUNS):  # alternated, so a drift of the machine's speed hits both
        for system, cmd in cmds.items():
            times[system].append(wall_seconds(cmd))
    rows: list[list[str]] = []
    data: dict[str, Any] = {}
    for system, values in times.items():
        med = statistics.median(values)
        data[system] = {"median_s": med, "min_s": min(values), "max_s": max(values), "runs": values}
        progress(f"cli: {system} --help median {med * 1000:.0f} ms")
        rows.append(
            [system, f"`{Path(cmds[system][0]).name} --help`", f"{med * 1000:.0f}", f"{min(values) * 1000:.0f}"]
        )
    if "celery" in data and "celeriac" in data:
        data["ratio"] = data["celeriac"]["median_s"] / data["celery"]["median_s"]
    return Section(
        key="cli",
        title="Command-line start-up",
        method=f"Wall time of the whole process, {RUNS} runs each, the two commands alternated; median and minimum.",
        body=table(["system", "command", "median (ms)", "min (ms)"], rows) + "\n\nLower is better.",
        data=data,
    )
