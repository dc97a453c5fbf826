"""Result backends by URL scheme; a module is imported only when its scheme is used.

``result_backend`` may also be a class, or the import path of one
(``"myapp.backends:MyBackend"``), subclassing :class:`ResultBackend`, or
``"django-db"`` (the Django ORM, :mod:`celeriac.contrib.django.results`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import ImproperlyConfigured
from .base import KeyValueBackend, ResultBackend, ResultMeta

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["KeyValueBackend", "ResultBackend", "ResultMeta", "create_backend"]

_SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "sqlite": ("celeriac.backends.sqlite", "SQLiteBackend", None),
    "memory": ("celeriac.backends.memory", "MemoryBackend", None),
    "cache+memory": ("celeriac.backends.memory", "MemoryBackend", None),
    "disabled": ("celeriac.backends.disabled", "DisabledBackend", None),
    "redis": ("celeriac.backends.redis", "RedisBackend", "redis"),
    "rediss": ("celeriac.backends.redis", "RedisBackend", "redis"),
    "redis+socket": ("celeriac.backends.redis", "RedisBackend", "redis"),
    "sentinel": ("celeriac.backends.redis", "RedisBackend", "redis"),
    "rpc": ("celeriac.backends.rpc", "RPCBackend", "amqp"),
    "db": ("celeriac.backends.database", "DatabaseBackend", "sqlalchemy"),
    "cache": ("celeriac.backends.memcached", "MemcachedBackend", "memcached"),
    # Celery's name for django-celery-results' ORM backend: a bare name, no "://".
    "django-db": ("celeriac.contrib.django.results.backend", "DjangoBackend", "django"),
}


def _scheme(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("db+"):
        return "db"
    if scheme.startswith("cache+") and scheme != "cache+memory":
        return "cache"
    return scheme


def backend_class(spec: Any) -> type[ResultBackend]:
    if isinstance(spec, type):
        if not issubclass(spec, ResultBackend):
            raise ImproperlyConfigured(
                f"result_backend: {spec!r} is not a ResultBackend subclass", key="result_backend"
            )
        return spec
    if not isinstance(spec, str):
        raise ImproperlyConfigured(f"result_backend: expected a URL or class, got {spec!r}", key="result_backend")
    if "://" not in spec and spec.lower() not in _SCHEMES:
        from ..config import load_object

        try:
            loaded = load_object(spec)
        except (ImportError, AttributeError) as exc:
            raise ImproperlyConfigured(f"result_backend: can't import {spec!r}: {exc}", key="result_backend") from None
        return backend_class(loaded)
    scheme = _scheme(spec)
    try:
        module_name, class_name, extra = _SCHEMES[scheme]
    except KeyError:
        raise ImproperlyConfigured(
            f"result_backend: unknown backend {scheme!r} (known: {', '.join(sorted(_SCHEMES))})", key="result_backend"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("celeriac"):
            raise ImproperlyConfigured(
                f"result_backend: the {scheme!r} backend is not available in this version of celeriac",
                key="result_backend",
            ) from None
        hint = f" (pip install 'celeriac[{extra}]')" if extra else ""
        raise ImproperlyConfigured(
            f"result_backend: the {scheme!r} backend needs the {exc.name!r} package{hint}", key="result_backend"
        ) from None
    cls: type[ResultBackend] = getattr(module, class_name)
    return cls


def create_backend(spec: Any, app: Celery, options: Mapping[str, Any] | None = None) -> ResultBackend:
    url = spec if isinstance(spec, str) and "://" in spec else ""
    return backend_class(spec)(url, options or {}, app=app)
