"""Fixtures for the fault, bad-input and load tests: a project on each broker, and a TCP proxy.

Redis tests here use a database of their own (``RELIABILITY_DB``), so they never flush the data of
the integration tests that may run at the same time; RabbitMQ tests get a vhost each, as in
``tests/integration/amqp``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import Project
from tests.integration.amqp.conftest import _vhost_cleanup, amqp_url, vhost  # noqa: F401 - fixtures
from tests.integration.redis.conftest import REDIS_HOST, REDIS_PORT, flushed_redis_url, rclient  # noqa: F401 - rclient: fixture
from tests.reliability.proxy import TCPProxy

RELIABILITY_DB = int(os.environ.get("CELERIAC_TEST_RELIABILITY_REDIS_DB", "9"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    yield from flushed_redis_url(RELIABILITY_DB)


@pytest.fixture(params=["sqlite", "redis"])
def broker_project(request: pytest.FixtureRequest, project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The project on the embedded SQLite broker, then on Redis (broker and results)."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        project.broker_url = project.result_backend = url
        monkeypatch.setenv("CELERIAC_BROKER_URL", url)
        monkeypatch.setenv("CELERIAC_RESULT_BACKEND", url)
    return project


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[TCPProxy]:
    proxy = TCPProxy((REDIS_HOST, REDIS_PORT))
    yield proxy
    proxy.close()


@pytest.fixture
def amqp_proxy() -> Iterator[TCPProxy]:
    from tests.integration.amqp.conftest import AMQP_HOST, AMQP_PORT

    proxy = TCPProxy((AMQP_HOST, AMQP_PORT))
    yield proxy
    proxy.close()
