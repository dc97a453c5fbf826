"""Tasks every app has, under Celery's names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Celery

__all__ = ["register_builtins"]


def register_builtins(app: Celery) -> None:
    def backend_cleanup() -> Any:
        """Delete expired results (what Celery's beat runs daily as ``celery.backend_cleanup``)."""
        cleanup = getattr(app.backend, "cleanup", None)
        return cleanup() if cleanup is not None else None

    app._task_from_fun(backend_cleanup, name="celery.backend_cleanup", ignore_result=True)
    app._task_from_fun(lambda *args, index=None: args[index] if index is not None else args, name="celery.accumulate")
    _register_canvas_tasks(app)


def _register_canvas_tasks(app: Celery) -> None:
    from .canvas import chord as _chord
    from .canvas import chunks as _chunks
    from .canvas import group as _group
    from .canvas import maybe_signature, signature

    def xmap(task: Any, it: Any) -> list[Any]:
        """``task.map(items)``: the task called for each item, here, in order."""
        body = signature(task, app=app).type
        return [body(item) for item in it]

    def xstarmap(task: Any, it: Any) -> list[Any]:
        """``task.starmap(items)``: the task called with each item's arguments, here, in order."""
        body = signature(task, app=app).type
        return [body(*item) for item in it]

    def chunks(task: Any, it: Any, n: int) -> Any:
        return _chunks.apply_chunks(task, it, n, app=app)

    def chord(self: Any, header: Any, body: Any, partial_args: Any = (), interval: Any = None, countdown: Any = 1,
              max_retries: Any = None, eager: bool = False, **kwargs: Any) -> Any:  # fmt: skip
        """Celery's ``celery.chord`` task (old clients send a chord as this task)."""
        tasks = header.tasks if isinstance(header, _group) else header
        sigs = _group([maybe_signature(s, app=app) for s in tasks], app=app)
        return _chord(sigs, maybe_signature(body, app=app), app=app).apply_async(partial_args, **kwargs)

    def group(self: Any, tasks: Any, result: Any, group_id: str, partial_args: Any, add_to_parent: bool = True) -> Any:
        """Celery's ``celery.group`` task, for old clients."""
        for task in tasks:
            maybe_signature(task, app=app).clone(partial_args).apply_async(group_id=group_id, add_to_parent=False)
        return result

    def chain(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("chain is not a real task")

    app._task_from_fun(xmap, name="celery.map")
    app._task_from_fun(xstarmap, name="celery.starmap")
    app._task_from_fun(chunks, name="celery.chunks")
    app._task_from_fun(chord, name="celery.chord", bind=True, ignore_result=False)
    app._task_from_fun(group, name="celery.group", bind=True)
    app._task_from_fun(chain, name="celery.chain")
    app._task_from_fun(
        _unlock_chord(app),
        name="celery.chord_unlock",
        bind=True,
        max_retries=None,
        ignore_result=True,
        default_retry_delay=app.conf.result_chord_retry_interval or 1.0,
    )


def _unlock_chord(app: Celery) -> Any:
    """Celery's ``celery.chord_unlock``: how Celery clients complete chords on stores without counters.

    celeriac's own chords never need it (every store counts parts); a Celery client
    sends it with chords on such stores, and a celeriac worker runs it.
    """
    from .backends._chords import finish, part_error
    from .canvas import maybe_signature
    from .result import GroupResult, allow_join_result, result_from_tuple

    def unlock_chord(self: Any, group_id: str, callback: Any, interval: float | None = None,
                     max_retries: int | None = None, result: Any = None, **kwargs: Any) -> None:  # fmt: skip
        if interval is None:
            interval = self.default_retry_delay
        deps = GroupResult(group_id, [result_from_tuple(r, app=app) for r in result or ()], app=app)
        try:
            ready = deps.ready()
        except Exception as exc:
            raise self.retry(exc=exc, countdown=interval, max_retries=max_retries) from exc
        if not ready:
            raise self.retry(countdown=interval, max_retries=max_retries)
        body = maybe_signature(callback, app=app)
        with allow_join_result():
            values = deps.join(propagate=False, timeout=app.conf.result_chord_join_timeout)
        failed = next((r for r in deps if r.state in ("FAILURE", "REVOKED")), None)
        if failed is not None:
            finish(app.backend, body, group_id, None, part_error(failed.id, failed.result))
        else:
            finish(app.backend, body, group_id, values)

    return unlock_chord
