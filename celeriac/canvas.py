"""The canvas: task calls as values (signatures) and the workflows built from them.

* :class:`Signature` (``add.s(2, 2)``, ``add.si(2)``, ``signature('tasks.add', ...)``)
* :class:`chain` (``a.s() | b.s() | c.s()``): each result is the next task's first argument
* :class:`group` (``group(a.s(i) for i in ...)``): tasks in parallel, a :class:`~celeriac.result.GroupResult`
* :class:`chord` (``chord(header)(body)``): a group, then one task with the list of its results
* :class:`chunks`, :class:`xmap`, :class:`xstarmap`: many calls of one task in few messages

Every signature is a ``dict`` with Celery's keys (``task``, ``args``, ``kwargs``,
``options``, ``subtask_type``, ``immutable``) and every workflow travels exactly as
Celery's does, so mixed fleets run each other's canvases:

* a chain is sent as its first task with the rest, *reversed*, in the message's
  ``chain`` field (the worker pops the last item after each success);
* a group's tasks carry the group id (``group`` header) and their ``group_index``;
* a chord's header tasks carry the body signature in the ``chord`` field; the
  result store counts finished parts atomically and the last one sends the body
  (Redis: Celery's ``celery-taskset-meta-<id>.j/.t/.s`` keys; SQLite, SQL and
  memcached stores: a counter), so no ``chord_unlock`` task polls for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from copy import deepcopy
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from ._process import new_id
from ._state import current_task_var, get_current_app

if TYPE_CHECKING:
    from .app import Celery
    from .result import AsyncResult as _AsyncResult
    from .result import EagerResult, GroupResult
    from .task import Task

__all__ = [
    "Signature",
    "chain",
    "chord",
    "chunks",
    "group",
    "maybe_signature",
    "signature",
    "subtask",
    "xmap",
    "xstarmap",
]

R = TypeVar("R")

# Options a signature keeps when it is applied with other options: changing them
# after the fact would break the workflow the signature is part of.
_IMMUTABLE_OPTIONS = frozenset({"group_id", "stamped_headers"})


def _uuid4() -> str:
    return new_id()


class Signature(dict[str, Any], Generic[R]):
    """A task call waiting to happen: ``add.s(2, 2)``, ``signature('tasks.add', args=(2, 2))``."""

    TYPES: ClassVar[dict[str, type[Signature[Any]]]] = {}

    @classmethod
    def register_type(cls, name: str) -> Any:
        def register(subclass: type[Signature[Any]]) -> type[Signature[Any]]:
            cls.TYPES[name] = subclass
            return subclass

        return register

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Celery | None = None) -> Signature[Any]:
        """The right kind of signature for a dict (a chain's, a group's...), as Celery reads them."""
        kind = d.get("subtask_type")
        if kind:
            target = cls.TYPES.get(kind)
            if target is not None:
                return target.from_dict(d, app=app)
        return Signature(dict(d), app=app)

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
        self._type = type
        if isinstance(task, Mapping):
            super().__init__(task)
            return
        name: str | None
        if task is not None and not isinstance(task, str):
            self._type = task
            name = task.name
        else:
            name = task
        super().__init__(
            task=name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options=dict(options or {}, **ex),
            subtask_type=subtask_type,
            immutable=immutable,
        )

    # -- attributes ----------------------------------------------------------
    @property
    def app(self) -> Celery:
        app: Celery | None = getattr(self, "_app", None)
        if app is not None:
            return app
        task_type: Task[Any, Any] | None = getattr(self, "_type", None)
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

    @args.setter
    def args(self, value: Sequence[Any]) -> None:
        self["args"] = tuple(value)

    @property
    def kwargs(self) -> dict[str, Any]:
        kwargs = self.get("kwargs")
        if kwargs is None:
            kwargs = self["kwargs"] = {}
        return kwargs

    @kwargs.setter
    def kwargs(self, value: Mapping[str, Any]) -> None:
        self["kwargs"] = dict(value)

    @property
    def options(self) -> dict[str, Any]:
        return self.setdefault("options", {})  # type: ignore[no-any-return]

    @options.setter
    def options(self, value: Mapping[str, Any]) -> None:
        self["options"] = dict(value)

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable", False))

    @immutable.setter
    def immutable(self, value: bool) -> None:
        self["immutable"] = bool(value)

    @property
    def subtask_type(self) -> str | None:
        return self.get("subtask_type")

    @subtask_type.setter
    def subtask_type(self, value: str | None) -> None:
        self["subtask_type"] = value

    @property
    def id(self) -> str | None:
        return self.options.get("task_id")

    @id.setter
    def id(self, value: str | None) -> None:
        self.options["task_id"] = value

    @property
    def parent_id(self) -> str | None:
        return self.options.get("parent_id")

    @property
    def root_id(self) -> str | None:
        return self.options.get("root_id")

    @property
    def type(self) -> Task[Any, Any]:
        task_type = getattr(self, "_type", None)
        if task_type is None:
            task_type = self.app.tasks[self.task]
            self._type = task_type
        return task_type

    def _task_type(self) -> Task[Any, Any] | None:
        task_type = getattr(self, "_type", None)
        if task_type is None:
            task_type = self.app.tasks.get(self.task)
        return task_type

    def AsyncResult(self, task_id: str) -> _AsyncResult[R]:
        from .result import AsyncResult

        return AsyncResult(task_id, task_name=self.get("task"), app=self.app)

    # -- building --------------------------------------------------------------
    def _merge(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """Partial args go first, partial kwargs and options win (an immutable signature keeps its args)."""
        if options:
            merged = {
                **self.options,
                **{k: v for k, v in options.items() if k not in _IMMUTABLE_OPTIONS or k not in self.options},
            }
        else:
            merged = dict(self.options)
        if self.immutable and not force:
            return self.args, dict(self.kwargs), merged
        return (
            tuple(args or ()) + self.args,
            dict(self.kwargs, **(kwargs or {})),
            merged,
        )

    def clone(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any
    ) -> Signature[R]:
        """A copy, with partial arguments and options applied (options are deep-copied)."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, opts)
        sig: Signature[R] = Signature(
            {
                "task": self.get("task"),
                "args": tuple(new_args),
                "kwargs": new_kwargs,
                "options": deepcopy(new_options),
                "subtask_type": self.subtask_type,
                "immutable": self.immutable,
            },
            app=getattr(self, "_app", None),
        )
        sig._type = getattr(self, "_type", None)
        return sig

    partial = clone

    def replace(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Signature[R]:
        """A copy with the given parts replaced (not merged)."""
        sig = self.clone()
        if args is not None:
            sig.args = args
        if kwargs is not None:
            sig.kwargs = kwargs
        if options is not None:
            sig.options = options
        return sig

    def set(self, immutable: bool | None = None, **options: Any) -> Signature[R]:
        """Set execution options (``countdown``, ``queue``...) in place; returns the signature."""
        if immutable is not None:
            self.set_immutable(immutable)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = immutable

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> _AsyncResult[R]:
        """Give the signature its task id (and workflow ids) now; returns its result."""
        opts = self.options
        tid = opts.get("task_id")
        if not tid:
            tid = opts["task_id"] = _id or _uuid4()
        if root_id:
            opts["root_id"] = root_id
        if parent_id:
            opts["parent_id"] = parent_id
        if group_id and "group_id" not in opts:
            opts["group_id"] = group_id
        if chord:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        return self.AsyncResult(tid)

    _freeze = freeze

    def extend_list_option(self, key: str, value: Any) -> None:
        items = self.options.setdefault(key, [])
        if not isinstance(items, list):
            items = self.options[key] = [items]
        items.extend(value if isinstance(value, (list, tuple)) else [value])

    def append_to_list_option(self, key: str, value: Any) -> Any:
        items = self.options.setdefault(key, [])
        if not isinstance(items, list):
            items = self.options[key] = [items]
        if value not in items:
            items.append(value)
        return value

    def link(self, callback: Mapping[str, Any]) -> Signature[Any]:
        """Apply ``callback`` with this task's result when it succeeds."""
        return self.append_to_list_option("link", callback)  # type: ignore[no-any-return]

    def link_error(self, errback: Mapping[str, Any]) -> Signature[Any]:
        """Apply ``errback`` when this task fails."""
        return self.append_to_list_option("link_error", errback)  # type: ignore[no-any-return]

    def on_error(self, errback: Mapping[str, Any]) -> Signature[R]:
        """``link_error`` that returns this signature, for building: ``add.s(1).on_error(log.s())``."""
        self.link_error(errback)
        return self

    def flatten_links(self) -> list[Signature[Any]]:
        links = [maybe_signature(link, self._app) for link in _as_list(self.options.get("link"))]
        return [self] + [s for link in links if link is not None for s in link.flatten_links()]

    def __or__(self, other: Any) -> Any:
        if isinstance(other, _chain):
            return _chain(self, *other.unchain_tasks(), app=self._app)
        if isinstance(other, group):
            other = _maybe_unroll_group(other)
            return _chain(self, other, app=self._app)
        if isinstance(other, Signature):
            return _chain(self, other, app=self._app)
        return NotImplemented

    __ior__ = __or__

    # -- calling -------------------------------------------------------------
    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> _AsyncResult[R]:
        """Send the task (partial args are prepended to the signature's, as in Celery)."""
        options = {k: v for k, v in options.items() if v is not None}
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        task_type = self._task_type()
        if task_type is not None:
            result: _AsyncResult[R] = task_type.apply_async(new_args, new_kwargs, **new_options)
            return result
        return self.app.send_task(self.task, new_args, new_kwargs, route_name=route_name, **new_options)

    def delay(self, *args: Any, **kwargs: Any) -> _AsyncResult[R]:
        """``apply_async`` with star arguments."""
        return self.apply_async(args, kwargs)

    async def adelay(self, *args: Any, **kwargs: Any) -> _AsyncResult[R]:
        """``delay`` for async code: doesn't block the event loop."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> _AsyncResult[R]:
        """``apply_async`` for async code (published from the loop's default executor)."""
        import asyncio

        return await asyncio.to_thread(self.apply_async, args, kwargs, **options)

    def apply(
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> EagerResult[R]:
        """Run the task here and now, without a worker."""
        new_args, new_kwargs, new_options = self._merge(args, kwargs, options)
        return self.type.apply(new_args, new_kwargs, **new_options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        new_args, new_kwargs, _ = self._merge(args, kwargs, None)
        return self.type(*new_args, **new_kwargs)

    def __invert__(self) -> Any:
        return self.apply_async().get()

    # -- representation ---------------------------------------------------------
    def reprcall(self, *args: Any, **kwargs: Any) -> str:
        args, kwargs, _ = self._merge(args, kwargs, {}, force=True)
        text = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        return f"{self.get('task')}({text})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature[R]:
        copied = signature(deepcopy(dict(self), memo), app=getattr(self, "_app", None))
        return copied

    def __reduce__(self) -> tuple[Any, ...]:
        return signature, (dict(self),)

    def __repr__(self) -> str:
        prefix = "%" if self.immutable else ""
        return prefix + self.reprcall()

    def __json__(self) -> dict[str, Any]:
        return dict(self)


# -- chain --------------------------------------------------------------------------------------


class _Workflow(Signature[Any]):
    """A signature made of other signatures (a chain's steps, a group's members, a chord's
    header), kept in ``kwargs[_TASKS_KEY]`` as Celery does; its app is theirs unless given."""

    _TASKS_KEY: ClassVar[str] = "tasks"

    @property
    def tasks(self) -> list[Signature[Any]]:
        return self.kwargs.setdefault(self._TASKS_KEY, [])  # type: ignore[no-any-return]

    @tasks.setter
    def tasks(self, value: Sequence[Signature[Any]]) -> None:
        self.kwargs[self._TASKS_KEY] = list(value)

    def _app_sources(self) -> list[Any]:
        return self.tasks[:1]

    @property
    def app(self) -> Celery:
        app: Celery | None = getattr(self, "_app", None)
        for source in self._app_sources():
            if app is not None:
                break
            app = getattr(source, "_app", None)
        return app or get_current_app()


@Signature.register_type("chain")
class _chain(_Workflow):
    """The class behind :func:`chain`; see there."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Celery | None = None) -> Signature[Any]:
        tasks = [maybe_signature(t, app=app) for t in (d.get("kwargs") or {}).get("tasks") or ()]
        return cls(*tasks, app=app, **dict(d.get("options") or {}))

    def __init__(self, *tasks: Any, app: Celery | None = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Mapping) and isinstance(tasks[0], Iterable):
            tasks = tuple(tasks[0])
        steps = [maybe_signature(t, app=app) for t in tasks]
        super().__init__("celery.chain", (), {"tasks": steps}, options, subtask_type="chain", app=app)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.tasks:
            return self.apply_async(args, kwargs)
        return None

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any) -> _chain:
        new = type(self)(*[t.clone() for t in self.tasks], app=getattr(self, "_app", None), **deepcopy(self.options))
        new.options.update(opts)
        if args and not self.immutable:
            new["args"] = tuple(args) + self.args
        return new

    def unchain_tasks(self) -> list[Signature[Any]]:
        """Copies of the steps, with the chain's own links moved onto them (as Celery does)."""
        tasks = [t.clone() for t in self.tasks]
        if not tasks:
            return tasks
        for callback in _as_list(self.options.get("link")):
            tasks[-1].link(callback)
        for errback in _as_list(self.options.get("link_error")):
            for task in tasks:
                task.link_error(errback)
        return tasks

    def __or__(self, other: Any) -> Any:
        if isinstance(other, group):
            other = _maybe_unroll_group(other)
            if not isinstance(other, group):
                return self.__or__(other)
            tasks = self.unchain_tasks()
            if not tasks:
                return other
            if isinstance(tasks[-1], chord):
                tasks[-1].body = tasks[-1].body | other
                return type(self)(*tasks, app=self._app)
            return type(self)(*tasks, other, app=self._app)
        if isinstance(other, _chain):
            result: Any = self
            for task in other.unchain_tasks():
                result = result | task
            return result
        if isinstance(other, Signature):
            if self.tasks and isinstance(self.tasks[-1], group):
                # chain | group | sig: the group and what follows make a chord.
                sig = self.clone()
                sig.tasks[-1] = chord(sig.tasks[-1], other, app=self._app)
                if len(sig.tasks) > 1 and isinstance(sig.tasks[-2], chord):
                    sig.tasks[-2].body = sig.tasks[-2].body | sig.tasks[-1]
                    sig.tasks = sig.tasks[:-1]
                return sig
            if self.tasks and isinstance(self.tasks[-1], chord) and not isinstance(other, chord):
                sig = self.clone()
                last: Any = sig.tasks[-1]
                last.body = last.body | other
                return sig
            return type(self)(*self.unchain_tasks(), other, app=self._app)
        return NotImplemented

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> _AsyncResult[Any]:
        app = self.app
        if app.conf.task_always_eager:
            return cast("_AsyncResult[Any]", self.apply(args, kwargs, **options))
        merged = dict(self.options, **{k: v for k, v in options.items() if v is not None})
        return self.run(args, kwargs, app=app, **merged)

    def run(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        chord: Any = None,
        task_id: str | None = None,
        link: Any = None,
        link_error: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        app: Celery | None = None,
        group_index: int | None = None,
        **options: Any,
    ) -> _AsyncResult[Any]:
        """Send the first step, with the rest in its ``chain`` option; returns the last step's result."""
        app = app or self.app
        args = tuple(args or ()) + self.args if args and not self.immutable else self.args
        steps, results = self.prepare_steps(
            args, kwargs, self.tasks, root_id, parent_id, link_error, app, task_id, group_id, chord,
            group_index=group_index,
        )  # fmt: skip
        if not results:
            raise ValueError("can't send an empty chain")
        if link:
            steps[0].extend_list_option("link", link)
        first = steps.pop()
        options.pop("chain", None)
        if steps:
            options["chain"] = steps
        first.apply_async(**options)
        return results[0]

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> _AsyncResult[Any]:
        steps, results = self.prepare_steps(
            self.args, self.kwargs, self.tasks, root_id, parent_id, None, self.app, _id, group_id, chord,
            clone=False, group_index=group_index,
        )  # fmt: skip
        self.tasks = list(reversed(steps))
        return results[0]

    def prepare_steps(
        self,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        tasks: Sequence[Any],
        root_id: str | None = None,
        parent_id: str | None = None,
        link_error: Any = None,
        app: Celery | None = None,
        last_task_id: str | None = None,
        group_id: str | None = None,
        chord_body: Any = None,
        clone: bool = True,
        group_index: int | None = None,
    ) -> tuple[list[Signature[Any]], list[_AsyncResult[Any]]]:
        """Freeze every step, last first; returns the steps and results in reverse order.

        Nested chains are flattened; a group followed by a step becomes a chord, as in
        Celery; each result's ``parent`` is the result of the step before.
        """
        app = app or self.app
        pending = list(tasks)
        steps: list[Signature[Any]] = []
        results: list[_AsyncResult[Any]] = []
        prev_task: Signature[Any] | None = None
        prev_res: _AsyncResult[Any] | None = None
        i = 0
        while pending:
            task = pending.pop()
            is_first_task, is_last_task = not pending, not i
            task = _as_step(task, app, clone, args if is_first_task else None, kwargs if is_first_task else None)
            if isinstance(task, _chain):
                # A chain inside a chain: its steps join this one's.
                pending.extend(task.tasks)
                continue
            if isinstance(task, group) and prev_task is not None:
                # A group followed by a step: a chord with that step as its body.
                steps.pop()
                results.pop()
                task = chord(task, body=prev_task, task_id=prev_res.id if prev_res else None, root_id=root_id,
                             app=app)  # fmt: skip
                if steps:
                    prev_task, prev_res = steps[-1], results[-1]
                else:
                    prev_task, prev_res = None, None
            if is_last_task:
                res = task.freeze(last_task_id, root_id=root_id, group_id=group_id, chord=chord_body,
                                  group_index=group_index)  # fmt: skip
            else:
                res = task.freeze(root_id=root_id)
            i += 1
            if prev_res is not None and prev_res.parent is None:
                prev_res.parent = res
            for errback in _as_list(link_error):
                task.link_error(errback)
            steps.append(task)
            results.append(res)
            prev_task, prev_res = task, res
            if isinstance(task, chord):
                app.backend.ensure_chords_allowed()
                # What comes before the chord is the parent of its header, not of its body.
                prev_res = _root_of(res)
        return steps, results

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Run every step here, in order."""
        last: Any = None
        fargs, fkwargs = tuple(args or ()), dict(kwargs or {})
        for task in self.tasks:
            res = task.clone(fargs, fkwargs).apply((last.get(),) if last is not None else None,
                                                  **dict(self.options, **options))  # fmt: skip
            res.parent, last, fargs, fkwargs = last, res, (), {}
        return last

    def __repr__(self) -> str:
        if not self.tasks:
            return f"<{type(self).__name__}: empty>"
        return " | ".join(repr(t) for t in self.tasks)


class chain(_chain):
    """Tasks in sequence: ``chain(add.s(2, 2), add.s(4), add.s(8))`` or ``add.s(2, 2) | add.s(4) | add.s(8)``.

    Each task's return value is prepended to the next one's arguments (use ``.si()``
    for a step that takes none). ``apply_async()`` returns the last task's result;
    its ``.parent`` is the one before, and so on.
    """

    def __new__(cls, *tasks: Any, **kwargs: Any) -> Any:
        # As in Celery, chain(a, b, c) is a | b | c: a group followed by a step becomes a chord,
        # nested chains are flattened (and chain(group, sig) is that chord).
        if not kwargs and tasks and (len(tasks) != 1 or isinstance(tasks[0], (list, tuple))):
            items = tasks[0] if len(tasks) == 1 else tasks
            combined: Any = _chain()
            for item in items:
                combined = combined | maybe_signature(item)
            return combined
        return super().__new__(cls)


# -- group --------------------------------------------------------------------------------------


@Signature.register_type("group")
class group(_Workflow):
    """Tasks in parallel: ``group(add.s(i, i) for i in range(10))()`` returns a :class:`GroupResult`."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Celery | None = None) -> Signature[Any]:
        tasks = [maybe_signature(t, app=app) for t in (d.get("kwargs") or {}).get("tasks") or ()]
        return cls(tasks, app=app, **dict(d.get("options") or {}))

    def __init__(self, *tasks: Any, app: Celery | None = None, **options: Any) -> None:
        if len(tasks) == 1:
            only = tasks[0]
            if isinstance(only, group):
                items: list[Any] = list(only.tasks)
            elif isinstance(only, Signature):
                items = [only.clone()]
            elif isinstance(only, Mapping):
                items = [only]
            else:
                items = list(only)
        else:
            items = list(tasks)
        members = [maybe_signature(t, app=app) for t in items]
        super().__init__("celery.group", (), {"tasks": members}, options, subtask_type="group", app=app)

    def __len__(self) -> int:
        return len(self.tasks)

    def __call__(self, *partial_args: Any, **options: Any) -> Any:
        return self.apply_async(partial_args, **options)

    def __or__(self, other: Any) -> Any:
        return chord(self, body=other, app=self._app)

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any) -> group:
        new = type(self)([t.clone() for t in self.tasks], app=getattr(self, "_app", None), **deepcopy(self.options))
        new.options.update(opts)
        return new

    def skew(self, start: float = 1.0, stop: float | None = None, step: float = 1.0) -> group:
        """Spread the tasks out in time: countdowns start, start+step, ... (up to stop)."""
        value = start
        for task in self.tasks:
            task.set(countdown=value)
            if stop is None or value + step <= stop:
                value += step
        return self

    def set_immutable(self, immutable: bool) -> None:
        for task in self.tasks:
            task.set_immutable(immutable)

    def link(self, sig: Mapping[str, Any]) -> Signature[Any]:
        # As in Celery: only the first task gets it (use a chord to wait for all of them).
        callback = signature(sig, app=self._app).clone().set(immutable=True)
        return self.tasks[0].link(callback)

    def link_error(self, sig: Mapping[str, Any]) -> Signature[Any]:
        errback = signature(sig, app=self._app)
        for task in self.tasks:
            task.link_error(errback.clone(immutable=True))
        return errback

    def _unrolled(self) -> Iterator[Signature[Any]]:
        """The member signatures with nested groups flattened, cloned."""
        stack = list(reversed(self.tasks))
        while stack:
            task = maybe_signature(stack.pop(), app=self._app)
            assert task is not None
            if isinstance(task, group):
                stack.extend(reversed(task.tasks))
            else:
                yield task.clone()

    def freeze(  # type: ignore[override]
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> GroupResult:
        from .result import GroupResult

        opts = self.options
        gid = opts.get("task_id")
        if not gid:
            gid = opts["task_id"] = group_id or _id or _uuid4()
        if group_id:
            opts["group_id"] = group_id
        if chord:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        root_id = opts.setdefault("root_id", root_id)
        parent_id = opts.setdefault("parent_id", parent_id)
        members = list(self._unrolled())
        results = [
            task.freeze(group_id=gid, chord=chord, root_id=root_id, parent_id=parent_id, group_index=index)
            for index, task in enumerate(members)
        ]
        self.tasks = members
        return GroupResult(gid, results, app=self.app)

    _freeze = freeze  # type: ignore[assignment]

    def apply_async(  # type: ignore[override]
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        add_to_parent: bool = True,
        link: Any = None,
        link_error: Any = None,
        **options: Any,
    ) -> GroupResult:
        from .result import GroupResult

        if link is not None:
            raise TypeError("Cannot add link to group: use a chord")
        if link_error is not None:
            raise TypeError("Cannot add link to group: do that on individual tasks")
        app = self.app
        if app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        options = {k: v for k, v in options.items() if v is not None}
        merged = {**self.options, **{k: v for k, v in options.items() if k not in _IMMUTABLE_OPTIONS
                                     or k not in self.options}}  # fmt: skip
        group_id = merged.pop("task_id", None) or _uuid4()
        merged["group_id"] = group_id
        root_id = merged.get("root_id")
        members = list(self._unrolled())
        chord_body = merged.pop("chord", None)
        results = self._apply_tasks(members, group_id, root_id, chord_body, args, kwargs, merged)
        result = GroupResult(group_id, results, app=app)
        parent = current_task_var.get()
        if add_to_parent and parent is not None:
            parent[1].add_trail(result)
        return result

    def _apply_tasks(
        self,
        members: list[Signature[Any]],
        group_id: str,
        root_id: str | None,
        chord_body: Any,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: dict[str, Any],
    ) -> list[_AsyncResult[Any]]:
        app = self.app
        results = []
        options.pop("group_index", None)
        size = sum(_chord_size(m) for m in members)
        if chord_body is not None:
            # The size travels with the body too: stores that count parts read it there.
            chord_body = {**dict(chord_body), "chord_size": size}
        for index, task in enumerate(members):
            if args and not task.immutable:
                task.args = tuple(args) + task.args
            res = task.freeze(group_id=group_id, root_id=root_id, group_index=index)
            body = chord_body if chord_body is not None else task.options.get("chord")
            if body is not None and index == len(members) - 1:
                # Celery's order: the chord size is known to the store before the last part goes out.
                app.backend.set_chord_size(group_id, size)
            task.apply_async(kwargs=kwargs, add_to_parent=False, chord=body, **options)
            results.append(res)
        return results

    def apply(  # type: ignore[override]
        self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        from .result import GroupResult

        group_id = self.options.get("task_id") or _uuid4()
        results = []
        for index, task in enumerate(self._unrolled()):
            task.freeze(group_id=group_id, group_index=index)
            results.append(task.apply(args, kwargs, **options))
        return GroupResult(group_id, results, app=self.app)

    def __repr__(self) -> str:
        if self.tasks:
            return f"group({self.tasks!r})"
        return "group(<empty>)"


# -- chord --------------------------------------------------------------------------------------


@Signature.register_type("chord")
class chord(_Workflow):
    """A group then a callback: ``chord(add.s(i, i) for i in range(10))(tsum.s())``.

    The body is applied with the list of the header's results, in header order,
    once all of them are done; if one of them failed, the body's ``link_error``
    callbacks are called (once) with a :class:`~celeriac.exceptions.ChordError`
    and the body's result records it.
    """

    _TASKS_KEY: ClassVar[str] = "header"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Celery | None = None) -> Signature[Any]:
        kwargs = dict(d.get("kwargs") or {})
        header, body = kwargs.pop("header", None), kwargs.pop("body", None)
        options = dict(d.get("options") or {})
        return cls(header, body, app=app, kwargs=kwargs, **options)

    def __init__(
        self,
        header: Any,
        body: Any = None,
        task: str = "celery.chord",
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        app: Celery | None = None,
        **options: Any,
    ) -> None:
        extra = dict(kwargs or {"kwargs": {}})
        extra.setdefault("kwargs", {})
        super().__init__(
            task,
            args,
            {**extra, "header": _header_tasks(header, app), "body": maybe_signature(body, app=app)},
            options,
            subtask_type="chord",
            app=app,
        )

    @property
    def body(self) -> Any:
        return self.kwargs.get("body")

    @body.setter
    def body(self, value: Any) -> None:
        self.kwargs["body"] = value

    def _app_sources(self) -> list[Any]:
        return [*self.tasks[:1], self.body]

    def __call__(self, body: Any = None, **options: Any) -> Any:
        return self.apply_async((), {"body": body} if body else {}, **options)

    def __or__(self, other: Any) -> Any:
        if not isinstance(other, (group, _chain)) and isinstance(other, Signature):
            sig = self.clone()
            sig.body = sig.body | other
            return sig
        if isinstance(other, group) and len(other.tasks) == 1:
            sig = self.clone()
            sig.body = sig.body | _maybe_unroll_group(other)
            return sig
        return super().__or__(other)

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **opts: Any) -> chord:
        body = self.body.clone() if isinstance(self.body, Signature) else self.body
        new = type(self)([t.clone() for t in self.tasks], body, app=getattr(self, "_app", None),
                         kwargs={"kwargs": dict(self.kwargs.get("kwargs") or {})},
                         **deepcopy(self.options))  # fmt: skip
        new.options.update(opts)
        return new

    def set_immutable(self, immutable: bool) -> None:
        for task in self.tasks:
            task.set_immutable(immutable)

    def link(self, callback: Mapping[str, Any]) -> Signature[Any]:
        """Links a callback to the chord body only."""
        self.body.link(callback)
        return callback  # type: ignore[return-value]

    def link_error(self, errback: Mapping[str, Any]) -> Signature[Any]:
        errback_sig = signature(errback, app=self._app)
        if self.app.conf.task_allow_error_cb_on_chord_header:
            for task in self.tasks:
                task.link_error(errback_sig.clone(immutable=True))
        for task in self.tasks:
            if isinstance(task, chord):
                task.link_error(errback_sig)
        self.body.link_error(errback_sig)
        return errback_sig

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> _AsyncResult[Any]:
        header = group(self.tasks, app=self.app)
        if self.options.get("task_id"):
            header.options["task_id"] = self.options["task_id"]
        header_result = header.freeze(parent_id=parent_id, root_id=root_id, chord=self.body)
        self.tasks = header.tasks
        self.options["task_id"] = header_result.id
        body_result = self.body.freeze(_id, root_id=root_id, chord=chord, group_id=group_id, group_index=group_index)
        node = body_result
        seen: set[str] = set()
        while node is not None:
            if node.id in seen:
                raise RuntimeError("Recursive result parents")
            seen.add(node.id)
            if node.parent is None:
                node.parent = header_result
                break
            node = node.parent
        return body_result  # type: ignore[no-any-return]

    def apply_async(  # type: ignore[override]
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> _AsyncResult[Any]:
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        args = args + self.args if args and not self.immutable else self.args
        body = maybe_signature(kwargs.pop("body", None) or self.body, app=self._app)
        if body is None:
            raise ValueError("a chord needs a body: chord(header)(body) or chord(header, body)")
        kwargs = dict(self.kwargs.get("kwargs") or {}, **kwargs)
        options = {k: v for k, v in options.items() if v is not None}
        # The chord's options reach the body: a chain after the chord continues from it, and a
        # chord inside another chord's header counts as that part through its body.
        body = body.clone(**options)
        app = self.app
        if app.conf.task_always_eager:
            return cast("_AsyncResult[Any]", self.apply(args, kwargs, body=body, task_id=task_id, **options))
        header = group(self.tasks, app=app, task_id=self.options.get("task_id") or _uuid4())
        merged = dict(self.options, **options)
        option_task_id = merged.pop("task_id", None)
        return self.run(header, body, args, task_id=task_id or option_task_id, kwargs=kwargs, **merged)

    def run(
        self,
        header: group,
        body: Signature[Any],
        partial_args: Sequence[Any],
        app: Celery | None = None,
        task_id: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> _AsyncResult[Any]:
        """Send the header with the body attached; returns the body's result (its parent: the header's)."""
        from .result import GroupResult

        app = app or self.app
        app.backend.ensure_chords_allowed()
        group_id = header.options.get("task_id") or _uuid4()
        options.pop("task_id", None)
        if options:
            body.options.update(options)
        root_id = body.options.get("root_id")
        body_result = body.freeze(task_id or _uuid4(), group_id=group_id, root_id=root_id)
        for key in ("chain", "chord", "task_id", "group_id", "group_index", "link", "link_error", "root_id"):
            options.pop(key, None)
        header_result = header.freeze(group_id=group_id, chord=body, root_id=root_id)
        if header.tasks:
            app.backend.apply_chord(header_result, body)
            sent = header.apply_async(partial_args, kwargs, task_id=group_id, chord=body, root_id=root_id,
                                      **options)  # fmt: skip
        else:
            # An empty header: the body runs now, with an empty list.
            body.delay([])
            sent = GroupResult(group_id, [], app=app)
        body_result.parent = sent  # type: ignore[assignment]
        return body_result

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        propagate: bool = True,
        body: Any = None,
        **options: Any,
    ) -> Any:
        body = maybe_signature(body, app=self._app) or self.body
        header = group(self.tasks, app=self.app)
        return body.apply(args=(header.apply(args, kwargs).get(propagate=propagate),))

    def __repr__(self) -> str:
        if self.body is not None:
            return f"%{self.body.reprcall(self.tasks) if isinstance(self.body, Signature) else self.body}"
        return f"<chord without body: {self.tasks!r}>"


# -- map, starmap, chunks ---------------------------------------------------------------------


class _basemap(Signature[Any]):
    _task_name: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Celery | None = None) -> Signature[Any]:
        kwargs = d.get("kwargs") or {}
        return cls(kwargs["task"], kwargs["it"], app=app, **dict(d.get("options") or {}))

    def __init__(self, task: Any, it: Iterable[Any], app: Celery | None = None, **options: Any) -> None:
        super().__init__(self._task_name, (), {"task": dict(task), "it": list(it)}, options, immutable=True, app=app)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> _AsyncResult[Any]:
        task = self.kwargs["task"]
        return self.app.send_task(self._task_name, (), {"task": task, "it": list(self.kwargs["it"])},
                                  route_name=route_name or task.get("task"),
                                  **dict(self.options, **options))  # fmt: skip


@Signature.register_type("xmap")
class xmap(_basemap):
    """``add.map([1, 2, 3])``: one message, the task called for each item, in order, in one worker."""

    _task_name = "celery.map"


@Signature.register_type("xstarmap")
class xstarmap(_basemap):
    """``add.starmap([(1, 2), (3, 4)])``: as :class:`xmap`, each item unpacked as arguments."""

    _task_name = "celery.starmap"


@Signature.register_type("chunks")
class chunks(Signature[Any]):
    """``add.chunks(zip(xs, ys), 10)``: the calls split into messages of 10 (a group of starmaps)."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Celery | None = None) -> Signature[Any]:
        kwargs = d.get("kwargs") or {}
        return cls(kwargs["task"], kwargs["it"], kwargs["n"], app=app, **dict(d.get("options") or {}))

    def __init__(self, task: Any, it: Iterable[Any], n: int, app: Celery | None = None, **options: Any) -> None:
        if int(n) < 1:
            raise ValueError(f"chunks need a size of at least 1, got {n!r}")
        super().__init__("celery.chunks", (), {"task": dict(task), "it": list(it), "n": int(n)}, options,
                         immutable=True, app=app)  # fmt: skip

    def __call__(self, **options: Any) -> Any:
        return self.apply_async(**options)

    def group(self) -> group:
        task, items, n = self.kwargs["task"], self.kwargs["it"], self.kwargs["n"]
        parts = [xstarmap(task, items[i : i + n], app=self._app) for i in range(0, len(items), n)]
        return group(parts, app=self._app)

    def apply_async(  # type: ignore[override]
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> GroupResult:
        return self.group().apply_async(args, kwargs, route_name=route_name, **dict(self.options, **options))

    @classmethod
    def apply_chunks(cls, task: Any, it: Iterable[Any], n: int, app: Celery | None = None) -> Any:
        return cls(task, it, n, app=app)()


# -- helpers ----------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value]
    return list(value)


def _header_tasks(header: Any, app: Celery | None) -> list[Signature[Any]]:
    if isinstance(header, Mapping) and not isinstance(header, Signature):
        header = signature(header, app=app)
    if isinstance(header, (group, _chain)):
        return list(header.tasks)
    if isinstance(header, Signature):
        return [header]
    return [s for s in (maybe_signature(t, app=app) for t in header or ()) if s is not None]


def _maybe_unroll_group(g: group) -> Signature[Any]:
    """A group of one task is that task (Celery's rule)."""
    if len(g.tasks) == 1:
        return g.tasks[0].clone(**g.options) if g.options else g.tasks[0].clone()
    return g


def _chord_size(sig: Any) -> int:
    """How many parts of a chord header ``sig`` accounts for (Celery's ``_chord._descend``)."""
    if not isinstance(sig, Signature) and isinstance(sig, Mapping):
        sig = Signature.from_dict(sig)
    if isinstance(sig, group):
        return sum(_chord_size(t) for t in sig.tasks)
    if isinstance(sig, _chain):
        for step in reversed(sig.tasks):
            size = _chord_size(step)
            if size > 0:
                return size
        return 0
    if isinstance(sig, chord):
        return _chord_size(sig.body)
    return 1


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature[Any]:
    """Create a signature from a task name, a task, or a dict (Celery's ``signature``)."""
    app = kwargs.pop("app", None)
    if isinstance(varies, Mapping):
        if isinstance(varies, Signature):
            return varies.clone()
        return Signature.from_dict(varies, app=app)
    kwargs["app"] = app
    return Signature(varies, *args, **kwargs)


subtask = signature


def maybe_signature(value: Any, app: Celery | None = None, clone: bool = False) -> Any:
    """``value`` as a signature (a dict is turned into the right kind), or None."""
    if value is None:
        return None
    if isinstance(value, Signature):
        sig: Signature[Any] = value.clone() if clone else value
    elif isinstance(value, Mapping):
        sig = Signature.from_dict(value, app=app)
    else:
        raise TypeError(f"expected a signature or dict, got {value!r}")
    if app is not None:
        sig._app = app
    return sig


maybe_subtask = maybe_signature


def _flatten(items: Iterable[Any]) -> list[Any]:
    return list(itertools.chain.from_iterable(items))


def _as_step(task: Any, app: Celery, clone: bool, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> Any:
    """A chain step as a signature: a one-task group unrolled, cloned (the first with the call's
    arguments) unless the chain is being frozen in place."""
    task = maybe_signature(task, app=app) or task
    if isinstance(task, group):
        task = _maybe_unroll_group(task)
    if clone:
        return task.clone(args, kwargs) if args is not None or kwargs is not None else task.clone()
    if args:
        task.args = tuple(args) + task.args
    return task


def _root_of(result: Any) -> Any:
    while result.parent is not None:
        result = result.parent
    return result
