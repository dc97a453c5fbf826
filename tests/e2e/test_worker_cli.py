"""``celeriac worker`` options, each with a real worker process on the test's SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Project


def output_of(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def eventually(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts: whoever adopted it may not reap it promptly)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(proc.stdout)
    assert gone(pid)
    return pid


def run_add(project: Project, x: int, y: int, *, env: dict[str, str] | None = None) -> str:
    proc = project.python(f"from tasks import add; print(add.delay({x}, {y}).get(timeout=60))", env=env)
    assert proc.returncode == 0, output_of(proc)
    return proc.stdout.strip()


# -- pidfiles ------------------------------------------------------------------------------


def test_pidfile_holds_the_pid_and_keeps_a_second_worker_out(tasks_module: Project) -> None:
    pidfile = tasks_module.path / "run" / "worker.pid"
    first = tasks_module.worker("tasks", "-c", "1", "--pidfile", str(pidfile))
    assert pidfile.read_text().strip() == str(first.pid)

    second = tasks_module.run("-A", "tasks", "worker", "-c", "1", "--pidfile", str(pidfile))
    out = output_of(second)
    assert second.returncode != 0, out
    assert "Traceback" not in out
    assert f"Pidfile ({pidfile}) already exists" in second.stderr
    assert f"(pid: {first.pid})" in second.stderr

    assert run_add(tasks_module, 1, 2) == "3"  # the first worker is unharmed
    assert pidfile.read_text().strip() == str(first.pid)
    assert first.stop() == 0
    assert not pidfile.exists()


def test_stale_pidfile_is_replaced(tasks_module: Project) -> None:
    pidfile = tasks_module.path / "worker.pid"
    pidfile.write_text(f"{dead_pid()}\n")
    worker = tasks_module.worker("tasks", "-c", "1", "--pidfile", str(pidfile))
    assert pidfile.read_text().strip() == str(worker.pid)
    assert run_add(tasks_module, 2, 2) == "4"
    assert worker.stop() == 0
    assert not pidfile.exists()


@pytest.fixture
def daemon_pid() -> Iterator[list[int]]:
    """Pids of detached workers; any still running at the end is killed with its process group."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if gone(pid):
            continue
        try:
            group = os.getpgid(pid)
            if group != os.getpgid(0):
                os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_detach_runs_a_daemon_until_sigterm(tasks_module: Project, daemon_pid: list[int]) -> None:
    pidfile = tasks_module.path / "worker.pid"
    logfile = tasks_module.path / "worker.log"
    proc = tasks_module.run(
        "-A",
        "tasks",
        "worker",
        "--detach",
        f"--pidfile={pidfile}",
        f"--logfile={logfile}",
        "--loglevel=info",
        "-c",
        "1",
        timeout=30,
    )
    assert proc.returncode == 0, output_of(proc)
    assert proc.stdout == ""

    eventually(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit(), "the pidfile")
    pid = int(pidfile.read_text())
    daemon_pid.append(pid)
    assert not gone(pid)
    assert os.getsid(pid) != os.getsid(0)  # a session of its own: our terminal can't signal it

    assert run_add(tasks_module, 20, 22) == "42"
    eventually(lambda: "succeeded in" in logfile.read_text(), "the task in the log")
    log = logfile.read_text()
    assert "ready." in log
    assert "Task tasks.add[" in log

    os.kill(pid, signal.SIGTERM)
    eventually(lambda: gone(pid), "the daemon to exit")
    assert not pidfile.exists()
    assert "Warm shutdown" in logfile.read_text()


# -- queues, names, banner -----------------------------------------------------------------


def test_queues_option_and_task_routes(project: Project) -> None:
    project.write(
        "tasks.py",
        """\
        from celeriac import Celery

        app = Celery('tasks')
        app.conf.task_routes = {'tasks.add': 'low-priority'}


        @app.task
        def add(x, y):
            return x + y


        @app.task
        def mul(x, y):
            return x * y
        """,
    )
    default = project.worker("tasks", "-c", "1", "-n", "default@%h")
    assert ".> celery " in default.output
    assert "low-priority" not in default.output

    sent = project.python(
        """\
        from tasks import add, mul
        routed = add.delay(2, 3)
        print(routed.id)
        print(mul.delay(2, 3).get(timeout=60))
        """
    )
    assert sent.returncode == 0, output_of(sent)
    add_id, product = sent.stdout.split()
    assert product == "6"  # the default worker is up and consuming its queue...
    assert add_id not in default.output  # ...but not the task routed elsewhere
    state = project.python(f"from tasks import app; print(app.AsyncResult({add_id!r}).state)")
    assert state.stdout.strip() == "PENDING", output_of(state)

    low = project.worker("tasks", "-c", "1", "-n", "low@%h", "-Q", "low-priority")
    assert ".> low-priority " in low.output
    got = project.python(f"from tasks import app; print(app.AsyncResult({add_id!r}).get(timeout=60))")
    assert got.stdout.strip() == "5", output_of(got)
    low.wait_for(f"Task tasks.add[{add_id}] succeeded in")
    assert add_id not in default.output
    assert low.stop() == 0
    assert default.stop() == 0


