"""Every Redis URL form against private redis-server processes: unix socket, TLS, Sentinel."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project, free_port

TASKS = """
from celeriac import Celery

app = Celery("tasks")


@app.task
def add(x, y):
    return x + y
"""


def _wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("server did not start")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _server(args: list[str], tmp: Path) -> subprocess.Popen[bytes]:
    base = ["redis-server", "--save", "", "--appendonly", "no", "--dir", str(tmp), "--daemonize", "no"]
    return subprocess.Popen(base + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = _server(["--port", str(port), "--bind", "127.0.0.1"], tmp_path)
    _wait_for(lambda: _port_open(port))
    yield port
    proc.terminate()
    proc.wait(10)


def _run_task(project: Project, url: str, options: str = "") -> None:
    project.broker_url = project.result_backend = url
    # This process (the client) must use the same broker and backend as the worker.
    assert project.monkeypatch is not None
    project.monkeypatch.setenv("CELERIAC_BROKER_URL", url)
    project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", url)
    project.write("tasks.py", TASKS + options)
    worker = project.worker("tasks", "-P", "solo")
    from tasks import add  # type: ignore[import-not-found]

    assert add.delay(40, 2).get(timeout=30) == 42
    assert worker.stop() == 0


def test_unix_socket(project: Project, tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    proc = _server(["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"], tmp_path)
    try:
        _wait_for(sock.exists)
        _run_task(project, f"redis+socket://{sock}?virtual_host=3")
    finally:
        proc.terminate()
        proc.wait(10)


def test_tls(project: Project, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    proc = _server(
        ["--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port), "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"],
        tmp_path,
    )  # fmt: skip
    try:
        _wait_for(lambda: _port_open(port))
        _run_task(project, f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}")
    finally:
        proc.terminate()
        proc.wait(10)


def test_sentinel(project: Project, tmp_path: Path, private_redis: int) -> None:
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {private_redis} 1\n")
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for(lambda: _port_open(port))
        options = (
            "\napp.conf.broker_transport_options = {'master_name': 'mymaster'}"
            "\napp.conf.result_backend_transport_options = {'master_name': 'mymaster'}\n"
        )
        _run_task(project, f"sentinel://127.0.0.1:{port};sentinel://127.0.0.1:{free_port()}", options)
    finally:
        proc.terminate()
        proc.wait(10)


def test_global_keyprefix_is_applied_to_every_key(project: Project, private_redis: int) -> None:
    import redis

    options = "\napp.conf.broker_transport_options = {'global_keyprefix': 'tenant1:'}\n"
    _run_task(project, f"redis://127.0.0.1:{private_redis}/0", options)
    keys = {k.decode() for k in redis.Redis(port=private_redis).keys("*")}
    broker_keys = {k for k in keys if not k.startswith("celery-task-meta-")}
    assert broker_keys and all(k.startswith("tenant1:") for k in broker_keys), broker_keys
