"""Settings: Celery 5 names and defaults, loading, old names, validation and secrets."""

from __future__ import annotations

import logging
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.app.defaults import DEFAULTS as CELERY_DEFAULTS

from celeriac import Celery
from celeriac.config import DEFAULTS, Settings, mask_url
from celeriac.exceptions import ImproperlyConfigured

# Deliberate differences from Celery's defaults, each with its reason.
DIFFERENT_DEFAULTS = {
    # celeriac acknowledges after the task ran, so a worker crash never loses a task.
    "task_acks_late": True,
    # Celery's values name Celery classes; celeriac builds its own components.
    "beat_scheduler": "celeriac.beat:PersistentScheduler",
    "worker_autoscaler": None,
    "worker_consumer": None,
}
# Celery settings of result backends and message signing that celeriac doesn't implement.
UNSUPPORTED_PREFIXES = (
    "arangodb_",
    "azureblockblob_",
    "cassandra_",
    "cosmosdbsql_",
    "couchbase_",
    "elasticsearch_",
    "gcs_",
    "mongodb_",
    "s3_",
    "security_",
)


@pytest.fixture
def conf() -> Settings:
    return Settings()


def test_spot_check_celery_defaults(conf: Settings) -> None:
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert tuple(conf.accept_content) == ("json",)
    assert conf.result_expires == timedelta(days=1)
    assert conf.worker_prefetch_multiplier == 4
    assert conf.task_default_queue == "celery"
    assert conf.task_default_exchange_type == "direct"
    assert conf.task_default_delivery_mode == 2
    assert conf.task_protocol == 2
    assert conf.enable_utc is True
    assert conf.timezone is None
    assert conf.broker_connection_retry is True
    assert conf.broker_connection_max_retries == 100
    assert conf.broker_pool_limit == 10
    assert conf.task_always_eager is False
    assert conf.task_eager_propagates is False
    assert conf.task_ignore_result is False
    assert conf.task_track_started is False
    assert conf.task_create_missing_queues is True
    assert conf.result_extended is False
    assert conf.worker_pool == "prefork"
    assert conf.worker_concurrency is None
    assert conf.event_exchange == "celeryev"
    assert conf.control_exchange == "celery"
    assert conf.task_publish_retry_policy == {
        "max_retries": 3,
        "interval_start": 0,
        "interval_max": 1,
        "interval_step": 0.2,
    }
    assert conf.task_acks_late is True  # deliberately unlike Celery's False


def _as_list(value: Any) -> Any:
    # celeriac keeps list defaults as tuples (immutable); Celery uses lists.
    return list(value) if isinstance(value, tuple) else value


def test_every_shared_default_equals_celerys() -> None:
    for key, value in DEFAULTS.items():
        if key not in CELERY_DEFAULTS:
            continue
        if key in DIFFERENT_DEFAULTS:
            assert value == DIFFERENT_DEFAULTS[key], key
            continue
        theirs = CELERY_DEFAULTS[key]
        normalize = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
        assert normalize(value) == normalize(theirs), key


def test_celery_settings_celeriac_lacks_are_only_unsupported_backends() -> None:
    missing = [key for key in CELERY_DEFAULTS if key not in DEFAULTS]
    assert missing, "Celery's settings list changed shape"
    assert [key for key in missing if not key.startswith(UNSUPPORTED_PREFIXES)] == []


def test_attribute_and_item_access(conf: Settings) -> None:
    conf.task_default_queue = "attr"
    assert conf["task_default_queue"] == "attr"
    conf["task_default_queue"] = "item"
    assert conf.task_default_queue == "item"
    assert "task_default_queue" in conf
    assert conf.get("task_default_queue") == "item"
    assert conf.changes() == {"task_default_queue": "item"}
    del conf["task_default_queue"]
    assert conf.task_default_queue == "celery"
    with pytest.raises(AttributeError):
        conf.no_such_setting_at_all  # noqa: B018


