"""Scenario profile: where the time goes in celeriac's worker and in its client's ``delay()``.

The worker (``-P solo`` on Redis, where it runs the tasks in its main thread, and ``-P prefork``,
its pool processes included) is sampled with py-spy while it works through a throughput run; the
client's ``delay()`` loop is profiled in-process with pyinstrument. Both are optional: a tool that is
not installed is skipped and the report says so. Only celeriac is profiled; the same command with a
Celery worker's pid works for Celery.
"""

from __future__ import annotations

import collections
import importlib.util
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import plots, scenarios
from bench.harness import Loaded, progress, ready_worker, retrying
from bench.section import Section
from bench.settings import Settings
from bench.tables import table

TOP = 15
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


@dataclass
class Profile:
    name: str
    samples: int
    inclusive: list[tuple[str, int]]  # celeriac's functions -> samples with it on the stack
    own: list[tuple[str, int]]  # function -> samples with it on top
    packages: list[tuple[str, int]]  # top-level package (or stdlib module) -> samples on top
    stacks: list[tuple[list[str], int]]  # every sampled stack (outermost frame first) -> samples, for the flame graph


ENTRY = ("celeriac/__main__.py", "celeriac/cli/", "celeriac/worker/main.py:WorkController.start")


def package(frame: str) -> str:
    """``celeriac/worker/consumer.py:run`` -> ``celeriac``; ``threading.py:...`` -> ``threading``."""
    head = frame.split(":", 1)[0]
    return head.split("/", 1)[0].removesuffix(".py")


def short(frame: str) -> str:
    """``run (/x/site-packages/celeriac/worker/consumer.py:120)`` -> ``celeriac/worker/consumer.py:run``."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{m['func']}"


def summarize(name: str, collapsed: str) -> Profile:
    """Inclusive and own sample counts per function from py-spy's ``--format raw`` (collapsed stacks)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        stacks[tuple(frames)] += count
        own[frames[-1]] += count
        packages[package(frames[-1])] += count
        for frame in set(frames):
            if frame.startswith("celeriac/") and not frame.startswith(ENTRY):
                inclusive[frame] += count
    return Profile(
        name,
        total,
        inclusive.most_common(TOP),
        own.most_common(TOP),
        packages.most_common(8),
        [(list(frames), n) for frames, n in stacks.items()],
    )


def pyinstrument_available() -> bool:
    return importlib.util.find_spec("pyinstrument") is not None


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def profile_worker(settings: Settings, client: scenarios.Client, pool: str, workdir: Path, tool: str) -> Profile:
    out = workdir / f"profile-{pool}.txt"
    with ready_worker(client, pool, settings.concurrency, workdir) as (worker, _ready):
        cmd = [tool, "record", "--gil", "--format", "raw", "--rate", "200", "--output", str(out)]
        cmd += ["--pid", str(worker.pid)]
        if pool == "prefork":
            cmd.append("--subprocesses")
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            scenarios.throughput(client, settings.tasks, pool)
        finally:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                _, err = spy.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
    if not out.exists():
        raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
    return summarize(f"worker -P {pool}", out.read_text())


def profile_client(client: scenarios.Client, tasks: int) -> str:
    """pyinstrument's text report of ``tasks`` ``noop.delay(i)`` calls (no worker: they only queue)."""
    from pyinstrument import Profiler

    client.broker.flush()
    scenarios.noop_task(client, "solo").delay(0)  # connect first
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for i in range(tasks):
        client.noop.delay(i)
    profiler.stop()
    client.broker.flush()
    text: str = profiler.output_text(unicode=False, color=False, show_all=False, short_mode=True)
    lines = [line.removeprefix(".").removeprefix(" ").rstrip() for line in text.splitlines()]
    kept = [line for line in lines if line.strip(". ") and "Profile at" not in line and "pyinstrument" not in line]
    return "\n".join(kept)[:6000]


