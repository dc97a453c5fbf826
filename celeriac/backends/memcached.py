"""Memcached result backend (pymemcache).

URL: ``cache+memcached://host:11211/``; several servers ``;``-separated, as in Celery:
``cache+memcached://10.0.0.1:11211;10.0.0.2:11211/`` (keys are spread with
consistent hashing). ``cache+memory://`` is the in-process twin for tests.

Keys are Celery's (``celery-task-meta-<task id>``), values the JSON meta, with
``result_expires`` as the item's expiry (memcached caps relative expiries at 30 days).
Memcached refuses items over its item size limit (1 MiB unless started with ``-I``):
such a result raises :class:`~celeriac.exceptions.BackendStoreError` naming the size
and the limit, and the task is recorded as failed with that error instead of
vanishing. Memcached evicts under memory pressure: it is a cache, not a store of record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..exceptions import BackendStoreError, ImproperlyConfigured, OperationalError
from .base import KeyValueBackend

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["MemcachedBackend"]

MAX_RELATIVE_EXPIRY = 30 * 24 * 3600  # beyond this memcached reads the number as a Unix time
DEFAULT_ITEM_LIMIT = 1024 * 1024


def parse_servers(url: str) -> list[tuple[str, int]]:
    """``cache+memcached://a:11211;b:11212/`` -> ``[("a", 11211), ("b", 11212)]``."""
    rest = url.split("://", 1)[1] if "://" in url else url
    servers = []
    for part in rest.strip("/").split(";"):
        part = part.strip().strip("/")
        if not part:
            continue
        parsed = urlsplit(f"//{part}")
        servers.append((parsed.hostname or "127.0.0.1", parsed.port or 11211))
    if not servers:
        raise ImproperlyConfigured(f"result_backend: no memcached server in {url!r}", key="result_backend")
    return servers


class MemcachedBackend(KeyValueBackend):
    read_ahead = True  # get_many

    def __init__(self, url: str = "", options: Mapping[str, Any] | None = None, *, app: Celery | None = None) -> None:
        super().__init__(url, options, app=app)
        try:
            import pymemcache  # noqa: F401
        except ImportError:
            raise ImproperlyConfigured(
                "result_backend: memcached needs pymemcache (pip install 'celeriac[memcached]')", key="result_backend"
            ) from None
        self.servers = parse_servers(url)
        opts = dict(app.conf.cache_backend_options or {}) if app is not None else {}
        opts.update(options or {})
        self.item_limit = int(opts.pop("item_size_limit", DEFAULT_ITEM_LIMIT))
        timeout = float(app.conf.broker_connection_timeout) if app is not None else 4.0
        self._client_options = {"connect_timeout": timeout, "timeout": timeout, **opts}
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from pymemcache.client.hash import HashClient

            # HashClient is thread-safe with use_pooling; one per backend object (per process).
            self._client = HashClient(self.servers, use_pooling=True, **self._client_options)
        return self._client

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from pymemcache.exceptions import MemcacheError

        try:
            return fn(*args, **kwargs)
        except (MemcacheError, OSError) as exc:
            raise OperationalError(f"memcached error while {action} ({self.servers}): {exc}") from exc

    def _get(self, key: str) -> bytes | None:
        value: bytes | None = self._call("reading a result", self.client.get, key)
        return value

    def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        found: dict[str, bytes] = self._call("reading results", self.client.get_many, list(keys))
        return [found.get(key) for key in keys]

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        if len(value) > self.item_limit:
            raise BackendStoreError(
                f"result too large for memcached: {len(value)} bytes, the item limit is {self.item_limit} "
                "(start memcached with a larger -I and set cache_backend_options={'item_size_limit': ...}, "
                "or use another result backend)"
            )
        expire = min(int(ttl), MAX_RELATIVE_EXPIRY) if ttl else 0
        stored = self._call("storing a result", self.client.set, key, value, expire=expire, noreply=False)
        if not stored:
            raise BackendStoreError(f"memcached refused to store {key} ({len(value)} bytes)")

    def _delete(self, key: str) -> None:
        self._call("forgetting a result", self.client.delete, key, noreply=False)

    def _incr(self, key: str, ttl: float | None) -> int:
        value = self._call("counting", self.client.incr, key, 1, noreply=False)
        if value is None:
            expire = min(int(ttl), MAX_RELATIVE_EXPIRY) if ttl else 0
            if self._call("counting", self.client.add, key, b"1", expire=expire, noreply=False):
                return 1
            value = self._call("counting", self.client.incr, key, 1, noreply=False)
        return int(value)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        servers = ";".join(f"{host}:{port}" for host, port in self.servers)
        return f"<celeriac.backends.memcached.MemcachedBackend cache+memcached://{servers}/>"

    __str__ = __repr__
