"""TLS to Redis: ``rediss://`` with ``broker_use_ssl`` and ``redis_backend_use_ssl``.

The redis-server is started here with ``--tls-port`` and certificates made here; it requires
client certificates (``--tls-auth-clients yes``), so the CA, the client certificate and its
key are all exercised. A certificate that doesn't verify fails fast with a clear error.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.exceptions import CeleriacError, OperationalError
from tests.conftest import Project, free_port
from tests.reliability.certs import Issued, issue

TASKS = """
import ssl
from celeriac import Celery

TLS = {{
    "ssl_cert_reqs": ssl.CERT_REQUIRED,
    "ssl_ca_certs": {ca!r},
    "ssl_certfile": {cert!r},
    "ssl_keyfile": {key!r},
}}

app = Celery("tasks", broker={url!r}, backend={url!r})
app.conf.broker_use_ssl = TLS
app.conf.redis_backend_use_ssl = TLS


@app.task
def add(x, y):
    return x + y
"""


@dataclass
class TLSRedis:
    port: int
    ca: Issued
    client: Issued
    stranger_ca: Issued  # a CA nobody here trusts
    stranger: Issued  # a client certificate it issued

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def tls(self, ca: Issued | None = None, client: Issued | None = None) -> dict[str, object]:
        client = client or self.client
        return {
            "ssl_cert_reqs": "required",
            "ssl_ca_certs": str((ca or self.ca).cert),
            "ssl_certfile": str(client.cert),
            "ssl_keyfile": str(client.key),
        }


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TLSRedis]:
    certs = tmp_path / "certs"
    ca = issue(certs, "redis test CA", is_ca=True)
    server = issue(certs, "server", ca=ca, hosts=("127.0.0.1", "localhost"))
    client = issue(certs, "client", ca=ca, client=True)
    stranger_ca = issue(certs, "stranger CA", is_ca=True)
    stranger = issue(certs, "stranger", ca=stranger_ca, client=True)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--tls-port", str(port), "--tls-cert-file", str(server.cert),
         "--tls-key-file", str(server.key), "--tls-ca-cert-file", str(ca.cert), "--tls-auth-clients", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server with TLS did not start"
            time.sleep(0.05)
    yield TLSRedis(port, ca, client, stranger_ca, stranger)
    proc.terminate()
    proc.wait(10)


def test_worker_and_client_over_tls_with_client_certificates(project: Project, tls_redis: TLSRedis) -> None:
    tls = tls_redis.tls()
    project.broker_url = project.result_backend = tls_redis.url
    assert project.monkeypatch is not None
    project.monkeypatch.setenv("CELERIAC_BROKER_URL", tls_redis.url)
    project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", tls_redis.url)
    project.write(
        "tasks.py",
        TASKS.format(url=tls_redis.url, ca=tls["ssl_ca_certs"], cert=tls["ssl_certfile"], key=tls["ssl_keyfile"]),
    )
    worker = project.worker("tasks", "-P", "threads", "-c", "2")
    from tasks import add  # type: ignore[import-not-found]

    assert [add.delay(i, i).get(timeout=30) for i in range(5)] == [0, 2, 4, 6, 8]
    assert worker.stop() == 0


def _app(tls_redis: TLSRedis, broker_tls: dict[str, object], backend_tls: dict[str, object] | None = None) -> Celery:
    return Celery(
        "t", broker=tls_redis.url, backend=tls_redis.url, broker_use_ssl=broker_tls,
        redis_backend_use_ssl=backend_tls or broker_tls, broker_connection_timeout=3, set_as_current=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("untrusted-server", "certificate verify failed"),  # we don't trust the server's CA
        ("untrusted-client", "SSL|ssl|EOF|reset|alert|certificate"),  # the server refuses our certificate
    ],
)
def test_a_certificate_that_does_not_verify_fails_fast(tls_redis: TLSRedis, who: str, expected: str) -> None:
    if who == "untrusted-server":
        bad = tls_redis.tls(ca=tls_redis.stranger_ca)
    else:
        bad = tls_redis.tls(client=tls_redis.stranger)
    app = _app(tls_redis, bad)
    started = time.monotonic()
    try:
        with pytest.raises(CeleriacError, match=expected) as raised:
            app.send_task("tasks.add", args=(1, 2))
    finally:
        app.close()
    assert time.monotonic() - started < 15, "a failed handshake must not hang"
    assert isinstance(raised.value, OperationalError)  # the broker is unusable, said in one exception


def test_the_result_backend_checks_its_own_certificates(tls_redis: TLSRedis) -> None:
    good = tls_redis.tls()
    app = _app(tls_redis, good, tls_redis.tls(ca=tls_redis.stranger_ca))
    try:
        app.send_task("tasks.add", args=(1, 2))  # the broker side is fine
        started = time.monotonic()
        with pytest.raises(Exception, match="certificate verify failed"):
            app.backend.get_meta("some-task-id")
        assert time.monotonic() - started < 15
    finally:
        app.close()
    trusted = _app(tls_redis, good)
    try:
        assert trusted.backend.get_meta("some-task-id").status == "PENDING"
    finally:
        trusted.close()


def test_a_worker_that_cannot_verify_the_broker_says_why(project: Project, tls_redis: TLSRedis) -> None:
    project.broker_url = project.result_backend = tls_redis.url
    tls = tls_redis.tls(ca=tls_redis.stranger_ca)
    source = TASKS.format(url=tls_redis.url, ca=tls["ssl_ca_certs"], cert=tls["ssl_certfile"], key=tls["ssl_keyfile"])
    project.write("tasks.py", source)
    # Retrying (the default): never ready, and each attempt logs the reason; it doesn't hang silently.
    with pytest.raises(AssertionError, match="Cannot connect to rediss://127.0.0.1.*certificate verify failed"):
        project.worker("tasks", "-P", "solo", ready_timeout=15)
    project.workers[-1].kill_group()
    # Not retrying: the worker exits with the reason.
    project.write("tasks.py", source + "\napp.conf.broker_connection_retry_on_startup = False\n")
    done = project.run("-A", "tasks", "worker", "-P", "solo", timeout=60)
    assert done.returncode != 0
    assert "certificate verify failed" in done.stdout + done.stderr
