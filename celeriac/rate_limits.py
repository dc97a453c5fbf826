"""Rate limit strings (``"10/m"``) and the token bucket that enforces them in a worker."""

from __future__ import annotations

import threading
import time

__all__ = ["TokenBucket", "parse_rate"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str | int | float | None) -> float:
    """Tasks per second for Celery's rate syntax: ``"100/s"``, ``"10/m"``, ``"5/h"`` or a number (per second).

    ``None``, ``0`` and ``""`` mean "no limit" and return ``0.0``.
    """
    if rate is None or rate == "" or rate == 0:
        return 0.0
    if isinstance(rate, bool):
        raise ValueError(f"invalid rate limit {rate!r}")
    if isinstance(rate, (int, float)):
        if rate < 0:
            raise ValueError(f"invalid rate limit {rate!r}: must not be negative")
        return float(rate)
    text = rate.strip()
    count, _, unit = text.partition("/")
    try:
        amount = float(count)
    except ValueError:
        raise ValueError(f"invalid rate limit {rate!r}: expected e.g. '10/m', '100/s' or '5/h'") from None
    unit = unit.strip().lower()[:1] or "s"
    if unit not in _UNITS or amount < 0:
        raise ValueError(f"invalid rate limit {rate!r}: expected e.g. '10/m', '100/s' or '5/h'")
    return amount / _UNITS[unit]


class TokenBucket:
    """Classic token bucket; ``capacity`` tokens, refilled at ``fill_rate`` per second."""

    def __init__(self, fill_rate: float, capacity: float = 1.0) -> None:
        self.fill_rate = fill_rate
        self.capacity = capacity
        self._tokens = capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.fill_rate)
        self._stamp = now

    def can_consume(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if available; False (and nothing taken) otherwise."""
        with self._lock:
            self._refill()
            if self._tokens >= tokens:
                self._tokens -= tokens
                return True
            return False

    def expected_time(self, tokens: float = 1.0) -> float:
        """Seconds until ``tokens`` will be available."""
        with self._lock:
            self._refill()
            missing = tokens - self._tokens
            return max(0.0, missing / self.fill_rate) if self.fill_rate else 0.0
