"""``--autoscale=max,min``: grow the pool while tasks wait for a slot, shrink it when idle.

Every second: if requests are waiting for a free slot and the pool has fewer than
``max`` slots, it grows by what's waiting (up to ``max``); after ``keepalive`` seconds
without a waiting or running task it shrinks by one, down to ``min``. The worker
fetches for ``max`` slots from the start, so a burst shows up as waiting requests.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from .pools.base import Pool

__all__ = ["Autoscaler"]

builtins_min = min

logger = logging.getLogger("celeriac.worker")

# Celery reads the same variable.
KEEPALIVE = float(os.environ.get("AUTOSCALE_KEEPALIVE", 30))


class Autoscaler:
    def __init__(
        self,
        pool: Pool,
        waiting: Callable[[], int],
        busy: Callable[[], int],
        *,
        max_concurrency: int,
        min_concurrency: int,
        keepalive: float = KEEPALIVE,
        interval: float = 1.0,
    ) -> None:
        self.pool = pool
        self.waiting = waiting
        self.busy = busy
        self.max = max(max_concurrency, 1)
        self.min = max(min(min_concurrency, self.max), 0)
        self.keepalive = keepalive
        self.interval = interval
        self._last_work = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, max: int | None = None, min: int | None = None) -> tuple[int, int]:
        """Change the range (remote control ``autoscale``); returns the new (max, min)."""
        if max is not None:
            self.max = int(max)
        if min is not None:
            self.min = int(min)
        self.min = builtins_min(self.min, self.max)
        return self.max, self.min

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="Autoscaler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                logger.exception("autoscaler failed")

    def tick(self) -> None:
        waiting, busy, procs = self.waiting(), self.busy(), self.pool.concurrency
        now = time.monotonic()
        if waiting or busy:
            self._last_work = now
        free = self.pool.free_slots()
        if waiting > free and procs < self.max:
            grow = min(self.max - procs, waiting - free)
            added = self.pool.grow(grow)
            logger.info("Scaling up %d processes.", added)
        elif not waiting and not busy and procs > self.min and now - self._last_work >= self.keepalive:
            removed = self.pool.shrink(1)
            if removed:
                logger.info("Scaling down %d processes.", removed)
