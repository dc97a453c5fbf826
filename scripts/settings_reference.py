"""Write docs/reference/configuration.md from celeriac.config.SETTINGS.

    .venv/bin/python scripts/settings_reference.py          # rewrite the page
    .venv/bin/python scripts/settings_reference.py --check  # exit 1 if the page is out of date

Names, defaults, types and old upper-case names come from the code. Whether celeriac reads a
setting is found by looking for its name in celeriac/ (outside config.py), or for a task option
that falls back to it; a setting found nowhere is listed as accepted for compatibility only.
The one-line descriptions below are the only hand-written part.
"""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "configuration.md"
sys.path.insert(0, str(ROOT))

from celeriac import task as _task  # noqa: E402
from celeriac.config import SETTINGS  # noqa: E402

# Settings Celery 5 doesn't have.
CELERIAC_ONLY = {
    "beat_lease_timeout",
    "broker_pool_acquire_timeout",
    "result_chord_ordered",
    "task_max_message_size",
    "task_rate_limit_scope",
    "worker_asyncio_threads",
    "worker_healthcheck_address",
    "worker_healthcheck_port",
    "worker_liveness_file",
    "worker_result_write_behind",
}

SECTIONS = [
    ("General", ("accept_content", "result_accept_content", "enable_utc", "timezone", "imports", "include")),
    ("Tasks", ("task_",)),
    ("Results", ("result_",)),
    ("Broker", ("broker_",)),
    ("Worker", ("worker_",)),
    ("Redis result backend", ("redis_",)),
    ("SQLAlchemy result backend", ("database_",)),
    ("Cache result backend", ("cache_",)),
    ("Events", ("event_",)),
    ("Remote control", ("control_",)),
    ("Beat", ("beat_",)),
    ("Message signing", ("security_",)),
]