def profile_table(p: Profile) -> str:
    rows = []
    for (inc_name, inc), (own_name, own) in zip(p.inclusive, p.own, strict=False):
        rows.append([f"`{inc_name}`", f"{inc / p.samples:.0%}", f"`{own_name}`", f"{own / p.samples:.0%}"])
    shares = ", ".join(f"{name} {n / p.samples:.0%}" for name, n in p.packages)
    headers = ["celeriac function on the stack", "share", "on top of the stack (own time)", "share"]
    return table(headers, rows) + f"\n\nOwn time by package: {shares}."


def flame_file(p: Profile) -> str:
    return f"bench-flame-{p.name.rsplit(' ', 1)[-1]}.png"  # "worker -P solo" -> bench-flame-solo.png


def below_entry(frames: list[str]) -> list[str]:
    """A stack without its start-up frames (runpy, click, celeriac's command line, up to the worker's
    start), which every stack shares: the flame graph starts where the worker's own loops do."""
    start = 0
    for n, frame in enumerate(frames):
        if frame.startswith((*ENTRY, "<frozen runpy>", "click/")):
            start = n + 1
    return frames[start:]


def draw_flames(profiles: list[Profile], img_dir: Path) -> dict[str, Path]:
    return {
        f"profile-flame-{p.name.rsplit(' ', 1)[-1]}": plots.flame_graph(
            img_dir / flame_file(p),
            [(below_entry(frames), n) for frames, n in p.stacks],
            f"celeriac {p.name}: {p.samples:,} samples on Redis",
        )
        for p in profiles
        if p.samples
    }


def run(settings: Settings, loaded: Loaded, workdir: Path) -> Section:
    client = loaded["celeriac", "redis"]
    notes, profiles = [], []
    client_texts: dict[str, str] = {}
    calls = min(settings.tasks, 5000)
    tool = py_spy()
    if tool is None:
        notes.append("py-spy is not installed: no worker profile (pip install py-spy).")
    else:
        for pool in ("solo", "prefork"):
            progress(f"profile: py-spy on celeriac -P {pool}")
            profiles.append(retrying("the profile", profile_worker, settings, client, pool, workdir, tool))
    if not pyinstrument_available():
        notes.append("pyinstrument is not installed: no client profile (pip install pyinstrument).")
    else:
        for broker in ("redis", "amqp"):
            if ("celeriac", broker) in loaded:
                progress(f"profile: pyinstrument on delay() ({broker})")
                target = loaded["celeriac", broker]
                client_texts[broker] = retrying("the profile", profile_client, target, calls)
    parts = []
    for p in profiles:
        parts += [f"**{p.name}** ({p.samples:,} samples holding the GIL):", "", profile_table(p), ""]
    for broker, text in client_texts.items():
        title = {"redis": "Redis", "amqp": "RabbitMQ"}[broker]
        parts += [f"**client on {title}, {calls:,} x `noop.delay(i)`** (pyinstrument):", ""]
        parts += ["```text", text, "```", ""]
    parts += notes
    method = (
        "py-spy (`record --gil --format raw --rate 200`: only the thread holding the GIL, so waiting is left "
        "out) on celeriac's worker during a "
        f"throughput run of {settings.tasks:,} no-op tasks on Redis at `-c {settings.concurrency}`; each table "
        "lists the functions most often on the stack (inclusive) and on top of it (own time), as a share of the "
        "samples, and the flame graphs below draw every sampled stack (frames under "
        f"{plots.FLAME_MIN_SHARE:.1%} of the samples left out). The client side is pyinstrument around a loop of "
        "`delay()` calls."
    )
    return Section(
        key="profile",
        title="Profiles of the hot path",
        method=method,
        body="\n".join(parts).rstrip(),
        data={
            "workers": [
                {"name": p.name, "samples": p.samples, "inclusive": p.inclusive, "own": p.own, "packages": p.packages}
                for p in profiles
            ],
            "client": client_texts,
            "notes": notes,
        },
        draw=(lambda img_dir: draw_flames(profiles, img_dir)) if profiles else None,
    )
