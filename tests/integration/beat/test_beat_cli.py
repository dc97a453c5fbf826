"""``celeriac beat`` on the command line: help, and clear errors for bad arguments and settings."""

from __future__ import annotations

import os
import signal

from tests.conftest import Project
from tests.integration.beat.conftest import TASKS, wait_until


def test_beat_help(project: Project) -> None:
    done = project.run("beat", "--help")
    assert done.returncode == 0
    for option in ("--schedule", "--scheduler", "--max-interval", "--lease-timeout", "--loglevel", "--detach"):
        assert option in done.stdout
    assert "-B, --beat" in project.run("worker", "--help").stdout


def test_bad_arguments_are_reported(project: Project) -> None:
    project.write("tasks.py", TASKS)
    done = project.run("-A", "tasks", "beat", "--max-interval", "soon")
    assert done.returncode == 2 and "Invalid value for '--max-interval'" in done.stderr
    done = project.run("-A", "tasks", "beat", "--lease-timeout", "0")
    assert done.returncode == 2 and "--lease-timeout" in done.stderr
    done = project.run("-A", "tasks", "beat", "-l", "loud")
    assert done.returncode == 2 and "--loglevel" in done.stderr
    done = project.run("-A", "tasks", "beat", "-S", "nowhere:Scheduler")
    assert done.returncode == 1 and "can't load the beat scheduler 'nowhere:Scheduler'" in done.stderr
    done = project.run("-A", "nomodule", "beat")
    assert done.returncode == 2 and "Unable to load celeriac application" in done.stderr


def test_bad_schedules_are_reported(project: Project) -> None:
    project.write(
        "tasks.py", TASKS + "\napp.conf.beat_schedule = {'x': {'task': 'tasks.record', 'schedule': 'daily'}}\n"
    )
    done = project.run("-A", "tasks", "beat")
    assert done.returncode == 1
    assert "beat_schedule['x']: a schedule is seconds, a timedelta" in done.stderr
    project.write("tasks.py", TASKS + "\nfrom celeriac.schedules import crontab\nbad = crontab(minute='*/0')\n")
    done = project.run("-A", "tasks", "beat")
    assert done.returncode != 0 and "step '0' must be a positive number" in done.stderr


def test_detached_beat_writes_its_pidfile_and_log_and_stops_on_sigterm(project: Project) -> None:
    project.write("tasks.py", TASKS)
    done = project.run(
        "-A", "tasks", "beat", "--detach", "--pidfile", "beat.pid", "--logfile", "beat.log", "-l", "info",
        env=project.env(REAL_ENTRY="1"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pidfile, logfile = project.path / "beat.pid", project.path / "beat.log"
    # Created first, then written: wait for the pid in it.
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 20, lambda: "the pidfile")
    pid = int(pidfile.read_text())
    try:
        wait_until(
            lambda: logfile.exists() and "Sending due task real" in logfile.read_text(), 30, lambda: "a sent task"
        )
        assert project.run("-A", "tasks", "beat", "--pidfile", "beat.pid").returncode == 73  # already running
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pidfile.exists(), 20, lambda: "the pidfile to go")
    assert "beat: Shutting down..." in logfile.read_text()
