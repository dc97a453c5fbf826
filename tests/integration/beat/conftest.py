"""Beat against real stores: a project on the embedded SQLite broker or on Redis (a key prefix per test).

The tasks module gives beat two entries: ``fake`` runs every 60 s of a clock the test
controls (the file ``clock``), so restarts and failovers are checked without relying
on timing; ``real`` runs every second of real time, from ``add_periodic_task`` in an
``on_after_configure`` receiver. Each run appends ``<tag> <task id>`` to ``runs.txt``
from a real worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import Project, WorkerProcess
from tests.integration.redis.conftest import REDIS_HOST, REDIS_PORT, redis_available

T0 = 1_700_000_000.0

TASKS = """
import os
from datetime import datetime, timezone

from celeriac import Celery
from celeriac.schedules import schedule

app = Celery("tasks")
HERE = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("TEST_KEY_PREFIX"):
    app.conf.broker_transport_options = {"global_keyprefix": os.environ["TEST_KEY_PREFIX"]}
app.conf.task_ignore_result = True


def fake_now():
    with open(os.path.join(HERE, "clock")) as fh:
        return datetime.fromtimestamp(float(fh.read()), timezone.utc)


@app.task(bind=True)
def record(self, tag):
    with open(os.path.join(HERE, "runs.txt"), "a") as fh:
        fh.write(f"{tag} {self.request.id}\\n")


if os.environ.get("FAKE_ENTRY"):
    app.conf.beat_schedule = {
        "fake": {"task": "tasks.record", "schedule": schedule(60, nowfun=fake_now), "args": ("fake",)},
    }


@app.on_after_configure.connect
def setup_periodic_tasks(sender, **kwargs):
    if os.environ.get("REAL_ENTRY"):
        sender.add_periodic_task(1.0, record.s("real"), name="real")
"""


class BeatProcess(WorkerProcess):
    """A ``celeriac beat`` subprocess (debug logging: one "Waking up" line per tick)."""

    def __init__(self, cwd: Path, args: list[str], env: dict[str, str], app: str = "tasks") -> None:
        super().__init__(cwd, app, [], env)
        self.cmd = [sys.executable, "-m", "celeriac", "-A", app, "beat", "-l", "debug", *args]

    def start(self, ready_timeout: float = 30.0) -> BeatProcess:
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        import threading

        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self.wait_for("beat: Waking up", timeout=ready_timeout)
        return self

    @property
    def sends(self) -> int:
        return self.output.count("Sending due task")

    @property
    def ticks(self) -> int:
        return self.output.count("beat: Waking up")

    def wait_ticks(self, n: int, timeout: float = 30.0) -> None:
        self.wait_for("beat: Waking up", timeout=timeout, count=self.ticks + n)


class BeatProject:
    def __init__(self, project: Project, kind: str, env: dict[str, str]) -> None:
        self.project = project
        self.kind = kind
        self.extra_env = env
        project.write("tasks.py", TASKS)
        self.set_clock(T0)

    @property
    def path(self) -> Path:
        return self.project.path

    def env(self, **extra: str) -> dict[str, str]:
        return self.project.env(**self.extra_env, **extra)

    def set_clock(self, timestamp: float) -> None:
        tmp = self.path / "clock.tmp"
        tmp.write_text(repr(timestamp))
        os.replace(tmp, self.path / "clock")  # readers never see a half-written clock

    def runs(self, tag: str | None = None) -> list[str]:
        try:
            lines = (self.path / "runs.txt").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [line for line in lines if tag is None or line.startswith(f"{tag} ")]

    def wait_runs(self, tag: str, count: int, timeout: float = 30.0) -> None:
        wait_until(lambda: len(self.runs(tag)) >= count, timeout, lambda: f"{count} {tag} runs, got {self.runs()}")

    def worker(self, *args: str, **env: str) -> WorkerProcess:
        return self.project.worker("tasks", "-P", "threads", "-c", "2", *args, env=self.env(**env))

    def beat(self, *args: str, **env: str) -> BeatProcess:
        process = BeatProcess(self.path, list(args), self.env(**env))
        self.project.workers.append(process)  # killed at teardown by the project fixture
        return process.start()


def wait_until(predicate: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what()}")


def kill(process: WorkerProcess, signum: int = signal.SIGKILL) -> None:
    os.killpg(process.pid, signum)


@pytest.fixture(params=["sqlite", "redis"])
def beat_project(
    request: pytest.FixtureRequest, project: Project, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BeatProject]:
    if request.param == "sqlite":
        yield BeatProject(project, "sqlite", {})
        return
    yield from _redis_project(project, monkeypatch)


@pytest.fixture
def redis_beat_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[BeatProject]:
    yield from _redis_project(project, monkeypatch)


def _redis_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[BeatProject]:
    if not redis_available():
        pytest.fail(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT} (scripts/services starts it)")
    prefix = f"beat-test-{uuid.uuid4().hex[:10]}:"
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    project.broker_url = url
    monkeypatch.setenv("CELERIAC_BROKER_URL", url)
    yield BeatProject(project, "redis", {"TEST_KEY_PREFIX": prefix})
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
