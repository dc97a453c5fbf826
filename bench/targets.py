"""The performance targets, each checked against this run's figures: met, not met, or not measured."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.report import Figures, best
from bench.section import Section
from bench.tables import table

RSS_NOISE_MIB = 2.0  # growth within this (after the first tenth of the tasks) counts as flat


@dataclass
class Check:
    target: str
    figure: str  # what was measured, in words
    value: float | None
    met: bool | None  # None: not measured in this run


def _fmt_pool(f: Figures | None) -> str:
    return f"-P {f.pool}" if f else "?"


def _rate_vs(
    summary: Sequence[Figures],
    key: Callable[[Figures], float],
    need: float,
    target: str,
    what: str,
    broker: str = "redis",
) -> Check:
    ours, theirs = best(summary, "celeriac", key, broker=broker), best(summary, "celery", key, broker=broker)
    if ours is None or theirs is None:
        return Check(target, "not measured", None, None)
    value = key(ours) / key(theirs)
    figure = f"{what}: celeriac {_fmt_pool(ours)} {key(ours):,.0f}/s vs Celery {_fmt_pool(theirs)} {key(theirs):,.0f}/s"
    return Check(target, figure, value, value >= need)


def _floor_share(summary: Sequence[Figures], data: Mapping[str, dict[str, Any]], broker: str, target: str) -> Check:
    ours = best(summary, "celeriac", lambda f: f.e2e_rate, broker=broker)
    floor = next((f for f in data.get("floor", {}).get("summary", []) if f["broker"] == broker), None)
    if not ours or not floor:
        return Check(target, "not measured", None, None)
    value = ours.e2e_rate / floor["pipelined_rate"]
    how = "pipelined LPUSH/RPOP" if broker == "redis" else "publish all, then consume"
    figure = f"celeriac {_fmt_pool(ours)} {ours.e2e_rate:,.0f}/s vs {how} {floor['pipelined_rate']:,.0f} messages/s"
    return Check(target, figure, value, value >= 0.4)


def _latency(summary: Sequence[Figures], broker: str, title: str) -> list[Check]:
    """p50 <= 1 ms, and <= 1/3 of Celery's where Celery runs on that broker."""
    p50 = best(summary, "celeriac", lambda f: f.p50_ms, lowest=True, broker=broker)
    celery_p50 = best(summary, "celery", lambda f: f.p50_ms, lowest=True, broker=broker)
    out = []
    if p50:
        out.append(
            Check(
                f"round trip p50 <= 1 ms ({title})",
                f"celeriac {_fmt_pool(p50)} p50 {p50.p50_ms:.2f} ms",
                p50.p50_ms,
                p50.p50_ms <= 1.0,
            )
        )
    if p50 and celery_p50:
        value = p50.p50_ms / celery_p50.p50_ms
        figure = f"celeriac {p50.p50_ms:.2f} ms vs Celery {_fmt_pool(celery_p50)} {celery_p50.p50_ms:.2f} ms"
        out.append(Check(f"round trip p50 <= 1/3 of Celery's ({title})", figure, value, value <= 1 / 3))
    return out


def _delay_alone(data: Mapping[str, dict[str, Any]], broker: str, title: str) -> list[Check]:
    """The client's ``delay()`` rate with no worker running (the delay section), where it was measured."""
    rows = {f["system"]: f for f in data.get("delay", {}).get("summary", []) if f["broker"] == broker}
    ours, theirs = rows.get("celeriac"), rows.get("celery")
    if ours is None or theirs is None:
        return []
    value = ours["rate"] / theirs["rate"]
    figure = f"client alone: celeriac {ours['rate']:,.0f}/s vs Celery {theirs['rate']:,.0f}/s"
    return [Check(f"delay() rate >= 3x Celery's, no worker running ({title})", figure, value, value >= 3.0)]


