"""Settings: Celery 5's lower-case keys and defaults, validation, and loading.

Values are checked when they are set, so a wrong type or a malformed URL fails
at start-up with the key named, not deep inside the worker later. Unknown keys
are kept (applications may stash their own settings on ``app.conf``) but logged
with the nearest valid key, which catches typos such as ``task_serialiser``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from .exceptions import ImproperlyConfigured

__all__ = ["DEFAULTS", "SETTINGS", "Setting", "Settings", "load_object"]

logger = logging.getLogger("celeriac.config")

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}


class Setting:
    """One setting: its default, its type and its pre-5.0 upper-case name."""

    __slots__ = ("default", "kind", "old", "nullable")

    def __init__(self, default: Any, kind: str, old: str | None = None) -> None:
        self.default = default
        self.kind = kind  # str, int, float, bool, seconds, list, dict, url, any
        self.old = old
        self.nullable = True


def _s(default: Any, kind: str, old: str | None = None) -> Setting:
    return Setting(default, kind, old)


_LOG_FMT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
_TASK_LOG_FMT = "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"

# Celery 5's settings (those celeriac reads, plus those it accepts for compatibility).
SETTINGS: dict[str, Setting] = {
    "accept_content": _s(("json",), "list", "CELERY_ACCEPT_CONTENT"),
    "result_accept_content": _s(None, "list"),
    "enable_utc": _s(True, "bool", "CELERY_ENABLE_UTC"),
    "imports": _s((), "list", "CELERY_IMPORTS"),
    "include": _s((), "list", "CELERY_INCLUDE"),
    "timezone": _s(None, "timezone", "CELERY_TIMEZONE"),
    "beat_max_loop_interval": _s(0, "float", "CELERYBEAT_MAX_LOOP_INTERVAL"),
    "beat_schedule": _s({}, "dict", "CELERYBEAT_SCHEDULE"),
    "beat_scheduler": _s("celeriac.beat:PersistentScheduler", "any", "CELERYBEAT_SCHEDULER"),
    "beat_schedule_filename": _s("celerybeat-schedule", "str", "CELERYBEAT_SCHEDULE_FILENAME"),
    "beat_sync_every": _s(0, "int", "CELERYBEAT_SYNC_EVERY"),
    "beat_cron_starting_deadline": _s(None, "int"),
    "beat_lease_timeout": _s(10.0, "float"),  # celeriac: seconds a silent leader keeps the beat lease
    "broker_url": _s(None, "url", "BROKER_URL"),
    "broker_read_url": _s(None, "url", "BROKER_READ_URL"),
    "broker_write_url": _s(None, "url", "BROKER_WRITE_URL"),
    "broker_transport": _s(None, "str", "BROKER_TRANSPORT"),
    "broker_transport_options": _s({}, "dict", "BROKER_TRANSPORT_OPTIONS"),
    "broker_connection_timeout": _s(4.0, "float", "BROKER_CONNECTION_TIMEOUT"),
    "broker_connection_retry": _s(True, "bool", "BROKER_CONNECTION_RETRY"),
    "broker_connection_retry_on_startup": _s(None, "bool"),
    "broker_connection_max_retries": _s(100, "int", "BROKER_CONNECTION_MAX_RETRIES"),
    "broker_channel_error_retry": _s(False, "bool"),
    "broker_failover_strategy": _s(None, "any", "BROKER_FAILOVER_STRATEGY"),
    "broker_heartbeat": _s(120, "float", "BROKER_HEARTBEAT"),
    "broker_heartbeat_checkrate": _s(3.0, "float", "BROKER_HEARTBEAT_CHECKRATE"),
    "broker_login_method": _s(None, "str", "BROKER_LOGIN_METHOD"),
    "broker_native_delayed_delivery_queue_type": _s("quorum", "str"),
    "broker_pool_limit": _s(10, "int", "BROKER_POOL_LIMIT"),
    "broker_pool_acquire_timeout": _s(None, "float"),
    "broker_use_ssl": _s(False, "any", "BROKER_USE_SSL"),
    "broker_host": _s(None, "str", "BROKER_HOST"),
    "broker_port": _s(None, "int", "BROKER_PORT"),
    "broker_user": _s(None, "str", "BROKER_USER"),
    "broker_password": _s(None, "str", "BROKER_PASSWORD"),
    "broker_vhost": _s(None, "str", "BROKER_VHOST"),
    "cache_backend": _s(None, "str", "CELERY_CACHE_BACKEND"),
    "cache_backend_options": _s({}, "dict", "CELERY_CACHE_BACKEND_OPTIONS"),
    "control_queue_ttl": _s(300.0, "float"),
    "control_queue_expires": _s(10.0, "float"),
    "control_queue_exclusive": _s(False, "bool"),
    "control_queue_durable": _s(False, "bool"),
    "control_exchange": _s("celery", "str", "CELERY_CONTROL_EXCHANGE"),
    "event_queue_expires": _s(60.0, "float", "CELERY_EVENT_QUEUE_EXPIRES"),
    "event_queue_ttl": _s(5.0, "float", "CELERY_EVENT_QUEUE_TTL"),
    "event_queue_prefix": _s("celeryev", "str", "CELERY_EVENT_QUEUE_PREFIX"),
    "event_queue_exclusive": _s(False, "bool"),
    "event_queue_durable": _s(False, "bool"),
    "event_serializer": _s("json", "serializer", "CELERY_EVENT_SERIALIZER"),
    "event_exchange": _s("celeryev", "str"),
    "redis_backend_use_ssl": _s(None, "dict", "CELERY_REDIS_BACKEND_USE_SSL"),
    "redis_db": _s(None, "int", "CELERY_REDIS_DB"),
    "redis_host": _s(None, "str", "CELERY_REDIS_HOST"),
    "redis_max_connections": _s(None, "int", "CELERY_REDIS_MAX_CONNECTIONS"),
    "redis_username": _s(None, "str"),
    "redis_password": _s(None, "str", "CELERY_REDIS_PASSWORD"),
    "redis_port": _s(None, "int", "CELERY_REDIS_PORT"),
    "redis_socket_timeout": _s(120.0, "float"),
    "redis_socket_connect_timeout": _s(None, "float"),
    "redis_retry_on_timeout": _s(False, "bool"),
    "redis_socket_keepalive": _s(False, "bool"),
    "result_backend": _s(None, "backend", "CELERY_RESULT_BACKEND"),
    "result_cache_max": _s(-1, "int", "CELERY_MAX_CACHED_RESULTS"),
    "result_compression": _s(None, "str", "CELERY_RESULT_COMPRESSION"),
    "result_exchange": _s("celeryresults", "str", "CELERY_RESULT_EXCHANGE"),
    "result_exchange_type": _s("direct", "str", "CELERY_RESULT_EXCHANGE_TYPE"),
    "result_expires": _s(timedelta(days=1), "seconds", "CELERY_TASK_RESULT_EXPIRES"),
    "result_persistent": _s(None, "bool", "CELERY_RESULT_PERSISTENT"),
    "result_extended": _s(False, "bool", "CELERY_RESULT_EXTENDED"),
    "result_serializer": _s("json", "serializer", "CELERY_RESULT_SERIALIZER"),
    "security_certificate": _s(None, "str", "CELERY_SECURITY_CERTIFICATE"),
    "security_cert_store": _s(None, "str", "CELERY_SECURITY_CERT_STORE"),
    "security_digest": _s("sha256", "str", "CELERY_SECURITY_DIGEST"),
    "security_key": _s(None, "str", "CELERY_SECURITY_KEY"),
    "security_key_password": _s(None, "any", "CELERY_SECURITY_KEY_PASSWORD"),
    "result_backend_transport_options": _s({}, "dict"),
    "result_chord_retry_interval": _s(1.0, "float"),
    "result_chord_join_timeout": _s(3.0, "float"),
    "result_chord_ordered": _s(False, "bool"),
    "result_backend_max_sleep_between_retries_ms": _s(10000, "int"),
    "result_backend_max_retries": _s(float("inf"), "float"),
    "result_backend_base_sleep_between_retries_ms": _s(10, "int"),
    "result_backend_always_retry": _s(False, "bool"),
    "database_url": _s(None, "str", "CELERY_RESULT_DBURI"),
    "database_engine_options": _s({"pool_pre_ping": True, "pool_recycle": 3600}, "dict"),
    "database_short_lived_sessions": _s(False, "bool"),
    "database_table_schemas": _s(None, "dict"),
    "database_table_names": _s(None, "dict", "CELERY_RESULT_DB_TABLENAMES"),
    "database_create_tables_at_setup": _s(True, "bool"),
    "task_acks_late": _s(True, "bool", "CELERY_ACKS_LATE"),
    "task_acks_on_failure_or_timeout": _s(True, "bool"),
    "task_always_eager": _s(False, "bool", "CELERY_ALWAYS_EAGER"),
    "task_annotations": _s(None, "any", "CELERY_ANNOTATIONS"),
    "task_compression": _s(None, "str", "CELERY_MESSAGE_COMPRESSION"),
    "task_create_missing_queues": _s(True, "bool", "CELERY_CREATE_MISSING_QUEUES"),
    "task_create_missing_queue_type": _s("classic", "str"),
    "task_create_missing_queue_exchange_type": _s(None, "str"),
    "task_inherit_parent_priority": _s(False, "bool"),
    "task_default_delivery_mode": _s(2, "any", "CELERY_DEFAULT_DELIVERY_MODE"),
    "task_default_queue": _s("celery", "str", "CELERY_DEFAULT_QUEUE"),
    "task_default_queue_type": _s("classic", "str"),
    "task_default_exchange": _s(None, "str", "CELERY_DEFAULT_EXCHANGE"),
    "task_default_exchange_type": _s("direct", "str", "CELERY_DEFAULT_EXCHANGE_TYPE"),
    "task_default_routing_key": _s(None, "str", "CELERY_DEFAULT_ROUTING_KEY"),
    "task_default_rate_limit": _s(None, "rate", "CELERY_DEFAULT_RATE_LIMIT"),
    # celeriac's own: "worker" (each worker counts for itself, as Celery) or "global" (all together).
    "task_rate_limit_scope": _s("worker", "scope"),
    "task_default_priority": _s(None, "int"),
    "task_eager_propagates": _s(False, "bool", "CELERY_EAGER_PROPAGATES_EXCEPTIONS"),
    "task_ignore_result": _s(False, "bool", "CELERY_IGNORE_RESULT"),
    "task_store_eager_result": _s(False, "bool"),
    "task_protocol": _s(2, "int", "CELERY_TASK_PROTOCOL"),
    # celeriac's own: the largest task message body, in bytes, a client sends or a worker decodes.
    "task_max_message_size": _s(10 * 1024 * 1024, "int"),
    "task_publish_retry": _s(True, "bool", "CELERY_TASK_PUBLISH_RETRY"),
    "task_publish_retry_policy": _s(
        {"max_retries": 3, "interval_start": 0, "interval_max": 1, "interval_step": 0.2},
        "dict",
        "CELERY_TASK_PUBLISH_RETRY_POLICY",
    ),
    "task_queues": _s(None, "any", "CELERY_QUEUES"),
    "task_queue_max_priority": _s(None, "int", "CELERY_QUEUE_MAX_PRIORITY"),
    "task_reject_on_worker_lost": _s(None, "bool", "CELERY_REJECT_ON_WORKER_LOST"),
    "task_remote_tracebacks": _s(False, "bool"),
    "task_routes": _s(None, "any", "CELERY_ROUTES"),
    "task_send_sent_event": _s(False, "bool", "CELERY_SEND_TASK_SENT_EVENT"),
    "task_serializer": _s("json", "serializer", "CELERY_TASK_SERIALIZER"),
    "task_soft_time_limit": _s(None, "float", "CELERYD_TASK_SOFT_TIME_LIMIT"),
    "task_time_limit": _s(None, "float", "CELERYD_TASK_TIME_LIMIT"),
    "task_store_errors_even_if_ignored": _s(False, "bool", "CELERY_STORE_ERRORS_EVEN_IF_IGNORED"),
    "task_track_started": _s(False, "bool", "CELERY_TRACK_STARTED"),
    "task_allow_error_cb_on_chord_header": _s(False, "bool"),
    "worker_agent": _s(None, "str"),
    "worker_autoscaler": _s(None, "any", "CELERYD_AUTOSCALER"),
    "worker_cancel_long_running_tasks_on_connection_loss": _s(False, "bool"),
    "worker_soft_shutdown_timeout": _s(0.0, "float"),
    "worker_enable_soft_shutdown_on_idle": _s(False, "bool"),
    "worker_concurrency": _s(None, "int", "CELERYD_CONCURRENCY"),
    "worker_consumer": _s(None, "any", "CELERYD_CONSUMER"),
    "worker_direct": _s(False, "bool", "CELERY_WORKER_DIRECT"),
    "worker_disable_rate_limits": _s(False, "bool", "CELERY_DISABLE_RATE_LIMITS"),
    "worker_deduplicate_successful_tasks": _s(False, "bool"),
    "worker_enable_remote_control": _s(True, "bool", "CELERY_ENABLE_REMOTE_CONTROL"),
    "worker_hijack_root_logger": _s(True, "bool", "CELERYD_HIJACK_ROOT_LOGGER"),
    "worker_log_color": _s(None, "bool", "CELERYD_LOG_COLOR"),
    "worker_log_format": _s(_LOG_FMT, "str", "CELERYD_LOG_FORMAT"),
    "worker_lost_wait": _s(10.0, "float", "CELERYD_WORKER_LOST_WAIT"),
    "worker_max_memory_per_child": _s(None, "int", "CELERYD_MAX_MEMORY_PER_CHILD"),
    "worker_max_tasks_per_child": _s(None, "int", "CELERYD_MAX_TASKS_PER_CHILD"),
    "worker_pool": _s("prefork", "str", "CELERYD_POOL"),
    "worker_asyncio_threads": _s(10, "int"),
    "worker_pool_putlocks": _s(True, "bool", "CELERYD_POOL_PUTLOCKS"),
    "worker_pool_restarts": _s(False, "bool", "CELERYD_POOL_RESTARTS"),
    "worker_proc_alive_timeout": _s(4.0, "float"),
    "worker_prefetch_multiplier": _s(4, "int", "CELERYD_PREFETCH_MULTIPLIER"),
    "worker_eta_task_limit": _s(None, "int"),
    "worker_enable_prefetch_count_reduction": _s(True, "bool"),
    "worker_disable_prefetch": _s(False, "bool"),
    "worker_redirect_stdouts": _s(True, "bool", "CELERY_REDIRECT_STDOUTS"),
    "worker_redirect_stdouts_level": _s("WARNING", "str", "CELERY_REDIRECT_STDOUTS_LEVEL"),
    "worker_send_task_events": _s(False, "bool", "CELERY_SEND_EVENTS"),
    "worker_state_db": _s(None, "str", "CELERYD_STATE_DB"),
    "worker_task_log_format": _s(_TASK_LOG_FMT, "str", "CELERYD_TASK_LOG_FORMAT"),
    "worker_timer": _s(None, "any", "CELERYD_TIMER"),
    "worker_timer_precision": _s(1.0, "float", "CELERYD_TIMER_PRECISION"),
    "worker_detect_quorum_queues": _s(True, "bool"),
    # celeriac's own: cheap liveness for orchestrators (see celeriac.worker.health).
    "worker_liveness_file": _s(None, "str"),
    "worker_healthcheck_port": _s(None, "int"),
    "worker_healthcheck_address": _s("127.0.0.1", "str"),
    # celeriac's own: successful results written in batches behind in-process pools.
    "worker_result_write_behind": _s(True, "bool"),
}

DEFAULTS: dict[str, Any] = {key: setting.default for key, setting in SETTINGS.items()}

# Pre-5.0 upper-case names, including those that don't follow the prefix pattern.
_OLD_TO_NEW: dict[str, str] = {s.old: key for key, s in SETTINGS.items() if s.old}
_OLD_TO_NEW.update({key.upper(): key for key in SETTINGS})

# Settings whose value comes first from the environment, as in Celery; CELERIAC_* wins over CELERY_*.
_ENV_OVERRIDES = {"broker_url": "BROKER_URL", "result_backend": "RESULT_BACKEND"}

KNOWN_BROKER_SCHEMES = frozenset(
    {"sqlite", "memory", "redis", "rediss", "redis+socket", "sentinel", "amqp", "amqps", "pyamqp", "sqs"}
)
KNOWN_BACKEND_SCHEMES = frozenset(
    {
        "sqlite",
        "memory",
        "disabled",
        "redis",
        "rediss",
        "redis+socket",
        "sentinel",
        "rpc",
        "db",
        "cache",
        "database",
        "django-db",
    }
)


def env_value(key: str) -> str | None:
    suffix = _ENV_OVERRIDES.get(key)
    if suffix is None:
        return None
    return os.environ.get(f"CELERIAC_{suffix}") or os.environ.get(f"CELERY_{suffix}") or None


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ImproperlyConfigured(f"{key}: expected a boolean, got {value!r}", key=key)


def _number(key: str, value: Any, kind: type[int] | type[float]) -> int | float:
    if isinstance(value, bool):
        raise ImproperlyConfigured(f"{key}: expected a number, got {value!r}", key=key)
    if isinstance(value, float) and kind is int:
        if not value.is_integer():
            raise ImproperlyConfigured(f"{key}: expected an integer, got {value!r}", key=key)
        return int(value)
    if isinstance(value, (int, float)):
        return kind(value) if kind is float else value
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            pass
    raise ImproperlyConfigured(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}", key=key)


def check_url(key: str, url: str, known: frozenset[str]) -> None:
    """Raise ImproperlyConfigured if ``url`` has an unknown scheme or a malformed host part."""
    scheme = url.split("://", 1)[0] if "://" in url else url
    base = scheme.split("+", 1)[0]
    if scheme not in known and base not in known and scheme.lower() not in known:
        raise ImproperlyConfigured(
            f"{key}: unknown scheme {scheme!r} in {mask_url(url)!r} (known: {', '.join(sorted(known))})", key=key
        )
    if "://" not in url or base in ("sqlite", "db", "database", "cache", "memory"):
        return
    try:
        # Accessing .port validates it; a failover list is checked entry by entry by the caller.
        urlsplit(url).port  # noqa: B018
    except ValueError as exc:
        raise ImproperlyConfigured(f"{key}: malformed URL {mask_url(url)!r}: {exc}", key=key) from None


def mask_url(url: str) -> str:
    """Replace the password in a URL (each URL of a ``;`` failover list) with ``**`` (for banners and logs)."""
    failover = url.split(";")
    if len(failover) > 1 and all("://" in part for part in failover):
        return ";".join(mask_url(part) for part in failover)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":**@", 1)
        return parts._replace(netloc=netloc).geturl()
    return url


def _check_list(key: str, value: Any) -> list[Any] | tuple[Any, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(value)
    raise ImproperlyConfigured(f"{key}: expected a list, got {value!r}", key=key)


def _check_seconds(key: str, value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    return _number(key, value, float)


def coerce(key: str, value: Any) -> Any:  # noqa: C901 - one branch per kind of setting, flat on purpose
    """Check (and where unambiguous convert) ``value`` for setting ``key``."""
    setting = SETTINGS.get(key)
    if setting is None or value is None:
        return value
    kind = setting.kind
    if kind == "bool":
        return _bool(key, value)
    if kind == "int":
        return _number(key, value, int)
    if kind == "float":
        return _number(key, value, float)
    if kind == "seconds":
        return _check_seconds(key, value)
    if kind == "str":
        if not isinstance(value, str):
            raise ImproperlyConfigured(f"{key}: expected a string, got {value!r}", key=key)
        return value
    if kind == "list":
        value = _check_list(key, value)
        if key in ("accept_content", "result_accept_content"):
            from .serialization import prepare_accept_content

            try:
                prepare_accept_content(value)
            except ValueError as exc:
                raise ImproperlyConfigured(f"{key}: {exc}", key=key) from None
        return value
    if kind == "dict":
        if not isinstance(value, Mapping):
            raise ImproperlyConfigured(f"{key}: expected a dict, got {value!r}", key=key)
        return value
    if kind == "serializer":
        from .serialization import registry

        if value not in registry:
            raise ImproperlyConfigured(
                f"{key}: unknown serializer {value!r} (known: {', '.join(sorted(registry))})", key=key
            )
        return value
    if kind == "url":
        return _check_urls(key, value, KNOWN_BROKER_SCHEMES)
    if kind == "backend":
        if isinstance(value, str) and "://" not in value and (":" in value or "." in value):
            return value  # an import path to a custom backend class
        if not isinstance(value, str):
            return value  # a backend class
        return _check_urls(key, value, KNOWN_BACKEND_SCHEMES)
    if kind == "timezone":
        return _check_timezone(key, value)
    if kind == "scope":
        if value not in ("worker", "global"):
            raise ImproperlyConfigured(f"{key}: expected 'worker' or 'global', got {value!r}", key=key)
        return value
    if kind == "rate":
        from .rate_limits import parse_rate

        try:
            parse_rate(value)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{key}: {exc}", key=key) from None
        return value
    return value


def _check_urls(key: str, value: Any, known: frozenset[str]) -> Any:
    urls = value if isinstance(value, (list, tuple)) else [value]
    for url in urls:
        if not isinstance(url, str):
            raise ImproperlyConfigured(f"{key}: expected a URL string, got {url!r}", key=key)
        # ";" separates failover URLs, except in cache+memcached:// where it separates servers.
        parts = [url] if url.startswith("cache+") else url.split(";")
        for part in parts:
            if part.strip():
                check_url(key, part.strip(), known)
    return value


def _check_timezone(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value  # a tzinfo object
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(f"{key}: unknown time zone {value!r}", key=key) from None
    return value


def nearest_setting(key: str) -> str | None:
    import difflib

    matches = difflib.get_close_matches(key.lower(), SETTINGS.keys(), n=1, cutoff=0.6)
    return matches[0] if matches else None


class Settings(MutableMapping[str, Any]):
    """``app.conf``: a mapping with attribute access over Celery's setting names.

    Reads fall back to the defaults; ``broker_url`` and ``result_backend`` are
    taken from ``CELERIAC_BROKER_URL``/``CELERY_BROKER_URL`` (and ``..._RESULT_BACKEND``)
    first, as Celery does, so the CLI's ``-b`` and deployment environments win.
    """

    version: int  # bumped on every change

    def __init__(self, changes: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_changes", {})
        object.__setattr__(self, "_warned", set())
        object.__setattr__(self, "version", 0)
        if changes:
            self.update(changes)

    # -- mapping protocol -------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in _ENV_OVERRIDES:
            env = env_value(key)
            if env is not None:
                return env
        changes: dict[str, Any] = self._changes
        # Fast path first: sending a task reads a dozen settings.
        if key in changes:
            return changes[key]
        if key in DEFAULTS:
            return DEFAULTS[key]
        key = self._canonical(key, warn=False)
        if key in changes:
            return changes[key]
        if key in DEFAULTS:
            return DEFAULTS[key]
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        key = self._canonical(key, warn=True)
        self._changes[key] = coerce(key, value)
        self._bump()

    def __delitem__(self, key: str) -> None:
        del self._changes[self._canonical(key, warn=False)]
        self._bump()

    def _bump(self) -> None:
        # Derived values (e.g. queue declarations) are cached against this counter.
        object.__setattr__(self, "version", self.__dict__["version"] + 1)

    def __iter__(self) -> Iterator[str]:
        changes: dict[str, Any] = self._changes
        yield from DEFAULTS
        yield from (k for k in changes if k not in DEFAULTS)

    def __len__(self) -> int:
        changes: dict[str, Any] = self._changes
        return len(DEFAULTS) + sum(1 for k in changes if k not in DEFAULTS)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self.__getitem__(key)
        except KeyError:
            raise AttributeError(f"no setting {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __repr__(self) -> str:
        return f"<Settings: {len(self._changes)} changed>"

    # -- helpers ----------------------------------------------------------
    def changes(self) -> dict[str, Any]:
        """The settings that differ from the defaults."""
        return dict(self._changes)

    def setdefault(self, key: str, default: Any = None) -> Any:
        key = self._canonical(key, warn=True)
        if key not in self._changes:
            self[key] = default
        return self[key]

    def table(self, with_defaults: bool = False, censored: bool = True) -> dict[str, Any]:
        """Settings as a dict, with secrets masked (for ``report`` and ``inspect conf``)."""
        source = dict(self.items()) if with_defaults else self.changes()
        if not censored:
            return source
        return {k: _censor(k, v) for k, v in source.items()}

    def _canonical(self, key: str, *, warn: bool) -> str:
        if key in SETTINGS:
            return key
        if key in _OLD_TO_NEW:
            return _OLD_TO_NEW[key]
        if warn and key not in self._warned and not key.startswith("_"):
            self._warned.add(key)
            hint = nearest_setting(key)
            if hint:
                logger.warning("Unknown setting %r: did you mean %r?", key, hint)
            else:
                logger.warning("Unknown setting %r: it is not a celeriac setting and celeriac ignores it.", key)
        return key

    # -- loading ----------------------------------------------------------
    def load_from_object(self, obj: Any, *, namespace: str | None = None) -> None:
        """Copy settings from a module, class, object or mapping (Celery's ``config_from_object``)."""
        if isinstance(obj, str):
            obj = load_object(obj)
        items = obj.items() if isinstance(obj, Mapping) else ((k, getattr(obj, k)) for k in dir(obj))
        prefix = f"{namespace}_" if namespace else None
        for key, value in items:
            if key.startswith("_"):
                continue
            if prefix is not None:
                if not key.startswith(prefix):
                    continue
                key = key[len(prefix) :].lower()
            elif not _looks_like_setting(key, value):
                continue
            self[key] = value


def _looks_like_setting(key: str, value: Any) -> bool:
    # A config module also holds imports, helpers and classes; only plain values are settings.
    import inspect

    if inspect.ismodule(value) or inspect.isfunction(value) or inspect.isclass(value):
        return key in SETTINGS or key in _OLD_TO_NEW
    return key.islower() or key in _OLD_TO_NEW


_SECRET_WORDS = ("password", "secret", "key", "token", "pass", "auth", "signature", "credential")


def _censor(key: str, value: Any) -> Any:
    # Secrets also hide in nested options (sentinel_kwargs={"password": ...}) and failover URL lists.
    if isinstance(value, Mapping):
        return {k: _censor(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        censored = [_censor(key, v) for v in value]
        return censored if isinstance(value, list) else tuple(censored)
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if any(word in key.lower() for word in _SECRET_WORDS) and value not in (None, "", {}, ()):
        return "********"
    return value


def load_object(path: str) -> Any:
    """Import ``module``, ``module:attr`` or ``module.attr``."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if attr or "." not in module_name or exc.name != module_name:
            raise
        module_name, _, attr = module_name.rpartition(".")
        module = importlib.import_module(module_name)
    if not attr:
        return module
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
