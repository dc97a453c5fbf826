"""The dashboard's web layer without a broker: auth, CSRF, escaping, headers, the bind rule, package data."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from celeriac import Celery
from celeriac.dashboard import Auth, InsecureBind, check_bind, create_app
from celeriac.dashboard.security import scrub

PROBE = "<script>alert(1)</script>"


class Client:
    """Requests straight into the ASGI app (no server, no lifespan: the event reader doesn't start)."""

    def __init__(self, web: Starlette) -> None:
        self.web = web

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.web)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                return await http.request(method, path, **kwargs)

        # A thread of its own: another test's event loop may be running in this one (Playwright's).
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, send()).result()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def client(tmp_path: Path, auth: str | None = None) -> Client:
    app = Celery("t", broker="redis://user:hunter2@127.0.0.1:1/0")
    web = create_app(app, db_path=str(tmp_path / "h.db"), auth=Auth.parse(auth))
    web.state.ctx.store.record([
        {"type": "task-received", "uuid": "t1", "timestamp": 5.0, "hostname": "w@h", "name": "tasks.echo",
         "args": repr((PROBE,)), "kwargs": "{}"},
        {"type": "task-failed", "uuid": "t1", "timestamp": 6.0, "hostname": "w@h",
         "exception": f"ValueError({PROBE!r})", "traceback": f"Traceback ...\nValueError: {PROBE}"},
    ])  # fmt: skip
    return Client(web)


def test_task_data_is_escaped_in_the_server_rendered_page(tmp_path: Path) -> None:
    page = client(tmp_path).get("/tasks/t1")
    assert page.status_code == 200
    assert PROBE not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "hunter2" not in page.text and "redis://user:**@127.0.0.1:1/0" in page.text


def test_unknown_task_page_and_api_404(tmp_path: Path) -> None:
    web = client(tmp_path)
    assert web.get("/tasks/nope").status_code == 404
    missing = web.get("/api/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}


def test_without_credentials_everything_but_health_is_401(tmp_path: Path) -> None:
    web = client(tmp_path, auth="admin:s3cret")
    for path in ("/workers", "/tasks/t1", "/api/tasks", "/api/openapi.json", "/metrics", "/static/dashboard.js"):
        answer = web.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Basic realm=")
    assert web.get("/healthz").status_code == 200
    good = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    bad = "Basic " + base64.b64encode(b"admin:wrong").decode()
    assert web.get("/api/tasks", headers={"Authorization": bad}).status_code == 401
    assert web.get("/api/tasks", headers={"Authorization": good}).json()["total"] == 1


def test_a_token_works_as_bearer_or_as_a_basic_password(tmp_path: Path) -> None:
    web = client(tmp_path, auth="tok-123")
    assert web.get("/api/tasks", headers={"Authorization": "Bearer tok-123"}).status_code == 200
    assert web.get("/api/tasks", headers={"Authorization": "Bearer tok-124"}).status_code == 401
    basic = "Basic " + base64.b64encode(b"anyone:tok-123").decode()
    assert web.get("/api/tasks", headers={"Authorization": basic}).status_code == 200


def test_actions_need_the_csrf_header_matching_the_cookie(tmp_path: Path) -> None:
    web = client(tmp_path)
    assert web.post("/api/tasks/t1/retry").status_code == 403
    page = web.get("/tasks")
    token = page.cookies["celeriac_csrf"]
    assert f'<meta name="csrf-token" content="{token}">' in page.text
    assert "samesite=strict" in page.headers["set-cookie"].lower()
    cookie = {"Cookie": f"celeriac_csrf={token}"}
    assert web.post("/api/tasks/t1/retry", headers={"X-CSRF-Token": "other", **cookie}).status_code == 403
    assert web.post("/api/tasks/t1/retry", headers={"X-CSRF-Token": token}).status_code == 403  # no cookie
    # With the right token the request goes through to the handler (which checks its input).
    answer = web.post("/api/tasks/t1/revoke", headers={"X-CSRF-Token": token, **cookie}, json={"terminate": "yes"})
    assert answer.status_code == 400 and "terminate must be" in answer.json()["error"]
    unknown = web.post("/api/workers/w@h/pool/grow", headers={"X-CSRF-Token": token, **cookie}, json={"n": 1})
    assert unknown.status_code == 404  # no broadcast to a worker never seen


def test_non_loopback_binds_need_auth() -> None:
    for address in ("127.0.0.1", "localhost", "::1"):
        check_bind(address, None)
    with pytest.raises(InsecureBind, match="refusing to serve the dashboard on '0.0.0.0' without authentication"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", Auth.parse("a:b"))
    with pytest.raises(ValueError):
        Auth.parse("user:")
    assert Auth.parse("u:p:q") == Auth("u", "p:q")


def test_scrub_removes_the_password_from_messages() -> None:
    url = "redis://user:p%40ss@host:6379/0"
    assert scrub("AUTH failed for p@ss and p%40ss", url) == "AUTH failed for ** and **"
    assert scrub("nothing here", "redis://host/0") == "nothing here"


def test_templates_and_assets_are_package_data() -> None:
    root = resources.files("celeriac.dashboard")
    for name in ("base.html", "workers.html", "tasks.html", "task.html", "queues.html", "charts.html"):
        assert (root / "templates" / name).is_file(), name
    for name in ("dashboard.js", "dashboard.css"):
        assert (root / "static" / name).is_file(), name
