"""Shared fixtures: a throwaway SQLite store per test and real worker processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """A ``celeriac worker`` subprocess, with its log captured line by line."""

    def __init__(self, cwd: Path, app: str, args: list[str], env: dict[str, str]) -> None:
        self.cwd = cwd
        self.cmd = [sys.executable, "-m", "celeriac", "-A", app, "worker", *args]
        self.env = env
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.proc: subprocess.Popen[str] | None = None

    def start(self, ready_timeout: float = 30.0) -> WorkerProcess:
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self.wait_for("ready.", timeout=ready_timeout)
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                with self._lock:
                    self.lines.append(line.rstrip("\n"))

    def _reap(self) -> None:
        # Read the last lines and close the pipe (an unclosed pipe is a ResourceWarning).
        self._pump_thread.join(10)

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output.count(text) >= count:
                return
            if self.proc is not None and self.proc.poll() is not None:
                time.sleep(0.2)
                if self.output.count(text) >= count:
                    return
                raise AssertionError(f"worker exited ({self.proc.returncode}) before {text!r}:\n{self.output}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {text!r} x{count}:\n{self.output}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill_group(self) -> None:
        """SIGKILL the worker and its pool processes: nothing gets to clean up."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._reap()

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        self.proc.wait()
        self._reap()
        return int(self.proc.returncode)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A directory with its own SQLite store, where tests write task modules and start workers."""
    proj = Project(tmp_path)
    proj.monkeypatch = monkeypatch
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CELERIAC_BROKER_URL", proj.broker_url)
    monkeypatch.delenv("CELERIAC_RESULT_BACKEND", raising=False)
    yield proj
    for worker in proj.workers:
        if worker.proc is not None:
            if worker.proc.poll() is None:
                worker.kill_group()
            else:
                worker._reap()
    for name in list(sys.modules):
        if name in proj.modules:
            app = getattr(sys.modules[name], "app", None)
            if hasattr(app, "close"):
                app.close()  # the test's client connections (sockets are ResourceWarnings otherwise)
            del sys.modules[name]


class Project:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = path / "celeriac-test.db"
        self.broker_url = f"sqlite:///{self.db}"
        self.result_backend: str | None = None  # None: the broker's default (the same SQLite file)
        self.workers: list[WorkerProcess] = []
        self.monkeypatch: pytest.MonkeyPatch | None = None
        self.modules: set[str] = set()

    def write(self, name: str, source: str) -> Path:
        """Write ``name`` (e.g. ``tasks.py``) with dedented ``source``."""
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(source))
        if name.endswith(".py"):
            self.modules.add(name[:-3].replace("/", ".").removesuffix(".__init__"))
        return target

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.path), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["CELERIAC_BROKER_URL"] = self.broker_url
        env.pop("CELERIAC_RESULT_BACKEND", None)
        if self.result_backend:
            env["CELERIAC_RESULT_BACKEND"] = self.result_backend
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def worker(
        self,
        app: str = "tasks",
        *args: str,
        env: dict[str, str] | None = None,
        start: bool = True,
        ready_timeout: float = 30.0,
    ) -> WorkerProcess:
        worker = WorkerProcess(self.path, app, ["-l", "info", *args], env or self.env())
        self.workers.append(worker)
        return worker.start(ready_timeout) if start else worker

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``celeriac <args>`` in the project directory."""
        return subprocess.run(
            [sys.executable, "-m", "celeriac", *args],
            cwd=self.path,
            env=env or self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(
        self, code: str, timeout: float = 60.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet in a fresh interpreter in the project directory."""
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=self.path,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


TASKS = """
from celeriac import Celery

app = Celery("tasks")


@app.task
def add(x, y):
    return x + y


@app.task
def div(x, y):
    return x / y
"""


@pytest.fixture
def tasks_module(project: Project) -> Project:
    project.write("tasks.py", TASKS)
    return project


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for servers a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
