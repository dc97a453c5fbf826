"""Unit-test fixtures: hermetic settings and an in-memory app per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from celeriac import Celery

_ENV_OVERRIDES = (
    "CELERIAC_BROKER_URL",
    "CELERY_BROKER_URL",
    "CELERIAC_RESULT_BACKEND",
    "CELERY_RESULT_BACKEND",
)


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    # These variables win over app settings; one left in the developer's shell must not
    # redirect unit tests to a real broker.
    for name in _ENV_OVERRIDES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def broker_url() -> str:
    """A private ``memory://`` broker for this test (memory brokers of one name share queues)."""
    return f"memory://{uuid.uuid4().hex}"


@pytest.fixture
def app(broker_url: str) -> Iterator[Celery]:
    """An app on a private memory broker and the in-process result store."""
    with Celery("t", broker=broker_url, backend="memory://") as application:
        yield application
