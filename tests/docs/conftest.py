"""Fixtures for the documentation tests: the real Redis and RabbitMQ that broker variants run on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.integration.amqp.conftest import _vhost_cleanup, vhost  # noqa: F401 - fixtures
from tests.integration.redis.conftest import REDIS_HOST, REDIS_PORT, redis_available

DOCS_DB = 15


@pytest.fixture
def docs_redis() -> Iterator[tuple[str, str]]:
    """A Redis URL and a key prefix of this test's own; other runs may use (and flush) any database."""
    if not redis_available():
        pytest.fail(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT} (scripts/services starts it)")
    prefix = f"celeriac-docs-{uuid.uuid4().hex[:12]}:"
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{DOCS_DB}", prefix
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=DOCS_DB)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
