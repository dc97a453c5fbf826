"""The worker: :class:`WorkController` runs a consumer feeding a pool."""

from __future__ import annotations

from .main import WorkController

__all__ = ["WorkController"]