def test_update_and_app_kwargs() -> None:
    app = Celery("t", broker="memory://", task_default_queue="from_kwargs")
    app.conf.update(task_serializer="msgpack", result_expires=60)
    app.conf.update({"worker_prefetch_multiplier": 1})
    assert app.conf.task_default_queue == "from_kwargs"
    assert app.conf.task_serializer == "msgpack"
    assert app.conf.result_expires == 60.0
    assert app.conf.worker_prefetch_multiplier == 1


def test_values_are_coerced_from_strings(conf: Settings) -> None:
    conf.worker_concurrency = "8"
    conf.task_acks_late = "false"
    conf.broker_connection_timeout = "2.5"
    conf.accept_content = "json, msgpack"
    assert conf.worker_concurrency == 8
    assert conf.task_acks_late is False
    assert conf.broker_connection_timeout == 2.5
    assert tuple(conf.accept_content) == ("json", "msgpack")


@pytest.mark.parametrize(
    ("old", "new", "value"),
    [
        ("CELERY_TASK_SERIALIZER", "task_serializer", "pickle"),
        ("BROKER_URL", "broker_url", "memory://old"),
        ("CELERY_RESULT_BACKEND", "result_backend", "memory://"),
        ("CELERYD_CONCURRENCY", "worker_concurrency", 3),
        ("CELERY_ALWAYS_EAGER", "task_always_eager", True),
        ("CELERY_TASK_RESULT_EXPIRES", "result_expires", 10),
        ("CELERYD_PREFETCH_MULTIPLIER", "worker_prefetch_multiplier", 1),
        ("CELERY_DEFAULT_QUEUE", "task_default_queue", "legacy"),
    ],
)
def test_old_upper_case_names_map_to_new(conf: Settings, old: str, new: str, value: Any) -> None:
    conf[old] = value
    assert conf[new] == value
    assert conf[old] == value
    assert new in conf.changes() and old not in conf.changes()


def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))


CONFIG_MODULE = """
    import os

    broker_url = "memory://from-module"
    task_serializer = "json"
    CELERY_ACCEPT_CONTENT = ["json", "pickle"]
    worker_concurrency = 3
    SOME_CONSTANT = 5


    def helper():
        return 1
"""


def test_config_from_object_module_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(tmp_path, monkeypatch, "celeryconfig_unit", CONFIG_MODULE)
    app = Celery("t")
    app.config_from_object("celeryconfig_unit")
    assert app.conf.broker_url == "memory://from-module"
    assert app.conf.worker_concurrency == 3
    assert tuple(app.conf.accept_content) == ("json", "pickle")
    # Imports, helpers and upper-case constants that aren't settings are not copied.
    assert set(app.conf.changes()) == {"broker_url", "task_serializer", "accept_content", "worker_concurrency"}


def test_config_from_object_module_attr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(tmp_path, monkeypatch, "proj_settings_unit", "class Config:\n    task_default_queue = 'attr'\n")
    app = Celery("t", broker="memory://")
    app.config_from_object("proj_settings_unit:Config")
    assert app.conf.task_default_queue == "attr"


def test_config_from_object_class_and_instance() -> None:
    class Config:
        broker_url = "memory://from-class"
        task_default_queue = "from-class"

    by_class = Celery("t")
    by_class.config_from_object(Config)
    by_instance = Celery("t")
    by_instance.config_from_object(Config())
    for app in (by_class, by_instance):
        assert app.conf.broker_url == "memory://from-class"
        assert app.conf.task_default_queue == "from-class"


def test_config_from_object_dict() -> None:
    app = Celery("t", broker="memory://")
    app.config_from_object({"task_default_queue": "from-dict", "CELERY_TASK_SERIALIZER": "yaml"})
    assert app.conf.task_default_queue == "from-dict"
    assert app.conf.task_serializer == "yaml"


