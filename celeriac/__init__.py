"""celeriac: a distributed task queue with Celery's API, settings, CLI and wire protocol.

``from celeriac import Celery`` is a drop-in for ``from celery import Celery``.
"""

from __future__ import annotations

from . import states
from ._state import current_app, current_task
from ._version import __version__
from .app import Celery, shared_task
from .canvas import Signature, chain, chord, chunks, group, maybe_signature, signature, subtask, xmap, xstarmap
from .queues import Exchange, Queue
from .result import AsyncResult, EagerResult, GroupResult, ResultSet
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
    "GroupResult",
    "Queue",
    "ResultSet",
    "Signature",
    "Task",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "current_task",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "uuid",
    "xmap",
    "xstarmap",
]
