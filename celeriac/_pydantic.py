"""``@app.task(pydantic=True)``: arguments validated into models, model results dumped (Celery 5.5's option).

Arguments annotated with a ``pydantic.BaseModel`` subclass (or ``Optional`` of one)
arrive as dicts and are validated into the model before the task body runs; a
returned model whose class matches the return annotation is dumped to a dict
(``model_dump(mode="json")`` by default). A bad argument fails the task with
pydantic's ``ValidationError``, which names each field at fault.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from .app import Celery

__all__ = ["pydantic_wrapper"]


def _optional_arg(annotation: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None``, else None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _is_model(annotation: Any, base: type) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, base)


class _Models:
    """Validates a call's model arguments and dumps a model result, for one task function."""

    def __init__(self, fun: Callable[..., Any], base: type, strict: bool, context: dict[str, Any],
                 dump: dict[str, Any]) -> None:  # fmt: skip
        self.base, self.strict, self.context, self.dump = base, strict, context, dump
        self.signature = inspect.signature(fun)
        try:
            self.hints = typing.get_type_hints(fun)
        except (NameError, AttributeError, TypeError):
            self.hints = {}  # unresolvable string annotations: fall back to the raw ones
        returns = self.hints.get("return", self.signature.return_annotation)
        self.returns = _optional_arg(returns) or returns

    def _annotation(self, name: str) -> Any:
        parameter = self.signature.parameters.get(name)
        return self.hints.get(name, parameter.annotation if parameter is not None else None)

    def validate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        bound = self.signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            annotation = self._annotation(name)
            optional = _optional_arg(annotation)
            if optional is not None:
                if value is None:
                    continue
                annotation = optional
            if _is_model(annotation, self.base):
                bound.arguments[name] = annotation.model_validate(value, strict=self.strict, context=self.context)
        return bound

    def dump_result(self, value: Any) -> Any:
        returns = self.returns
        if isinstance(returns, type) and isinstance(value, self.base) and isinstance(value, returns):
            return value.model_dump(**self.dump)  # type: ignore[attr-defined]
        return value


def pydantic_wrapper(
    app: Celery,
    fun: Callable[..., Any],
    task_name: str,
    strict: bool = False,
    context: Mapping[str, Any] | None = None,
    dump_kwargs: Mapping[str, Any] | None = None,
) -> Callable[..., Any]:
    """Wrap ``fun`` so model arguments are validated and a model result is dumped."""
    try:
        pydantic = importlib.import_module("pydantic")
    except ModuleNotFoundError as exc:
        raise ImproperlyConfigured(
            f"task {task_name}: pydantic=True needs pydantic installed (pip install 'celeriac[pydantic]')"
        ) from exc
    models = _Models(
        fun,
        pydantic.BaseModel,
        strict,
        {**(context or {}), "celery_app": app, "celery_task_name": task_name},
        {"mode": "json", **(dump_kwargs or {})},
    )

    if inspect.iscoroutinefunction(fun):

        @functools.wraps(fun)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = models.validate(args, kwargs)
            return models.dump_result(await fun(*bound.args, **bound.kwargs))

        return async_wrapper

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = models.validate(args, kwargs)
        return models.dump_result(fun(*bound.args, **bound.kwargs))

    return wrapper
