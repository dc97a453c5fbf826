"""Security: pickle off by default, signed messages (``task_serializer='auth'``), nothing evaluated.

Workers are real ``celeriac worker`` processes on the embedded SQLite broker; the signing keys
and certificates are made in each test (``tests/reliability/certs.py``).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, serialization
from celeriac.brokers.base import Envelope
from celeriac.exceptions import ImproperlyConfigured, NotRegistered
from celeriac.security.serialization import pack, unpack
from tests.conftest import Project
from tests.reliability.certs import Issued, Pki, issue

ROOT = Path(__file__).resolve().parents[2]

PLAIN_TASKS = """
from celeriac import Celery

app = Celery("tasks")


@app.task(name="tasks.add")
def add(x, y):
    return x + y


@app.task(name="tasks.echo")
def echo(value):
    return value
"""

# The key, certificate and store come from the environment, so one module serves the worker,
# a trusted client and a rogue one.
SIGNED_TASKS = """
import os
from celeriac import Celery

app = Celery("tasks")
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


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def restore_serializers() -> Iterator[None]:
    """``setup_security`` registers ``auth`` process-wide: undo it after the test."""
    registry, by_type = dict(serialization.registry), dict(serialization._by_content_type)
    yield
    serialization.registry.clear()
    serialization.registry.update(registry)
    serialization._by_content_type.clear()
    serialization._by_content_type.update(by_type)


class Explode:
    """Unpickling this creates ``path``: proof that a payload was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


# -- pickle is off by default ---------------------------------------------------------------------


def test_the_defaults_accept_json_only() -> None:
    app = Celery("defaults", set_as_current=False)
    assert list(app.conf.accept_content) == ["json"]
    assert app.conf.task_serializer == "json" and app.conf.result_serializer == "json"
    assert app.conf.result_accept_content is None  # falls back to accept_content
    assert serialization.prepare_accept_content(app.conf.accept_content) == {"application/json"}


def test_a_default_worker_never_unpickles_a_message(project: Project, tmp_path: Path) -> None:
    exploded = tmp_path / "exploded"
    # The payload works: unpickling it really creates its file.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Explode(probe))).close()
    assert probe.exists()

    project.write("tasks.py", PLAIN_TASKS)
    worker = project.worker("tasks", "-P", "solo")
    client = Celery("tasks", broker=project.broker_url, task_serializer="pickle", set_as_current=False)
    try:
        client.send_task("tasks.echo", args=(Explode(exploded),))
        worker.wait_for("Received invalid task message")
        assert "Refusing to deserialize untrusted content of type application/x-python-serialize" in worker.output
        # The worker goes on with the next (json) message.
        from tasks import add  # type: ignore[import-not-found]

        assert add.delay(40, 2).get(timeout=30) == 42
    finally:
        client.close()
    assert not exploded.exists()
    assert worker.stop() == 0


# -- message signing ------------------------------------------------------------------------------


def _signed_worker(project: Project, pki: Pki) -> Any:
    project.write("tasks.py", SIGNED_TASKS)
    return project.worker("tasks", "-P", "solo", env=project.env(**pki.env(pki.worker)))


def _send_from(project: Project, pki: Pki, who: Issued, path: Path) -> None:
    """A client process signing with ``who``'s key sends ``touch(path)``."""
    done = project.python(
        f"from tasks import touch\nprint(touch.delay({str(path)!r}).id)", env=project.env(**pki.env(who))
    )
    assert done.returncode == 0, done.stderr


def test_signed_tasks_run_and_bad_signatures_are_rejected(
    project: Project, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_serializers: None
) -> None:
    worker = _signed_worker(project, pki)
    for name, value in pki.env(pki.client).items():
        monkeypatch.setenv(name, value)
    from tasks import add, app, touch  # type: ignore[import-not-found]

    # A signed call runs, and what went over the wire is Celery's signed layout.
    published: list[Envelope] = []
    broker = app.connection_for_write()
    publish = broker.publish

    def record(envelope: Envelope, **kw: Any) -> None:
        published.append(envelope)
        publish(envelope, **kw)

    monkeypatch.setattr(broker, "publish", record)
    assert add.delay(20, 22).get(timeout=30) == 42
    envelope = published[-1]
    assert (envelope.content_type, envelope.content_encoding) == ("application/data", "utf-8")
    signed = unpack(envelope.body)
    assert signed.signer == f"celeriac test CA {pki.client.certificate.serial_number}"
    assert signed.content_type == "application/json" and b"[[20, 22], {}" in signed.body

    # Tampered in transit: the body says something else than what was signed.
    first, second = tmp_path / "first", tmp_path / "second"

    def tamper(envelope: Envelope, **kw: Any) -> None:
        payload = unpack(envelope.body)
        body = payload.body.replace(b"first", b"second")
        publish(dataclasses.replace(envelope, body=pack(dataclasses.replace(payload, body=body))), **kw)

    monkeypatch.setattr(broker, "publish", tamper)
    touch.delay(str(first))
    worker.wait_for("signature check failed, message refused: Bad signature")
    monkeypatch.setattr(broker, "publish", publish)

    # Signed by a certificate the worker doesn't trust, and by a forged one carrying a trusted id.
    unknown, forged = tmp_path / "unknown", tmp_path / "forged"
    _send_from(project, pki, pki.rogue, unknown)
    worker.wait_for("Unknown certificate: 'rogue ")
    _send_from(project, pki, pki.forged, forged)
    worker.wait_for("Received invalid task message", count=3)
    assert worker.output.count("Bad signature") >= 2

    # Nothing of that ran, and the worker is still serving signed calls.
    assert add.delay(1, 2).get(timeout=30) == 3
    assert touch.delay(str(tmp_path / "ok")).get(timeout=30) == str(tmp_path / "ok")
    assert not first.exists() and not second.exists() and not unknown.exists() and not forged.exists()
    assert worker.stop() == 0


