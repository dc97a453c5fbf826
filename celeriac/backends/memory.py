"""In-process result store, for tests and eager mode.

URL: ``memory://`` or ``cache+memory://`` (Celery's name). Shared by every app
in the process; lost when the process exits.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

from .base import KeyValueBackend

__all__ = ["MemoryBackend"]

_data: dict[str, tuple[bytes, float | None]] = {}
_cond = threading.Condition()
_writes = 0  # counted under _cond: a waiter sees a write made after it looked, even before it waits


class MemoryBackend(KeyValueBackend):
    persistent: ClassVar[bool] = False

    def _get(self, key: str) -> bytes | None:
        with _cond:
            entry = _data.get(key)
            if entry is None:
                return None
            value, expires = entry
            if expires is not None and expires < time.time():
                del _data[key]
                return None
            return value

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        global _writes
        with _cond:
            _data[key] = (value, time.time() + ttl if ttl else None)
            _writes += 1
            _cond.notify_all()

    def _delete(self, key: str) -> None:
        with _cond:
            _data.pop(key, None)

    def _incr(self, key: str, ttl: float | None) -> int:
        with _cond:
            current = int(_data.get(key, (b"0", None))[0])
            _data[key] = (str(current + 1).encode(), time.time() + ttl if ttl else None)
            return current + 1

    def _change_mark(self) -> Any:
        return _writes

    def _sleep_until_change(self, task_id: str, seconds: float, mark: Any = None) -> None:
        with _cond:
            _cond.wait_for(lambda: _writes != mark, seconds)
