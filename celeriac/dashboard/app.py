"""The dashboard's Starlette application: pages, the JSON API, ``/metrics`` and the health endpoints.

``create_app(celery_app, db_path=...)`` builds it; the monitor (event reader and worker
poller) starts with the application's lifespan and stops with it. Pages are Jinja2
templates with autoescaping; the script in ``static/dashboard.js`` fills and refreshes
them from the JSON API, writing task data with ``textContent`` only.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..config import mask_url
from . import api
from .context import Context
from .metrics import CONTENT_TYPE, Metrics
from .monitor import Monitor
from .queues import QueueLengths
from .security import Auth, AuthMiddleware, csrf_token, scrub, set_csrf_cookie
from .store import TaskStore

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["DB_FILENAME", "create_app", "default_db_path"]

HERE = Path(__file__).parent
DB_FILENAME = "celeriac-dashboard.db"
READY_TIMEOUT = 3.0
SECURITY_HEADERS = [
    # No inline script or style anywhere: even a missed escape could not run code.
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]  # fmt: skip


def default_db_path(app: Celery) -> str:
    """Beside the embedded SQLite store when that is the broker, else in the current directory."""
    from .._sqlite import path_from_url

    url = app.broker_url
    directory = os.path.dirname(path_from_url(url)) if url.startswith("sqlite:") else os.getcwd()
    return os.path.join(directory, DB_FILENAME)


def create_app(
    app: Celery,
    *,
    db_path: str | None = None,
    auth: Auth | None = None,
    max_tasks: int = 200_000,
    heartbeat_expires: float = 10.0,
) -> Starlette:
    store = TaskStore(db_path or default_db_path(app), max_tasks=max_tasks)
    metrics = Metrics()
    monitor = Monitor(app, store, metrics, heartbeat_expires=heartbeat_expires)
    queues = QueueLengths(app, monitor.consumers)
    metrics.watch(monitor.workers, queues.snapshot)
    ctx = Context(app, store, monitor, queues, metrics, auth, mask_url(app.broker_url))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(monitor.start)
        try:
            yield
        finally:
            await run_in_threadpool(monitor.stop)

    routes = [
        Route("/", lambda request: RedirectResponse("/workers")),
        *(Route(f"/{page}", _page(page)) for page in ("workers", "tasks", "queues", "charts")),
        Route("/tasks/{task_id}", task_page),
        Route("/metrics", metrics_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *api.routes(),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    web = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders), Middleware(AuthMiddleware, auth=auth)],
    )
    web.state.ctx = ctx
    # Autoescaping on for every template: task arguments and results are untrusted text.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    web.state.templates = Jinja2Templates(env=env)
    return web


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


async def http_error(request: Request, exc: Exception) -> Response:
    """404s and 405s as JSON under /api (what API clients parse), as text elsewhere."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _render(request: Request, template: str, **values: Any) -> Response:
    ctx = _ctx(request)
    token = csrf_token(request)
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(
        request,
        template,
        {"csrf_token": token, "broker_url": ctx.broker_url, "version": __version__, **values},
    )
    set_csrf_cookie(response, token)
    return response


def _page(name: str) -> Any:
    def page(request: Request) -> Response:
        return _render(request, f"{name}.html", page=name)

    return page


def task_page(request: Request) -> Response:
    ctx = _ctx(request)
    task_id = request.path_params["task_id"]
    found = ctx.store.get(task_id)
    children = ctx.store.children(task_id) if found else []
    response = _render(request, "task.html", page="task", task_id=task_id, task=found, children=children)
    if found is None:
        response.status_code = 404
    return response


def metrics_endpoint(request: Request) -> Response:
    return Response(_ctx(request).metrics.exposition(), media_type=CONTENT_TYPE)


def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    ctx = _ctx(request)
    problems = []
    try:
        await asyncio.wait_for(run_in_threadpool(_ping_broker, ctx.app), READY_TIMEOUT)
    except asyncio.TimeoutError:
        problems.append(f"broker {ctx.broker_url}: no answer within {READY_TIMEOUT:g}s")
    except Exception as exc:
        problems.append(f"broker {ctx.broker_url}: {type(exc).__name__}: {scrub(str(exc), ctx.app.broker_url)}")
    if not ctx.monitor.alive:
        problems.append("the event reader has stopped")
    if problems:
        return JSONResponse({"ready": False, "problems": problems}, status_code=503)
    return JSONResponse({"ready": True, "broker": ctx.broker_url})


def _ping_broker(app: Celery) -> None:
    broker = app.connection_for_write()
    try:
        broker.queue_size(app.conf.task_default_queue)
    except NotImplementedError:
        pass  # connected (open() succeeded) and that is all this broker can tell
