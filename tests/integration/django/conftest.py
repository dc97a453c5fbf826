"""The Django project of docs/django.md (Celery's guide with ``celery`` -> ``celeriac``), on SQLite and PostgreSQL.

One project per database per module: ``manage.py migrate`` and a real ``celeriac -A proj
worker`` (prefork, two children) are set up once, and each test talks to them from fresh
interpreters (``Project.python``), since Django settings are process-wide. The broker is
the embedded SQLite broker in the project directory, named in the Django settings
(``CELERY_BROKER_URL``), not in the environment. PostgreSQL gets a database of its own,
dropped afterwards.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Project, WorkerProcess

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"

MANAGE = """
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def _documented(file: str) -> str:
    """The code block of docs/django.md that starts with ``# <file>``: the tests run the guide as written."""
    for block in re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "django.md").read_text(), re.S):
        if block.startswith(f"# {file}\n"):
            return str(block)
    raise AssertionError(f"docs/django.md has no code block for {file}")


SETTINGS = """
SECRET_KEY = "celeriac-tests"
DEBUG = True
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "celeriac.contrib.django.results",
    "demoapp.apps.DemoappConfig",
]
DATABASES = {{"default": {database!r}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CELERY_BROKER_URL = {broker!r}
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_DEFAULT_QUEUE = "django-q"
CELERY_TASK_ROUTES = {{"demoapp.tasks.routed": {{"queue": "special"}}}}
"""

DEMO_APPS = """
from django.apps import AppConfig


class DemoappConfig(AppConfig):
    name = "demoapp"
"""

DEMO_MODELS = """
from django.db import models


class Widget(models.Model):
    name = models.CharField(max_length=100, unique=True)
"""

DEMO_MIGRATION = """
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Widget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
            ],
        ),
    ]
"""

DEMO_TASKS = """
import os
import time
from pathlib import Path

from django.db import connection
from django.db.backends.signals import connection_created

from celeriac import shared_task
from celeriac.signals import worker_before_create_process

from .models import Widget

CONNECTIONS = 0


def _count_connection(sender, connection, **kwargs):
    global CONNECTIONS
    CONNECTIONS += 1


connection_created.connect(_count_connection)


@worker_before_create_process.connect
def _hold_a_connection_while_forking(**kwargs):
    # The worker process has a live PostgreSQL session when its children are forked.
    path = os.environ.get("DEMO_PARENT_BACKEND_FILE")
    if path and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            Path(path).write_text(str(cursor.fetchone()[0]))


class WidgetMissing(LookupError):
    pass


@shared_task
def add(x, y):
    return x + y


@shared_task
def routed():
    return "routed"


@shared_task
def create_widget(name):
    return Widget.objects.create(name=name).pk


@shared_task
def find_widget(name):
    try:
        return Widget.objects.get(name=name).pk
    except Widget.DoesNotExist:
        raise WidgetMissing(f"no widget named {name}") from None


@shared_task
def connection_stats():
    Widget.objects.count()
    return [os.getpid(), CONNECTIONS]


@shared_task
def close_connection():
    Widget.objects.count()
    connection.close()
    return "closed"


@shared_task
def kill_own_connection():
    # Another session terminates this task's session, as a database restart would.
    import psycopg

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"], autocommit=True
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            if time.monotonic() > deadline:
                raise RuntimeError("the session was not terminated")
            time.sleep(0.05)
    return pid
"""

CLIENT_PRELUDE = """
import json
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
django.setup()

from proj import celery_app as app
"""


def _env(project: Project) -> dict[str, str]:
    env = project.env()
    env.pop("CELERIAC_BROKER_URL", None)  # the broker comes from CELERY_BROKER_URL in the Django settings
    env.pop("DJANGO_SETTINGS_MODULE", None)  # set by proj/celery.py and manage.py, as in Celery's guide
    return env


def _manage(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project.path,
        env=_env(project),
        capture_output=True,
        text=True,
        timeout=90,
    )


@dataclass
class DjangoProject:
    """The project, its database and its worker; ``client`` runs code like a Django shell would."""

    kind: str
    project: Project
    database: dict[str, Any]
    migrate_output: str
    worker: WorkerProcess
    parent_backend_file: Path

    def env(self) -> dict[str, str]:
        return _env(self.project)

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _manage(self.project, *args)

    def client(self, code: str, timeout: float = 60.0) -> Any:
        """Run ``code`` after ``django.setup()``; it prints one JSON line last, which is returned."""
        done = self.project.python(CLIENT_PRELUDE + textwrap.dedent(code), timeout=timeout, env=self.env())
        assert done.returncode == 0, f"client failed:\n{done.stdout}\n{done.stderr}\nworker:\n{self.worker.output}"
        return json.loads(done.stdout.strip().splitlines()[-1])


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def django_project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoProject]:
    kind: str = request.param
    path = tmp_path_factory.mktemp(f"django-{kind}")
    project = Project(path)
    name = f"celeriac_dj_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        database: dict[str, Any] = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path / "django.sqlite3")}
    else:
        if not _pg_up():
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 (scripts/services starts it)")
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        database = {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": "postgres",
                    "HOST": "127.0.0.1", "PORT": "5432"}  # fmt: skip
    project.write("manage.py", MANAGE)
    project.write("proj/__init__.py", _documented("proj/proj/__init__.py"))
    project.write("proj/celery.py", _documented("proj/proj/celery.py"))
    project.write("proj/settings.py", SETTINGS.format(database=database, broker=project.broker_url))
    project.write("demoapp/__init__.py", "")
    project.write("demoapp/apps.py", DEMO_APPS)
    project.write("demoapp/models.py", DEMO_MODELS)
    project.write("demoapp/migrations/__init__.py", "")
    project.write("demoapp/migrations/0001_initial.py", DEMO_MIGRATION)
    project.write("demoapp/tasks.py", DEMO_TASKS)
    parent_backend_file = path / "parent-backend-pid"
    try:
        migrated = _manage(project, "migrate", "--no-input")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        env = _env(project)
        env["DEMO_PARENT_BACKEND_FILE"] = str(parent_backend_file)
        worker = project.worker("proj", "-c", "2", env=env)
        yield DjangoProject(kind, project, database, migrated.stdout, worker, parent_backend_file)
    finally:
        for worker in project.workers:
            if worker.proc is None:
                continue
            if worker.proc.poll() is None:
                worker.stop()
            else:
                worker._reap()
        if kind == "postgresql":
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
