"""Everything a request handler needs, built once by :func:`celeriac.dashboard.app.create_app`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .metrics import Metrics
from .monitor import Monitor
from .queues import QueueLengths
from .security import Auth
from .store import TaskStore

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["Context"]


@dataclass(frozen=True, slots=True)
class Context:
    app: Celery
    store: TaskStore
    monitor: Monitor
    queues: QueueLengths
    metrics: Metrics
    auth: Auth | None
    broker_url: str  # masked: never the password
