"""``celeriac call``, ``result``, ``purge`` and ``report`` against the embedded SQLite broker."""

from __future__ import annotations

import re
import subprocess

import pytest

from celeriac import __version__
from tests.conftest import Project

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def output_of(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def call(project: Project, *args: str) -> str:
    """``celeriac -A tasks call <args>``; returns the task id it prints."""
    proc = project.run("-A", "tasks", "call", *args)
    assert proc.returncode == 0, output_of(proc)
    task_id = proc.stdout.strip()
    assert UUID.match(task_id), proc.stdout
    return task_id


def result(project: Project, task_id: str, *args: str) -> subprocess.CompletedProcess[str]:
    return project.run("-A", "tasks", "result", task_id, *args)


# -- call and result -------------------------------------------------------------------


def test_call_prints_an_id_and_result_prints_the_value(tasks_module: Project) -> None:
    task_id = call(tasks_module, "tasks.add", "--args=[2, 2]")
    worker = tasks_module.worker("tasks", "-c", "1")
    got = result(tasks_module, task_id)
    assert got.returncode == 0, output_of(got)
    assert got.stdout.strip() == "4"
    worker.wait_for(f"Task tasks.add[{task_id}] succeeded in")
    assert worker.stop() == 0


def test_call_with_kwargs(tasks_module: Project) -> None:
    worker = tasks_module.worker("tasks", "-c", "1")
    only_kwargs = call(tasks_module, "tasks.add", '--kwargs={"x": 3, "y": 4}')
    mixed = call(tasks_module, "tasks.add", "-a", "[10]", "-k", '{"y": 5}')
    assert result(tasks_module, only_kwargs).stdout.strip() == "7"
    assert result(tasks_module, mixed).stdout.strip() == "15"
    assert worker.stop() == 0


def test_result_of_a_failed_task_and_its_traceback(tasks_module: Project) -> None:
    worker = tasks_module.worker("tasks", "-c", "1")
    task_id = call(tasks_module, "tasks.div", "--args=[1, 0]")
    got = result(tasks_module, task_id)
    assert got.returncode == 0, output_of(got)
    assert "division by zero" in got.stdout
    trace = result(tasks_module, task_id, "--traceback")
    assert trace.returncode == 0, output_of(trace)
    assert "ZeroDivisionError" in trace.stdout
    assert worker.stop() == 0


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--args=[2, ", "is not valid JSON"),
        ("--args={}", "expected a JSON array"),
        ("--kwargs=[1]", "expected a JSON object"),
        ("--kwargs={x: 1}", "is not valid JSON"),
    ],
)
def test_call_with_bad_json(tasks_module: Project, option: str, message: str) -> None:
    proc = tasks_module.run("-A", "tasks", "call", "tasks.add", option)
    assert proc.returncode == 2, output_of(proc)
    assert "Usage: celeriac call [OPTIONS] NAME" in proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in output_of(proc)


def test_result_timeout_is_a_one_line_error(tasks_module: Project) -> None:
    proc = result(tasks_module, "no-such-task-id", "--timeout=0.5")
    assert proc.returncode == 1, output_of(proc)
    assert proc.stderr.strip() == "Error: The operation timed out waiting for task no-such-task-id."
    assert "Traceback" not in output_of(proc)


def test_result_for_an_unknown_task_name(tasks_module: Project) -> None:
    proc = result(tasks_module, "some-id", "--task=tasks.nope")
    assert proc.returncode == 2, output_of(proc)
    assert "no task named 'tasks.nope' is registered" in proc.stderr
    assert "Traceback" not in output_of(proc)


# -- purge -------------------------------------------------------------------------------

PROMPT = "Are you sure you want to delete all tasks (yes/NO)?"


def purge(project: Project, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = project.run("-A", "tasks", "purge", *args, input=input)
    assert proc.returncode == 0, output_of(proc)
    assert "Traceback" not in output_of(proc)
    return proc


def test_purge_asks_first(tasks_module: Project) -> None:
    for n in range(3):
        call(tasks_module, "tasks.add", f"--args=[{n}, {n}]")

    kept = purge(tasks_module, input="no\n")
    assert "WARNING: This will remove all tasks from queue: celery." in kept.stdout
    assert PROMPT in kept.stdout
    assert "Purged" not in kept.stdout

    deleted = purge(tasks_module, input="yes\n")
    assert PROMPT in deleted.stdout
    assert deleted.stdout.rstrip().endswith("Purged 3 messages from 1 known task queue.")

    nothing = purge(tasks_module, "-f")
    assert nothing.stdout.strip() == "No messages purged from 1 queue."


def test_purge_force_does_not_ask(tasks_module: Project) -> None:
    call(tasks_module, "tasks.add", "--args=[1, 1]")
    call(tasks_module, "tasks.add", "--args=[2, 2]")
    proc = purge(tasks_module, "-f")
    assert PROMPT not in proc.stdout
    assert proc.stdout.strip() == "Purged 2 messages from 1 known task queue."

    call(tasks_module, "tasks.add", "--args=[3, 3]")
    proc = purge(tasks_module, "--force")
    assert proc.stdout.strip() == "Purged 1 message from 1 known task queue."


def test_purged_tasks_never_run(tasks_module: Project) -> None:
    purged_id = call(tasks_module, "tasks.add", "--args=[1, 1]")
    purge(tasks_module, "-f")
    kept_id = call(tasks_module, "tasks.add", "--args=[2, 2]")
    worker = tasks_module.worker("tasks", "-c", "1")
    assert result(tasks_module, kept_id).stdout.strip() == "4"
    state = tasks_module.python(f"from tasks import app; print(app.AsyncResult({purged_id!r}).state)")
    assert state.stdout.strip() == "PENDING", output_of(state)
    assert purged_id not in worker.output
    assert worker.stop() == 0


# -- report --------------------------------------------------------------------------------


def test_report_shows_versions_and_masks_the_broker_password(project: Project) -> None:
    project.write(
        "tasks.py",
        """\
        from celeriac import Celery

        app = Celery('tasks', broker='redis://user:s3cr3t@localhost:6379/0')
        app.conf.update(task_serializer='json', timezone='Europe/Oslo')


        @app.task
        def add(x, y):
            return x + y
        """,
    )
    env = project.env()
    del env["CELERIAC_BROKER_URL"]  # the app's own broker_url is what gets reported
    proc = project.run("-A", "tasks", "report", env=env)
    assert proc.returncode == 0, output_of(proc)
    out = proc.stdout
    assert f"software -> celeriac:{__version__} py:" in out
    assert "platform -> system:" in out
    assert "app -> tasks (1 tasks)" in out
    assert "settings -> transport:redis " in out
    assert "broker_url: 'redis://user:**@localhost:6379/0'" in out
    assert "timezone: 'Europe/Oslo'" in out
    assert "s3cr3t" not in output_of(proc)


def test_report_on_the_embedded_broker(tasks_module: Project) -> None:
    proc = tasks_module.run("-A", "tasks", "report")
    assert proc.returncode == 0, output_of(proc)
    assert "settings -> transport:sqlite results:" in proc.stdout
    assert str(tasks_module.db) in proc.stdout