DESCRIPTIONS: dict[str, str] = {
    "accept_content": "Content types (or serializer names) a worker accepts; others are refused before decoding.",
    "result_accept_content": "Content types accepted when reading results; defaults to `accept_content`.",
    "enable_utc": "Keep dates in UTC (ETA, expiry, result dates).",
    "timezone": "Time zone for dates shown to users and for schedules; a `zoneinfo` name.",
    "imports": "Modules a worker imports at start-up (where tasks are defined).",
    "include": "Like `imports`, imported after them.",
    "beat_max_loop_interval": "Longest time beat sleeps between checks of the schedule, in seconds.",
    "beat_schedule": "The periodic tasks: `{name: {'task': ..., 'schedule': ..., 'args': ...}}`.",
    "beat_scheduler": "The scheduler class beat uses.",
    "beat_schedule_filename": "SQLite file for beat's state when set, or when the broker has no store of its own.",
    "beat_sync_every": "Number of sent periodic tasks after which beat saves its state.",
    "beat_cron_starting_deadline": "How late, in seconds, a missed crontab run may still be sent.",
    "beat_lease_timeout": "Seconds before a standby beat takes over from a leader that stopped renewing its lease.",
    "broker_url": "The broker: `sqlite://` (embedded), `redis://`, `amqp://`, `sqs://`; `;` separates failover URLs.",
    "broker_read_url": "A broker URL used only to consume.",
    "broker_write_url": "A broker URL used only to publish.",
    "broker_transport": "Transport name, for URLs without a scheme.",
    "broker_transport_options": "Options passed to the broker (see each broker's page).",
    "broker_connection_timeout": "Seconds to wait for the broker before failing (`delay()` raises `OperationalError`).",
    "broker_connection_retry": "Retry a lost broker connection in the worker.",
    "broker_connection_retry_on_startup": "Retry connecting when the worker starts.",
    "broker_connection_max_retries": "Most connection retries before the worker gives up.",
    "broker_channel_error_retry": "Retry on channel errors too.",
    "broker_failover_strategy": "Order in which failover URLs are tried.",
    "broker_heartbeat": "AMQP heartbeat interval, in seconds.",
    "broker_heartbeat_checkrate": "How often heartbeats are checked, per heartbeat interval.",
    "broker_login_method": "AMQP login method.",
    "broker_native_delayed_delivery_queue_type": "Queue type of the RabbitMQ delay queues (`quorum` or `classic`).",
    "broker_pool_limit": "Most broker connections kept in the pool.",
    "broker_pool_acquire_timeout": "Seconds to wait for a pooled connection.",
    "broker_use_ssl": "TLS for the broker: `True` or a dict of `ssl` options.",
    "broker_host": "Broker host, for a URL without one.",
    "broker_port": "Broker port, for a URL without one.",
    "broker_user": "Broker user, for a URL without one.",
    "broker_password": "Broker password, for a URL without one.",
    "broker_vhost": "Broker virtual host, for a URL without one.",
    "cache_backend": "Cache backend name (old form of `result_backend = 'cache+...'`).",
    "cache_backend_options": "Options for the Memcached client.",
    "control_queue_ttl": "Seconds a remote-control message lives in a queue.",
    "control_queue_expires": "Seconds before an unused reply queue is deleted.",
    "control_queue_exclusive": "Declare remote-control queues exclusive.",
    "control_queue_durable": "Declare remote-control queues durable.",
    "control_exchange": "Name prefix of the remote-control exchanges (`celery.pidbox`).",
    "event_queue_expires": "Seconds before an unused event queue is deleted.",
    "event_queue_ttl": "Seconds an event message lives in a queue.",
    "event_queue_prefix": "Name prefix of event receivers' queues.",
    "event_queue_exclusive": "Declare event queues exclusive.",
    "event_queue_durable": "Declare event queues durable.",
    "event_serializer": "Serializer of event messages.",
    "event_exchange": "Exchange events are published to.",
    "redis_backend_use_ssl": "TLS options for the Redis result backend.",
    "redis_db": "Redis database number, for a URL without one.",
    "redis_host": "Redis host, for a URL without one.",
    "redis_max_connections": "Most connections in the Redis result backend's pool.",
    "redis_username": "Redis user name, for a URL without one.",
    "redis_password": "Redis password, for a URL without one.",
    "redis_port": "Redis port, for a URL without one.",
    "redis_socket_timeout": "Seconds a Redis read or write may take.",
    "redis_socket_connect_timeout": "Seconds to wait when connecting to Redis.",
    "redis_retry_on_timeout": "Retry a Redis command that timed out.",
    "redis_socket_keepalive": "TCP keepalive on Redis connections.",
    "result_backend": "Where results are kept: a URL (`sqlite://`, `redis://`, `rpc://`, `db+...`, `cache+...`), "
    "`django-db`, or a backend class or its import path.",
    "result_cache_max": "Results cached in the client.",
    "result_compression": "Compression of stored results.",
    "result_exchange": "Exchange of the old `amqp` result backend.",
    "result_exchange_type": "Exchange type of the old `amqp` result backend.",
    "result_expires": "How long stored results are kept (seconds or a `timedelta`).",
    "result_persistent": "Send `rpc://` results as persistent messages.",
    "result_extended": "Also store the task's name, arguments, worker and queue with its result.",
    "result_serializer": "Serializer of stored results.",
    "security_certificate": "PEM certificate of this process's signing key (`task_serializer='auth'`).",
    "security_cert_store": "Directory or glob of the PEM certificates whose signatures are trusted.",
    "security_digest": "Digest of message signatures (RSA-PSS), e.g. `sha256`, `sha512`.",
    "security_key": "PEM private key (RSA) that signs messages; see `app.setup_security()`.",
    "security_key_password": "Password of an encrypted `security_key`.",
    "result_backend_transport_options": "Options passed to the result backend (key prefix, paths...).",
    "result_chord_retry_interval": "Seconds between checks of a chord's parts, where they are polled.",
    "result_chord_join_timeout": "Seconds to wait for a chord's parts when joining them.",
    "result_chord_ordered": "Keep a chord's results in the order of its header.",
    "result_backend_max_sleep_between_retries_ms": "Longest wait between retries of a result backend call.",
    "result_backend_max_retries": "Most retries of a failing result backend call.",
    "result_backend_base_sleep_between_retries_ms": "First wait between retries of a result backend call.",
    "result_backend_always_retry": "Retry result backend calls that fail with recoverable errors.",
    "database_url": "SQLAlchemy URL of the database result backend (instead of `result_backend = 'db+...'`).",
    "database_engine_options": "Keyword arguments for SQLAlchemy's `create_engine`.",
    "database_short_lived_sessions": "Open a new database session for every operation.",
    "database_table_schemas": "Schemas of the result tables: `{'task': ..., 'group': ...}`.",
    "database_table_names": "Names of the result tables: `{'task': ..., 'group': ...}`.",
    "database_create_tables_at_setup": "Create the result tables when the backend starts.",
    "task_acks_late": "Acknowledge a message after its task ran, so a worker that dies doesn't lose it "
    "(**celeriac's default is `True`**; Celery's is `False`).",
    "task_acks_on_failure_or_timeout": "With `acks_late`, acknowledge failed and timed-out tasks "
    "(else they are dead-lettered).",
    "task_always_eager": "Run tasks in the calling process instead of sending them (for tests).",
    "task_annotations": "Task attributes set from configuration: `{'tasks.add': {'rate_limit': '10/m'}}`.",
    "task_compression": "Compression of task messages.",
    "task_create_missing_queues": "Declare a queue named in a route that isn't in `task_queues`.",
    "task_create_missing_queue_type": "Type of such a queue (`classic` or `quorum`).",
    "task_create_missing_queue_exchange_type": "Exchange type of such a queue.",
    "task_inherit_parent_priority": "A task sent from a task gets its parent's priority.",
    "task_default_delivery_mode": "`2`/`'persistent'` or `1`/`'transient'` messages.",
    "task_default_queue": "Queue for tasks that aren't routed elsewhere.",
    "task_default_queue_type": "Type of the default queue (`classic` or `quorum`).",
    "task_default_exchange": "Exchange of the default queue (defaults to the queue's name).",
    "task_default_exchange_type": "Type of the default exchange.",
    "task_default_routing_key": "Routing key of the default queue (defaults to the queue's name).",
    "task_max_message_size": "Largest task message body, in bytes (10 MiB): `delay()` raises `EncodeError` "
    "above it, and a worker dead-letters a bigger message without decoding it. `None`: no limit.",
    "task_default_rate_limit": "Rate limit of tasks that have none, e.g. `'100/m'`.",
    "task_rate_limit_scope": "`'worker'`: each worker counts a rate limit for itself (as Celery); "
    "`'global'`: all workers share one limit (Redis or SQLite).",
    "task_default_priority": "Priority of tasks sent without one.",
    "task_eager_propagates": "Eager calls raise the task's exception.",
    "task_ignore_result": "Don't store results (a task's `ignore_result` wins).",
    "task_store_eager_result": "Store the results of eager calls.",
    "task_protocol": "Message protocol version; celeriac speaks version 2.",
    "task_publish_retry": "Retry sending a task when the broker connection fails.",
    "task_publish_retry_policy": "How sends are retried: `max_retries`, `interval_start`, `interval_step`, "
    "`interval_max`.",
    "task_queues": "The queues: a list of `Queue` objects (kombu's or celeriac's).",
    "task_queue_max_priority": "`x-max-priority` of queues that don't set one.",
    "task_reject_on_worker_lost": "With `acks_late`, deliver a task again when the process running it dies "
    "(once; then it fails with `WorkerLostError`).",
    "task_remote_tracebacks": "Show the worker's traceback in the client's exception.",
    "task_routes": "Where tasks go: a dict, a router function, or a list of these.",
    "task_send_sent_event": "Clients send a `task-sent` event for every task.",
    "task_serializer": "Serializer of task messages: `json`, `msgpack`, `yaml` or `pickle`.",
    "task_soft_time_limit": "Seconds after which `SoftTimeLimitExceeded` is raised inside a task.",
    "task_time_limit": "Seconds after which a task is stopped and fails with `TimeLimitExceeded`.",
    "task_store_errors_even_if_ignored": "Store failures of tasks that ignore their results.",
    "task_track_started": "Store a `STARTED` state when a task starts.",
    "task_allow_error_cb_on_chord_header": "Error callbacks of a chord also go to its header tasks.",
    "worker_agent": "Agent class for a monitoring service.",
    "worker_autoscaler": "Autoscaler class used with `--autoscale`.",
    "worker_cancel_long_running_tasks_on_connection_loss": "Cancel running tasks when the broker connection is lost.",
    "worker_soft_shutdown_timeout": "On a cold shutdown, seconds running tasks get to finish before they are stopped "
    "and their messages requeued.",
    "worker_enable_soft_shutdown_on_idle": "Apply the soft shutdown even when no task runs.",
    "worker_concurrency": "Number of pool processes or threads (default: the number of CPUs).",
    "worker_consumer": "Consumer class of the worker.",
    "worker_direct": "Give every worker a queue of its own (`<hostname>.dq`).",
    "worker_disable_rate_limits": "Ignore rate limits.",
    "worker_deduplicate_successful_tasks": "Skip a redelivered task that already succeeded.",
    "worker_enable_remote_control": "Answer remote-control commands.",
    "worker_hijack_root_logger": "Let the worker configure the root logger.",
    "worker_log_color": "Color the worker's log.",
    "worker_log_format": "Format of the worker's log lines.",
    "worker_lost_wait": "Seconds to wait for the result of a process that died.",
    "worker_max_memory_per_child": "Replace a pool process whose resident memory passes this many KiB.",
    "worker_max_tasks_per_child": "Replace a pool process after this many tasks.",
    "worker_pool": "Pool: `prefork`, `threads`, `solo` or `asyncio`.",
    "worker_asyncio_threads": "Threads that run sync tasks beside the event loop of the asyncio pool.",
    "worker_result_write_behind": (
        "On a Redis result backend, successful results are written by a writer thread of the worker, many "
        "in one round trip, while the pool goes on (prefork pool processes hand theirs to the worker with "
        "each task's outcome); each message is acked "
        "only once its result is written, and if the store is away the worker stops taking messages after "
        "four prefetch windows. At shutdown, results that still can't be written (after 10 s) send their "
        "messages back to the queue. `False`: each task writes its result before its slot takes the next one."
    ),
    "worker_pool_putlocks": "Wait for a free pool slot before taking a message.",
    "worker_pool_restarts": "Allow the `pool_restart` remote-control command.",
    "worker_proc_alive_timeout": "Seconds a new pool process has to report that it started.",
    "worker_prefetch_multiplier": "Messages held per pool slot, running ones included (`1`: the one it runs).",
    "worker_eta_task_limit": "Most ETA tasks a worker holds.",
    "worker_enable_prefetch_count_reduction": "Lower the prefetch count after a connection loss, then raise it back.",
    "worker_disable_prefetch": "Take a message only when a pool slot is free.",
    "worker_redirect_stdouts": "Send what tasks print to the log.",
    "worker_redirect_stdouts_level": "Log level of what tasks print.",
    "worker_send_task_events": "Send task events (as `-E`).",
    "worker_state_db": "File that keeps revoked task ids across restarts (as `--statedb`).",
    "worker_task_log_format": "Format of log lines written from inside tasks.",
    "worker_timer": "Timer class of the worker.",
    "worker_timer_precision": "Seconds between checks of the timer.",
    "worker_detect_quorum_queues": "Notice quorum queues and use per-consumer QoS on them.",
    "worker_liveness_file": "File touched every few seconds while the worker is healthy (as `--liveness-file`).",
    "worker_healthcheck_port": "Serve `/healthz` and `/readyz` on this port (as `--healthcheck-port`).",
    "worker_healthcheck_address": "Address of the health-check endpoints.",
}

