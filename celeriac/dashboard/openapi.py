"""The OpenAPI 3.1 description of the dashboard's JSON API, served at ``/api/openapi.json``.

Written by hand, next to the handlers in :mod:`.api`; the tests validate real responses
against it (and fuzz it with schemathesis), so the two can't drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from .._version import __version__

__all__ = ["STATES", "schema"]

STATES = ("PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED", "REJECTED")

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_NNUM = {"type": ["number", "null"]}
_NINT = {"type": ["integer", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(_ref("Error"), "Bad parameters"),
    "401": _json(_ref("Error"), "Authentication required"),
}


def _get(summary: str, response: dict[str, Any], params: list[dict[str, Any]] | None = None,
         missing: bool = False) -> dict[str, Any]:  # fmt: skip
    responses = {"200": _json(response), **ERRORS}
    if missing:
        responses["404"] = _json(_ref("Error"), "Not found")
    return {"get": {"summary": summary, "parameters": params or [], "responses": responses}}


def _post(summary: str, body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": [*(params or []), _header_csrf()],
        "responses": {
            "200": _json(extra or _ref("ActionResult")),
            **ERRORS,
            "403": _json(_ref("Error"), "Missing or wrong CSRF token"),
            "404": _json(_ref("Error"), "Not found"),
            "409": _json(_ref("Error"), "Can't be done for this task"),
            "503": _json(_ref("Error"), "The broker could not be reached"),
        },
    }
    if body is not None:
        op["requestBody"] = {"required": bool(body.get("required")), "content": {"application/json": {"schema": body}}}
    return {"post": op}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
            "description": description}  # fmt: skip


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _header_csrf() -> dict[str, Any]:
    return {
        "name": "X-CSRF-Token",
        "in": "header",
        "required": False,
        "schema": _STR,
        "description": "Equal to the celeriac_csrf cookie (GET /api/csrf); not needed with a bearer token.",
    }


def _components() -> dict[str, Any]:
    worker = _obj(
        ["hostname", "online", "heartbeat_age", "succeeded", "failed", "loadavg", "queues"],
        hostname=_STR, online={"type": "boolean"}, heartbeat_age=_NNUM, pool=_NSTR, concurrency=_NINT,
        active=_NINT, processed=_NINT, succeeded={"type": "integer"}, failed={"type": "integer"},
        loadavg={"type": "array", "items": {"type": "number"}}, software=_NSTR, pid=_NINT,
        queues={"type": "array", "items": _STR},
    )  # fmt: skip
    row = {
        "uuid": _STR, "name": _NSTR, "state": {"enum": list(STATES)}, "args": _NSTR, "kwargs": _NSTR,
        "worker": _NSTR, "runtime": _NNUM, "first_seen": {"type": "number"}, "started": _NNUM, "finished": _NNUM,
        "retries": _NINT,
    }  # fmt: skip
    child = _obj(["uuid", "state"], uuid=_STR, name=_NSTR, state=_STR)
    detail = dict(row, result=_NSTR, exception=_NSTR, traceback=_NSTR, parent_id=_NSTR, root_id=_NSTR, eta=_NSTR,
                  expires=_NSTR, sent=_NNUM, received=_NNUM, updated={"type": "number"},
                  children={"type": "array", "items": child})  # fmt: skip
    point = _obj(
        ["time", "succeeded", "failed", "throughput", "p50", "p90", "p99"],
        time={"type": "number"}, succeeded={"type": "integer"}, failed={"type": "integer"},
        throughput={"type": "number"}, p50=_NNUM, p90=_NNUM, p99=_NNUM,
    )  # fmt: skip
    return {
        "schemas": {
            "Error": _obj(["error"], error=_STR),
            "Worker": worker,
            "TaskRow": _obj(list(row), **row),
            "Task": _obj(list(detail), **detail),
            "TaskPage": _obj(
                ["tasks", "total", "limit", "offset"],
                tasks={"type": "array", "items": _ref("TaskRow")},
                total={"type": "integer"},
                limit={"type": "integer"},
                offset={"type": "integer"},
            ),  # fmt: skip
            "Queue": _obj(
                ["name", "messages", "by_priority", "consumers"],
                name=_STR,
                messages=_NINT,
                by_priority={"type": "object", "additionalProperties": {"type": "integer"}},
                consumers={"type": "array", "items": _STR},
                error=_STR,
            ),  # fmt: skip
            "Stats": _obj(
                ["window", "step", "points"],
                window={"type": "integer"},
                step={"type": "integer"},
                points={"type": "array", "items": point},
            ),  # fmt: skip
            "ActionResult": _obj(
                ["ok", "message", "replies"], ok={"type": "boolean"}, message=_STR, replies={"type": "object"}
            ),  # fmt: skip
        },
        "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer"},
        },
    }


def schema() -> dict[str, Any]:
    task_id = _path("task_id", "A task id.")
    worker = _path("name", "A worker's node name (celery@host).")
    queue = _path("name", "A queue name.")
    limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "Page size.")
    offset = _query("offset", {"type": "integer", "minimum": 0, "maximum": 10_000_000, "default": 0}, "Rows to skip.")
    filters = [
        _query("state", {"enum": list(STATES)}, "Only tasks in this state."),
        _query("name", _STR, "Only tasks with this name."),
        _query("worker", _STR, "Only tasks run by this worker."),
        _query("search", _STR, "A task id or its first characters."),
    ]
    window = _query("window", {"type": "integer", "minimum": 10, "maximum": 86400, "default": 900}, "Seconds back.")
    step = _query(
        "step",
        {"type": "integer", "minimum": 1, "maximum": 3600, "default": 10},
        "Seconds per point (made larger if there would be more than 1000 points).",
    )
    revoke_body = _obj([], terminate={"type": "boolean"}, signal=_STR)
    retried = _obj(["ok", "message", "replies", "task_id"], ok={"type": "boolean"}, message=_STR,
                   replies={"type": "object"}, task_id=_STR)  # fmt: skip
    n_body = _obj([], n={"type": "integer", "minimum": 1, "maximum": 1000})
    rate_body = _obj(["task_name"], task_name={"type": "string", "minLength": 1},
                     rate_limit={"type": ["string", "integer", "null"]})  # fmt: skip
    purged = _obj(["ok", "message", "replies", "purged"], ok={"type": "boolean"}, message=_STR,
                  replies={"type": "object"}, purged={"type": "integer"})  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "celeriac dashboard", "version": __version__},
        "security": [{"basic": []}, {"bearer": []}, {}],
        "paths": {
            "/api/workers": _get(
                "Workers seen in events", _obj(["workers"], workers={"type": "array", "items": _ref("Worker")})
            ),  # fmt: skip
            "/api/workers/{name}": _get("One worker", _ref("Worker"), [worker], missing=True),
            "/api/tasks": _get("A page of tasks, newest first", _ref("TaskPage"), [*filters, limit, offset]),
            "/api/tasks/{task_id}": _get("One task with its children", _ref("Task"), [task_id], missing=True),
            "/api/queues": _get(
                "Queue lengths and consumers", _obj(["queues"], queues={"type": "array", "items": _ref("Queue")})
            ),  # fmt: skip
            "/api/stats": _get(
                "Throughput, failures and runtime percentiles over time", _ref("Stats"), [window, step]
            ),  # fmt: skip
            "/api/csrf": _get(
                "The CSRF token for actions (also set as the celeriac_csrf cookie)", _obj(["token"], token=_STR)
            ),  # fmt: skip
            "/api/tasks/{task_id}/revoke": _post("Revoke (and optionally terminate) a task", revoke_body, [task_id]),
            "/api/tasks/{task_id}/retry": _post("Send a finished task again, as a new task", None, [task_id], retried),
            "/api/workers/{name}/rate-limit": _post("Set a task's rate limit on a worker", rate_body, [worker]),
            "/api/workers/{name}/pool/grow": _post("Add pool processes/threads", n_body, [worker]),
            "/api/workers/{name}/pool/shrink": _post("Remove pool processes/threads", n_body, [worker]),
            "/api/workers/{name}/shutdown": _post("Warm shutdown of a worker", None, [worker]),
            "/api/queues/{name}/purge": _post("Delete every waiting message of a queue", None, [queue], purged),
        },
        "components": _components(),
    }
