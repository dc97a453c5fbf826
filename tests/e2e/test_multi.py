"""``celeriac multi``: detached workers started, used, stopped and restarted by node name."""

from __future__ import annotations

import os

from tests.conftest import Project


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_multi_start_stopwait_restart(tasks_module: Project) -> None:
    project = tasks_module
    started = project.run("multi", "start", "w1", "w2", "-A", "tasks", "-c", "1", "-l", "info")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "> w1@" in started.stdout and "> w2@" in started.stdout and started.stdout.count(": OK") == 2
    pids = {name: int((project.path / f"{name}.pid").read_text()) for name in ("w1", "w2")}
    assert all(_alive(pid) for pid in pids.values())
    try:
        from tasks import add  # type: ignore[import-not-found]

        assert [add.delay(i, i).get(timeout=30) for i in range(6)] == [0, 2, 4, 6, 8, 10]
        restarted = project.run("multi", "restart", "w1", "w2", "-A", "tasks", "-c", "1", "-l", "info")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        new_pids = {name: int((project.path / f"{name}.pid").read_text()) for name in ("w1", "w2")}
        assert not any(_alive(pid) for pid in pids.values()) and all(_alive(p) for p in new_pids.values())
        assert add.delay(20, 22).get(timeout=30) == 42
        pids = new_pids
    finally:
        stopped = project.run("multi", "stopwait", "w1", "w2", "-A", "tasks")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "TERM ->" in stopped.stdout and stopped.stdout.count(" OK") == 2
    assert not any(_alive(pid) for pid in pids.values())
    assert not (project.path / "w1.pid").exists() and not (project.path / "w2.pid").exists()
    logs = (project.path / "w1.log").read_text() + (project.path / "w2.log").read_text()
    assert "succeeded in" in logs and "Warm shutdown" in logs


def test_multi_names_show_and_per_node_options(tasks_module: Project) -> None:
    names = tasks_module.run("multi", "names", "3", "--range-prefix", "worker", "--hostname", "box.example.com")
    assert names.stdout.split() == ["worker1@box.example.com", "worker2@box.example.com", "worker3@box.example.com"]
    shown = tasks_module.run("multi", "show", "3", "-A", "tasks", "-c", "3", "-c:1", "10", "-Q:2-3", "images")
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("celeriac worker -n celery1@") and "-c 10" in lines[0] and "-Q" not in lines[0]
    assert "-c 3" in lines[1] and "-Q images" in lines[1] and "-Q images" in lines[2]
    assert all("--detach" in line and "--pidfile=%n.pid" in line for line in lines)


def test_multi_stop_of_a_node_that_is_down(tasks_module: Project) -> None:
    stopped = tasks_module.run("multi", "stop", "ghost", "-A", "tasks")
    assert stopped.returncode == 0
    assert "ghost@" in stopped.stdout and "DOWN" in stopped.stdout
