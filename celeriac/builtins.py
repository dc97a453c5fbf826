"""Tasks every app has, under Celery's names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Celery

__all__ = ["register_builtins"]


def register_builtins(app: Celery) -> None:
    def backend_cleanup() -> Any:
        """Delete expired results (what Celery's beat runs daily as ``celery.backend_cleanup``)."""
        cleanup = getattr(app.backend, "cleanup", None)
        return cleanup() if cleanup is not None else None

    app._task_from_fun(backend_cleanup, name="celery.backend_cleanup", ignore_result=True)
    app._task_from_fun(lambda *args, index=None: args[index] if index is not None else args, name="celery.accumulate")
