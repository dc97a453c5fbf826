"""What a worker holds and has done: active and reserved requests, revoked ids, counters."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .request import Request

__all__ = ["WorkerState"]


class WorkerState:
    def __init__(self) -> None:
        self.active: dict[str, Request] = {}
        self.reserved: dict[str, Request] = {}
        self.revoked: set[str] = set()
        self.total: Counter[str] = Counter()
        self.by_state: Counter[str] = Counter()
        self.started = time.time()
        self._lock = threading.Lock()

    def count(self, task_name: str, state: str) -> None:
        with self._lock:
            self.total[task_name] += 1
            self.by_state[state] += 1

    def is_revoked(self, task_id: str) -> bool:
        return task_id in self.revoked

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"total": dict(self.total), "uptime": int(time.time() - self.started)}
