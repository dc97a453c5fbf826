"""What the dashboard knows: events read in a background thread, workers' stats polled by remote control.

``Monitor.start()`` starts two daemon threads:

* the event reader: :class:`~celeriac.events.EventReceiver` -> :class:`~celeriac.events.State`
  (workers, heartbeats) + :class:`TaskStore` (task history, written in batches) + metrics;
* the poller: every few seconds ``inspect().stats()`` and ``active_queues()``, for what
  heartbeats don't carry (pool, concurrency, queues consumed).

Remote-control commands from the pages go through :meth:`Monitor.control` under one lock,
since replies to concurrent broadcasts would share one reply queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..events import EventReceiver, State
from .metrics import Metrics
from .security import scrub
from .store import TaskStore, state_of_event

if TYPE_CHECKING:
    from ..app import Celery
    from ..control import Control

__all__ = ["Monitor"]

logger = logging.getLogger("celeriac.dashboard")

BATCH_SECONDS = 0.2  # how long events are gathered before one write to the store
POLL_SECONDS = 5.0  # between inspect() rounds
PRUNE_SECONDS = 60.0
COUNTS_SECONDS = 2.0  # how stale the per-worker succeeded/failed counts may be


class Monitor:
    def __init__(self, app: Celery, store: TaskStore, metrics: Metrics, *, heartbeat_expires: float = 10.0) -> None:
        self.app = app
        self.store = store
        self.metrics = metrics
        self.state = State(max_tasks_in_memory=5000, heartbeat_expires=heartbeat_expires / 2)
        self.heartbeat_expires = heartbeat_expires
        self.stats: dict[str, dict[str, Any]] = {}  # hostname -> inspect stats reply
        self.queues_by_worker: dict[str, list[str]] = {}  # hostname -> queues it consumes
        self.started_at = time.time()
        self.last_event_at: float | None = None
        self._lock = threading.Lock()  # guards state, stats, queues_by_worker
        self._control_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._receiver: EventReceiver | None = None
        self._counts: tuple[float, dict[str, dict[str, int]]] | None = None

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        self.store.open()
        try:
            self._receiver = EventReceiver(self.app)  # subscribed before the first page: nothing missed after start
        except Exception as exc:
            # Serve anyway (/readyz says what is wrong); the reader thread keeps trying.
            logger.warning("can't subscribe to events yet: %s", scrub(str(exc), self.app.broker_url))
        for target, name in ((self._read_events, "dashboard-events"), (self._poll, "dashboard-poll")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        if self._receiver is not None:
            self._receiver.close()
        self.store.close()

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    # -- events ----------------------------------------------------------------------
    def _read_events(self) -> None:
        batch: list[dict[str, Any]] = []
        flush_at = time.monotonic() + BATCH_SECONDS
        next_prune = time.monotonic()
        while not self._stop.is_set():
            try:
                if self._receiver is None:
                    self._receiver = EventReceiver(self.app)
                    logger.info("subscribed to events")
                for body in self._receiver.itercapture(timeout=BATCH_SECONDS):
                    self._on_event(body, batch)
                    if time.monotonic() >= flush_at:
                        break
                if batch:
                    self.store.record(batch)
                    batch.clear()
                flush_at = time.monotonic() + BATCH_SECONDS
                if time.monotonic() >= next_prune:
                    self.store.prune()
                    next_prune = time.monotonic() + PRUNE_SECONDS
            except Exception as exc:
                # A broker hiccup must not end the dashboard: log, wait, read again.
                logger.warning("reading events failed: %s; retrying", scrub(str(exc), self.app.broker_url))
                batch.clear()
                self._reconnect()
                self._stop.wait(2.0)

    def _reconnect(self) -> None:
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            try:
                receiver.close()
            except Exception:
                pass  # the connection is already gone

    def _on_event(self, body: dict[str, Any], batch: list[dict[str, Any]]) -> None:
        self.last_event_at = time.time()
        with self._lock:
            self.state.event(body)
        kind = str(body.get("type", ""))
        state = state_of_event(kind)
        if state is None:
            return
        batch.append(body)
        known = self.state.tasks.get(str(body.get("uuid")))
        name = body.get("name") or (known or {}).get("name")
        if name is None:
            name = self.store.names([str(body.get("uuid"))]).get(str(body.get("uuid")), "unknown")
        self.metrics.task_event(str(name), state, body.get("runtime"))

    # -- remote control ----------------------------------------------------------------
    @contextmanager
    def control(self) -> Iterator[Control]:
        with self._control_lock:
            yield self.app.control

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_workers()
            except Exception as exc:
                logger.info("polling workers failed: %s", scrub(str(exc), self.app.broker_url))
            self._stop.wait(POLL_SECONDS)

    def refresh_workers(self) -> None:
        with self.control() as control:
            inspect = control.inspect(timeout=1.0)
            stats = inspect.stats() or {}
            queues = inspect.active_queues() or {}
        with self._lock:
            self.stats.update(stats)
            self.queues_by_worker = {
                node: [str(q.get("name")) for q in reply if isinstance(q, dict)]
                for node, reply in queues.items()
                if isinstance(reply, list)
            }

    # -- views -----------------------------------------------------------------------
    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        counts = self._counts_by_worker()
        with self._lock:
            known = {**{name: {"hostname": name} for name in self.stats}, **self.state.workers}
            out = [self._worker_view(name, dict(info), now, counts.get(name, {})) for name, info in known.items()]
        return sorted(out, key=lambda w: (not w["online"], w["hostname"]))

    def _counts_by_worker(self) -> dict[str, dict[str, int]]:
        # A GROUP BY over the whole history: cached, since every open page polls for workers.
        cached = self._counts
        if cached is None or time.monotonic() - cached[0] > COUNTS_SECONDS:
            cached = self._counts = (time.monotonic(), self.store.counts_by_worker())
        return cached[1]

    def _worker_view(self, name: str, info: dict[str, Any], now: float, counts: dict[str, int]) -> dict[str, Any]:
        last = info.get("last_heartbeat")
        age = None if last is None else max(0.0, now - float(last))
        online = bool(info.get("alive")) and age is not None and age < self.heartbeat_expires
        stats = self.stats.get(name, {})
        pool = stats.get("pool") or {}
        total = stats.get("total") or {}
        return {
            "hostname": name,
            "online": online,
            "heartbeat_age": None if age is None else round(age, 1),
            "pool": str(pool.get("implementation", "")).rsplit(":", 1)[-1] or None,
            "concurrency": pool.get("max-concurrency"),
            "active": info.get("active"),
            "processed": info.get("processed", sum(total.values()) if total else None),
            "succeeded": counts.get("SUCCESS", 0),
            "failed": counts.get("FAILURE", 0),
            "loadavg": info.get("loadavg") or [],
            "software": f"{info.get('sw_ident', '')} {info.get('sw_ver', '')}".strip() or None,
            "pid": info.get("pid") or stats.get("pid"),
            "queues": self.queues_by_worker.get(name, []),
        }

    def worker_names(self) -> list[str]:
        with self._lock:
            return sorted(set(self.state.workers) | set(self.stats))

    def online_workers(self) -> list[str]:
        return [w["hostname"] for w in self.workers() if w["online"]]

    def consumers(self) -> dict[str, list[str]]:
        """queue -> the workers consuming it (as of the last poll)."""
        out: dict[str, list[str]] = {}
        with self._lock:
            for node, queues in self.queues_by_worker.items():
                for queue in queues:
                    out.setdefault(queue, []).append(node)
        return out

    def run(self, fn: Callable[[Control], Any]) -> Any:
        with self.control() as control:
            return fn(control)
