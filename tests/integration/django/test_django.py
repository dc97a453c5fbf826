"""Celery's Django guide with celeriac: migrate, autodiscovered shared tasks, the django-db backend, connection hygiene.

Runs on SQLite and PostgreSQL (see conftest.py): every test below runs against a real
``celeriac -A proj worker`` (prefork) and real clients in fresh interpreters.
"""

from __future__ import annotations

import gc
import sys

import psycopg
import pytest

from celeriac import Celery
from celeriac.contrib.django import fixup as fixup_module
from celeriac.contrib.django.fixup import DEBUG_WARNING, DjangoFixup
from celeriac.contrib.django.task import DjangoTask
from celeriac.exceptions import FixupWarning
from celeriac.task import Task
from tests.integration.django.conftest import PG_ADMIN_URL, DjangoProject


def test_migrate_creates_the_tables_and_the_committed_migration_is_current(django_project: DjangoProject) -> None:
    assert "Applying celeriac_results.0001_initial... OK" in django_project.migrate_output
    tables = django_project.client(
        """
        from django.db import connection

        print(json.dumps(sorted(connection.introspection.table_names())))
        """
    )
    assert {"celeriac_results_taskresult", "celeriac_results_groupresult", "demoapp_widget"} <= set(tables)
    check = django_project.manage("makemigrations", "--check", "--dry-run", "celeriac_results")
    assert check.returncode == 0 and "No changes detected" in check.stdout, check.stdout + check.stderr


def test_worker_discovers_shared_tasks_of_installed_apps(django_project: DjangoProject) -> None:
    output = django_project.worker.output
    assert ".> results:     django-db" in output
    assert "  . demoapp.tasks.add" in output  # INSTALLED_APPS names an AppConfig path, not the package
    assert "  . proj.celery.debug_task" in output
    assert ".> django-q " in output  # CELERY_TASK_DEFAULT_QUEUE from the Django settings


def test_result_via_async_result_and_as_a_task_result_row(django_project: DjangoProject) -> None:
    got = django_project.client(
        """
        from celeriac.result import AsyncResult
        from celeriac.contrib.django.results.models import TaskResult
        from demoapp.tasks import add

        task_id = add.delay(2, 3).id
        result = AsyncResult(task_id)
        value = result.get(timeout=30)
        row = TaskResult.objects.get(task_id=task_id)
        print(json.dumps({
            "value": value, "state": result.state, "name": result.name, "args": result.args,
            "queue": result.queue, "worker": result.worker, "backend": type(app.backend).__name__,
            "task_class": type(add).__name__,
            "row": {k: row.as_dict()[k] for k in ("status", "result", "task_name", "task_args", "worker")},
            "content": [row.content_type, row.content_encoding], "meta": json.loads(row.meta),
            "done": row.date_done is not None and row.date_created <= row.date_done,
        }))
        """
    )
    assert got["value"] == 5 and got["state"] == "SUCCESS"
    assert got["backend"] == "DjangoBackend" and got["task_class"] == "DjangoTask"
    assert got["name"] == "demoapp.tasks.add" and got["args"] == [2, 3]
    assert got["queue"] == "django-q" and got["worker"].startswith("celery@")
    assert got["row"] == {
        "status": "SUCCESS",
        "result": "5",
        "task_name": "demoapp.tasks.add",
        "task_args": "[2, 3]",
        "worker": got["worker"],
    }
    assert got["content"] == ["application/json", "utf-8"]
    assert got["meta"]["children"] == [] and got["meta"]["queue"] == "django-q"
    assert got["done"] is True


def test_failure_keeps_its_exception_type(django_project: DjangoProject) -> None:
    got = django_project.client(
        """
        from celeriac.contrib.django.results.models import TaskResult
        from demoapp.tasks import WidgetMissing, find_widget

        result = find_widget.delay("nowhere")
        try:
            result.get(timeout=30)
        except WidgetMissing as exc:
            caught = [type(exc).__module__, type(exc).__name__, str(exc), isinstance(exc, LookupError)]
        row = TaskResult.objects.get(task_id=result.id)
        print(json.dumps({"caught": caught, "state": result.state, "status": row.status,
                          "result": json.loads(row.result), "traceback": row.traceback}))
        """
    )
    assert got["caught"] == ["demoapp.tasks", "WidgetMissing", "no widget named nowhere", True]
    assert got["state"] == got["status"] == "FAILURE"
    assert got["result"] == {
        "exc_type": "WidgetMissing",
        "exc_message": ["no widget named nowhere"],
        "exc_module": "demoapp.tasks",
    }
    assert "WidgetMissing: no widget named nowhere" in got["traceback"]


def test_tasks_use_the_orm(django_project: DjangoProject) -> None:
    got = django_project.client(
        """
        from demoapp.models import Widget
        from demoapp.tasks import create_widget, find_widget

        pk = create_widget.delay("sprocket").get(timeout=30)
        print(json.dumps({"pk": pk, "name": Widget.objects.get(pk=pk).name,
                          "found": find_widget.delay("sprocket").get(timeout=30)}))
        """
    )
    assert got["name"] == "sprocket" and got["found"] == got["pk"]


