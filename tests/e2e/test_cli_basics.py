"""The ``celeriac`` command itself: help, version, usage errors, and how ``-A`` finds the app."""

from __future__ import annotations

import subprocess

import pytest

from celeriac import __version__
from tests.conftest import Project


def output_of(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int | None = None) -> str:
    """A failed command: non-zero (or exactly ``code``) exit, a message, and no traceback."""
    out = output_of(proc)
    assert proc.returncode != 0, out
    if code is not None:
        assert proc.returncode == code, out
    assert "Traceback" not in out
    return out


def error_line(text: str, needle: str) -> str:
    """The one line of ``text`` that contains ``needle``."""
    lines = [line for line in text.splitlines() if needle in line]
    assert len(lines) == 1, text
    return lines[0]


# -- help and version -------------------------------------------------------------


def test_help_lists_the_commands(project: Project) -> None:
    proc = project.run("--help")
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout.startswith("Usage: celeriac [OPTIONS]")
    for option in ("-A, --app", "-b, --broker", "--result-backend", "--workdir", "--version"):
        assert option in proc.stdout
    for command in ("worker", "call", "result", "purge", "report", "shell", "help"):
        assert f"\n  {command} " in proc.stdout


def test_help_command_prints_the_same_text_as_the_option(project: Project) -> None:
    option = project.run("--help")
    command = project.run("help")
    assert command.returncode == 0, output_of(command)
    assert command.stdout == option.stdout
    assert command.stderr == ""


def test_no_command_prints_the_help(project: Project) -> None:
    proc = project.run()
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout == project.run("--help").stdout


def test_worker_help_needs_no_app(project: Project) -> None:
    proc = project.run("worker", "--help")
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout.startswith("Usage: celeriac worker [OPTIONS]")
    for option in (
        "-l, --loglevel",
        "-c, --concurrency",
        "-P, --pool",
        "-Q, --queues",
        "-n, --hostname",
        "-D, --detach",
        "--pidfile",
        "-f, --logfile",
    ):
        assert option in proc.stdout


@pytest.mark.parametrize("command", ["call", "result", "purge", "report", "shell"])
def test_every_command_has_help(project: Project, command: str) -> None:
    proc = project.run(command, "--help")
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout.startswith(f"Usage: celeriac {command} [OPTIONS]")


def test_version(project: Project) -> None:
    proc = project.run("--version")
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout.strip() == f"celeriac {__version__}"


# -- usage errors: exit code 2, usage, no traceback --------------------------------


def test_unknown_command(project: Project) -> None:
    proc = project.run("frobnicate")
    out = assert_clean_failure(proc, 2)
    assert "Usage: celeriac [OPTIONS]" in proc.stderr
    assert "No such command 'frobnicate'" in out


def test_unknown_root_option(project: Project) -> None:
    proc = project.run("--frobnicate")
    out = assert_clean_failure(proc, 2)
    assert "Usage: celeriac [OPTIONS]" in proc.stderr
    assert "No such option: --frobnicate" in out or "No such option '--frobnicate'" in out


def test_unknown_worker_option(tasks_module: Project) -> None:
    proc = tasks_module.run("-A", "tasks", "worker", "--frobnicate")
    assert_clean_failure(proc, 2)
    assert "Usage: celeriac worker [OPTIONS]" in proc.stderr
    assert "--frobnicate" in proc.stderr


def test_bogus_loglevel(tasks_module: Project) -> None:
    proc = tasks_module.run("-A", "tasks", "worker", "--loglevel=bogus")
    assert_clean_failure(proc, 2)
    assert "Usage: celeriac worker [OPTIONS]" in proc.stderr
    line = error_line(proc.stderr, "--loglevel")
    assert "bogus" in line


# -- -A errors: one line that says what is wrong ----------------------------------


def test_app_module_not_found(project: Project) -> None:
    proc = project.run("-A", "nonexistent", "worker")
    out = assert_clean_failure(proc)
    error_line(out, "The module nonexistent was not found.")


