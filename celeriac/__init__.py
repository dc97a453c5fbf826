"""celeriac: a distributed task queue with Celery's API, settings, CLI and wire protocol.

``from celeriac import Celery`` is a drop-in for ``from celery import Celery``.
"""

from __future__ import annotations

from . import states
from ._state import current_app, current_task
from ._version import __version__
from .app import Celery, shared_task
from .canvas import Signature, maybe_signature, signature, subtask
from .queues import Exchange, Queue
from .result import AsyncResult, EagerResult
from .task import Task


def uuid() -> str:
    """A new task id (a random UUID4 string), as Celery's ``uuid()``."""
    import uuid as _uuid

    return str(_uuid.uuid4())


__all__ = [
    "AsyncResult",
    "Celery",
    "EagerResult",
    "Exchange",
    "Queue",
    "Signature",
    "Task",
    "__version__",
    "current_app",
    "current_task",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "uuid",
]