def test_each_task_gets_a_fresh_connection(django_project: DjangoProject) -> None:
    # CONN_MAX_AGE = 0: close_old_connections() before and after each task closes the connection,
    # so every task in a child opens a new one (counted by Django's connection_created signal).
    runs = django_project.client(
        """
        from demoapp.tasks import connection_stats

        print(json.dumps([connection_stats.delay().get(timeout=30) for _ in range(6)]))
        """
    )
    by_child: dict[int, list[int]] = {}
    for pid, count in runs:
        by_child.setdefault(pid, []).append(count)
    assert max(len(counts) for counts in by_child.values()) >= 2  # two children, six tasks
    for counts in by_child.values():
        assert all(later > earlier for earlier, later in zip(counts, counts[1:], strict=False)), runs


def test_a_task_after_one_that_closed_its_connection_works(django_project: DjangoProject) -> None:
    got = django_project.client(
        """
        from demoapp.tasks import close_connection, create_widget, find_widget

        closed = [close_connection.delay().get(timeout=30) for _ in range(3)]
        pk = create_widget.delay("after-close").get(timeout=30)
        print(json.dumps({"closed": closed, "same": find_widget.delay("after-close").get(timeout=30) == pk}))
        """
    )
    assert got == {"closed": ["closed"] * 3, "same": True}


def test_settings_from_the_django_namespace_take_effect(django_project: DjangoProject) -> None:
    got = django_project.client(
        """
        from celeriac.states import PENDING
        from demoapp.tasks import routed

        result = routed.delay()
        broker = app.connection_for_write()
        print(json.dumps({
            "default_queue": app.conf.task_default_queue, "backend": app.conf.result_backend,
            "special": broker.queue_size("special"), "state": result.state,
            "purged": broker.purge("special"),
        }))
        """
    )
    # CELERY_TASK_ROUTES sent it to "special", which this worker (default queue only) doesn't consume.
    assert got == {"default_queue": "django-q", "backend": "django-db", "special": 1, "state": "PENDING", "purged": 1}


def test_success_is_final_and_groups_forget_and_cleanup(django_project: DjangoProject) -> None:
    got = django_project.client(
        """
        from datetime import timedelta

        from django.utils import timezone

        from celeriac.contrib.django.results.models import TaskResult

        backend = app.backend
        backend.store_result("dup", None, "STARTED")
        started = TaskResult.objects.get(task_id="dup").date_started is not None
        backend.store_result("dup", {"answer": [4, 2]}, "SUCCESS")
        backend.store_result("dup", ValueError("late duplicate"), "FAILURE")
        backend.store_result("dup", None, "STARTED")
        final = [app.AsyncResult("dup").state, app.AsyncResult("dup").get(timeout=5)]
        backend.store_result("gone", 1, "SUCCESS")
        app.AsyncResult("gone").forget()
        backend.save_group("g1", [["g1", None], [[["dup", None], None]]])
        group = backend.restore_group("g1")
        backend.delete_group("g1")
        backend.store_result("old", 1, "SUCCESS")
        TaskResult.objects.filter(task_id="old").update(date_done=timezone.now() - timedelta(days=2))
        removed = backend.cleanup()
        print(json.dumps({
            "started": started, "final": final, "forgotten": app.AsyncResult("gone").state,
            "group": group, "group_after_delete": backend.restore_group("g1"), "removed": removed,
            "old": app.AsyncResult("old").state, "kept": app.AsyncResult("dup").state,
        }))
        """
    )
    assert got == {
        "started": True,
        "final": ["SUCCESS", {"answer": [4, 2]}],
        "forgotten": "PENDING",
        "group": [["g1", None], [[["dup", None], None]]],
        "group_after_delete": None,
        "removed": 1,
        "old": "PENDING",
        "kept": "SUCCESS",
    }


def test_cli_reads_results_without_django_set_up_first(django_project: DjangoProject) -> None:
    task_id = django_project.client(
        """
        from demoapp.tasks import add

        result = add.delay(20, 1)
        result.get(timeout=30)
        print(json.dumps(result.id))
        """
    )
    env = django_project.env()
    shown = django_project.project.run("-A", "proj", "result", task_id, env=env)
    assert shown.returncode == 0 and shown.stdout.strip() == "21", shown.stdout + shown.stderr
    purged = django_project.project.run("-A", "proj", "purge-results", env=env)
    assert purged.returncode == 0 and "Deleted 0 expired results." in purged.stdout, purged.stdout + purged.stderr


