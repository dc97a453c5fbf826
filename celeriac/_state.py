"""Process-wide state: the current app and the task being executed.

The "current app" is the one most recently created (or ``set_current``) in
this process; ``shared_task`` objects resolve their app through it at call time.
The current task request lives in a ``ContextVar`` so threads and asyncio tasks
each see their own.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Celery
    from .task import Context, Task

__all__ = ["current_app", "current_task", "get_current_app", "get_current_request", "get_current_task"]

# Reentrant: creating the default app under it registers that app, which takes it again.
_lock = threading.RLock()
_current_app: Celery | None = None
_default_app: Celery | None = None
_all_apps: list[Any] = []  # weakrefs to every app, for shared_task

current_task_var: ContextVar[tuple[Task[Any, Any], Context] | None] = ContextVar("celeriac_current_task", default=None)


def set_current_app(app: Celery) -> None:
    global _current_app
    _current_app = app


def register_app(app: Celery) -> None:
    import weakref

    with _lock:
        _all_apps.append(weakref.ref(app))


def all_apps() -> list[Celery]:
    with _lock:
        live = [(ref, ref()) for ref in _all_apps]
        _all_apps[:] = [ref for ref, app in live if app is not None]
    return [app for _, app in live if app is not None]


def get_current_app() -> Celery:
    """The current app; a default app (``main='default'``) is created if there is none."""
    global _default_app
    if _current_app is not None:
        return _current_app
    with _lock:
        if _default_app is None:
            from .app import Celery

            _default_app = Celery("default", set_as_current=False)
        return _default_app


def get_current_task() -> Task[Any, Any] | None:
    current = current_task_var.get()
    return current[0] if current else None


def get_current_request() -> Context | None:
    current = current_task_var.get()
    return current[1] if current else None


class _CurrentApp:
    """``celeriac.current_app``: forwards attribute access to :func:`get_current_app`.

    Kept only because ``from celery import current_app; current_app.conf...`` is
    common in Celery code; new code should call ``get_current_app()``.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(get_current_app(), name)

    def __repr__(self) -> str:
        return repr(get_current_app())


class _CurrentTask:
    """``celeriac.current_task``: the task being executed; falsy outside a task."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        task = get_current_task()
        if task is None:
            raise AttributeError(f"no task is being executed (looking up {name!r})")
        return getattr(task, name)

    def __bool__(self) -> bool:
        return get_current_task() is not None

    def __repr__(self) -> str:
        return repr(get_current_task())


current_app: Celery = _CurrentApp()  # type: ignore[assignment]
current_task: Task[Any, Any] = _CurrentTask()  # type: ignore[assignment]
