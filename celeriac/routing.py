"""``task_routes`` and ``task_annotations``, with Celery's accepted forms.

``task_routes`` may be a dict (exact names, glob patterns like ``'tasks.*'`` or
compiled regexes as keys; a queue name or an options dict as values), a router
function ``route(name, args, kwargs, options, task=None, **kw)``, the import
path of one, or a list of any of these, tried in order until one answers.

``task_annotations`` may be a dict (``{'tasks.add': {'rate_limit': '10/m'}}``,
``'*'`` for every task), an object with ``annotate(task)``, an import path, or
a list of these; they set task attributes when the app is finalized.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .config import load_object
from .exceptions import ImproperlyConfigured, QueueNotFound

if TYPE_CHECKING:
    from .app import Celery
    from .task import Task

__all__ = ["Router", "annotate_task", "prepare_routes"]

RouterFun = Callable[..., Any]


class MapRoute:
    """A dict of routes: exact names first, then glob/regex patterns in insertion order."""

    def __init__(self, routes: Mapping[Any, Any]) -> None:
        self.exact: dict[str, Any] = {}
        self.patterns: list[tuple[re.Pattern[str], Any]] = []
        for key, value in routes.items():
            if isinstance(key, re.Pattern):
                self.patterns.append((key, value))
            elif isinstance(key, str) and any(c in key for c in "*?["):
                self.patterns.append((re.compile(fnmatch.translate(key)), value))
            else:
                self.exact[str(key)] = value

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name in self.exact:
            return _route_dict(self.exact[name])
        for pattern, value in self.patterns:
            if pattern.match(name):
                return _route_dict(value)
        return None


def _route_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"queue": value}
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "name") and hasattr(value, "routing_key"):  # a Queue object
        return {"queue": value}
    raise ImproperlyConfigured(f"task_routes: a route must be a queue name or a dict, got {value!r}", key="task_routes")


def _expand_router(router: Any) -> RouterFun:
    if isinstance(router, Mapping):
        return MapRoute(router)
    if isinstance(router, str):
        try:
            return _expand_router(load_object(router))
        except (ImportError, AttributeError) as exc:
            raise ImproperlyConfigured(
                f"task_routes: can't import router {router!r}: {exc}", key="task_routes"
            ) from None
    if hasattr(router, "route_for_task"):  # Celery 3 class-based router
        method = router.route_for_task

        def _legacy(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
            return method(name, args, kwargs)

        return _legacy
    if callable(router):
        return router  # type: ignore[no-any-return]
    raise ImproperlyConfigured(f"task_routes: can't use {router!r} as a router", key="task_routes")


def prepare_routes(routes: Any) -> list[RouterFun]:
    if routes is None:
        return []
    if isinstance(routes, (list, tuple)):
        return [_expand_router(r) for r in routes]
    return [_expand_router(routes)]


class Router:
    """Picks the queue (and exchange/routing key) for a task call."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.routes = prepare_routes(app.conf.task_routes)

    def route(
        self,
        options: dict[str, Any],
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        task: Task[Any, Any] | None = None,
    ) -> dict[str, Any]:
        """Options for sending ``name``: explicit options win over routes, routes over defaults."""
        explicit = {k: v for k, v in options.items() if v is not None}
        for router in self.routes:
            found = router(name, tuple(args), dict(kwargs or {}), dict(options), task=task)
            if found:
                merged = _route_dict(found)
                merged.update(explicit)
                return self.expand(merged)
        return self.expand(explicit)

    def expand(self, options: dict[str, Any]) -> dict[str, Any]:
        queue = options.get("queue")
        if queue is None:
            queue = self.app.conf.task_default_queue
        if not isinstance(queue, str):  # a Queue object: the app declares and publishes by it
            options["queue_object"] = queue
            queue = queue.name
        self.app.check_queue(queue)
        options["queue"] = queue
        return options


def annotate_task(task: Task[Any, Any], annotations: Any) -> None:
    """Apply ``task_annotations`` to ``task`` (``'*'`` first, then the task's own entry)."""
    for source in _annotation_sources(annotations):
        for values in _resolve(source, task):
            for key, value in values.items():
                if key.startswith("@"):
                    _add_around(task, key[1:], value)
                else:
                    setattr(task, key, _bind_if_method(task, key, value))


def _annotation_sources(annotations: Any) -> list[Any]:
    if annotations is None:
        return []
    if isinstance(annotations, (list, tuple)):
        return [_annotation_source(a) for a in annotations]
    return [_annotation_source(annotations)]


def _annotation_source(value: Any) -> Any:
    if isinstance(value, str):
        return load_object(value)
    return value


def _resolve(source: Any, task: Task[Any, Any]) -> list[Mapping[str, Any]]:
    if isinstance(source, Mapping):
        found = [source.get("*"), source.get(task.name)]
        return [dict(f) for f in found if f]
    if hasattr(source, "annotate"):
        result = source.annotate(task)
        return [result] if result else []
    raise ImproperlyConfigured(f"task_annotations: can't use {source!r}", key="task_annotations")


def _bind_if_method(task: Task[Any, Any], key: str, value: Any) -> Any:
    # Celery sets annotations on the task class, so a function given for a hook such as
    # on_failure becomes a method; on our task instances that means binding it here.
    import inspect
    import types

    if inspect.isfunction(value) and inspect.isfunction(getattr(type(task), key, None)):
        return types.MethodType(value, task)
    return value


def _add_around(task: Task[Any, Any], method: str, around: Callable[..., Any]) -> None:
    # Celery's "@method" annotation: around(original) returns the replacement.
    original = getattr(task, method)
    original = getattr(original, "__wrapped__", original)
    replacement = around(original)
    try:
        replacement.__wrapped__ = original
    except AttributeError:
        pass
    setattr(task, method, replacement)


def queue_not_found(name: str) -> QueueNotFound:
    return QueueNotFound(f"Queue {name!r} missing from task_queues and task_create_missing_queues is disabled")
