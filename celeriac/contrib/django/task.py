"""DjangoTask: Celery 5.4's ``delay_on_commit`` and ``apply_async_on_commit``.

The Django fixup makes this the app's task class (and so the default base of
``@shared_task``) unless the app was given its own ``task_cls``; a custom base class
that wants these methods subclasses :class:`DjangoTask`.
"""

from __future__ import annotations

import functools
from typing import Any, ParamSpec, TypeVar

from ...task import Task

__all__ = ["DjangoTask"]

P = ParamSpec("P")
R = TypeVar("R")


class DjangoTask(Task[P, R]):
    """A task that can be sent when the current database transaction commits."""

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """:meth:`delay` once the transaction commits (now, outside one); nothing is sent on rollback.

        Returns ``None``: the task id doesn't exist before the message is sent.
        """
        from django.db import transaction

        transaction.on_commit(functools.partial(self.delay, *args, **kwargs))

    def apply_async_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """:meth:`apply_async` once the transaction commits (now, outside one); nothing is sent on rollback."""
        from django.db import transaction

        transaction.on_commit(functools.partial(self.apply_async, *args, **kwargs))
