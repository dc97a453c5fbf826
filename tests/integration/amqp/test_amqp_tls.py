"""``amqps://`` and ``broker_use_ssl``: a worker and a client over TLS.

The test RabbitMQ listens without TLS, so a TLS-terminating proxy (certificates made here with
openssl) stands in front of it: the client side is the real thing, handshake and verification included.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.exceptions import OperationalError
from tests.conftest import Project
from tests.integration.amqp.conftest import AMQP_HOST, AMQP_PORT


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for localhost / 127.0.0.1."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=celeriac test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
            "/CN=localhost")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


class TLSProxy:
    """Accepts TLS on a local port and relays the plain bytes to RabbitMQ."""

    def __init__(self, certfile: Path, keyfile: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(32)
        self.server.settimeout(0.2)
        self.port = int(self.server.getsockname()[1])
        self.handshakes = 0
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.server.accept()
            except OSError:
                continue
            raw.settimeout(10)
            try:
                tls = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()  # a client that refused our certificate
                continue
            tls.settimeout(None)
            self.handshakes += 1
            upstream = socket.create_connection((AMQP_HOST, AMQP_PORT))
            self._sockets += [tls, upstream]
            for source, target in ((tls, upstream), (upstream, tls)):
                thread = threading.Thread(target=self._pump, args=(source, target), daemon=True)
                thread.start()
                self._threads.append(thread)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(5)
        for sock in self._sockets:
            sock.close()
        self.server.close()


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[TLSProxy, Path]]:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = _certificates(certs)
    proxy = TLSProxy(cert, key)
    yield proxy, ca
    proxy.close()


TASKS = """
from celeriac import Celery

app = Celery("tasks", backend="rpc://")
app.conf.broker_use_ssl = {{"ca_certs": {ca!r}, "cert_reqs": 2}}  # ssl.CERT_REQUIRED


@app.task
def add(x, y):
    return x + y
"""


def test_worker_and_client_over_tls(tls: tuple[TLSProxy, Path], project: Project, vhost: str) -> None:
    proxy, ca = tls
    url = f"amqps://guest:guest@127.0.0.1:{proxy.port}/{vhost}"
    project.broker_url, project.result_backend = url, "rpc://"
    assert project.monkeypatch is not None
    project.monkeypatch.setenv("CELERIAC_BROKER_URL", url)
    project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", "rpc://")
    project.write("tasks.py", TASKS.format(ca=str(ca)))
    worker = project.worker("tasks", "-c", "2", "-P", "threads")
    from tasks import add  # type: ignore[import-not-found]

    assert add.delay(20, 22).get(timeout=30) == 42
    assert [add.delay(i, 1).get(timeout=30) for i in range(10)] == list(range(1, 11))
    assert proxy.handshakes >= 2  # the worker's connection and ours went through TLS
    assert worker.stop() == 0


def test_broker_use_ssl_on_an_amqp_url_and_certificate_checks(tls: tuple[TLSProxy, Path], vhost: str) -> None:
    proxy, ca = tls
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"  # plain scheme: broker_use_ssl turns TLS on
    trusted = Celery("t", broker=url, broker_use_ssl={"ca_certs": str(ca)}, set_as_current=False)
    trusted.connection_for_write().open()
    trusted.close()
    # The default context doesn't trust the test CA: the connection is refused with a clear error.
    untrusted = Celery("t", broker=url, broker_use_ssl=True, broker_connection_timeout=5, set_as_current=False)
    with pytest.raises(OperationalError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        untrusted.connection_for_write()
    untrusted.close()
