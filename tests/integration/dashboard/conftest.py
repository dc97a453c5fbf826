"""A dashboard process with real workers on Redis, and headless Chromium driven by Playwright.

Each test gets its own Redis key prefix (``global_keyprefix``: queues, fanout channels and
pidbox all live under it), so tests never see each other's workers or events. The broker URL
carries a password (Redis accepts any for its ``default`` user when it has none), so the
tests can check that it never shows up in a page, an API answer or the log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import Project
from tests.integration.redis.conftest import REDIS_HOST, REDIS_PORT, redis_available

ROOT = Path(__file__).resolve().parents[3]
DB = 12  # a database of its own: the Redis tests flush 11
PASSWORD = "s3cr3t-dash-pw"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TASKS = """
import time
from celeriac import Celery

app = Celery("tasks")
app.conf.broker_transport_options = {{"global_keyprefix": {prefix!r}}}
app.conf.worker_send_task_events = True
app.conf.task_send_sent_event = True
app.conf.result_expires = 600


@app.task
def add(x, y):
    return x + y


@app.task
def boom(x):
    raise ValueError(f"boom: {{x}}")


@app.task
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


@app.task(bind=True)
def fan_out(self, n):
    return [add.delay(i, i).id for i in range(n)]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DashboardProcess:
    """``celeriac dashboard`` in a subprocess, its output captured."""

    def __init__(self, project: Project, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.cmd = [sys.executable, "-m", "celeriac", "-A", "tasks", "dashboard", "--port", str(self.port), *args]
        self.project = project
        self.env = env or project.env()
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def get(self, path: str) -> tuple[int, Any]:
        """``(status, body)`` of a GET, the body decoded if JSON (no credentials: fine for the health endpoints)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def start(self, timeout: float = 30.0, ready: bool = True) -> DashboardProcess:
        """Start it and wait until /readyz answers 200 (or, with ``ready=False``, answers at all)."""
        self.proc = subprocess.Popen(self.cmd, cwd=self.project.path, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._pump.join(5)
                raise AssertionError(f"dashboard exited ({self.proc.returncode}):\n{self.output}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:
                    if response.status == 200:
                        return self
            except urllib.error.HTTPError:
                if not ready:
                    return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"dashboard not ready after {timeout}s:\n{self.output}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._pump.join(5)
        return int(self.proc.returncode)


@pytest.fixture
def dash_project(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A project on Redis (password in the URL) under a key prefix of its own."""
    if not redis_available():
        pytest.fail(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT} (scripts/services starts it)")
    prefix = f"dash-{uuid.uuid4().hex[:10]}:"
    url = f"redis://default:{PASSWORD}@{REDIS_HOST}:{REDIS_PORT}/{DB}"
    project.broker_url = project.result_backend = url
    monkeypatch.setenv("CELERIAC_BROKER_URL", url)
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", url)
    project.write("tasks.py", TASKS.format(prefix=prefix))
    yield project
    redis_prefix_cleanup(prefix)


def redis_prefix_cleanup(prefix: str) -> None:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=DB)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def workers(dash_project: Project) -> list[Any]:
    """Two workers with task events on (threads pool, so terminate works without forking)."""
    return [
        dash_project.worker("tasks", "-c", "2", "-E", "-n", f"{name}@%h", "-P", "prefork") for name in ("alpha", "beta")
    ]


@pytest.fixture
def dashboard(dash_project: Project, tmp_path: Path) -> Iterator[DashboardProcess]:
    proc = DashboardProcess(dash_project, "--db", str(tmp_path / "history.db")).start()
    yield proc
    proc.stop()
    assert PASSWORD not in proc.output, proc.output


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt-get if it is missing (idempotent: a no-op when present)."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if shutil.which("apt-get"):
        for command in (["install"], ["update"], ["install"]):  # update only when a plain install fails
            if os.path.exists(CHROMIUM):
                break
            args = [*sudo, "apt-get", *command, "-q"] + (["-y", "chromium"] if command == ["install"] else [])
            subprocess.run(args, check=False, capture_output=True, timeout=900, env=env)
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed and apt-get could not install it (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")  # Playwright's loop runs in this thread while it lives: not beyond the module
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed (scripts/bootstrap installs the dev extra)")
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    yield tab
    context.close()