def test_a_signing_worker_refuses_unsigned_messages(project: Project, pki: Pki, tmp_path: Path) -> None:
    worker = _signed_worker(project, pki)
    unsigned = tmp_path / "unsigned"
    client = Celery("plain", broker=project.broker_url, set_as_current=False)  # json, no signature
    try:
        client.send_task("tasks.touch", args=(str(unsigned),))
        worker.wait_for("Received invalid task message")
    finally:
        client.close()
    assert "Refusing to deserialize untrusted content of type application/json" in worker.output
    _send_from(project, pki, pki.client, tmp_path / "signed")
    worker.wait_for("succeeded")
    assert (tmp_path / "signed").exists() and not unsigned.exists()
    assert worker.stop() == 0


def test_setup_security_needs_auth_settings_and_keys(pki: Pki, restore_serializers: None) -> None:
    plain = Celery("s", broker="memory://", set_as_current=False)
    with pytest.raises(ImproperlyConfigured, match="task_serializer = 'auth'"):
        plain.setup_security()
    app = Celery("s", broker="memory://", set_as_current=False, task_serializer="auth", accept_content=["auth"])
    with pytest.raises(ImproperlyConfigured, match="security_cert_store"):
        app.setup_security(key=str(pki.client.key), cert=str(pki.client.cert))
    # Before setup_security the auth serializer refuses to sign (rather than send unsigned).
    with pytest.raises(Exception, match="setup_security"):
        serialization.dumps({"x": 1}, "auth")
    app.setup_security(key=str(pki.client.key), cert=str(pki.client.cert), store=str(pki.store))
    content_type, encoding, body = serialization.dumps({"x": 1}, "auth")
    assert serialization.loads(body, content_type, encoding, frozenset({"application/data"})) == {"x": 1}


def test_an_encrypted_private_key_and_a_signed_pickle(tmp_path: Path, pki: Pki, restore_serializers: None) -> None:
    locked = issue(tmp_path / "locked", "locked", ca=pki.ca, password=b"k3y-pass")
    shutil.copy(locked.cert, pki.store / "locked.pem")
    app = Celery(
        "s", broker="memory://", set_as_current=False, task_serializer="auth", accept_content=["auth"],
        security_key=str(locked.key), security_key_password=b"k3y-pass", security_certificate=str(locked.cert),
        security_cert_store=str(pki.store / "*.pem"), security_digest="sha512",
    )  # fmt: skip
    app.setup_security()
    ct, enc, body = serialization.dumps([1, 2], "auth")
    assert serialization.loads(body, ct, enc, frozenset({ct})) == [1, 2]
    # A correctly signed body in a format the receiver didn't allow is still refused: pickle stays off.
    from celeriac.security import SecureSerializer
    from celeriac.security.certificate import Certificate, FSCertStore, PrivateKey

    pickler = SecureSerializer(
        PrivateKey(locked.key.read_bytes(), b"k3y-pass"), Certificate(locked.cert.read_bytes()),
        FSCertStore(str(pki.store)), "sha512", serializer="pickle",
    )  # fmt: skip
    exploded = tmp_path / "exploded"
    with pytest.raises(Exception, match="refused type|Refusing"):
        serialization.loads(pickler.serialize(Explode(exploded)), ct, enc, frozenset({ct}))
    assert not exploded.exists()


# -- nothing from a message is evaluated -----------------------------------------------------------

CODE = "__import__('os').system('touch {path}')"


def test_strings_in_messages_are_only_data(project: Project, tmp_path: Path) -> None:
    project.write("tasks.py", PLAIN_TASKS)
    worker = project.worker("tasks", "-P", "solo")
    from tasks import app, echo  # type: ignore[import-not-found]

    by_name, by_header, by_arg = (CODE.format(path=tmp_path / f"pwned-{n}") for n in ("name", "header", "arg"))
    # As a task name: an unknown task, reported by name, never imported or evaluated.
    result = app.send_task(by_name, args=(1,))
    with pytest.raises(NotRegistered):
        result.get(timeout=30)
    worker.wait_for(f"Received unregistered task of type {by_name!r}")
    # In headers (custom ones, and the repr fields a monitor shows) and in arguments: plain strings.
    call = echo.apply_async((by_arg,), headers={"x-code": by_header}, argsrepr=by_header, kwargsrepr=by_header)
    assert call.get(timeout=30) == by_arg
    assert worker.stop() == 0
    assert not list(tmp_path.glob("pwned-*"))


def test_the_package_has_no_eval_or_unsafe_loaders() -> None:
    """Audit of the source: the only deserializer that can run code is pickle, behind accept_content."""
    pattern = re.compile(r"\b(eval|exec)\(|pickle\.loads?\b|marshal\.loads|yaml\.(unsafe_)?load\(|yaml\.Loader")
    found = []
    for path in sorted((ROOT / "celeriac").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert len(found) == 1 and "celeriac/serialization.py" in found[0] and '"pickle"' in found[0], found


def test_pickle_loads_only_behind_the_accept_check() -> None:
    payload = pickle.dumps(Explode(Path(os.devnull) / "never"))
    with pytest.raises(Exception, match="Refusing to deserialize untrusted content"):
        serialization.loads(payload, "application/x-python-serialize", "binary", frozenset({"application/json"}))