def checks(summary: Sequence[Figures], data: Mapping[str, dict[str, Any]]) -> list[Check]:
    out = [
        _rate_vs(summary, lambda f: f.e2e_rate, 5.0, "end-to-end >= 5x Celery's best pool (Redis)", "end-to-end"),
    ]
    out.append(_floor_share(summary, data, "redis", ">= 40% of the raw Redis floor"))
    out.extend(_latency(summary, "redis", "Redis"))
    io = [f for f in data.get("io", {}).get("summary", []) if f["system"] == "celeriac" and f["concurrency"] == 100]
    if io:
        top = max(io, key=lambda f: f["rate"] / f["ceiling"])
        value = top["rate"] / top["ceiling"]
        figure = f"celeriac -P {top['pool']}: {top['rate']:,.0f} of {top['ceiling']:,.0f} tasks/s"
        out.append(Check("io-bound at -c 100 >= 90% of the ceiling", figure, value, value >= 0.9))
    pre, celery_pre = _pool(summary, "celeriac", "prefork"), _pool(summary, "celery", "prefork")
    if pre and celery_pre:
        value = pre.rss_peak_mib / celery_pre.rss_peak_mib
        figure = f"prefork peak: celeriac {pre.rss_peak_mib:.0f} MiB vs Celery {celery_pre.rss_peak_mib:.0f} MiB"
        out.append(Check("worker RSS <= 1/2 of Celery prefork (same -c)", figure, value, value <= 0.5))
    mem = [f for f in data.get("memory", {}).get("summary", []) if f["system"] == "celeriac"]
    if mem:
        worst = max(mem, key=lambda f: f["growth_mib"])
        figure = (
            f"largest growth after the first tenth of {worst['tasks']:,} tasks: -P {worst['pool']} "
            f"{worst['growth_mib']:+.1f} MiB (noise: {RSS_NOISE_MIB:g} MiB)"
        )
        out.append(
            Check("no RSS growth over many tasks", figure, worst["growth_mib"], worst["growth_mib"] <= RSS_NOISE_MIB)
        )
    out.append(
        _rate_vs(
            summary, lambda f: f.enqueue_rate, 3.0, "delay() rate >= 3x Celery's, worker draining (Redis)", "enqueue"
        )
    )
    out.extend(_delay_alone(data, "redis", "Redis"))
    # The same targets on the other brokers, where this run measured them.
    if best(summary, "celeriac", lambda f: f.e2e_rate, broker="amqp"):
        out.append(
            _rate_vs(
                summary,
                lambda f: f.e2e_rate,
                5.0,
                "end-to-end >= 5x Celery's best pool (RabbitMQ)",
                "end-to-end",
                broker="amqp",
            )  # fmt: skip
        )
        out.append(_floor_share(summary, data, "amqp", ">= 40% of the raw RabbitMQ floor"))
        out.extend(_latency(summary, "amqp", "RabbitMQ"))
        out.append(
            _rate_vs(
                summary,
                lambda f: f.enqueue_rate,
                3.0,
                "delay() rate >= 3x Celery's, worker draining (RabbitMQ)",
                "enqueue",
                broker="amqp",
            )  # fmt: skip
        )
    out.extend(_delay_alone(data, "amqp", "RabbitMQ"))
    out.extend(_latency(summary, "sqlite", "SQLite"))
    cli = data.get("cli", {})
    if "celeriac" in cli:
        med = cli["celeriac"]["median_s"]
        out.append(Check("`celeriac --help` < 0.3 s", f"median {med * 1000:.0f} ms", med, med < 0.3))
    return out


def _pool(summary: Sequence[Figures], system: str, pool: str) -> Figures | None:
    return next((f for f in summary if f.system == system and f.broker == "redis" and f.pool == pool), None)


def section(summary: Sequence[Figures], data: Mapping[str, dict[str, Any]]) -> Section:
    found = checks(summary, data)
    rows = []
    for c in found:
        verdict = "not measured" if c.met is None else ("met" if c.met else "**not met**")
        shown = "-" if c.value is None or math.isnan(c.value) else f"{c.value:.2f}"
        rows.append([c.target, verdict, shown, c.figure])
    return Section(
        key="targets",
        title="Targets",
        method="Each target against this run's figures, on Redis unless it says otherwise.",
        body=table(["target", "verdict", "value", "figures"], rows),
        data={"checks": [asdict(c) for c in found]},
    )
