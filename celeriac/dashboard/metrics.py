"""``/metrics``: Prometheus exposition (prometheus_client), in a registry of the dashboard's own.

Counters and the runtime histogram are fed by events as they arrive; worker and queue
gauges are read when Prometheus scrapes (queue lengths cached for a second or two, so
several scrapers don't each hit the broker).

======================================  =========  ==========================================
name                                    type       labels
======================================  =========  ==========================================
celeriac_tasks_total                    counter    name, state (PENDING ... REVOKED)
celeriac_task_runtime_seconds           histogram  name
celeriac_queue_length                   gauge      queue
celeriac_worker_up                      gauge      worker (1 online, 0 offline)
celeriac_worker_active_tasks            gauge      worker
celeriac_dashboard_events_total         counter    (none)
======================================  =========  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tasks = Counter(
            "celeriac_tasks", "Task state changes seen in events.", ["name", "state"], registry=self.registry
        )
        self.runtime = Histogram(
            "celeriac_task_runtime_seconds",
            "Runtime of succeeded tasks, as the worker measured it.",
            ["name"],
            buckets=RUNTIME_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter("celeriac_dashboard_events", "Events received by the dashboard.", registry=self.registry)

    def task_event(self, name: str, state: str, runtime: Any) -> None:
        self.events.inc()
        self.tasks.labels(name=name, state=state).inc()
        if state == "SUCCESS" and isinstance(runtime, (int, float)):
            self.runtime.labels(name=name).observe(float(runtime))

    def watch(self, workers: Callable[[], list[dict[str, Any]]], queues: Callable[[], list[dict[str, Any]]]) -> None:
        """Register the scrape-time gauges (workers and queues are read through these callables)."""
        self.registry.register(_Gauges(workers, queues))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Gauges(Collector):
    def __init__(self, workers: Callable[[], list[dict[str, Any]]], queues: Callable[[], list[dict[str, Any]]]) -> None:
        self._workers = workers
        self._queues = queues

    def describe(self) -> list[Any]:
        return []  # nothing at registration time: collect() needs the broker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("celeriac_worker_up", "1 if the worker's heartbeats are current.", labels=["worker"])
        active = GaugeMetricFamily("celeriac_worker_active_tasks", "Tasks the worker runs now.", labels=["worker"])
        for worker in self._workers():
            up.add_metric([worker["hostname"]], 1.0 if worker["online"] else 0.0)
            active.add_metric([worker["hostname"]], float(worker.get("active") or 0))
        length = GaugeMetricFamily("celeriac_queue_length", "Messages waiting in the queue.", labels=["queue"])
        for queue in self._queues():
            if queue.get("messages") is not None:
                length.add_metric([queue["name"]], float(queue["messages"]))
        yield from (up, active, length)
