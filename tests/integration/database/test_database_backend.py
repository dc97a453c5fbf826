"""The db+ result backend on PostgreSQL, MariaDB and SQLite: Celery's tables, a real worker, Celery reading them."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest
import sqlalchemy as sa

from celeriac import Celery
from tests.conftest import Project
from tests.integration.database.conftest import Database

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _app(database: Database, **extra: object) -> Celery:
    return Celery("dbtest", broker="memory://", backend=database.url, **database.settings, **extra)


def test_store_load_forget_and_success_is_final(database: Database) -> None:
    app = _app(database)
    backend = app.backend
    assert app.AsyncResult("nobody").state == "PENDING"
    backend.store_result("t1", None, "STARTED")
    assert app.AsyncResult("t1").state == "STARTED"
    backend.store_result("t1", {"answer": [4, 2]}, "SUCCESS")
    backend.store_result("t1", ValueError("late duplicate"), "FAILURE")
    result = app.AsyncResult("t1")
    assert result.get(timeout=5) == {"answer": [4, 2]}
    assert result.date_done is not None
    backend.store_result("t2", KeyError("missing"), "FAILURE", traceback="Traceback: ...")
    failed = app.AsyncResult("t2")
    with pytest.raises(KeyError):
        failed.get(timeout=5)
    assert failed.traceback == "Traceback: ..."
    failed.forget()
    assert app.AsyncResult("t2").state == "PENDING"
    backend.save_group("g1", (("g1", None), [(("t1", None), None)]))  # type: ignore[attr-defined]
    assert backend.restore_group("g1") == (("g1", None), [(("t1", None), None)])  # type: ignore[attr-defined]
    backend.delete_group("g1")  # type: ignore[attr-defined]
    assert backend.restore_group("g1") is None  # type: ignore[attr-defined]


def test_cleanup_deletes_expired_results(database: Database) -> None:
    app = _app(database, result_expires=60)
    backend = app.backend
    backend.store_result("old", 1, "SUCCESS")
    backend.store_result("new", 2, "SUCCESS")
    task_table = backend._task  # type: ignore[attr-defined]
    with backend.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(sa.update(task_table).where(task_table.c.task_id == "old").values(date_done=datetime(2000, 1, 1)))
    assert backend.cleanup() == 1  # type: ignore[attr-defined]
    assert app.AsyncResult("old").state == "PENDING"
    assert app.AsyncResult("new").get(timeout=5) == 2


def test_celery_reads_celeriac_results_and_back(database: Database) -> None:
    ours = _app(database, result_extended=True)
    ours.backend.store_result("from-celeriac", [1, "two"], "SUCCESS")
    ours.backend.store_result("failed-celeriac", ZeroDivisionError("zero"), "FAILURE")
    # Celery in its own process: its SQLAlchemy models are module-level and configured once per process.
    code = f"""
import celery
app = celery.Celery("dbtest", broker="memory://", backend={database.url!r}, **{database.settings!r})
assert app.AsyncResult("from-celeriac").get(timeout=5) == [1, "two"]
try:
    app.AsyncResult("failed-celeriac").get(timeout=5)
except ZeroDivisionError:
    pass
else:
    raise SystemExit("no ZeroDivisionError")
app.backend.store_result("from-celery", {{"x": 1}}, "SUCCESS")
app.backend.store_result("failed-celery", ValueError("bad"), "FAILURE")
print("celery ok")
"""
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "celery ok" in done.stdout, done.stderr
    assert ours.AsyncResult("from-celery").get(timeout=5) == {"x": 1}
    with pytest.raises(ValueError, match="bad"):
        ours.AsyncResult("failed-celery").get(timeout=5)


def test_the_tutorial_with_a_database_backend(project: Project, database: Database) -> None:
    settings = "".join(f"app.conf.{key} = {value!r}\n" for key, value in database.settings.items())
    project.write(
        "tasks.py",
        f"""
from celeriac import Celery

app = Celery("tasks", backend={database.url!r})
{settings}

@app.task
def add(x, y):
    return x + y
""",
    )
    project.result_backend = database.url
    assert project.monkeypatch is not None
    project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", database.url)
    worker = project.worker("tasks", "-c", "2")
    from tasks import add  # type: ignore[import-not-found]

    result = add.delay(4, 4)
    assert result.get(timeout=30) == 8
    assert result.ready() and result.state == "SUCCESS"
    assert "DatabaseBackend" in repr(result.backend)
    assert worker.stop() == 0


def test_purge_results_command(project: Project, database: Database) -> None:
    settings = "".join(f"app.conf.{key} = {value!r}\n" for key, value in database.settings.items())
    project.write(
        "tasks.py", f"from celeriac import Celery\napp = Celery('tasks', backend={database.url!r})\n{settings}"
    )
    project.result_backend = database.url
    assert project.monkeypatch is not None
    project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", database.url)
    from tasks import app  # type: ignore[import-not-found]

    app.backend.store_result("ancient", 1, "SUCCESS")
    table = app.backend._task
    with app.backend.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.task_id == "ancient").values(date_done=datetime(2000, 1, 1)))
    app.backend.store_result("fresh", 2, "SUCCESS")
    done = project.run("-A", "tasks", "purge-results")
    assert done.returncode == 0, done.stderr
    assert "Deleted 1 expired result." in done.stdout
    assert app.AsyncResult("ancient").state == "PENDING" and app.AsyncResult("fresh").get(timeout=5) == 2
