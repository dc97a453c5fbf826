"""Queue lengths through the broker's own API (LLEN per priority list on Redis, ``queue_size`` elsewhere).

Answers are cached for ``ttl`` seconds: pages poll every couple of seconds and Prometheus
scrapes on its own schedule, and neither needs a fresher number than that.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .security import scrub

if TYPE_CHECKING:
    from ..app import Celery
    from ..brokers.base import Broker

__all__ = ["QueueLengths"]


class QueueLengths:
    def __init__(self, app: Celery, consumers: Callable[[], dict[str, list[str]]], *, ttl: float = 2.0) -> None:
        self.app = app
        self.consumers = consumers
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[dict[str, Any]]] | None = None
        self.extra: set[str] = set()  # queues named by a user (e.g. purged from the page)

    def names(self) -> list[str]:
        consumed = self.consumers()
        return sorted(set(self.app.configured_queue_names()) | set(consumed) | self.extra)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl:
                return self._cached[1]
            consumers = self.consumers()
            try:
                broker = self.app.connection_for_write()
            except Exception as exc:
                # Broker away: list the queues with the reason (not cached: it may be back next time).
                error = scrub(f"{type(exc).__name__}: {exc}", self.app.broker_url)
                return [
                    {"name": name, "messages": None, "by_priority": {}, "consumers": sorted(consumers.get(name, [])),
                     "error": error}
                    for name in self.names()
                ]  # fmt: skip
            out = [self._one(broker, name, consumers.get(name, [])) for name in self.names()]
            self._cached = (time.monotonic(), out)
            return out

    def forget(self) -> None:
        with self._lock:
            self._cached = None

    def _one(self, broker: Broker, name: str, consumers: list[str]) -> dict[str, Any]:
        view: dict[str, Any] = {"name": name, "messages": None, "by_priority": {}, "consumers": sorted(consumers)}
        try:
            by_priority = _by_priority(broker, name)
            view["by_priority"] = by_priority
            view["messages"] = sum(by_priority.values()) if by_priority else broker.queue_size(name)
        except NotImplementedError:
            pass  # a broker that can't count (the page shows "n/a")
        except Exception as exc:
            view["error"] = scrub(f"{type(exc).__name__}: {exc}", self.app.broker_url)
        return view


def _by_priority(broker: Broker, name: str) -> dict[str, int]:
    """Redis keeps one list per priority step; other brokers give one total ({})."""
    # A Redis broker's module is imported already; looking it up keeps redis-py optional here.
    module = sys.modules.get("celeriac.brokers.redis")
    if module is None or not isinstance(broker, module.RedisBroker):
        return {}
    steps = list(broker.priority_steps)
    with broker.client.pipeline(transaction=False) as pipe:
        for step in steps:
            pipe.llen(broker.queue_key(name, step))
        sizes = pipe.execute()
    # Label each list with the priority a user sends for it (see RedisBroker.kombu_priority).
    labels = [str(9 - s) if broker.priority_order == "celeriac" else str(s) for s in steps]
    return {label: int(size) for label, size in zip(labels, sizes, strict=True)}
