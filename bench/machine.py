"""What the benchmark ran on: hardware, kernel and the versions of everything involved."""

from __future__ import annotations

import os
import platform
import sqlite3
from importlib import metadata
from pathlib import Path
from typing import Any

import redis


def _proc_field(path: str, name: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_model() -> str:
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown"


def memory_gib() -> float | None:
    total = _proc_field("/proc/meminfo", "MemTotal")  # "24684492 kB"
    return int(total.split()[0]) / 1024 / 1024 if total else None


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def celeriac_version() -> str:
    from celeriac import __version__

    return __version__


def redis_server_version(redis_url: str) -> str:
    client = redis.Redis.from_url(redis_url)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def rabbitmq_version(amqp_url: str | None) -> str:
    if amqp_url is None:
        return "not used"
    from bench.brokers import amqp_connection

    try:
        conn: Any = amqp_connection(amqp_url)
    except Exception as exc:  # the report says why rather than failing
        return f"unreachable ({exc.__class__.__name__})"
    try:
        return str(conn.server_properties.get("version", "unknown"))
    finally:
        conn.close()


def describe(redis_url: str, amqp_url: str | None = None) -> dict[str, object]:
    """Everything the report says about the machine and the software under test."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "celeriac": celeriac_version(),
        "celery": package_version("celery"),
        "kombu": package_version("kombu"),
        "redis_py": package_version("redis"),
        "hiredis": package_version("hiredis"),
        "orjson": package_version("orjson"),
        "redis_server": redis_server_version(redis_url),
        "rabbitmq_server": rabbitmq_version(amqp_url),
        "sqlite": sqlite3.sqlite_version,
        "amqp": package_version("amqp"),
        "aio_pika": package_version("aio-pika"),
    }
