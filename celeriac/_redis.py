"""Redis connections from Celery-style URLs, shared by the Redis broker and result backend.

URL forms::

    redis://[[user]:password@]host[:port][/db]
    rediss://...?ssl_cert_reqs=required|optional|none     (TLS; or broker_use_ssl / redis_backend_use_ssl)
    redis+socket:///path/to/redis.sock[?virtual_host=db]  (also unix:///path)
    sentinel://[:password@]host:26379[/db];sentinel://host2:26379   with options {'master_name': 'mymaster'}

One ``ConnectionPool`` per process and URL; redis-py pools notice a fork and
reconnect in the child, so prefork children never share a socket with the parent.
"""

from __future__ import annotations

import os
import ssl
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.exceptions

from . import _process
from .exceptions import ImproperlyConfigured, OperationalError

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "async_client_from_url",
    "client_from_url",
    "close_dedicated",
    "connection_errors",
    "execute_raw",
    "redis_error",
]

connection_errors: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    OSError,
)

_SSL_REQS = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
    "CERT_REQUIRED": ssl.CERT_REQUIRED,
    "CERT_OPTIONAL": ssl.CERT_OPTIONAL,
    "CERT_NONE": ssl.CERT_NONE,
}

ASYNC_POOL_SIZE = 10  # connections per event loop for awaiting results

_hiredis_pack: Any = None
_HiredisPacker: Any = None
try:  # the packer redis-py uses where hiredis (2.2.1 or later) is installed, with Python around each command
    from hiredis import pack_command as _hiredis_pack
    from redis.connection import HiredisRespSerializer as _HiredisPacker
except ImportError:  # no hiredis, or one without pack_command: redis-py packs in Python, and so does this
    _hiredis_pack = _HiredisPacker = None

_clients: dict[tuple[int, str, str], redis.Redis] = {}
_lock = threading.Lock()


def redis_error(exc: BaseException, url: str, action: str) -> OperationalError:
    from .config import mask_url

    return OperationalError(f"Redis error while {action} ({mask_url(url)}): {exc}", url=mask_url(url))


def _ssl_kwargs(query: Mapping[str, str], use_ssl: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"ssl": True}
    reqs = query.get("ssl_cert_reqs")
    if reqs is not None:
        if reqs not in _SSL_REQS:
            raise ImproperlyConfigured(f"ssl_cert_reqs must be required, optional or none, got {reqs!r}")
        kwargs["ssl_cert_reqs"] = _SSL_REQS[reqs]
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if key in query:
            kwargs[key] = query[key]
    if isinstance(use_ssl, Mapping):
        for key, value in use_ssl.items():
            kwargs[key if key.startswith("ssl_") else f"ssl_{key}"] = value
    return kwargs