HEADER = """\
# Configuration reference

<!-- Generated by scripts/settings_reference.py from celeriac/config.py: edit those, not this page. -->

Every setting has Celery 5's lower-case name; the pre-5.0 upper-case names (the *old name* column)
are accepted too, and Django projects use the upper-case names with the `CELERY_` prefix. Values
are checked when they are set: a wrong type or an unknown URL scheme raises `ImproperlyConfigured`
naming the setting, and an unknown name is logged with the nearest valid one.
`broker_url` and `result_backend` are read from the environment first (`CELERIAC_BROKER_URL`, then
`CELERY_BROKER_URL`; likewise `..._RESULT_BACKEND`).

Set them on the app, or in a module loaded with `config_from_object`:

```python
from celeriac import Celery

app = Celery("proj")
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1)
```

In the tables, **celeriac only** marks settings Celery doesn't have, and *accepted, not used*
marks Celery settings that celeriac accepts (so a Celery configuration loads unchanged) but that
change nothing.
"""


def _default(value: Any) -> str:
    if isinstance(value, timedelta):
        text = f"{int(value.total_seconds())} s ({value})"
    elif isinstance(value, tuple):
        text = repr(list(value))
    elif value == float("inf"):
        text = "unlimited"
    else:
        text = repr(value)
    return "`" + text.replace("|", "\\|") + "`"


