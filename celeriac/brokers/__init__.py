"""Broker implementations by URL scheme; a module is imported only when its scheme is used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..exceptions import ImproperlyConfigured
from .base import Broker, Delivery, Envelope, QueueSpec

__all__ = ["Broker", "Delivery", "Envelope", "QueueSpec", "broker_class", "create_broker"]

# scheme -> (module, class, the extra that installs its dependencies)
_SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "sqlite": ("celeriac.brokers.sqlite", "SQLiteBroker", None),
    "memory": ("celeriac.brokers.memory", "MemoryBroker", None),
    "redis": ("celeriac.brokers.redis", "RedisBroker", "redis"),
    "rediss": ("celeriac.brokers.redis", "RedisBroker", "redis"),
    "redis+socket": ("celeriac.brokers.redis", "RedisBroker", "redis"),
    "sentinel": ("celeriac.brokers.redis", "RedisBroker", "redis"),
    "amqp": ("celeriac.brokers.amqp", "AMQPBroker", "amqp"),
    "amqps": ("celeriac.brokers.amqp", "AMQPBroker", "amqp"),
    "pyamqp": ("celeriac.brokers.amqp", "AMQPBroker", "amqp"),
    "sqs": ("celeriac.brokers.sqs", "SQSBroker", "sqs"),
}


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else url.lower()


def broker_class(url: str) -> type[Broker]:
    scheme = scheme_of(url)
    try:
        module_name, class_name, extra = _SCHEMES[scheme]
    except KeyError:
        raise ImproperlyConfigured(
            f"broker_url: unknown transport {scheme!r} (known: {', '.join(sorted(_SCHEMES))})", key="broker_url"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("celeriac"):
            raise ImproperlyConfigured(
                f"broker_url: the {scheme!r} transport is not available in this version of celeriac", key="broker_url"
            ) from None
        hint = f" (pip install 'celeriac[{extra}]')" if extra else ""
        raise ImproperlyConfigured(
            f"broker_url: the {scheme!r} transport needs the {exc.name!r} package{hint}", key="broker_url"
        ) from None
    cls: type[Broker] = getattr(module, class_name)
    return cls


def create_broker(url: str, options: Mapping[str, Any] | None = None) -> Broker:
    return broker_class(url)(url, options or {})
