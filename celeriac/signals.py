"""Signals, with Celery's names and arguments.

Receivers are held by strong reference (a lambda connected here stays
connected), are called in the order they were connected, and an exception in
one receiver is logged, not raised, so a buggy receiver can't fail a task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "Signal",
    "after_setup_logger",
    "after_setup_task_logger",
    "after_task_publish",
    "before_task_publish",
    "beat_embedded_init",
    "beat_init",
    "celeryd_after_setup",
    "celeryd_init",
    "eventlet_pool_apply",
    "eventlet_pool_postshutdown",
    "eventlet_pool_preshutdown",
    "eventlet_pool_started",
    "heartbeat_sent",
    "import_modules",
    "setup_logging",
    "task_failure",
    "task_internal_error",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_sent",
    "task_success",
    "task_unknown",
    "worker_before_create_process",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
    "worker_shutting_down",
]

logger = logging.getLogger("celeriac.signals")

Receiver = Callable[..., Any]


class Signal:
    """A named hook: ``@signal.connect`` receivers get ``sender=`` plus the signal's keyword arguments."""

    def __init__(self, name: str, providing_args: frozenset[str] | None = None) -> None:
        self.name = name
        self.providing_args = providing_args or frozenset()
        self._receivers: list[tuple[Any, Receiver, Any]] = []  # (dispatch_uid or id, receiver, sender)
        self._lock = threading.Lock()

    def connect(
        self,
        receiver: Receiver | None = None,
        *,
        sender: Any = None,
        weak: bool = False,
        dispatch_uid: Any = None,
    ) -> Any:
        """Connect ``receiver``; usable as ``@sig.connect`` or ``@sig.connect(sender=...)``."""

        def _connect(fun: Receiver) -> Receiver:
            key = dispatch_uid if dispatch_uid is not None else (id(fun), id(sender))
            with self._lock:
                if not any(existing == key for existing, _, _ in self._receivers):
                    self._receivers.append((key, fun, sender))
            return fun

        if receiver is None:
            return _connect
        return _connect(receiver)

    def disconnect(self, receiver: Receiver | None = None, *, sender: Any = None, dispatch_uid: Any = None) -> bool:
        key = dispatch_uid if dispatch_uid is not None else (id(receiver), id(sender))
        with self._lock:
            before = len(self._receivers)
            self._receivers = [r for r in self._receivers if r[0] != key]
            return len(self._receivers) != before

    @property
    def receivers(self) -> list[Receiver]:
        return [fun for _, fun, _ in self._receivers]

    def has_listeners(self) -> bool:
        return bool(self._receivers)

    def send(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver whose ``sender`` filter matches; returns ``[(receiver, result), ...]``."""
        if not self._receivers:
            return []
        responses: list[tuple[Receiver, Any]] = []
        for _, fun, wanted in list(self._receivers):
            if wanted is not None and not _sender_matches(wanted, sender):
                continue
            try:
                response = fun(signal=self, sender=sender, **named)
            except Exception as exc:
                logger.exception("Signal handler %r raised: %r", fun, exc)
                response = exc
            responses.append((fun, response))
        return responses

    send_robust = send

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"


def _sender_matches(wanted: Any, sender: Any) -> bool:
    if wanted is sender or wanted == sender:
        return True
    # Celery lets a task be filtered by its name as well as by the task object.
    return isinstance(wanted, str) and getattr(sender, "name", None) == wanted


before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
task_sent = Signal("task_sent")
task_received = Signal("task_received")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_retry = Signal("task_retry")
task_failure = Signal("task_failure")
task_internal_error = Signal("task_internal_error")
task_revoked = Signal("task_revoked")
task_rejected = Signal("task_rejected")
task_unknown = Signal("task_unknown")
celeryd_init = Signal("celeryd_init")
celeryd_after_setup = Signal("celeryd_after_setup")
import_modules = Signal("import_modules")
worker_init = Signal("worker_init")
worker_before_create_process = Signal("worker_before_create_process")
worker_process_init = Signal("worker_process_init")
worker_process_shutdown = Signal("worker_process_shutdown")
worker_ready = Signal("worker_ready")
worker_shutdown = Signal("worker_shutdown")
worker_shutting_down = Signal("worker_shutting_down")
heartbeat_sent = Signal("heartbeat_sent")
setup_logging = Signal("setup_logging")
after_setup_logger = Signal("after_setup_logger")
after_setup_task_logger = Signal("after_setup_task_logger")
beat_init = Signal("beat_init")
beat_embedded_init = Signal("beat_embedded_init")
# celeriac has no eventlet pool; these exist so code that imports or connects them keeps working.
eventlet_pool_started = Signal("eventlet_pool_started")
eventlet_pool_preshutdown = Signal("eventlet_pool_preshutdown")
eventlet_pool_postshutdown = Signal("eventlet_pool_postshutdown")
eventlet_pool_apply = Signal("eventlet_pool_apply")
