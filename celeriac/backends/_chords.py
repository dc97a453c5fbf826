"""Finishing a chord: what the result store does when the last header part has returned.

Every store counts the parts its own way (Redis: Celery's sorted set and counters;
SQL and SQLite: a parts table under a per-chord lock; others: Celery's counter
key), atomically, so exactly one part sees the count reach the chord size; that
part calls :func:`finish` with the header's values in header order, or with the
error of the first failed part.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import states
from ..exceptions import ChordError

if TYPE_CHECKING:
    from .base import ResultBackend

__all__ = ["chord_error_from_stack", "finish", "mark_chain_failed"]

logger = logging.getLogger("celeriac.backends")


def finish(backend: ResultBackend, callback: Mapping[str, Any], group_id: str, values: list[Any] | None,
           error: BaseException | None = None) -> None:  # fmt: skip
    """Send the chord body with ``values``, or record ``error`` as its failure and call its errbacks."""
    from ..canvas import maybe_signature

    app = backend.app
    body = maybe_signature(dict(callback), app=app)
    body.pop("chord_size", None)
    if error is not None:
        logger.error("Chord %s failed: %s", group_id, error)
        chord_error_from_stack(backend, body, error)
        return
    try:
        body.delay(values)
    except Exception as exc:
        logger.exception("Chord callback for %s could not be sent", group_id)
        chord_error_from_stack(backend, body, ChordError(f"Callback error: {exc!r}"))


def part_error(task_id: str, value: Any) -> ChordError:
    """Celery's message for a header part that failed."""
    error = ChordError(f"Dependency {task_id} raised {value!r}")
    if isinstance(value, BaseException):
        error.__cause__ = value
    return error


def chord_error_from_stack(backend: ResultBackend, callback: Any, exc: BaseException) -> None:
    """Record ``exc`` as the result of the chord body ``callback`` and call the body's errbacks (once)."""
    from ..canvas import _chain, group, maybe_signature
    from ..task import Context

    app = backend.app
    assert app is not None
    callback = maybe_signature(callback, app=app)
    targets = list(callback.tasks) if isinstance(callback, (_chain, group)) else [callback]
    for target in targets:
        task_id = target.options.get("task_id")
        if not task_id:
            continue
        request = Context(id=task_id, task=target.get("task"), group=target.options.get("group_id"),
                          chord=target.options.get("chord"), errbacks=target.options.get("link_error"),
                          root_id=target.options.get("root_id"), parent_id=target.options.get("parent_id"))  # fmt: skip
        try:
            backend.store_result(task_id, exc, states.FAILURE, request=request)
        except Exception:
            logger.exception("could not record the failure of chord body %s", task_id)
        mark_chain_failed(backend, target.options.get("chain"), exc)
        if request.chord:
            # The body is itself a part of an enclosing chord: that one must hear of it too.
            backend.on_chord_part_return(request, states.FAILURE, exc)
        _call_errbacks(app, request, exc)


def mark_chain_failed(backend: ResultBackend, chain: Any, exc: BaseException) -> None:
    """A failed task's chain will never run: record the failure on each remaining step (as Celery does),
    so whoever waits on the chain's last result hears of it."""
    from ..task import Context

    for step in chain or ():
        options = (step.get("options") if isinstance(step, Mapping) else None) or {}
        task_id = options.get("task_id")
        if not task_id:
            continue
        request = Context(id=task_id, task=step.get("task"), group=options.get("group_id"),
                          chord=options.get("chord"), group_index=options.get("group_index"))  # fmt: skip
        try:
            backend.store_result(task_id, exc, states.FAILURE, request=request)
        except Exception:
            logger.exception("could not record the failure of chain step %s", task_id)
        if request.chord:
            backend.on_chord_part_return(request, states.FAILURE, exc)


def _call_errbacks(app: Any, request: Any, exc: BaseException) -> None:
    from ..worker.execute import ExceptionInfo, _apply_errbacks

    if request.errbacks:
        _apply_errbacks(app, request, exc, ExceptionInfo(exc))
