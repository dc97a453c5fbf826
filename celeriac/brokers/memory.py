"""In-process broker, for unit tests of the core and for eager-style experiments.

URL: ``memory://`` (one shared set of queues per process; ``memory://name`` for a separate set).

Capabilities: priorities (9 highest), ETA held until due, requeue/dead-letter.
Nothing survives the process and nothing crosses processes: it is never the
evidence that a real broker works.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from .base import Broker, Delivery, Envelope, QueueSpec

__all__ = ["MemoryBroker"]


class _Store:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.ready: dict[str, list[tuple[int, int, Envelope, bool]]] = {}  # heap of (-priority, seq, env, redelivered)
        self.scheduled: list[tuple[float, int, str, Envelope]] = []
        self.unacked: dict[str, tuple[str, Envelope]] = {}
        self.dead: list[tuple[str, str, Envelope]] = []
        self.seq = itertools.count()


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


class MemoryBroker(Broker):
    scheme: ClassVar[str] = "memory"
    supports_priority: ClassVar[bool] = True
    native_delay: ClassVar[bool] = True

    def __init__(self, url: str = "memory://", options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        name = url.split("://", 1)[-1]
        with _stores_lock:
            self._store = _stores.setdefault(name, _Store())

    def declare_queue(self, spec: QueueSpec) -> None:
        with self._store.cond:
            self._store.ready.setdefault(spec.name, [])

    def publish(
        self, envelope: Envelope, *, exchange: str, routing_key: str, not_before: datetime | None = None
    ) -> None:
        store = self._store
        with store.cond:
            if not_before is not None and not_before.timestamp() > time.time():
                heapq.heappush(store.scheduled, (not_before.timestamp(), next(store.seq), routing_key, envelope))
            else:
                self._push(routing_key, envelope, False)
            store.cond.notify_all()

    def _push(self, queue: str, envelope: Envelope, redelivered: bool) -> None:
        store = self._store
        heap = store.ready.setdefault(queue, [])
        heapq.heappush(heap, (-(envelope.priority or 0), next(store.seq), envelope, redelivered))

    def _promote(self) -> float:
        store, now = self._store, time.time()
        while store.scheduled and store.scheduled[0][0] <= now:
            _, _, queue, envelope = heapq.heappop(store.scheduled)
            self._push(queue, envelope, False)
        return store.scheduled[0][0] - now if store.scheduled else float("inf")

    def get(self, queues: Sequence[str], *, max_messages: int, timeout: float) -> list[Delivery]:
        store = self._store
        deadline = time.monotonic() + timeout
        with store.cond:
            while True:
                next_due = self._promote()
                out: list[Delivery] = []
                for queue in queues:
                    heap = store.ready.get(queue)
                    while heap and len(out) < max_messages:
                        _, seq, envelope, redelivered = heapq.heappop(heap)
                        tag = str(seq)
                        store.unacked[tag] = (queue, envelope)
                        out.append(Delivery(envelope, queue, tag, redelivered, "", queue))
                if out:
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                store.cond.wait(min(remaining, next_due))

    def ack(self, delivery: Delivery) -> None:
        with self._store.cond:
            self._store.unacked.pop(delivery.tag, None)

    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        store = self._store
        with store.cond:
            entry = store.unacked.pop(delivery.tag, None)
            if entry is None:
                return
            queue, envelope = entry
            if requeue:
                self._push(queue, envelope, True)
                store.cond.notify_all()
            else:
                store.dead.append((queue, reason, envelope))

    def purge(self, queue: str) -> int:
        store = self._store
        with store.cond:
            count = len(store.ready.get(queue, []))
            store.ready[queue] = []
            kept = [item for item in store.scheduled if item[2] != queue]
            count += len(store.scheduled) - len(kept)
            store.scheduled = kept
            heapq.heapify(store.scheduled)
            return count

    def queue_size(self, queue: str) -> int:
        store = self._store
        with store.cond:
            return len(store.ready.get(queue, [])) + sum(1 for item in store.scheduled if item[2] == queue)

    def dead_letters(self) -> list[tuple[str, str, Envelope]]:
        with self._store.cond:
            return list(self._store.dead)