def test_binary_serializers_and_naive_datetimes_round_trip(django_project: DjangoProject) -> None:
    got = django_project.client(
        """
        from django.test.utils import override_settings

        from celeriac import Celery
        from celeriac.contrib.django.results.models import TaskResult

        packed = Celery("packed", broker="memory://", backend="django-db", result_serializer="msgpack",
                        accept_content=["json", "msgpack"], set_as_current=False)
        packed.backend.store_result("packed", {"x": [1, 2]}, "SUCCESS")
        row = TaskResult.objects.get(task_id="packed")
        with override_settings(USE_TZ=False):
            packed.backend.store_result("naive", 7, "SUCCESS")
            naive = packed.AsyncResult("naive")
            naive_value, naive_aware = naive.get(timeout=5), naive.date_done.tzinfo is not None
        print(json.dumps({"value": packed.AsyncResult("packed").get(timeout=5),
                          "content": [row.content_type, row.content_encoding],
                          "naive": [naive_value, naive_aware]}))
        """
    )
    assert got == {"value": {"x": [1, 2]}, "content": ["application/x-msgpack", "binary"], "naive": [7, True]}


def test_delay_on_commit_sends_only_committed_work(django_project: DjangoProject) -> None:
    got = django_project.client(
        """
        import time

        from django.db import transaction

        from demoapp.models import Widget
        from demoapp.tasks import add, create_widget

        with transaction.atomic():
            create_widget.delay_on_commit("committed")
            queued_inside = Widget.objects.filter(name="committed").exists()
        try:
            with transaction.atomic():
                create_widget.apply_async_on_commit(("rolled-back",))
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        deadline = time.monotonic() + 30
        while not Widget.objects.filter(name="committed").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        add.delay(0, 0).get(timeout=30)  # the worker has drained what was sent before
        print(json.dumps({
            "inside": queued_inside, "committed": Widget.objects.filter(name="committed").exists(),
            "rolled_back": Widget.objects.filter(name="rolled-back").exists(),
        }))
        """
    )
    assert got == {"inside": False, "committed": True, "rolled_back": False}


def test_worker_warns_when_debug_is_on(django_project: DjangoProject) -> None:
    assert f"WARNING/MainProcess] {DEBUG_WARNING}" in django_project.worker.output
    assert django_project.worker.proc is not None and django_project.worker.proc.poll() is None


@pytest.mark.parametrize("django_project", ["postgresql"], indirect=True)
def test_prefork_children_leave_the_parents_session_alone(django_project: DjangoProject) -> None:
    # The worker process held a session when it forked its children (demoapp/tasks.py). A child
    # closing that connection normally would end the session for the parent too.
    parent_pid = int(django_project.parent_backend_file.read_text())
    django_project.client(
        """
        from demoapp.tasks import connection_stats

        print(json.dumps([connection_stats.delay().get(timeout=30) for _ in range(6)]))
        """
    )
    database = django_project.database["NAME"]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        alive = admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND datname = %s", [parent_pid, database]
        ).fetchone()
    assert alive is not None


@pytest.mark.parametrize("django_project", ["postgresql"], indirect=True)
def test_a_session_killed_under_a_task_is_replaced(django_project: DjangoProject) -> None:
    # The result is stored on the task's connection, which is dead by then: the backend
    # reconnects once, and the next task gets a fresh connection.
    got = django_project.client(
        """
        from demoapp.tasks import add, kill_own_connection

        killed = [kill_own_connection.delay().get(timeout=30) for _ in range(2)]
        print(json.dumps({"killed": len(set(killed)), "after": add.delay(20, 22).get(timeout=30)}))
        """
    )
    assert got == {"killed": 2, "after": 42}


# -- the fixup's activation rule, in this process ----------------------------------------------


def test_fixup_applies_only_with_django_settings_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    plain = Celery("plain", broker="memory://", set_as_current=False)
    assert plain.task_cls is Task and plain._fixups == [None]

    with monkeypatch.context() as without_django:
        without_django.setenv("DJANGO_SETTINGS_MODULE", "nowhere.settings")
        without_django.setitem(sys.modules, "django", None)  # import django -> ImportError
        with pytest.warns(FixupWarning, match="Django isn't installed"):
            unfixed = Celery("unfixed", broker="memory://", set_as_current=False)
    assert unfixed.task_cls is Task and unfixed._fixups == [None]

    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "nowhere.settings")  # only named: nothing is imported
    fixed = Celery("fixed", broker="memory://", set_as_current=False)
    custom = Celery("custom", broker="memory://", set_as_current=False, task_cls=_CustomTask)
    opted_out = Celery("opted-out", broker="memory://", set_as_current=False, fixups=())
    assert fixed.task_cls is DjangoTask and isinstance(fixed._fixups[0], DjangoFixup)
    assert custom.task_cls is _CustomTask  # the app's own class is kept
    assert opted_out.task_cls is Task and opted_out._fixups == []
    for app in (plain, unfixed, fixed, custom, opted_out):
        app.close()
    del plain, unfixed, fixed, custom, opted_out, app
    gc.collect()  # the fixup's receivers act for live fixed-up apps only; leave none behind
    assert not fixup_module._fixed_apps


class _CustomTask(Task):  # type: ignore[type-arg]
    pass
