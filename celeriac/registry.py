"""The task registry (name -> task) and Celery's task naming rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .exceptions import NotRegistered

if TYPE_CHECKING:
    from .task import Task

__all__ = ["TaskRegistry", "gen_task_name"]


class TaskRegistry(dict[str, "Task[Any, Any]"]):
    """Registered tasks by name; a missing name raises :class:`~celeriac.exceptions.NotRegistered`."""

    def __missing__(self, key: str) -> Task[Any, Any]:
        raise NotRegistered(key)

    def register(self, task: Task[Any, Any]) -> None:
        self[task.name] = task

    def unregister(self, name: str | Task[Any, Any]) -> None:
        key = name if isinstance(name, str) else name.name
        try:
            self.pop(key)
        except KeyError:
            raise NotRegistered(key) from None

    def regular(self) -> dict[str, Task[Any, Any]]:
        return dict(self)


def gen_task_name(main: str | None, name: str, module_name: str) -> str:
    """``module.function``, as Celery names tasks.

    A task defined in ``__main__`` takes the app's main name as module (so
    ``python tasks.py`` and ``-A tasks`` agree), and a task defined in
    ``proj.tasks`` of an app whose main is ``proj`` keeps its full path.
    """
    if module_name == "__main__" and main:
        module_name = main
    return f"{module_name}.{name}"
