"""The JSON API under ``/api`` (described by ``/api/openapi.json``, see :mod:`.openapi`).

Endpoints are plain functions: Starlette runs them in its thread pool, so the blocking
calls they make (SQLite, the broker, remote control) never stall the event loop.
Actions are POSTs with a JSON body and need the CSRF header (see :mod:`.security`).
"""

from __future__ import annotations

import ast
import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..exceptions import CeleriacError
from .context import Context
from .openapi import STATES, schema
from .security import csrf_ok, csrf_token, scrub, set_csrf_cookie
from .store import TaskQuery

__all__ = ["routes"]

MAX_LIMIT = 500
MAX_OFFSET = 10_000_000
MAX_POINTS = 1000
# Seconds to wait for a worker's reply. Commands to one worker return as soon as it answers;
# growing a prefork pool forks first, which takes a while on a busy machine.
REPLY_TIMEOUT = 5.0


class BadRequest(Exception):
    pass


class NotFound(Exception):
    pass


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


def _body(request: Request, raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _guarded(fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        try:
            return fn(request)
        except BadRequest as exc:
            return _error(str(exc), 400)

    endpoint.__name__ = fn.__name__
    return endpoint


# -- reading ----------------------------------------------------------------------------
def openapi(request: Request) -> Response:
    return JSONResponse(schema())


def csrf(request: Request) -> Response:
    token = csrf_token(request)
    response = JSONResponse({"token": token})
    set_csrf_cookie(response, token)
    return response


def workers(request: Request) -> Response:
    return JSONResponse({"workers": _ctx(request).monitor.workers()})


def worker(request: Request) -> Response:
    name = request.path_params["name"]
    found = [w for w in _ctx(request).monitor.workers() if w["hostname"] == name]
    if not found:
        return _error(f"no worker named {name!r} has been seen", 404)
    return JSONResponse(found[0])


def tasks(request: Request) -> Response:
    params = request.query_params
    state = params.get("state", "")
    if state and state not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}")
    query = TaskQuery(
        state=state,
        name=params.get("name", ""),
        worker=params.get("worker", ""),
        search=params.get("search", "").strip(),
        limit=_int(request, "limit", 50, 1, MAX_LIMIT),
        offset=_int(request, "offset", 0, 0, MAX_OFFSET),
    )
    page = _ctx(request).store.page(query)
    return JSONResponse({"tasks": page.tasks, "total": page.total, "limit": page.limit, "offset": page.offset})


def task(request: Request) -> Response:
    ctx = _ctx(request)
    task_id = request.path_params["task_id"]
    found = ctx.store.get(task_id)
    if found is None:
        return _error(f"no task {task_id!r} in the history", 404)
    found["children"] = ctx.store.children(task_id)
    return JSONResponse(found)


def queues(request: Request) -> Response:
    return JSONResponse({"queues": _ctx(request).queues.snapshot()})


def stats(request: Request) -> Response:
    window = _int(request, "window", 900, 10, 86_400)
    step = _int(request, "step", 10, 1, 3600)
    step = max(step, math.ceil(window / MAX_POINTS))  # the answer says which step it used
    return JSONResponse(timeseries(_ctx(request), window, step))


def timeseries(ctx: Context, window: int, step: int) -> dict[str, Any]:
    now = time.time()
    start = math.floor((now - window) / step) * step
    count = math.ceil((now - start) / step)
    points: list[dict[str, Any]] = [
        {"time": start + i * step, "succeeded": 0, "failed": 0, "runtimes": []} for i in range(count)
    ]
    for finished, state, runtime in ctx.store.finished_since(start):
        index = min(count - 1, int((finished - start) // step))
        point = points[index]
        if state == "SUCCESS":
            point["succeeded"] += 1
            if runtime is not None:
                point["runtimes"].append(runtime)
        elif state == "FAILURE":
            point["failed"] += 1
    for point in points:
        runtimes = sorted(point.pop("runtimes"))
        point["throughput"] = round((point["succeeded"] + point["failed"]) / step, 3)
        for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            point[label] = _percentile(runtimes, q)
    return {"window": window, "step": step, "points": points}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))], 6)


