#!/usr/bin/env python3
"""Fuzz the message decoder for a long time (atheris, coverage-guided).

    .venv/bin/python scripts/fuzz.py                       # every target, 10 minutes each
    .venv/bin/python scripts/fuzz.py protocol --time 1h    # one target, an hour
    .venv/bin/python scripts/fuzz.py redis --jobs 4        # four processes sharing one corpus

Targets are in ``tests/reliability/fuzz_targets.py`` (``redis``, ``sqs``, ``amqp``, ``protocol``).
Each target's corpus is kept between runs in ``--corpus-dir`` (``~/.cache/celeriac-fuzz``), seeded
with real celeriac and Celery messages; a failing input is written to ``--artifacts`` as
``crash-<sha1>`` (or ``timeout-``, ``oom-``) and the target's run stops. Replay one with
``scripts/fuzz.py TARGET --replay FILE``. Arguments after ``--`` go to libFuzzer as they are.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability import fuzz_targets  # noqa: E402 - needs ROOT on sys.path

UNITS = {"s": 1, "m": 60, "h": 3600}


def seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smh]?)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90, 10m, 2h)")
    return int(match[1]) * UNITS[match[2] or "s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"one or more of {', '.join(fuzz_targets.TARGETS)} (default: all)")  # fmt: skip
    parser.add_argument("--time", type=seconds, default=600, help="per target: 90, 10m, 2h (default 10m)")
    parser.add_argument("--jobs", type=int, default=1, help="processes per target (libFuzzer -fork)")
    parser.add_argument("--corpus-dir", type=Path, default=Path.home() / ".cache" / "celeriac-fuzz")
    parser.add_argument("--artifacts", type=Path, default=Path.cwd() / "fuzz-artifacts")
    parser.add_argument("--replay", type=Path, help="run one input through the target and show the result")
    args, libfuzzer = parser.parse_known_args()
    libfuzzer = [a for a in libfuzzer if a != "--"]
    targets = args.targets or list(fuzz_targets.TARGETS)
    unknown = set(targets) - set(fuzz_targets.TARGETS)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))} (known: {', '.join(fuzz_targets.TARGETS)})")
    env = dict(os.environ)
    if args.replay:
        command = [sys.executable, "-m", "tests.reliability.fuzz_targets", targets[0], str(args.replay)]
        return subprocess.run(command, cwd=ROOT, env=env).returncode
    args.artifacts.mkdir(parents=True, exist_ok=True)
    failed = []
    for target in targets:
        corpus = args.corpus_dir / target
        seeds = fuzz_targets.write_seeds(target, corpus)
        command = [sys.executable, "-m", "tests.reliability.fuzz_targets", target, str(corpus),
                   f"-max_total_time={args.time}", "-timeout=10", "-max_len=16384", "-print_final_stats=1",
                   f"-artifact_prefix={args.artifacts}/{target}-", *libfuzzer]  # fmt: skip
        if args.jobs > 1:
            command.append(f"-fork={args.jobs}")
        print(f"== {target}: {args.time} s, corpus {corpus} ({seeds} seeds + what earlier runs kept)", flush=True)
        started = time.monotonic()
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
        print(f"== {target}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(target)
    if failed:
        print(f"failing inputs for {', '.join(failed)} are in {args.artifacts}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
