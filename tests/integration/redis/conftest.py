"""A real Redis (127.0.0.1:6379) per test: its own database number, flushed before and after."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import Project

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# Two runs of the suite at once on one Redis give each their own numbers (e.g. 3 and 4).
TEST_DB = int(os.environ.get("CELERIAC_TEST_REDIS_DB", "11"))


def redis_available() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2):
            return True
    except OSError:
        return False


def flushed_redis_url(db: int) -> Iterator[str]:
    """The URL of Redis database ``db``, flushed before and after the test (fixture body)."""
    if not redis_available():
        pytest.fail(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT} (scripts/services starts it)")
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    client.flushdb()
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    client.flushdb()
    client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    yield from flushed_redis_url(TEST_DB)


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_project(project: Project, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project whose broker and result backend are the test's Redis database."""
    project.broker_url = project.result_backend = redis_url
    monkeypatch.setenv("CELERIAC_BROKER_URL", redis_url)
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", redis_url)
    return project
