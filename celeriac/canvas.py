"""Signatures: a task call (name, args, kwargs, options) as a value that can be passed around.

A :class:`Signature` is a ``dict`` with Celery's keys (``task``, ``args``,
``kwargs``, ``options``, ``subtask_type``, ``immutable``) so it travels inside
messages (``link``, ``link_error``, ``chain``) exactly as Celery's does.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._state import get_current_app

if TYPE_CHECKING:
    from .app import Celery
    from .result import AsyncResult, EagerResult
    from .task import Task

__all__ = ["Signature", "maybe_signature", "signature", "subtask"]

R = TypeVar("R")


class Signature(dict[str, Any], Generic[R]):
    """A task call waiting to happen: ``add.s(2, 2)``, ``signature('tasks.add', args=(2, 2))``."""

    def __init__(
        self,
        task: str | Task[Any, Any] | Mapping[str, Any] | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        type: Task[Any, Any] | None = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Celery | None = None,
        **ex: Any,
    ) -> None:
        self._app = app
        if isinstance(task, Mapping):
            super().__init__(task)
            return
        task_type = type
        name: str | None
        if task is not None and not isinstance(task, str):
            task_type = task
            name = task.name
        else:
            name = task
        self._type = task_type
        super().__init__(
            task=name,
            subtask_type=subtask_type,
            immutable=immutable,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options=dict(options or {}, **ex),
        )

    # -- attributes ----------------------------------------------------------
    @property
    def app(self) -> Celery:
        task_type: Task[Any, Any] | None = getattr(self, "_type", None)
        app: Celery | None = getattr(self, "_app", None)
        if app is not None:
            return app
        if task_type is not None:
            return task_type.app
        return get_current_app()

    @property
    def task(self) -> str:
        return self["task"]  # type: ignore[no-any-return]

    name = task

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self.get("args") or ())

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.get("kwargs") or {})

    @property
    def options(self) -> dict[str, Any]:
        return self.setdefault("options", {})  # type: ignore[no-any-return]

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable", False))

    @property
    def subtask_type(self) -> str | None:
        return self.get("subtask_type")

    @property
    def id(self) -> str | None:
        return self.options.get("task_id")

    @property
    def type(self) -> Task[Any, Any]:
        task_type = getattr(self, "_type", None)
        if task_type is None:
            task_type = self.app.tasks[self.task]
            self._type = task_type
        return task_type

    # -- building --------------------------------------------------------------
    def _merge(
        self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None, options: Mapping[str, Any] | None
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        merged_options = dict(self.options, **(options or {}))
        if self.immutable:
            return self.args, self.kwargs, merged_options
        return (
            tuple(args or ()) + self.args,
            dict(self.kwargs, **(kwargs or {})),
            merged_options,
        )

    def clone(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> Signature[R]:
        new_args, new_kwargs, new_options = self._merge(args, kwargs, opts)
        sig: Signature[R] = Signature(
            self.task,
            new_args,
            new_kwargs,
            deepcopy(new_options),
            type=getattr(self, "_type", None),
            subtask_type=self.subtask_type,
            immutable=self.immutable,
            app=getattr(self, "_app", None),
        )
        return sig

    partial = clone

    def set(self, immutable: bool | None = None, **options: Any) -> Signature[R]:
        """Set options (queue, countdown, priority, ...) in place; returns self for chaining."""
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = immutable

    def freeze(self, _id: str | None = None, **_: Any) -> AsyncResult[Any]:
        """Fix the task id now (so the result can be handed out before sending)."""
        task_id = _id or self.options.get("task_id") or str(_uuid.uuid4())
        self.options["task_id"] = task_id
        return self.app.AsyncResult(task_id, task_name=self.task)

    def link(self, callback: Mapping[str, Any]) -> Signature[Any]:
        """Apply ``callback`` with this task's return value when it succeeds."""
        self.options.setdefault("link", []).append(dict(callback))
        return maybe_signature(callback, self._app)  # type: ignore[return-value]

    def link_error(self, errback: Mapping[str, Any]) -> Signature[Any]:
        """Apply ``errback`` with this task's id when it fails."""
        self.options.setdefault("link_error", []).append(dict(errback))
        return maybe_signature(errback, self._app)  # type: ignore[return-value]

    on_error = link_error

    # -- calling -------------------------------------------------------------
    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """Send the task (partial args are prepended to the signature's, as in Celery)."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        task_type = getattr(self, "_type", None)
        if task_type is None and self.task in self.app.tasks:
            task_type = self.app.tasks[self.task]
        if task_type is not None:
            result: AsyncResult[R] = task_type.apply_async(new_args, new_kwargs, **new_options)
            return result
        return self.app.send_task(self.task, new_args, new_kwargs, **new_options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult[R]:
        """``apply_async`` with star arguments."""
        return self.apply_async(args, kwargs)

    def apply(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> EagerResult[R]:
        """Run the task here and now, without a worker."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        return self.type.apply(new_args, new_kwargs, **new_options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        new_args, new_kwargs, _ = self._merge(args, kwargs, None)
        return self.type(*new_args, **new_kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature[R]:
        return Signature(dict(deepcopy(dict(self), memo)), app=getattr(self, "_app", None))

    def __reduce__(self) -> tuple[Any, ...]:
        return signature, (dict(self),)

    def __repr__(self) -> str:
        args = ", ".join([repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()])
        prefix = "" if not self.immutable else "%"
        return f"{prefix}{self.task}({args})"

    def __json__(self) -> dict[str, Any]:
        return dict(self)


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature[Any]:
    """Create a signature from a task name, a task, or a dict (Celery's ``signature``)."""
    app = kwargs.pop("app", None)
    if isinstance(varies, Mapping):
        if isinstance(varies, Signature):
            return varies.clone()
        return Signature(dict(varies), app=app)
    kwargs["app"] = app
    return Signature(varies, *args, **kwargs)


subtask = signature


def maybe_signature(value: Any, app: Celery | None = None) -> Signature[Any] | None:
    if value is None:
        return None
    if isinstance(value, Signature):
        return value
    if isinstance(value, Mapping):
        return Signature(dict(value), app=app)
    raise TypeError(f"expected a signature or dict, got {value!r}")
