"""Resolve ``-A``/``--app`` to an application, the way Celery does, with one-line errors."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["AppNotFound", "find_app"]


class AppNotFound(Exception):
    """``-A`` names no importable module or no app; the message says which and why."""


def _is_app(obj: Any) -> bool:
    from ..app import Celery

    return isinstance(obj, Celery)


def _is_task(obj: Any) -> bool:
    from ..task import Task

    return isinstance(obj, Task)


def _import(name: str) -> ModuleType | None:
    """Import ``name``; None if that module doesn't exist (errors inside it are reported)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise AppNotFound(f"Error importing {name!r}: {_one_line(exc)}") from None
    except Exception as exc:
        raise AppNotFound(f"Error importing {name!r}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        # str(SyntaxError) already ends with "(file, line N)"; say it once, with the full path.
        return f"{type(exc).__name__}: {exc.msg} ({exc.filename}, line {exc.lineno})"
    if frames:
        last = frames[-1]
        where = f" ({last.filename}, line {last.lineno})"
    return f"{type(exc).__name__}: {exc}{where}"


def _app_in(module: ModuleType) -> Any:
    for attr in ("app", "celery"):
        obj = getattr(module, attr, None)
        if _is_app(obj):
            return obj
    for value in vars(module).values():
        if _is_app(value):
            return value
    return None


def find_app(spec: str) -> Celery:
    """``module``, ``module:attr``, ``module.attr`` or a package with ``celery.py``/``celeriac.py``."""
    if not spec:
        raise AppNotFound("No app given: use -A/--app (e.g. -A tasks or -A proj.celery:app).")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = spec.partition(":")
    module = _import(module_name)
    if module is None and not attr and "." in module_name:
        # ``-A proj.app``: a module attribute written with a dot.
        parent, _, attr = module_name.rpartition(".")
        module = _import(parent)
        module_name = parent
    if module is None:
        raise AppNotFound(f"The module {module_name} was not found.")
    if attr:
        return _app_from_attribute(module, module_name, attr, spec)
    found = _app_in(module)
    if found is None and hasattr(module, "__path__"):
        found = _app_in_package(module_name)
    if found is None:
        raise AppNotFound(
            f"Module {module_name!r} has no Celery application: expected an attribute named 'app' or 'celery'"
            f" (or use -A {module_name}:<name>)."
        )
    return found  # type: ignore[no-any-return]


def _app_from_attribute(module: ModuleType, module_name: str, attr: str, spec: str) -> Celery:
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise AppNotFound(f"Module {module_name!r} has no attribute {attr!r}.")
    if _is_app(obj):
        return obj  # type: ignore[no-any-return]
    if callable(obj) and not _is_task(obj):  # an app factory
        try:
            made = obj()
        except Exception as exc:
            raise AppNotFound(f"Calling the app factory {spec!r} failed: {_one_line(exc)}") from None
        if _is_app(made):
            return made  # type: ignore[no-any-return]
    raise AppNotFound(f"{spec!r} is not a Celery application (got {type(obj).__name__}).")


def _app_in_package(package: str) -> Any:
    for sub in ("celery", "celeriac"):
        submodule = _import(f"{package}.{sub}")
        if submodule is not None:
            found = _app_in(submodule)
            if found is not None:
                return found
    return None