def test_hostname_template_in_the_banner(tasks_module: Project) -> None:
    worker = tasks_module.worker("tasks", "-c", "1", "-n", "worker1@%h")
    node = f"worker1@{socket.gethostname()}"
    title = next(line for line in worker.output.splitlines() if line.endswith("(celeriac)"))
    assert f" {node} v" in title, worker.output
    assert f"{node} ready." in worker.output
    assert worker.stop() == 0


def test_banner_masks_the_result_backend_password(project: Project) -> None:
    project.write(
        "tasks.py",
        """\
        from celeriac import Celery

        app = Celery('tasks', backend='cache+memory://user:s3cr3t@localhost/')


        @app.task
        def add(x, y):
            return x + y
        """,
    )
    worker = project.worker("tasks", "-c", "1")
    assert ".> results:     cache+memory://user:**@localhost/" in worker.output
    assert "s3cr3t" not in worker.output
    assert worker.stop() == 0


def test_rate_limit_annotation_is_accepted(project: Project) -> None:
    project.write(
        "tasks.py",
        """\
        from celeriac import Celery

        app = Celery('tasks')
        app.conf.task_annotations = {'tasks.add': {'rate_limit': '10/m'}}


        @app.task
        def add(x, y):
            return x + y
        """,
    )
    annotated = project.python("from tasks import app, add; app.finalize(); print(add.rate_limit)")
    assert annotated.stdout.strip() == "10/m", output_of(annotated)
    worker = project.worker("tasks", "-c", "1")
    assert run_add(project, 5, 5) == "10"
    assert worker.stop() == 0


# -- configuration module ----------------------------------------------------------------------


def test_config_from_object_and_python_m_celeryconfig(project: Project) -> None:
    project.write(
        "celeryconfig.py",
        f"""\
        broker_url = {project.broker_url!r}
        result_backend = {project.broker_url!r}

        task_serializer = 'json'
        result_serializer = 'json'
        accept_content = ['json']
        timezone = 'Europe/Oslo'
        enable_utc = True
        """,
    )
    project.write(
        "tasks.py",
        """\
        from celeriac import Celery

        app = Celery('tasks')
        app.config_from_object('celeryconfig')


        @app.task
        def add(x, y):
            return x + y
        """,
    )
    env = project.env()
    del env["CELERIAC_BROKER_URL"]  # only celeryconfig.py says where the broker is

    checked = project.python("import runpy; runpy.run_module('celeryconfig', run_name='__main__')", env=env)
    assert checked.returncode == 0, output_of(checked)
    as_script = subprocess.run(
        [sys.executable, "-m", "celeryconfig"], cwd=project.path, env=env, capture_output=True, text=True, timeout=60
    )
    assert as_script.returncode == 0, output_of(as_script)
    assert as_script.stdout == as_script.stderr == ""

    conf = project.python(
        "from tasks import app; c = app.conf; print(c.timezone, c.enable_utc, c.task_serializer, app.broker_url)",
        env=env,
    )
    assert conf.stdout.split() == ["Europe/Oslo", "True", "json", project.broker_url], output_of(conf)

    worker = project.worker("tasks", "-c", "1", env=env)
    assert f".> transport:   sqlite:///{project.db}" in worker.output
    assert run_add(project, 4, 4, env=env) == "8"
    assert worker.stop() == 0


def test_config_option_loads_a_module(project: Project) -> None:
    project.write("tasks.py", "from celeriac import Celery\n\napp = Celery('tasks')\n")
    project.write("settings_for_cli.py", "timezone = 'Europe/Oslo'\ntask_default_queue = 'work'\n")
    proc = project.run("-A", "tasks", "--config", "settings_for_cli", "report")
    assert proc.returncode == 0, output_of(proc)
    assert "timezone: 'Europe/Oslo'" in proc.stdout
    assert "task_default_queue: 'work'" in proc.stdout


def test_workdir_option(tasks_module: Project, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = tasks_module.env(PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(
        [sys.executable, "-m", "celeriac", "--workdir", str(tasks_module.path), "-A", "tasks", "report"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, output_of(proc)
    assert "app -> tasks (2 tasks)" in proc.stdout


def test_logfile_per_pool_process(tasks_module: Project) -> None:
    import signal
    import subprocess
    import sys
    import time

    project = tasks_module
    proc = subprocess.Popen(
        [sys.executable, "-m", "celeriac", "-A", "tasks", "worker", "-l", "info", "-c", "2", "-n", "logs@%h",
         "--logfile", "node-%n%I.log"],
        cwd=project.path, env=project.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        main_log = project.path / "node-logs.log"
        deadline = time.time() + 30
        while not (main_log.exists() and "ready." in main_log.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        from tasks import add  # type: ignore[import-not-found]

        assert [add.delay(i, 1).get(timeout=30) for i in range(6)] == [1, 2, 3, 4, 5, 6]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = main_log.read_text()
    assert "ready." in text and "succeeded in" in text  # the main process logs the results
    assert (project.path / "node-logs-1.log").exists() and (project.path / "node-logs-2.log").exists()