def test_app_module_with_a_syntax_error(project: Project) -> None:
    project.write(
        "broken.py",
        """\
        from celeriac import Celery

        app = Celery('broken'
        """,
    )
    proc = project.run("-A", "broken", "worker")
    out = assert_clean_failure(proc)
    line = error_line(out, "SyntaxError")
    assert f"{project.path / 'broken.py'}, line 3" in line
    assert line.count("line 3") == 1


def test_app_module_that_fails_on_import(project: Project) -> None:
    project.write("needsdep.py", "import a_dependency_nobody_installed\n")
    proc = project.run("-A", "needsdep", "report")
    out = assert_clean_failure(proc)
    line = error_line(out, "a_dependency_nobody_installed")
    assert "ModuleNotFoundError" in line and "needsdep.py, line 1" in line
    assert "The module needsdep was not found" not in out


def test_app_module_without_an_app(project: Project) -> None:
    project.write("plain.py", "VALUE = 1\n")
    proc = project.run("-A", "plain", "worker")
    out = assert_clean_failure(proc)
    line = error_line(out, "has no Celery application")
    assert "'plain'" in line


def test_app_attribute_missing(tasks_module: Project) -> None:
    proc = tasks_module.run("-A", "tasks:nope", "report")
    out = assert_clean_failure(proc)
    error_line(out, "Module 'tasks' has no attribute 'nope'.")


def test_app_attribute_that_is_a_task(tasks_module: Project) -> None:
    proc = tasks_module.run("-A", "tasks:add", "report")
    out = assert_clean_failure(proc)
    error_line(out, "'tasks:add' is not a Celery application")


# -- -A resolution -------------------------------------------------------------------

TWO_APPS = """\
from celeriac import Celery

first = Celery('first')
second = Celery('second')


@second.task
def mul(x, y):
    return x * y
"""


def app_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, output_of(proc)
    return error_line(proc.stdout, "app -> ")


def test_app_as_module(tasks_module: Project) -> None:
    assert app_line(tasks_module.run("-A", "tasks", "report")) == "app -> tasks (2 tasks)"


def test_app_option_after_the_command(tasks_module: Project) -> None:
    assert app_line(tasks_module.run("report", "-A", "tasks")) == "app -> tasks (2 tasks)"


@pytest.mark.parametrize("spec", ["apps:second", "apps.second"])
def test_app_as_module_attribute(project: Project, spec: str) -> None:
    project.write("apps.py", TWO_APPS)
    assert app_line(project.run("-A", spec, "report")) == "app -> second (1 tasks)"
    assert app_line(project.run("-A", spec.replace("second", "first"), "report")) == "app -> first (0 tasks)"


def test_app_from_a_factory(project: Project) -> None:
    project.write(
        "factory.py",
        """\
        from celeriac import Celery


        def create_app():
            return Celery('made')
        """,
    )
    assert app_line(project.run("-A", "factory:create_app", "report")) == "app -> made (0 tasks)"


PROJ_CELERY = """\
from celeriac import Celery

app = Celery('proj', include=['proj.tasks'])
"""

PROJ_TASKS = """\
from .celery import app


@app.task
def add(x, y):
    return x + y
"""


@pytest.fixture
def proj_package(project: Project) -> Project:
    project.write("proj/__init__.py", "")
    project.write("proj/celery.py", PROJ_CELERY)
    project.write("proj/tasks.py", PROJ_TASKS)
    return project


@pytest.mark.parametrize("spec", ["proj", "proj.celery", "proj.celery:app"])
def test_app_in_a_package(proj_package: Project, spec: str) -> None:
    assert app_line(proj_package.run("-A", spec, "report")) == "app -> proj (1 tasks)"


def test_package_worker_runs_proj_tasks_add(proj_package: Project) -> None:
    worker = proj_package.worker("proj", "-c", "1")
    assert "  . proj.tasks.add" in worker.output
    sent = proj_package.run("-A", "proj", "call", "proj.tasks.add", "--args=[2, 3]")
    assert sent.returncode == 0, output_of(sent)
    task_id = sent.stdout.strip()
    got = proj_package.run("-A", "proj", "result", task_id)
    assert got.returncode == 0, output_of(got)
    assert got.stdout.strip() == "5"
    worker.wait_for(f"Task proj.tasks.add[{task_id}] succeeded in")
    assert worker.stop() == 0
