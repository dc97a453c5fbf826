"""The benchmark's option table and its Settings: one entry per field, parsed as typed."""

from __future__ import annotations

import dataclasses

from bench.settings import OPTIONS, Settings, from_args, parse_args


def test_every_settings_field_has_one_option() -> None:
    fields = [o.field for o in OPTIONS]
    assert sorted(fields) == sorted(f.name for f in dataclasses.fields(Settings))


def test_defaults_and_parsed_values() -> None:
    default = from_args(parse_args([]))
    assert default.io_concurrency == (10, 100) and default.amqp_url is not None and "amqp" in default.brokers
    settings = from_args(parse_args(["--io-concurrency", "5,7", "--cpu-ms", "2.5", "--amqp-url", "none"]))
    assert settings.io_concurrency == (5, 7)
    assert settings.cpu_ms == 2.5
    assert settings.amqp_url is None and "amqp" not in settings.brokers
