"""Errors raised by celeriac, under Celery's names.

Every celeriac error derives from :class:`CeleriacError` (also exported as
``CeleryError``), so one ``except`` catches them all::

    Exception
     +-- CeleriacError (= CeleryError)
          +-- ImproperlyConfigured
          +-- SecurityError
          +-- OperationalError            the broker or result store is unreachable
          |    +-- BrokerUnavailable
          +-- ContentDisallowed           content type not in accept_content
          +-- DecodeError / EncodeError
          +-- TaskPredicate
          |    +-- Ignore
          |    +-- Reject
          |    +-- Retry
          +-- TaskError
          |    +-- QueueNotFound (also KeyError)
          |    +-- IncompleteStream
          |    +-- NotRegistered (also KeyError)
          |    +-- AlreadyRegistered
          |    +-- TimeoutError (also builtins.TimeoutError)
          |    +-- MaxRetriesExceededError
          |    +-- TaskRevokedError
          |    +-- InvalidTaskError
          |    +-- ChordError
          +-- BackendError
          |    +-- BackendGetMetaError
          |    +-- BackendStoreError
          +-- RemoteTaskError             stand-in for a task exception whose class can't be imported here
     +-- SoftTimeLimitExceeded            raised inside a task at its soft time limit
     +-- TimeLimitExceeded
     +-- WorkerLostError
     +-- Terminated
    SystemExit
     +-- WorkerShutdown
     +-- WorkerTerminate
    UserWarning
     +-- CeleriacWarning (= CeleryWarning)
          +-- AlwaysEagerIgnored, DuplicateNodenameWarning, FixupWarning, NotConfigured, SecurityWarning

The time-limit and worker-loss errors sit directly under ``Exception`` as in
Celery (where they come from billiard), so code that catches them keeps working.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

__all__ = [
    "AlreadyRegistered",
    "AlwaysEagerIgnored",
    "BackendError",
    "BackendGetMetaError",
    "BackendStoreError",
    "BrokerUnavailable",
    "CDeprecationWarning",
    "CPendingDeprecationWarning",
    "CeleriacError",
    "CeleriacWarning",
    "CeleryError",
    "CeleryWarning",
    "ChordError",
    "ContentDisallowed",
    "DecodeError",
    "DuplicateNodenameWarning",
    "EncodeError",
    "FixupWarning",
    "Ignore",
    "ImproperlyConfigured",
    "IncompleteStream",
    "InvalidTaskError",
    "MaxRetriesExceededError",
    "NotConfigured",
    "NotRegistered",
    "OperationalError",
    "QueueNotFound",
    "Reject",
    "RemoteTaskError",
    "Retry",
    "SecurityError",
    "SecurityWarning",
    "SoftTimeLimitExceeded",
    "TaskError",
    "TaskPredicate",
    "TaskRevokedError",
    "Terminated",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
    "WorkerShutdown",
    "WorkerTerminate",
]


class CeleriacError(Exception):
    """Base class for every celeriac error."""


CeleryError = CeleriacError


class CeleriacWarning(UserWarning):
    """Base class for celeriac warnings."""


CeleryWarning = CeleriacWarning


class AlwaysEagerIgnored(CeleriacWarning):
    """send_task ignores task_always_eager."""


class DuplicateNodenameWarning(CeleriacWarning):
    """Several workers use the same node name."""


class FixupWarning(CeleriacWarning):
    """A framework fixup could not be applied."""


class NotConfigured(CeleriacWarning):
    """No configuration was loaded."""


class SecurityWarning(CeleriacWarning):
    """A potential security issue was found."""


class CPendingDeprecationWarning(PendingDeprecationWarning):
    """Pending deprecation."""


class CDeprecationWarning(DeprecationWarning):
    """Deprecated."""


class ImproperlyConfigured(CeleriacError):
    """A setting is missing, unknown or has a value of the wrong type."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class SecurityError(CeleriacError):
    """A message or stored result failed a security check."""


class OperationalError(CeleriacError):
    """The broker or the result store could not be reached or failed mid-operation."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class BrokerUnavailable(OperationalError):
    """The broker could not be reached within ``broker_connection_timeout``."""


class ContentDisallowed(CeleriacError):
    """A message's content type is not in ``accept_content``; it was not decoded."""


class DecodeError(CeleriacError):
    """A message body or stored result could not be deserialized."""


class EncodeError(CeleriacError):
    """Arguments or a return value could not be serialized."""


class TaskPredicate(CeleriacError):
    """Base class for exceptions that tell the worker what to do with a task."""


