"""Signed messages between Celery 5 and celeriac, both ways, with the same certificates.

A private redis-server (started here) carries the messages and results.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project, WorkerProcess, free_port
from tests.reliability.certs import Pki

TASKS = """
import os
from {lib} import Celery

app = Celery("tasks", broker=os.environ["TEST_REDIS_URL"], backend=os.environ["TEST_REDIS_URL"])
app.conf.update(
    task_serializer="auth",
    accept_content=["auth"],
    result_accept_content=["json"],
    security_key=os.environ["SEC_KEY"],
    security_certificate=os.environ["SEC_CERT"],
    security_cert_store=os.environ["SEC_STORE"],
)
app.setup_security()


@app.task(name="tasks.add")
def add(x, y):
    return x + y


@app.task(name="tasks.touch")
def touch(path):
    open(path, "w").close()
    return path
"""

CLIENT = """
import sys
from {module} import add, touch

print("RESULT", add.delay(20, 22).get(timeout=30))
touch.delay(sys.argv[1])
"""


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def _setup(project: Project, pki: Pki, url: str) -> None:
    project.broker_url = project.result_backend = url
    project.write("ctasks.py", TASKS.format(lib="celery"))
    project.write("tasks.py", TASKS.format(lib="celeriac"))


def _worker(project: Project, pki: Pki, url: str, celery: bool) -> WorkerProcess:
    env = project.env(TEST_REDIS_URL=url, **pki.env(pki.worker))
    worker = WorkerProcess(project.path, "tasks", ["-l", "info", "-P", "solo"], env)
    if celery:
        worker.cmd = [sys.executable, "-m", "celery", "-A", "ctasks", "worker", "-l", "info", "-P", "solo"]
    project.workers.append(worker)
    return worker.start(60)


def _client(project: Project, pki: Pki, url: str, module: str, who: str, path: Path) -> str:
    env = project.env(TEST_REDIS_URL=url, **pki.env(getattr(pki, who)))
    done = subprocess.run(
        [sys.executable, "-c", CLIENT.format(module=module), str(path)],
        cwd=project.path, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    ("worker_is_celery", "client_module"),
    [(False, "ctasks"), (True, "tasks")],
    ids=["celery-client-to-celeriac-worker", "celeriac-client-to-celery-worker"],
)
def test_signed_tasks_cross_over(
    project: Project, pki: Pki, private_redis: str, tmp_path: Path, worker_is_celery: bool, client_module: str
) -> None:
    _setup(project, pki, private_redis)
    worker = _worker(project, pki, private_redis, worker_is_celery)
    touched = tmp_path / "touched"
    output = _client(project, pki, private_redis, client_module, "client", touched)
    assert "RESULT 42" in output, output
    worker.wait_for("succeeded", count=2)
    assert touched.exists()
    worker.stop()


def test_celery_messages_from_an_untrusted_signer_are_rejected(
    project: Project, pki: Pki, private_redis: str, tmp_path: Path
) -> None:
    _setup(project, pki, private_redis)
    worker = _worker(project, pki, private_redis, celery=False)
    # A Celery client signing with a certificate the celeriac worker doesn't trust.
    rogue = tmp_path / "rogue"
    client = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom ctasks import touch\ntouch.delay(sys.argv[1])", str(rogue)],
        cwd=project.path, env=project.env(TEST_REDIS_URL=private_redis, **pki.env(pki.rogue)),
    )  # fmt: skip
    assert client.wait(60) == 0
    worker.wait_for("Unknown certificate: 'rogue ")
    # ... and goes on with trusted ones.
    trusted = tmp_path / "trusted"
    assert "RESULT 42" in _client(project, pki, private_redis, "ctasks", "client", trusted)
    worker.wait_for("succeeded", count=2)
    assert trusted.exists() and not rogue.exists()
    assert worker.stop() == 0
