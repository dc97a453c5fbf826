"""Fixtures for the documentation tests: the real Redis and RabbitMQ that broker variants run on."""

from __future__ import annotations

from tests.integration.amqp.conftest import _vhost_cleanup, vhost  # noqa: F401 - fixtures
from tests.integration.redis.conftest import redis_url  # noqa: F401 - fixture