class Retry(TaskPredicate):
    """The task is to be retried (raised by :meth:`Task.retry`)."""

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | str | None = None,
        when: float | datetime | None = None,
        is_eager: bool = False,
        sig: Any = None,
        **kwargs: Any,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        self.is_eager = is_eager
        self.sig = sig
        # True once the RETRY state is stored (by Task.retry, before the new message is sent).
        self.stored = False
        super().__init__(self, exc, when, **kwargs)

    def humanize(self) -> str:
        if isinstance(self.when, (int, float)):
            return f"in {self.when}s"
        return f"at {self.when}"

    def __str__(self) -> str:
        if self.message:
            return self.message
        if self.exc:
            return f"Retry {self.humanize()}: {self.exc!r}"
        return f"Retry {self.humanize()}"

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, (self.message, self.exc, self.when)


RetryTaskError = Retry


class Ignore(TaskPredicate):
    """The task's state is not to be recorded and its message is acknowledged."""


class Reject(TaskPredicate):
    """The task's message is rejected (and requeued when ``requeue=True``)."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)

    def __repr__(self) -> str:
        return f"reject requeue={self.requeue}: {self.reason}"


class TaskError(CeleriacError):
    """Task related errors."""


class QueueNotFound(KeyError, TaskError):
    """A task was routed to a queue that is not declared and can't be created."""


class IncompleteStream(TaskError):
    """Found the end of a stream of data, but the data isn't complete."""


class NotRegistered(KeyError, TaskError):
    """The task name is not in the registry."""

    def __repr__(self) -> str:
        return f"Task of kind {self.args[0]!r} never registered, please make sure it's imported."

    def __str__(self) -> str:
        return self.__repr__()


class AlreadyRegistered(TaskError):
    """A task with this name is already registered."""


class TimeoutError(TaskError, builtins.TimeoutError):
    """The operation timed out (e.g. ``AsyncResult.get(timeout=...)``)."""


class MaxRetriesExceededError(TaskError):
    """The task was retried more than ``max_retries`` times."""

    def __init__(self, *args: Any, task_args: Any = None, task_kwargs: Any = None) -> None:
        self.task_args = task_args
        self.task_kwargs = task_kwargs
        super().__init__(*args)


class TaskRevokedError(TaskError):
    """The task was revoked (or expired) and will not run."""


class InvalidTaskError(TaskError):
    """A task message is malformed: it can't be turned into a task call."""


class ChordError(TaskError):
    """A task that is part of a chord failed."""


class BackendError(CeleriacError):
    """The result store failed."""


class BackendGetMetaError(BackendError):
    """Reading a task's state from the result store failed."""

    def __init__(self, *args: Any, task_id: str | None = None) -> None:
        super().__init__(*args)
        self.task_id = task_id


class BackendStoreError(BackendError):
    """Storing a task's state in the result store failed."""

    def __init__(self, *args: Any, task_id: str | None = None, state: str | None = None) -> None:
        super().__init__(*args)
        self.task_id = task_id
        self.state = state


class RemoteTaskError(CeleriacError):
    """Stand-in for a task exception whose class is not importable in this process.

    ``exc_type`` and ``exc_module`` name the original class; ``str()`` gives its message.
    """

    exc_type: str = "Exception"
    exc_module: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # The class is made at run time, so it is pickled by name (prefork, pickled results).
        return _rebuild_remote, (self.exc_module, self.exc_type, self.args)


def _rebuild_remote(module: str | None, name: str, args: tuple[Any, ...]) -> BaseException:
    from .backends.base import exception_from_meta

    rebuilt = exception_from_meta({"exc_module": module, "exc_type": name, "exc_message": list(args)})
    assert rebuilt is not None
    return rebuilt


class SoftTimeLimitExceeded(Exception):
    """The soft time limit has been exceeded; raised inside the task."""

    def __str__(self) -> str:
        return "SoftTimeLimitExceeded" + (f"{self.args}" if self.args else "()")


class TimeLimitExceeded(Exception):
    """The hard time limit has been exceeded; the task was stopped."""

    def __str__(self) -> str:
        return "TimeLimitExceeded" + (f"{self.args}" if self.args else "()")


class WorkerLostError(Exception):
    """The process running the task exited before the task finished."""


class Terminated(Exception):
    """The task was terminated (e.g. ``revoke(terminate=True)``)."""


class WorkerShutdown(SystemExit):
    """Signals that the worker should shut down warmly."""


class WorkerTerminate(SystemExit):
    """Signals that the worker should terminate immediately."""


SystemTerminate = WorkerTerminate
