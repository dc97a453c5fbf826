"""The dashboard in headless Chromium, against two real workers on Redis.

Set ``DASHBOARD_SCREENSHOTS=1`` to (re)write the screenshots in docs/img/.
"""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project

from .conftest import PASSWORD, ROOT, DashboardProcess

pytestmark = [
    pytest.mark.timeout(180),
    # Playwright's sync API keeps an event loop running in this thread; result.get() here is fine.
    pytest.mark.filterwarnings("ignore:AsyncResult.get\\(\\) blocks the running event loop:RuntimeWarning"),
]

HOST = socket.gethostname()
SHOTS = ROOT / "docs" / "img" if os.environ.get("DASHBOARD_SCREENSHOTS") else None


def shot(page: Any, name: str, tmp_path: Path, full_page: bool = False) -> None:
    page.screenshot(path=str((SHOTS or tmp_path) / name), full_page=full_page)


def api(dashboard: DashboardProcess, path: str) -> Any:
    with urllib.request.urlopen(dashboard.url + path, timeout=10) as response:
        return json.load(response)


def wait_state(page: Any, state: str, timeout: float = 30_000) -> None:
    try:
        page.locator(f'[data-field="state"]:text-is("{state}")').wait_for(timeout=timeout)
    except Exception as exc:
        shown = page.locator('[data-field="state"]').all_inner_texts() or page.content()[:2000]
        raise AssertionError(f"state {state} not shown on {page.url}; the page shows {shown}") from exc


def test_workers_page_lists_both_workers(workers: list[Any], dashboard: DashboardProcess, page: Any,
                                         tmp_path: Path) -> None:  # fmt: skip
    page.goto(dashboard.url + "/workers")
    for name in ("alpha", "beta"):
        row = page.locator(f'tr[data-worker="{name}@{HOST}"]')
        row.locator(".badge.online").wait_for()
    # Pool and concurrency come from inspect stats, polled every few seconds.
    page.locator(f'tr[data-worker="alpha@{HOST}"] td:nth-child(5):text-is("2")').wait_for(timeout=15_000)
    assert page.locator("#worker-summary").inner_text().startswith("2 online")
    assert PASSWORD not in page.content()
    from tasks import add  # type: ignore[import-not-found]

    for i in range(6):
        add.delay(i, i).get(timeout=30)
    # Counts come from the next heartbeat (every 2 s) and the history (cached for 2 s).
    page.locator(f'tr[data-worker="alpha@{HOST}"] td:nth-child(7):not(:text-is("0"))').wait_for(timeout=15_000)
    page.wait_for_timeout(2500)
    shot(page, "dashboard-workers.png", tmp_path)


def test_a_sent_task_appears_and_reaches_success_live(workers: list[Any], dashboard: DashboardProcess, page: Any,
                                                      tmp_path: Path) -> None:  # fmt: skip
    from tasks import boom, sleepy  # type: ignore[import-not-found]

    page.goto(dashboard.url + "/tasks")
    page.evaluate("window.__notReloaded = true")
    boom.delay("no luck")
    result = sleepy.delay(4)
    row = page.locator(f'tr[data-task="{result.id}"]')
    row.wait_for()
    page.locator(f'tr[data-task="{result.id}"][data-state="STARTED"]').wait_for(timeout=30_000)
    page.locator(f'tr[data-task="{result.id}"][data-state="SUCCESS"]').wait_for(timeout=30_000)
    assert page.evaluate("window.__notReloaded") is True  # updated in place, not by reloading
    assert row.locator("td").nth(1).inner_text() == "tasks.sleepy"
    assert row.locator("td").nth(3).inner_text() == "(4,)"
    assert re.match(r"\d\.\d{3} s", row.locator("td").nth(5).inner_text())  # ms below a second
    assert row.locator("td").nth(6).inner_text() in (f"alpha@{HOST}", f"beta@{HOST}")
    # Filters: by state, and by a prefix of the id.
    page.goto(dashboard.url + "/tasks?state=FAILURE")
    page.locator('#tasks tbody tr[data-state="FAILURE"]').first.wait_for()
    assert page.locator('#tasks tbody tr[data-state="SUCCESS"]').count() == 0
    page.goto(dashboard.url + f"/tasks?search={result.id[:8]}")
    page.locator(f'tr[data-task="{result.id}"]').wait_for()
    assert page.locator("#tasks tbody tr").count() == 1
    from tasks import add, fan_out

    more = [add.delay(i, i * 10) for i in range(5)] + [add.apply_async(kwargs={"x": "a", "y": "b"}), fan_out.delay(2)]
    for each in more:
        each.get(timeout=30)
    page.goto(dashboard.url + "/tasks")
    page.locator(f'tr[data-task="{more[-1].id}"][data-state="SUCCESS"]').wait_for()
    page.wait_for_timeout(1600)  # the children of fan_out too
    shot(page, "dashboard-tasks.png", tmp_path)