def test_config_from_object_django_namespace() -> None:
    settings = {
        "CELERY_BROKER_URL": "memory://django",
        "CELERY_TASK_ALWAYS_EAGER": True,
        "CELERY_RESULT_BACKEND": "memory://",
        "DEBUG": True,
        "INSTALLED_APPS": ["a"],
    }
    app = Celery("proj")
    app.config_from_object(settings, namespace="CELERY")
    assert app.conf.broker_url == "memory://django"
    assert app.conf.task_always_eager is True
    assert app.conf.result_backend == "memory://"
    assert "debug" not in app.conf.changes() and "installed_apps" not in app.conf.changes()


def test_app_namespace_applies_to_config_from_object() -> None:
    app = Celery("proj", namespace="CELERY")
    app.config_from_object({"CELERY_TASK_DEFAULT_QUEUE": "ns", "TASK_DEFAULT_QUEUE": "ignored"})
    assert app.conf.task_default_queue == "ns"


def test_config_from_object_missing_module() -> None:
    app = Celery("t", broker="memory://")
    # As Celery: the ImportError itself (code catches it), and False when silent.
    with pytest.raises(ImportError, match="no_such_config_module"):
        app.config_from_object("no_such_config_module")
    assert app.config_from_object("no_such_config_module", silent=True) is False
    assert app.conf.changes() == {"broker_url": "memory://"}


def test_config_from_envvar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(tmp_path, monkeypatch, "envconfig_unit", "task_default_queue = 'from-env-module'\n")
    monkeypatch.setenv("UNIT_CONFIG_MODULE", "envconfig_unit")
    app = Celery("t", broker="memory://")
    assert app.config_from_envvar("UNIT_CONFIG_MODULE") is True
    assert app.conf.task_default_queue == "from-env-module"


def test_config_from_envvar_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNIT_CONFIG_UNSET", raising=False)
    app = Celery("t", broker="memory://")
    with pytest.raises(ImproperlyConfigured, match="UNIT_CONFIG_UNSET"):
        app.config_from_envvar("UNIT_CONFIG_UNSET")
    assert app.config_from_envvar("UNIT_CONFIG_UNSET", silent=True) is False


@pytest.mark.parametrize(
    ("typo", "nearest"),
    [
        ("task_serialiser", "task_serializer"),
        ("worker_prefetch_multiplyer", "worker_prefetch_multiplier"),
        ("result_backened", "result_backend"),
    ],
)
def test_unknown_key_warns_with_nearest(
    conf: Settings, caplog: pytest.LogCaptureFixture, typo: str, nearest: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="celeriac.config"):
        conf[typo] = "json"
    messages = [r.getMessage() for r in caplog.records if r.name == "celeriac.config"]
    assert len(messages) == 1
    assert typo in messages[0] and nearest in messages[0]
    # The key is kept (apps stash their own settings) and the real setting is untouched.
    assert conf[typo] == "json"
    assert conf[nearest] == DEFAULTS[nearest]


def test_unknown_key_warns_once(conf: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="celeriac.config"):
        conf.my_app_setting = 1
        conf.my_app_setting = 2
    assert len([r for r in caplog.records if "my_app_setting" in r.getMessage()]) == 1
    assert conf.my_app_setting == 2


def test_known_key_does_not_warn(conf: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="celeriac.config"):
        conf.task_serializer = "json"
        conf.CELERY_TASK_SERIALIZER = "json"
    assert caplog.records == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("worker_prefetch_multiplier", "four"),
        ("worker_concurrency", 2.5),
        ("worker_concurrency", True),
        ("task_acks_late", "maybe"),
        ("task_acks_late", 2),
        ("broker_connection_timeout", "soon"),
        ("task_default_queue", 5),
        ("broker_transport_options", ["visibility_timeout"]),
        ("task_serializer", "xml"),
        ("result_serializer", "toml"),
        ("accept_content", ["json", "bogus"]),
        ("accept_content", 5),
        ("broker_url", "redsi://localhost"),
        ("broker_url", "redis://localhost:99999/0"),
        ("broker_url", "redis://localhost:abc/0"),
        ("broker_url", "memory://;redsi://b"),
        ("result_backend", "mongo2://localhost"),
        ("timezone", "Mars/Olympus_Mons"),
        ("task_default_rate_limit", "10/x"),
        ("task_default_rate_limit", "ten/m"),
        ("result_expires", "tomorrow"),
    ],
)
def test_invalid_values_raise_naming_the_key(conf: Settings, key: str, value: Any) -> None:
    before = conf[key]
    with pytest.raises(ImproperlyConfigured) as info:
        conf[key] = value
    assert key in str(info.value)
    assert info.value.key == key
    assert conf[key] == before  # a rejected value is not stored


