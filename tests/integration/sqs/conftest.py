"""A moto SQS server for the session, started as a subprocess on 127.0.0.1, and a queue-name prefix per test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import Project

REGION = "us-east-1"
# moto accepts any credentials; these keep boto3 away from real ones (and from instance metadata).
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}

TASKS = """
import os, time
from celeriac import Celery

app = Celery("tasks")
app.conf.broker_transport_options = {{
    "endpoint_url": {endpoint!r},
    "queue_name_prefix": {prefix!r},
    "visibility_timeout": {visibility_timeout},
    "polling_interval": 0.1,
}}
HERE = os.path.dirname(os.path.abspath(__file__))


@app.task
def add(x, y):
    return x + y


@app.task
def echo(value):
    return value
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sqs_client(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "sqs",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto server (SQS) running for the whole session."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(endpoint, proc, log)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_until_serving(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    client = sqs_client(endpoint)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"moto server exited ({proc.returncode}):\n{log.read_text(errors='replace')}")
        try:
            client.list_queues()
            return
        except Exception:
            if time.monotonic() > deadline:
                pytest.fail(f"moto server did not answer on {endpoint}:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        finally:
            client.close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Fake credentials in this process's environment (and so in every worker started from it)."""
    env = dict(AWS_ENV, AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"))  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def sqs_prefix(moto_endpoint: str) -> Iterator[str]:
    """A fresh queue-name prefix; the test's queues are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    yield prefix
    client = sqs_client(moto_endpoint)
    for url in client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []):
        client.delete_queue(QueueUrl=url)
    client.close()


@pytest.fixture
def sqs(moto_endpoint: str) -> Iterator[Any]:
    """A plain boto3 SQS client on the moto server, to look at queues from outside."""
    client = sqs_client(moto_endpoint)
    yield client
    client.close()


@pytest.fixture
def sqs_options(moto_endpoint: str, sqs_prefix: str, aws_env: dict[str, str]) -> dict[str, Any]:
    """Transport options for a broker on the test's queues."""
    return {"endpoint_url": moto_endpoint, "queue_name_prefix": sqs_prefix, "polling_interval": 0.1}


@pytest.fixture
def sqs_project(project: Project, moto_endpoint: str, sqs_prefix: str, aws_env: dict[str, str]) -> Project:
    """A project on ``sqs://`` (moto) with its results in a SQLite file; ``tasks.py`` holds add/echo."""
    project.broker_url = "sqs://"
    project.result_backend = f"sqlite:///{project.path / 'results.db'}"
    assert project.monkeypatch is not None
    # This process (the client) must use the same broker and backend as the workers.
    project.monkeypatch.setenv("CELERIAC_BROKER_URL", project.broker_url)
    project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", project.result_backend)
    project.write("tasks.py", tasks_source(moto_endpoint, sqs_prefix))
    return project


def tasks_source(endpoint: str, prefix: str, *, visibility_timeout: int = 30, extra: str = "") -> str:
    """``tasks.py`` on the moto server with the test's prefix (``extra`` is appended)."""
    return TASKS.format(endpoint=endpoint, prefix=prefix, visibility_timeout=visibility_timeout) + extra