def _used_names() -> set[str]:
    source = "\n".join(
        p.read_text(encoding="utf-8")
        for p in sorted((ROOT / "celeriac").rglob("*.py"))
        if p.name != "config.py" and "migrations" not in p.parts
    )
    words = set(re.findall(r"[a-z_]+", source))
    fallbacks = {_task._CONF_KEYS.get(key, f"task_{key}") for key in _task._CONF_FALLBACKS}
    return {key for key in SETTINGS if key in words or key in fallbacks}


def _section(key: str) -> str:
    for title, prefixes in SECTIONS:
        if key in prefixes or any(key.startswith(p) for p in prefixes if p.endswith("_")):
            return title
    return "Other"


def render() -> str:
    used = _used_names()
    grouped: dict[str, list[str]] = {}
    for key in SETTINGS:
        grouped.setdefault(_section(key), []).append(key)
    out = [HEADER]
    for title in [t for t, _ in SECTIONS] + ["Other"]:
        keys = sorted(grouped.get(title, []))
        if not keys:
            continue
        out.append(f"\n## {title}\n\n| setting | default | description | old name |\n|---|---|---|---|\n")
        for key in keys:
            setting = SETTINGS[key]
            notes = []
            if key in CELERIAC_ONLY:
                notes.append("**celeriac only.**")
            if key not in used:
                notes.append("*Accepted, not used.*")
            text = " ".join([DESCRIPTIONS.get(key, ""), *notes]).strip().replace("|", "\\|")
            old = f"`{setting.old}`" if setting.old else ""
            out.append(f'| <a id="{key}"></a>`{key}` | {_default(setting.default)} | {text} | {old} |\n')
    return "".join(out)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run .venv/bin/python scripts/settings_reference.py")
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
