"""``from celeriac.utils.log import get_task_logger``, as in Celery."""

from __future__ import annotations

from ..log import get_logger, get_task_logger

__all__ = ["get_logger", "get_task_logger"]
