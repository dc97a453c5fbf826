"""The Django fixup (Celery's ``celery.fixups.django``): Django set-up and connection hygiene in workers.

:class:`~celeriac.Celery` calls :func:`fixup` for every app it creates (it is in
``BUILTIN_FIXUPS``). It does nothing unless ``DJANGO_SETTINGS_MODULE`` is set; then it
makes :class:`~celeriac.contrib.django.task.DjangoTask` the app's task class (unless the
app has its own) and connects the receivers below, once per process. They act only for
apps the fixup was applied to:

``import_modules`` (the worker, before it imports task modules)
    ``django.setup()`` unless done, then Django's system checks (serious ones are logged;
    ``CELERY_SKIP_CHECKS``/``CELERIAC_SKIP_CHECKS`` in the environment skip them).
``worker_init``
    Warns when ``settings.DEBUG`` is on; connects ``task_prerun``/``task_postrun`` to
    :func:`close_connections`, so no task inherits a broken or expired connection and
    none is left open between tasks beyond ``CONN_MAX_AGE``.
``worker_process_init`` (each prefork child)
    Closes the connections inherited from the worker process without talking to the
    server on them (see :func:`close_inherited_connections`); in a spawned child, also
    ``django.setup()``.

Eager calls (``task.apply()``, ``task_always_eager``) are left alone: they may run
inside the caller's transaction, which closing the connection would break.
"""

from __future__ import annotations

import logging
import os
import warnings
import weakref
from typing import TYPE_CHECKING, Any

from ... import signals
from ...exceptions import FixupWarning

if TYPE_CHECKING:
    from ...app import Celery

__all__ = ["DjangoFixup", "close_connections", "close_inherited_connections", "fixup", "setup_django"]

logger = logging.getLogger("celeriac.contrib.django")

DEBUG_WARNING = "Using settings.DEBUG leads to a memory leak, never use this setting in production environments!"

_UID = "celeriac.contrib.django.fixup"
# Weak: a fixed-up app must not live forever because a signal receiver knows it.
_fixed_apps: weakref.WeakSet[Celery] = weakref.WeakSet()


def fixup(app: Celery, env: str = "DJANGO_SETTINGS_MODULE") -> DjangoFixup | None:
    """Apply the Django fixup to ``app`` if the environment variable ``env`` is set (Celery's rule)."""
    if not os.environ.get(env):
        return None
    try:
        import django  # noqa: F401
    except ImportError:
        warnings.warn(
            FixupWarning(f"{env} is set but Django isn't installed: the Django fixup is not applied."), stacklevel=2
        )
        return None
    return DjangoFixup(app).install()


class DjangoFixup:
    """What the fixup did to one app; :meth:`install` is idempotent."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def install(self) -> DjangoFixup:
        from ...task import Task
        from .task import DjangoTask

        if self.app.task_cls is Task:
            self.app.task_cls = DjangoTask
        _fixed_apps.add(self.app)
        signals.import_modules.connect(_on_import_modules, dispatch_uid=_UID)
        signals.worker_init.connect(_on_worker_init, dispatch_uid=_UID)
        signals.worker_process_init.connect(_on_worker_process_init, dispatch_uid=_UID)
        return self


def setup_django(*, checks: bool = True) -> None:
    """``django.setup()`` unless the app registry is ready, then (optionally) Django's system checks."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    if not checks or os.environ.get("CELERIAC_SKIP_CHECKS") or os.environ.get("CELERY_SKIP_CHECKS"):
        return
    from django.core.checks import run_checks

    for message in run_checks():
        if message.is_serious():
            logger.error("Django system check: %s", message)


def close_connections() -> None:
    """Close database connections that are broken or older than ``CONN_MAX_AGE``, and Django's caches."""
    from django.core.cache import close_caches
    from django.db import close_old_connections

    close_old_connections()
    close_caches()


def close_inherited_connections() -> None:
    """In a forked child, drop the database connections the parent opened.

    Closing such a connection the normal way would send the server a "terminate"
    message on the socket the parent still uses, killing the parent's session. So the
    socket is closed first (the goodbye then goes nowhere), then Django's wrapper.
    """
    from django.db import DatabaseError, InterfaceError, connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        try:
            os.close(conn.connection.fileno())
        except (AttributeError, OSError, TypeError):
            pass  # no socket of its own (SQLite), or already gone
        try:
            conn.close()
        except (InterfaceError, DatabaseError):
            conn.connection = None  # what close() would have left


def _is_eager(task: Any) -> bool:
    return bool(getattr(getattr(task, "request", None), "is_eager", False))


def _on_task_prerun(sender: Any = None, **_: Any) -> None:
    if not _is_eager(sender):
        close_connections()


def _on_task_postrun(sender: Any = None, **_: Any) -> None:
    if not _is_eager(sender):
        close_connections()


def _install_task_hooks() -> None:
    signals.task_prerun.connect(_on_task_prerun, dispatch_uid=_UID)
    signals.task_postrun.connect(_on_task_postrun, dispatch_uid=_UID)


def _on_import_modules(sender: Any = None, **_: Any) -> None:
    if sender in _fixed_apps:
        setup_django()


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "app", None) not in _fixed_apps:
        return
    from django.conf import settings

    if settings.DEBUG:
        # Logged, not raised as a Python warning: it must never stop a worker.
        logger.warning(DEBUG_WARNING)
    _install_task_hooks()
    # Whatever the worker process opened while starting must not be reused by a task later.
    close_connections()


def _on_worker_process_init(**_: Any) -> None:
    if not _fixed_apps:
        return
    from django.apps import apps

    if apps.ready:
        close_inherited_connections()
    else:
        setup_django(checks=False)  # a spawned child imported the app afresh
    _install_task_hooks()