def test_invalid_value_in_app_constructor() -> None:
    with pytest.raises(ImproperlyConfigured, match="broker_url"):
        Celery("t", broker="redsi://localhost")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("broker_url", "redis://localhost:6379/0"),
        ("broker_url", "amqp://guest:guest@localhost:5672//"),
        ("broker_url", "sqlite:///x.db"),
        ("broker_url", "redis://a:6379;redis://b:6379"),
        ("result_backend", "db+postgresql://u:p@h/db"),
        ("result_backend", "myproject.backends:MyBackend"),
        ("timezone", "Europe/Paris"),
        ("task_default_rate_limit", "10/m"),
        ("task_default_rate_limit", 5),
    ],
)
def test_valid_values_accepted(conf: Settings, key: str, value: Any) -> None:
    conf[key] = value
    assert conf[key] == value


@pytest.mark.parametrize("prefix", ["CELERIAC", "CELERY"])
def test_env_broker_url_wins_over_conf(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    app = Celery("t", broker="memory://from-conf")
    monkeypatch.setenv(f"{prefix}_BROKER_URL", "memory://from-env")
    monkeypatch.setenv(f"{prefix}_RESULT_BACKEND", "memory://")
    assert app.conf.broker_url == "memory://from-env"
    assert app.broker_url == "memory://from-env"
    assert app.conf.result_backend == "memory://"


def test_celeriac_env_wins_over_celery_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://celery")
    monkeypatch.setenv("CELERIAC_BROKER_URL", "memory://celeriac")
    assert Celery("t", broker="memory://conf").conf.broker_url == "memory://celeriac"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:secret@host:6379/0", "redis://user:**@host:6379/0"),
        ("redis://:secret@host/0", "redis://:**@host/0"),
        ("amqp://guest:guest@localhost:5672//", "amqp://guest:**@localhost:5672//"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
        ("redis://:one@a:6379/0;redis://:two@b:6379/0", "redis://:**@a:6379/0;redis://:**@b:6379/0"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_table_censors_secrets(conf: Settings) -> None:
    conf.broker_url = "redis://user:hunter2@host:6379/0"
    conf.result_backend = "redis://:hunter3@host:6379/1"
    conf.redis_password = "hunter4"
    conf.task_default_queue = "visible"
    table = conf.table()
    assert "hunter" not in repr(table)
    assert table["broker_url"] == "redis://user:**@host:6379/0"
    assert table["redis_password"] == "********"
    assert table["task_default_queue"] == "visible"
    raw = conf.table(censored=False)
    assert raw["redis_password"] == "hunter4"
    full = conf.table(with_defaults=True)
    assert full["worker_prefetch_multiplier"] == 4 and "hunter" not in repr(full)


def test_table_censors_nested_options_and_url_lists(conf: Settings) -> None:
    conf.broker_url = ["redis://:hunter5@a:6379/0", "redis://:hunter6@b:6379/0"]
    conf.broker_transport_options = {"sentinel_kwargs": {"password": "hunter7"}, "visibility_timeout": 10}
    table = conf.table()
    assert "hunter" not in repr(table)
    assert table["broker_url"] == ["redis://:**@a:6379/0", "redis://:**@b:6379/0"]
    assert table["broker_transport_options"] == {"sentinel_kwargs": {"password": "********"}, "visibility_timeout": 10}
