"""The JSON API against its OpenAPI schema: real answers validated with jsonschema, then fuzzed with schemathesis."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema
import pytest
import schemathesis

from celeriac.dashboard.openapi import schema as openapi_schema
from tests.conftest import Project

from .conftest import PASSWORD, DashboardProcess

pytestmark = pytest.mark.timeout(180)

HOST = socket.gethostname()
SCHEMA = openapi_schema()
TOKEN = "api-test-token"


def request(dashboard: DashboardProcess, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(dashboard.url + path, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    assert PASSWORD.encode() not in raw
    return status, json.loads(raw)


def validate(path: str, method: str, status: int, body: Any) -> None:
    """``body`` matches what the schema promises for this operation and status."""
    template = next(p for p in SCHEMA["paths"] if _matches(p, path.split("?")[0]))
    response = SCHEMA["paths"][template][method]["responses"][str(status)]
    schema = dict(response["content"]["application/json"]["schema"], components=SCHEMA["components"])
    jsonschema.Draft202012Validator(schema).validate(body)


def _matches(template: str, path: str) -> bool:
    a, b = template.split("/"), path.split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


def call(dashboard: DashboardProcess, method: str, path: str, body: Any = None, expect: int = 200,
         headers: dict[str, str] | None = None) -> Any:  # fmt: skip
    status, answer = request(dashboard, method, path, body, headers)
    assert status == expect, (path, status, answer)
    validate(path, method.lower(), status, answer)
    return answer


def csrf_headers(dashboard: DashboardProcess) -> dict[str, str]:
    with urllib.request.urlopen(dashboard.url + "/api/csrf", timeout=10) as response:
        token = json.load(response)["token"]
        cookie = response.headers["set-cookie"].split(";")[0]
    assert "samesite=strict" in response.headers["set-cookie"].lower()
    return {"X-CSRF-Token": token, "Cookie": cookie}


def until(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_every_endpoint_answers_as_its_schema_says(workers: list[Any], dashboard: DashboardProcess) -> None:
    from tasks import add, boom, fan_out  # type: ignore[import-not-found]

    parent = fan_out.delay(3)
    child_ids = parent.get(timeout=30)
    add.delay(1, 2).get(timeout=30)
    failed = boom.delay("x")
    until(lambda: call(dashboard, "GET", f"/api/tasks?search={failed.id}")["total"] == 1)
    until(lambda: len([w for w in call(dashboard, "GET", "/api/workers")["workers"] if w["concurrency"]]) == 2)

    listed = call(dashboard, "GET", "/api/workers")["workers"]
    assert {w["hostname"] for w in listed} == {f"alpha@{HOST}", f"beta@{HOST}"}
    one = call(dashboard, "GET", f"/api/workers/alpha@{HOST}")
    assert one["online"] and one["concurrency"] == 2 and one["queues"] == ["celery"]
    call(dashboard, "GET", "/api/workers/nobody@nowhere", expect=404)

    until(lambda: call(dashboard, "GET", f"/api/tasks/{parent.id}")["children"].__len__() == 3)
    detail = call(dashboard, "GET", f"/api/tasks/{parent.id}")
    assert sorted(c["uuid"] for c in detail["children"]) == sorted(child_ids)
    child = call(dashboard, "GET", f"/api/tasks/{child_ids[0]}")
    assert child["parent_id"] == parent.id and child["root_id"] == parent.id
    until(lambda: call(dashboard, "GET", f"/api/tasks/{failed.id}")["state"] == "FAILURE")
    assert "ValueError: boom: x" in call(dashboard, "GET", f"/api/tasks/{failed.id}")["traceback"]
    call(dashboard, "GET", "/api/tasks/no-such-task", expect=404)

    page = call(dashboard, "GET", "/api/tasks?name=tasks.add&limit=2")
    assert page["total"] == 4 and len(page["tasks"]) == 2 and {t["name"] for t in page["tasks"]} == {"tasks.add"}
    assert call(dashboard, "GET", "/api/tasks?state=FAILURE")["total"] == 1
    assert call(dashboard, "GET", f"/api/tasks?worker=nobody@{HOST}")["total"] == 0
    call(dashboard, "GET", "/api/tasks?limit=0", expect=400)
    call(dashboard, "GET", "/api/tasks?state=DONE", expect=400)

    queues = call(dashboard, "GET", "/api/queues")["queues"]
    celery = next(q for q in queues if q["name"] == "celery")
    assert celery["messages"] == 0 and sorted(celery["consumers"]) == [f"alpha@{HOST}", f"beta@{HOST}"]
    assert set(celery["by_priority"]) == {"0", "3", "6", "9"}
    stats = call(dashboard, "GET", "/api/stats?window=60&step=5")
    assert sum(p["succeeded"] for p in stats["points"]) == 5 and sum(p["failed"] for p in stats["points"]) == 1
    assert call(dashboard, "GET", "/api/stats?window=86400&step=1")["step"] == 87  # at most 1000 points
    call(dashboard, "GET", "/api/stats?window=5", expect=400)
    status, served = request(dashboard, "GET", "/api/openapi.json")
    assert status == 200 and served == json.loads(json.dumps(SCHEMA))
    jsonschema.Draft202012Validator.check_schema(dict(served["components"]["schemas"]["Task"]))


def test_actions_need_the_csrf_token_and_do_what_they_say(workers: list[Any], dashboard: DashboardProcess) -> None:
    from tasks import app, boom, sleepy  # type: ignore[import-not-found]

    alpha, beta = f"alpha@{HOST}", f"beta@{HOST}"
    until(lambda: len(call(dashboard, "GET", "/api/workers")["workers"]) == 2)
    call(dashboard, "POST", f"/api/workers/{alpha}/pool/grow", {"n": 1}, expect=403)
    call(dashboard, "POST", f"/api/workers/{alpha}/pool/grow", {"n": 1}, expect=403,
         headers={"X-CSRF-Token": "guess", "Cookie": "celeriac_csrf=other"})  # fmt: skip
    headers = csrf_headers(dashboard)

    grown = call(dashboard, "POST", f"/api/workers/{alpha}/pool/grow", {"n": 2}, headers=headers)
    assert grown["replies"][alpha]["ok"]
    assert app.control.inspect(destination=[alpha]).stats()[alpha]["pool"]["max-concurrency"] == 4
    call(dashboard, "POST", f"/api/workers/{alpha}/pool/shrink", {"n": 1}, headers=headers)
    assert app.control.inspect(destination=[alpha]).stats()[alpha]["pool"]["max-concurrency"] == 3
    call(dashboard, "POST", f"/api/workers/{alpha}/pool/grow", {"n": "many"}, expect=400, headers=headers)
    call(dashboard, "POST", "/api/workers/nobody@nowhere/shutdown", expect=404, headers=headers)

    limited = call(dashboard, "POST", f"/api/workers/{alpha}/rate-limit",
                   {"task_name": "tasks.add", "rate_limit": "10/m"}, headers=headers)  # fmt: skip
    assert "new rate limit set successfully" in limited["replies"][alpha]["ok"]
    call(dashboard, "POST", f"/api/workers/{alpha}/rate-limit", {"rate_limit": "1/s"}, expect=400, headers=headers)

    # Purge: park messages where no worker reads them, then purge that queue from the API.
    for _ in range(3):
        sleepy.apply_async((0,), queue="parked")
    assert call(dashboard, "POST", "/api/queues/parked/purge", headers=headers)["purged"] == 3
    parked = [q for q in call(dashboard, "GET", "/api/queues")["queues"] if q["name"] == "parked"]
    assert parked[0]["messages"] == 0 and parked[0]["consumers"] == []

    failed = boom.delay("again")
    until(lambda: request(dashboard, "GET", f"/api/tasks/{failed.id}")[1].get("state") == "FAILURE")
    retried = call(dashboard, "POST", f"/api/tasks/{failed.id}/retry", headers=headers)
    assert retried["task_id"] != failed.id
    until(lambda: request(dashboard, "GET", f"/api/tasks/{retried['task_id']}")[1].get("args") == "('again',)")
    call(dashboard, "POST", "/api/tasks/no-such-task/retry", expect=404, headers=headers)

    long = sleepy.delay(60)
    until(lambda: request(dashboard, "GET", f"/api/tasks/{long.id}")[1].get("state") == "STARTED")
    call(dashboard, "POST", f"/api/tasks/{long.id}/revoke", {"terminate": "yes"}, expect=400, headers=headers)
    call(dashboard, "POST", f"/api/tasks/{long.id}/revoke", {"terminate": True}, headers=headers)
    until(lambda: request(dashboard, "GET", f"/api/tasks/{long.id}")[1].get("state") == "REVOKED")

    call(dashboard, "POST", f"/api/workers/{beta}/shutdown", headers=headers)
    until(lambda: workers[1].proc.poll() is not None)
    until(lambda: not call(dashboard, "GET", f"/api/workers/{beta}")["online"])


def test_metrics_and_health(workers: list[Any], dashboard: DashboardProcess) -> None:
    from tasks import add, boom  # type: ignore[import-not-found]

    add.delay(2, 2).get(timeout=30)
    boom.delay(1)
    sleepy_queue = "celery"

    def metrics() -> str:
        with urllib.request.urlopen(dashboard.url + "/metrics", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/plain")
            return str(response.read().decode())

    up = f'celeriac_worker_up{{worker="alpha@{HOST}"}} 1.0'
    text = until(lambda: next((m for m in [metrics()] if 'state="FAILURE"' in m and up in m), None))
    assert 'celeriac_tasks_total{name="tasks.add",state="SUCCESS"} 1.0' in text
    assert 'celeriac_tasks_total{name="tasks.boom",state="FAILURE"} 1.0' in text
    assert 'celeriac_task_runtime_seconds_count{name="tasks.add"} 1.0' in text
    assert f'celeriac_worker_up{{worker="alpha@{HOST}"}} 1.0' in text
    assert f'celeriac_queue_length{{queue="{sleepy_queue}"}} 0.0' in text
    assert PASSWORD not in text
    with urllib.request.urlopen(dashboard.url + "/healthz", timeout=10) as response:
        assert response.status == 200 and response.read() == b"ok\n"
    status, ready = request(dashboard, "GET", "/readyz")
    assert status == 200 and ready["ready"] is True and PASSWORD not in json.dumps(ready)
    assert ready["broker"].startswith("redis://default:**@")


def test_readyz_fails_when_the_broker_is_unreachable(dash_project: Project, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    url = f"redis://default:{PASSWORD}@127.0.0.1:{dead_port}/0"
    proc = DashboardProcess(dash_project, "--db", str(tmp_path / "h.db"),
                            env=dash_project.env(CELERIAC_BROKER_URL=url, CELERIAC_RESULT_BACKEND=url))  # fmt: skip
    proc.start(ready=False)
    try:
        status, body = proc.get("/readyz")
        assert status == 503 and body["ready"] is False and PASSWORD not in json.dumps(body)
        assert proc.get("/healthz")[0] == 200
    finally:
        proc.stop()
    assert PASSWORD not in proc.output


# -- schemathesis: every operation, generated inputs, against a dashboard with no workers ----------
@pytest.fixture(scope="module")
def idle_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardProcess]:
    from .conftest import TASKS, redis_prefix_cleanup

    path = tmp_path_factory.mktemp("schemathesis")
    project = Project(path)
    project.broker_url = project.result_backend = f"redis://default:{PASSWORD}@127.0.0.1:6379/12"
    prefix = f"dash-fuzz-{time.time_ns()}:"
    project.write("tasks.py", TASKS.format(prefix=prefix))
    proc = DashboardProcess(project, "--db", str(path / "h.db"), "--auth", TOKEN).start()
    yield proc
    proc.stop()
    redis_prefix_cleanup(prefix)
    assert PASSWORD not in proc.output


@pytest.mark.timeout(600)
def test_the_api_matches_its_openapi_schema(idle_dashboard: DashboardProcess) -> None:
    """Each operation with generated inputs (valid and not): no 5xx, and status, headers, body as documented."""
    loaded = schemathesis.openapi.from_dict(SCHEMA)
    headers = {"Authorization": f"Bearer {TOKEN}"}  # a bearer token needs no CSRF token: the POSTs run too
    failures: list[str] = []
    for result in loaded.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(max_examples=15, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
        @hypothesis.given(case=operation.as_strategy())
        def check(case: Any) -> None:
            case.call_and_validate(base_url=idle_dashboard.url, headers=headers)

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_a_restarted_dashboard_keeps_the_history(workers: list[Any], dash_project: Project, tmp_path: Path) -> None:
    from tasks import add  # type: ignore[import-not-found]

    db = str(tmp_path / "kept.db")
    first = DashboardProcess(dash_project, "--db", db).start()
    try:
        result = add.delay(20, 22)
        assert result.get(timeout=30) == 42
        until(lambda: request(first, "GET", f"/api/tasks/{result.id}")[1].get("state") == "SUCCESS")
    finally:
        first.stop()
    second = DashboardProcess(dash_project, "--db", db).start()
    try:
        kept = call(second, "GET", f"/api/tasks/{result.id}")
        assert (kept["state"], kept["result"], kept["args"]) == ("SUCCESS", "42", "(20, 22)")
    finally:
        second.stop()