def connection_kwargs(url: str, options: Mapping[str, Any], *, timeout: float, use_ssl: Any = None) -> dict[str, Any]:
    """redis-py keyword arguments for ``url`` (not for sentinel URLs)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query))
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": float(options.get("socket_connect_timeout", timeout)),
        "socket_timeout": options.get("socket_timeout"),
        "socket_keepalive": bool(options.get("socket_keepalive", True)),
        "health_check_interval": float(options.get("health_check_interval", 25)),
        "retry_on_timeout": False,
    }
    if options.get("max_connections"):
        kwargs["max_connections"] = int(options["max_connections"])
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    if parts.username:
        kwargs["username"] = unquote(parts.username)
    if scheme in ("redis+socket", "unix", "socket"):
        kwargs["unix_socket_path"] = parts.path
        kwargs["db"] = int(query.get("virtual_host") or query.get("db") or 0)
        kwargs.pop("socket_keepalive")
        return kwargs
    kwargs["host"] = parts.hostname or "localhost"
    kwargs["port"] = parts.port or 6379
    db = parts.path.strip("/") or query.get("db") or query.get("virtual_host") or "0"
    try:
        kwargs["db"] = int(db)
    except ValueError:
        raise ImproperlyConfigured(f"Redis database in {url!r} must be a number, got {db!r}") from None
    if scheme == "rediss" or use_ssl:
        kwargs.update(_ssl_kwargs(query, use_ssl))
    return kwargs


def client_from_url(
    url: str, options: Mapping[str, Any] | None = None, *, timeout: float = 4.0, use_ssl: Any = None
) -> redis.Redis:
    """A shared client for ``url`` in this process (one connection pool per process and URL)."""
    options = options or {}
    key = (os.getpid(), url, repr(sorted((k, repr(v)) for k, v in options.items())) + repr(use_ssl))
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _make_client(url, options, timeout=timeout, use_ssl=use_ssl)
            _clients[key] = client
        return client


def _make_client(url: str, options: Mapping[str, Any], *, timeout: float, use_ssl: Any) -> redis.Redis:
    if url.lower().startswith("sentinel://"):
        return _sentinel_client(url, options, timeout=timeout, use_ssl=use_ssl)
    kwargs = connection_kwargs(url, options, timeout=timeout, use_ssl=use_ssl)
    if "unix_socket_path" in kwargs:
        kwargs["path"] = kwargs.pop("unix_socket_path")
        pool = redis.ConnectionPool(connection_class=redis.UnixDomainSocketConnection, **kwargs)
    elif kwargs.pop("ssl", False):
        pool = redis.ConnectionPool(connection_class=redis.SSLConnection, **kwargs)
    else:
        pool = redis.ConnectionPool(**kwargs)
    return redis.Redis(connection_pool=pool)


def async_client_from_url(
    url: str, options: Mapping[str, Any] | None = None, *, timeout: float = 4.0, use_ssl: Any = None
) -> redis.asyncio.Redis:
    """A new ``redis.asyncio`` client for ``url``, for use on the running event loop only."""
    import redis.asyncio

    options = options or {}
    if url.lower().startswith("sentinel://"):
        from redis.asyncio.sentinel import Sentinel

        hosts, password, db, master = _sentinel_parts(url, options)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            hosts, socket_timeout=timeout, socket_connect_timeout=timeout,
                            sentinel_kwargs=dict(options.get("sentinel_kwargs") or {}))  # fmt: skip
        client: redis.asyncio.Redis = sentinel.master_for(master, password=password, db=db,
                                                           socket_connect_timeout=timeout)  # fmt: skip
        return client
    kwargs = connection_kwargs(url, options, timeout=timeout, use_ssl=use_ssl)
    # Many coroutines reading at once share a few connections (they queue for one) rather
    # than each opening its own.
    kwargs["max_connections"] = int(kwargs.get("max_connections") or ASYNC_POOL_SIZE)
    kwargs["timeout"] = None
    if "unix_socket_path" in kwargs:
        kwargs["path"] = kwargs.pop("unix_socket_path")
        kwargs["connection_class"] = redis.asyncio.UnixDomainSocketConnection
    elif kwargs.pop("ssl", False):
        kwargs["connection_class"] = redis.asyncio.SSLConnection
    return redis.asyncio.Redis(connection_pool=redis.asyncio.BlockingConnectionPool(**kwargs))


def _sentinel_parts(url: str, options: Mapping[str, Any]) -> tuple[list[tuple[str, int]], str | None, int, str]:
    master = options.get("master_name")
    if not master:
        raise ImproperlyConfigured(
            "sentinel:// needs broker_transport_options={'master_name': '...'} (or result_backend_transport_options)"
        )
    hosts: list[tuple[str, int]] = []
    password = None
    db = 0
    for part in url.split(";"):
        parts = urlsplit(part.strip())
        hosts.append((parts.hostname or "localhost", parts.port or 26379))
        password = password or (unquote(parts.password) if parts.password else None)
        if parts.path.strip("/"):
            db = int(parts.path.strip("/"))
    return hosts, password, db, str(master)


def _sentinel_client(url: str, options: Mapping[str, Any], *, timeout: float, use_ssl: Any) -> redis.Redis:
    from redis.sentinel import Sentinel

    hosts, password, db, master = _sentinel_parts(url, options)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        hosts,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        sentinel_kwargs=dict(options.get("sentinel_kwargs") or {}),
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        str(master), password=password, db=db, socket_connect_timeout=timeout
    )
    return client


def execute_raw(client: redis.Redis, *commands: tuple[Any, ...]) -> list[Any]:
    """Send ``commands`` in one write and read their replies.

    The hot paths (publish, store and read a result) use this instead of a redis-py
    pipeline or command method: same protocol code (redis-py's connection, with
    hiredis), a fraction of the per-call Python overhead. The calling thread uses a
    connection of its own to the client's server (see :class:`_Dedicated`), so the
    usual call takes no connection out of the pool and puts none back; a thread that
    finds it busy uses the pool. A reply that is an error is raised, after the rest of
    the replies have been read so the connection stays usable.
    """
    slot = _dedicated(client)
    if slot is not None and slot.lock.acquire(blocking=False):
        try:
            conn = slot.connection()
            if conn is not None:
                return _round_trip(conn, commands)
        finally:
            slot.lock.release()
    pool = client.connection_pool
    # Typed loosely: redis-py's annotations of these differ between its releases.
    pooled: Any = pool.get_connection()
    try:
        return _round_trip(pooled, commands)
    finally:
        pool.release(pooled)


def _round_trip(conn: Any, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
    try:
        conn.send_packed_command(pack_commands(conn, commands))
        replies: list[Any] = []
        error: Exception | None = None
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except redis.exceptions.ResponseError as exc:
                error = error or exc
                replies.append(exc)
        if error is not None:
            raise error
        return replies
    except connection_errors:
        conn.disconnect()
        raise


def pack_commands(conn: Any, commands: tuple[tuple[Any, ...], ...]) -> list[bytes]:
    """The RESP encoding of ``commands``, never by hand.

    Where redis-py packs with hiredis, hiredis is called here directly: the same bytes, without
    the Python redis-py runs around it for each command (7% of a Redis worker's samples in a profile).
    What it would treat otherwise (a command name of two words, which it splits; a value hiredis
    refuses, for which it raises its own error) goes to redis-py's packer. Arguments are str, bytes,
    int or float, as celeriac passes them (redis-py copies a memoryview to bytes first; hiredis would
    not).
    """
    if _hiredis_pack is not None and type(getattr(conn, "_command_packer", None)) is _HiredisPacker:
        try:
            parts = []
            for command in commands:
                name = command[0]
                if type(name) is not str or " " in name:
                    break
                parts.append(_hiredis_pack(command))
            else:
                return [b"".join(parts)]
        except (TypeError, ValueError):  # ValueError: a str hiredis can't encode (UnicodeEncodeError)
            pass
    packed: list[bytes] = conn.pack_commands(commands)
    return packed


class _Dedicated:
    """A connection to one client's server kept out of its pool, for one thread at a time.

    Made by the pool (same options, counted against ``max_connections``) but never put
    back, so a call skips the pool's locking and bookkeeping. Before each use it is
    checked, as the pool checks a connection it hands out, for a reply left unread or a
    server that closed it (a Redis restart), and reopened if so.
    """

    __slots__ = ("conn", "lock", "pid", "pool")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.pid = _process.pid()
        self.lock = threading.Lock()
        self.conn: Any = None

    def connection(self) -> Any:
        conn = self.conn
        if conn is None:
            try:
                conn = self.conn = self.pool.make_connection()
            except (redis.exceptions.RedisError, OSError):
                return None  # e.g. max_connections reached: the caller uses the pool
        try:
            if conn.can_read():
                conn.disconnect()  # data nobody asked for, or closed by the server: start afresh
        except connection_errors:
            conn.disconnect()
        return conn

    def close(self) -> None:
        if self.conn is not None and self.pid == _process.pid():
            self.conn.disconnect()
        self.conn = None


_slots: weakref.WeakKeyDictionary[redis.Redis, _Dedicated] = weakref.WeakKeyDictionary()


def _dedicated(client: redis.Redis) -> _Dedicated | None:
    slot = _slots.get(client)
    if slot is not None and slot.pid == _process.pid():
        return slot
    pool = client.connection_pool
    if not hasattr(pool, "make_connection"):
        return None
    with _lock:
        slot = _slots.get(client)
        if slot is None or slot.pid != _process.pid():
            # After a fork the parent's connection is left alone: its socket is the parent's.
            slot = _slots[client] = _Dedicated(pool)
        return slot


def close_dedicated(client: redis.Redis) -> None:
    """Close the connection :func:`execute_raw` keeps for ``client`` in this process, if any."""
    with _lock:
        slot = _slots.pop(client, None)
    if slot is not None:
        with slot.lock:
            slot.close()