def test_a_failed_task_shows_its_traceback(workers: list[Any], dashboard: DashboardProcess, page: Any,
                                           tmp_path: Path) -> None:  # fmt: skip
    from tasks import boom  # type: ignore[import-not-found]

    result = boom.delay("bad input")
    page.goto(dashboard.url + f"/tasks/{result.id}")  # before its events arrive: the page waits for them
    wait_state(page, "FAILURE")
    traceback = page.locator('[data-field="traceback"]')
    traceback.locator("text=ValueError: boom: bad input").wait_for()
    assert "Traceback (most recent call last)" in traceback.inner_text()
    assert "ValueError" in page.locator('[data-field="exception"]').inner_text()
    shot(page, "dashboard-task.png", tmp_path, full_page=True)

    # Retry sends it again with the same arguments, as a new task.
    page.click('button[data-action="retry"]')
    page.click("#confirm-ok")
    page.wait_for_url(re.compile(r"/tasks/(?!" + result.id + ")[0-9a-f-]{36}$"))
    wait_state(page, "FAILURE")
    assert page.locator('[data-field="args"]').inner_text() == "('bad input',)"


def test_revoking_from_the_page_revokes_the_task(workers: list[Any], dashboard: DashboardProcess, page: Any) -> None:
    from tasks import sleepy  # type: ignore[import-not-found]

    result = sleepy.delay(60)
    page.goto(dashboard.url + f"/tasks/{result.id}")
    wait_state(page, "STARTED")
    page.click('button[data-action="terminate"]')
    assert page.locator("#confirm-text").inner_text().startswith(f"Revoke task {result.id}")
    page.click("#confirm-ok")
    page.locator("#flash.ok").wait_for()
    wait_state(page, "REVOKED")
    assert result.state == "REVOKED"


def test_a_cancelled_confirmation_does_nothing(workers: list[Any], dashboard: DashboardProcess, page: Any) -> None:
    from tasks import sleepy  # type: ignore[import-not-found]

    result = sleepy.delay(3)
    page.goto(dashboard.url + f"/tasks/{result.id}")
    wait_state(page, "STARTED")
    page.click('button[data-action="revoke"]')
    page.click("#confirm button.secondary")
    wait_state(page, "SUCCESS")
    assert result.get(timeout=30) == 3


def test_an_xss_probe_renders_as_text(workers: list[Any], dashboard: DashboardProcess, page: Any) -> None:
    from tasks import add  # type: ignore[import-not-found]

    probe = "<script>window.__xss = 1</script>"
    img = "<img src=x onerror='window.__xss = 2'>"
    result = add.delay(probe, img)
    assert result.get(timeout=30) == probe + img
    page.goto(dashboard.url + "/tasks")
    row = page.locator(f'tr[data-task="{result.id}"][data-state="SUCCESS"]')
    row.wait_for()
    assert probe in row.locator("td").nth(3).inner_text()
    assert row.locator("script, img").count() == 0
    page.goto(dashboard.url + f"/tasks/{result.id}")  # rendered on the server first, then by the script
    wait_state(page, "SUCCESS")
    assert probe in page.locator('[data-field="args"]').inner_text()
    assert img in page.locator('[data-field="result"]').inner_text()
    assert page.locator("#task-detail script, #task-detail img").count() == 0
    assert page.evaluate("window.__xss") is None


