"""The targets table judges each broker on its own figures: Redis, then RabbitMQ and SQLite."""

from __future__ import annotations

from bench.report import Figures
from bench.targets import checks


def run(system: str, broker: str, pool: str, *, enqueue: float, e2e: float, p50: float) -> Figures:
    return Figures(system, broker, pool, enqueue, e2e, e2e, p50, p50, p50, p50, 30.0, 40.0, 1.0)


def by_target(found: list) -> dict[str, tuple[float | None, bool | None]]:
    return {c.target: (c.value, c.met) for c in found}


def test_each_broker_is_judged_against_celery_on_the_same_broker() -> None:
    summary = [
        run("celeriac", "redis", "threads", enqueue=7_500, e2e=6_000, p50=0.4),
        run("celery", "redis", "prefork", enqueue=2_400, e2e=1_000, p50=1.3),
        run("celeriac", "amqp", "threads", enqueue=8_000, e2e=2_800, p50=1.0),
        run("celeriac", "amqp", "solo", enqueue=8_400, e2e=2_400, p50=0.9),
        run("celery", "amqp", "threads", enqueue=3_500, e2e=1_400, p50=1.2),
        run("celeriac", "sqlite", "threads", enqueue=9_000, e2e=4_800, p50=1.3),
    ]
    floor = {"summary": [{"broker": "redis", "pipelined_rate": 200_000}, {"broker": "amqp", "pipelined_rate": 17_500}]}
    found = by_target(checks(summary, {"floor": floor}))
    assert found["end-to-end >= 5x Celery's best pool (Redis)"] == (6.0, True)
    assert found["end-to-end >= 5x Celery's best pool (RabbitMQ)"] == (2.0, False)
    assert found[">= 40% of the raw RabbitMQ floor"] == (0.16, False)
    value, met = found["round trip p50 <= 1/3 of Celery's (RabbitMQ)"]
    assert value is not None and abs(value - 0.75) < 1e-9 and met is False  # solo's 0.9 ms, the lowest
    assert found["round trip p50 <= 1 ms (RabbitMQ)"] == (0.9, True)
    assert found["delay() rate >= 3x Celery's, worker draining (RabbitMQ)"] == (2.4, False)
    assert found["round trip p50 <= 1 ms (SQLite)"] == (1.3, False)
    assert "round trip p50 <= 1/3 of Celery's (SQLite)" not in found  # Celery has no SQLite broker


def test_brokers_not_in_the_run_add_no_rows() -> None:
    summary = [
        run("celeriac", "redis", "solo", enqueue=7_500, e2e=6_000, p50=0.4),
        run("celery", "redis", "solo", enqueue=2_400, e2e=1_000, p50=1.3),
    ]
    found = by_target(checks(summary, {}))
    assert not [t for t in found if "RabbitMQ" in t or "SQLite" in t]
    assert found[">= 40% of the raw Redis floor"] == (None, None)  # no floor measured: said so


def test_delay_with_no_worker_running_is_judged_per_broker_where_both_ran() -> None:
    summary = [
        run("celeriac", "redis", "solo", enqueue=7_500, e2e=6_000, p50=0.4),
        run("celery", "redis", "solo", enqueue=2_500, e2e=1_000, p50=1.3),
    ]
    alone = {
        "summary": [
            {"system": "celeriac", "broker": "redis", "rate": 18_000.0},
            {"system": "celery", "broker": "redis", "rate": 3_000.0},
            {"system": "celeriac", "broker": "amqp", "rate": 5_000.0},
            {"system": "celery", "broker": "amqp", "rate": 2_000.0},
        ]
    }
    found = by_target(checks(summary, {"delay": alone}))
    assert found["delay() rate >= 3x Celery's, worker draining (Redis)"] == (3.0, True)
    assert found["delay() rate >= 3x Celery's, no worker running (Redis)"] == (6.0, True)
    assert found["delay() rate >= 3x Celery's, no worker running (RabbitMQ)"] == (2.5, False)
    only_ours = {"summary": [{"system": "celeriac", "broker": "redis", "rate": 18_000.0}]}
    found = by_target(checks(summary, {"delay": only_ours}))
    assert not [t for t in found if "no worker running" in t]  # nothing to compare with: no row
