"""TLS to RabbitMQ: ``amqps://`` with ``broker_use_ssl`` against a RabbitMQ node started here.

The node (its own name, data directory and Erlang cookie; the shared RabbitMQ is untouched)
listens only on a TLS port, with certificates made here, and requires client certificates
(``verify_peer`` + ``fail_if_no_peer_cert``): the CA, the client certificate and its key are all
exercised. ``tests/integration/amqp/test_amqp_tls.py`` covers the same client through a TLS proxy.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.exceptions import OperationalError
from tests.conftest import Project, free_port
from tests.reliability.certs import Issued, issue

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")

TASKS = """
from celeriac import Celery

app = Celery("tasks", backend="rpc://")
app.conf.broker_use_ssl = {tls!r}


@app.task
def add(x, y):
    return x + y
"""


@dataclass
class TLSRabbit:
    port: int
    ca: Issued
    client: Issued
    stranger_ca: Issued
    stranger: Issued

    @property
    def url(self) -> str:
        return f"amqps://guest:guest@127.0.0.1:{self.port}//"

    def tls(self, ca: Issued | None = None, client: Issued | None = None) -> dict[str, object]:
        client = client or self.client
        return {
            "ca_certs": str((ca or self.ca).cert),
            "certfile": str(client.cert),
            "keyfile": str(client.key),
            "cert_reqs": "CERT_REQUIRED",
        }


@pytest.fixture(scope="module")
def tls_rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRabbit]:
    server = RABBITMQ_BIN / "rabbitmq-server"
    if not server.exists():
        pytest.fail(f"{server} not found: RabbitMQ must be installed for the TLS tests")
    base = tmp_path_factory.mktemp("rabbit")
    certs = base / "certs"
    ca = issue(certs, "rabbit test CA", is_ca=True)
    cert = issue(certs, "server", ca=ca, hosts=("127.0.0.1", "localhost"))
    client = issue(certs, "client", ca=ca, client=True)
    stranger_ca = issue(certs, "stranger CA", is_ca=True)
    stranger = issue(certs, "stranger", ca=stranger_ca, client=True)
    port, dist_port = free_port(), free_port()
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp = none\n"
        f"listeners.ssl.default = 127.0.0.1:{port}\n"
        f"ssl_options.cacertfile = {ca.cert}\n"
        f"ssl_options.certfile = {cert.cert}\n"
        f"ssl_options.keyfile = {cert.key}\n"
        f"ssl_options.verify = verify_peer\n"
        f"ssl_options.fail_if_no_peer_cert = true\n"
        f"loopback_users = none\n"
    )
    (base / "enabled_plugins").write_text("[].\n")
    (base / "env.conf").write_text("")
    node = f"celeriac-tls-{port}@localhost"
    env = {
        **os.environ,
        "HOME": str(base),  # its own Erlang cookie
        "RABBITMQ_CONF_ENV_FILE": str(base / "env.conf"),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PLUGINS_EXPAND_DIR": str(base / "plugins-expand"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    log = (base / "server.log").open("w")
    proc = subprocess.Popen([str(server)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the TLS RabbitMQ node did not start:\n{(base / 'server.log').read_text()[-3000:]}")
                time.sleep(0.2)
        yield TLSRabbit(port, ca, client, stranger_ca, stranger)
    finally:
        subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", node, "stop"], env=env, capture_output=True,
                       timeout=60)  # fmt: skip
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        log.close()
        shutil.rmtree(base / "mnesia", ignore_errors=True)


def test_worker_and_client_over_amqps_with_client_certificates(project: Project, tls_rabbit: TLSRabbit) -> None:
    project.broker_url, project.result_backend = tls_rabbit.url, "rpc://"
    assert project.monkeypatch is not None
    project.monkeypatch.setenv("CELERIAC_BROKER_URL", tls_rabbit.url)
    project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", "rpc://")
    project.write("tasks.py", TASKS.format(tls=tls_rabbit.tls()))
    worker = project.worker("tasks", "-P", "threads", "-c", "2")
    from tasks import add  # type: ignore[import-not-found]

    assert [add.delay(i, 10).get(timeout=30) for i in range(5)] == [10, 11, 12, 13, 14]
    assert worker.stop() == 0


@pytest.mark.parametrize("who", ["untrusted-server", "untrusted-client", "no-client-certificate"])
def test_a_certificate_that_does_not_verify_fails_fast(tls_rabbit: TLSRabbit, who: str) -> None:
    if who == "untrusted-server":
        tls, expected = tls_rabbit.tls(ca=tls_rabbit.stranger_ca), "certificate verify failed"
    elif who == "untrusted-client":
        tls, expected = tls_rabbit.tls(client=tls_rabbit.stranger), "SSL|ssl|EOF|reset|alert|certificate|closed"
    else:
        tls, expected = {"ca_certs": str(tls_rabbit.ca.cert)}, "SSL|ssl|EOF|reset|alert|certificate|closed"
    app = Celery("t", broker=tls_rabbit.url, broker_use_ssl=tls, broker_connection_timeout=5, set_as_current=False)
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError, match=expected):
            app.send_task("tasks.add", args=(1, 2))
    finally:
        app.close()
    assert time.monotonic() - started < 20, "a refused handshake must not hang"