def test_unauthenticated_access_on_a_non_local_bind_is_refused(dash_project: Project, browser: Any,
                                                               tmp_path: Path) -> None:  # fmt: skip
    refused = dash_project.run("dashboard", "--address", "0.0.0.0", "--port", "5599", timeout=30)
    assert refused.returncode != 0
    assert "refusing to serve the dashboard on '0.0.0.0' without authentication" in refused.stderr
    assert "--auth" in refused.stderr

    dashboard = DashboardProcess(dash_project, "--address", "0.0.0.0", "--db", str(tmp_path / "h.db"),
                                 env=dash_project.env(CELERIAC_DASHBOARD_AUTH="admin:hunter2")).start()  # fmt: skip
    try:
        anonymous = browser.new_context()
        with pytest.raises(Exception, match="ERR_INVALID_AUTH_CREDENTIALS"):
            anonymous.new_page().goto(dashboard.url + "/workers")  # the login prompt, dismissed
        for path in ("/workers", "/tasks", "/api/workers", "/api/tasks", "/metrics", "/static/dashboard.js"):
            response = anonymous.request.get(dashboard.url + path)
            assert response.status == 401, path
            assert response.headers["www-authenticate"].startswith("Basic")
        assert anonymous.request.get(dashboard.url + "/healthz").status == 200  # probes need no credentials
        anonymous.close()
        wrong = browser.new_context(http_credentials={"username": "admin", "password": "nope"})
        assert wrong.request.get(dashboard.url + "/api/workers").status == 401
        wrong.close()
        allowed = browser.new_context(http_credentials={"username": "admin", "password": "hunter2"})
        tab = allowed.new_page()
        assert tab.goto(dashboard.url + "/workers").status == 200
        tab.locator("#workers").wait_for()
        allowed.close()
    finally:
        dashboard.stop()
    assert "hunter2" not in dashboard.output and PASSWORD not in dashboard.output


def test_worker_and_queue_actions_from_the_pages(workers: list[Any], dashboard: DashboardProcess, page: Any) -> None:
    from tasks import app, sleepy  # type: ignore[import-not-found]

    alpha = f"alpha@{HOST}"
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(dashboard.url + "/workers")
    row = page.locator(f'tr[data-worker="{alpha}"]')
    row.locator('td:nth-child(5):text-is("2")').wait_for(timeout=15_000)
    row.locator("button", has_text="Grow").click()
    page.fill('#confirm input[name="n"]', "2")
    page.click("#confirm-ok")
    page.locator("#flash.ok", has_text=f"pool of {alpha} grown by 2").wait_for()
    row.locator('td:nth-child(5):text-is("4")').wait_for(timeout=15_000)  # seen by the next stats poll
    row.locator("button", has_text="Rate limit").click()
    page.fill('#confirm input[name="task_name"]', "tasks.add")
    page.fill('#confirm input[name="rate_limit"]', "5/s")
    page.click("#confirm-ok")
    page.locator("#flash.ok", has_text="rate limit of tasks.add").wait_for()

    for _ in range(4):
        sleepy.apply_async((0,), queue="parked")
    page.goto(dashboard.url + "/queues")
    page.locator('tr[data-queue="celery"] td:nth-child(4)', has_text=alpha).wait_for()
    assert app.connection_for_write().queue_size("parked") == 4
    # "parked" has no consumer, so it is listed once it was purged (or is configured).
    page.evaluate("fetch('/api/queues/parked/purge', {method: 'POST'}).then(r => window.__noCsrf = r.status)")
    page.wait_for_function("window.__noCsrf !== undefined")
    assert page.evaluate("window.__noCsrf") == 403  # a POST without the token is refused
    assert app.connection_for_write().queue_size("parked") == 4
    page.locator('tr[data-queue="celery"] button', has_text="Purge").click()
    page.click("#confirm-ok")
    page.locator("#flash.ok", has_text="from celery").wait_for()

    row_shutdown = f'tr[data-worker="beta@{HOST}"]'
    page.goto(dashboard.url + "/workers")
    page.locator(row_shutdown + " button", has_text="Shut down").click()
    page.click("#confirm-ok")
    page.locator(row_shutdown + " .badge.offline").wait_for(timeout=30_000)
    assert workers[1].proc.wait(30) == 0

    page.goto(dashboard.url + "/charts")
    page.locator("#chart-throughput svg polyline").wait_for(state="attached")
    assert page.locator("#chart-runtime svg polyline").count() == 3
    assert [e for e in errors if "status of 403" not in e] == []  # the 403 is the token-less POST above