# -- actions ----------------------------------------------------------------------------
def _action(fn: Callable[[Request, dict[str, Any]], Response]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        if not csrf_ok(request):
            return _error("missing or wrong CSRF token (send the X-CSRF-Token header; see /api/csrf)", 403)
        try:
            body = _body(request, await request.body())
            return await run_in_threadpool(fn, request, body)
        except BadRequest as exc:
            return _error(str(exc), 400)
        except NotFound as exc:
            return _error(str(exc), 404)
        except (CeleriacError, OSError) as exc:
            # The broker is away: say so (without its password) rather than answer a bare 500.
            message = scrub(f"{type(exc).__name__}: {exc}", _ctx(request).app.broker_url)
            return _error(f"the broker could not be reached: {message}", 503)

    endpoint.__name__ = fn.__name__
    return endpoint


def _replies(replies: list[dict[str, Any]] | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for reply in replies or ():
        merged.update(reply)
    return merged


def _ok(message: str, replies: list[dict[str, Any]] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "message": message, "replies": _replies(replies), **extra})


def revoke(request: Request, body: dict[str, Any]) -> Response:
    task_id = request.path_params["task_id"]
    terminate = body.get("terminate", False)
    signal = body.get("signal") or "SIGTERM"
    if not isinstance(terminate, bool):
        raise BadRequest("terminate must be true or false")
    if not isinstance(signal, str):
        raise BadRequest("signal must be a signal name such as SIGTERM")
    replies = _ctx(request).monitor.run(
        lambda c: c.revoke(task_id, terminate=terminate, signal=signal, reply=True, timeout=1.0)
    )
    return _ok(f"revoke {'and terminate ' if terminate else ''}sent for {task_id}", replies)


def retry(request: Request, body: dict[str, Any]) -> Response:
    ctx = _ctx(request)
    task_id = request.path_params["task_id"]
    found = ctx.store.get(task_id)
    if found is None:
        return _error(f"no task {task_id!r} in the history", 404)
    if not found.get("name"):
        return _error("the task's name was never seen in an event, so it can't be sent again", 409)
    try:
        args = _literal(found.get("args"), "()")
        kwargs = _literal(found.get("kwargs"), "{}")
    except ValueError as exc:
        return _error(f"can't recover the task's arguments from their repr ({exc}); send it again by hand", 409)
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        return _error("the task's arguments are not a list and a dict", 409)
    new_id = str(uuid.uuid4())
    ctx.app.send_task(found["name"], args=list(args), kwargs=kwargs, task_id=new_id)
    return _ok(f"sent {found['name']} again as {new_id}", task_id=new_id)


def _literal(text: str | None, default: str) -> Any:
    try:
        return ast.literal_eval(text or default)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(type(exc).__name__) from None


def _known_worker(request: Request) -> str:
    name: str = request.path_params["name"]
    if name not in _ctx(request).monitor.worker_names():
        raise NotFound(f"no worker named {name!r} has been seen")
    return name


def rate_limit(request: Request, body: dict[str, Any]) -> Response:
    name = _known_worker(request)
    task_name, rate = body.get("task_name"), body.get("rate_limit")
    if not isinstance(task_name, str) or not task_name:
        raise BadRequest("task_name is required")
    if rate is not None and (not isinstance(rate, (str, int)) or isinstance(rate, bool)):
        raise BadRequest("rate_limit must be a string like '10/m', a number, or null")
    replies = _ctx(request).monitor.run(
        lambda c: c.rate_limit(task_name, rate, destination=[name], reply=True, timeout=REPLY_TIMEOUT)
    )
    return _ok(f"rate limit of {task_name} on {name} set to {rate}", replies)


def _pool(request: Request, body: dict[str, Any], grow: bool) -> Response:
    name = _known_worker(request)
    n = body.get("n", 1)
    if isinstance(n, float) and n.is_integer():
        n = int(n)  # 2.0 is an integer to JSON Schema
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1000:
        raise BadRequest("n must be an integer from 1 to 1000")

    def call(c: Any) -> Any:
        method = c.pool_grow if grow else c.pool_shrink
        return method(n, destination=[name], reply=True, timeout=REPLY_TIMEOUT)

    replies = _ctx(request).monitor.run(call)
    return _ok(f"pool of {name} {'grown' if grow else 'shrunk'} by {n}", replies)


def pool_grow(request: Request, body: dict[str, Any]) -> Response:
    return _pool(request, body, grow=True)


def pool_shrink(request: Request, body: dict[str, Any]) -> Response:
    return _pool(request, body, grow=False)


def shutdown(request: Request, body: dict[str, Any]) -> Response:
    name = _known_worker(request)
    _ctx(request).monitor.run(lambda c: c.shutdown(destination=[name]))
    return _ok(f"shutdown sent to {name}")


def purge(request: Request, body: dict[str, Any]) -> Response:
    ctx = _ctx(request)
    name = request.path_params["name"]
    removed = ctx.app.connection_for_write().purge(name)
    ctx.queues.extra.add(name)  # listed from now on, even if no worker consumes it
    ctx.queues.forget()
    return _ok(f"purged {removed} message{'' if removed == 1 else 's'} from {name}", purged=removed)


def routes() -> list[Route]:
    get = ["GET"]
    return [
        Route("/api/openapi.json", openapi, methods=get),
        Route("/api/csrf", csrf, methods=get),
        Route("/api/workers", workers, methods=get),
        Route("/api/workers/{name}", worker, methods=get),
        Route("/api/tasks", _guarded(tasks), methods=get),
        Route("/api/tasks/{task_id}", task, methods=get),
        Route("/api/queues", queues, methods=get),
        Route("/api/stats", _guarded(stats), methods=get),
        Route("/api/tasks/{task_id}/revoke", _action(revoke), methods=["POST"]),
        Route("/api/tasks/{task_id}/retry", _action(retry), methods=["POST"]),
        Route("/api/workers/{name}/rate-limit", _action(rate_limit), methods=["POST"]),
        Route("/api/workers/{name}/pool/grow", _action(pool_grow), methods=["POST"]),
        Route("/api/workers/{name}/pool/shrink", _action(pool_shrink), methods=["POST"]),
        Route("/api/workers/{name}/shutdown", _action(shutdown), methods=["POST"]),
        Route("/api/queues/{name}/purge", _action(purge), methods=["POST"]),
    ]
