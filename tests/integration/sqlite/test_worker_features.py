"""Task options honoured by a real worker on the embedded broker."""

from __future__ import annotations

import time

import pytest

from celeriac.brokers.sqlite import SQLiteBroker
from celeriac.exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded
from tests.conftest import Project

FEATURES = """
import os, time
from celeriac import Celery
from celeriac.exceptions import SoftTimeLimitExceeded

app = Celery("tasks")
HERE = os.path.dirname(os.path.abspath(__file__))


@app.task
def add(x, y):
    return x + y


@app.task
def stamp(tag):
    with open(os.path.join(HERE, "stamps"), "a") as fh:
        fh.write(f"{tag} {time.time()}\\n")
    return tag


@app.task(bind=True, max_retries=3, default_retry_delay=0.2)
def flaky(self, succeed_on):
    if self.request.retries < succeed_on:
        raise self.retry(exc=ValueError(f"attempt {self.request.retries}"))
    return self.request.retries


@app.task(autoretry_for=(KeyError,), max_retries=2, retry_backoff=False, default_retry_delay=0.1)
def always_fails():
    raise KeyError("nope")


@app.task(soft_time_limit=0.5)
def soft():
    try:
        time.sleep(10)
    except SoftTimeLimitExceeded:
        return "caught soft limit"


@app.task(time_limit=1)
def hard():
    time.sleep(30)


@app.task(soft_time_limit=0.5)
def soft_loop():
    try:
        for _ in range(3000):
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        return "caught soft limit"


@app.task(time_limit=1)
def hard_loop():
    for _ in range(3000):
        time.sleep(0.01)


@app.task(ignore_result=True)
def fire_and_forget(tag):
    open(os.path.join(HERE, tag), "w").close()


@app.task(track_started=True)
def slow_started():
    time.sleep(1.5)
    return "done"


@app.task(rate_limit="2/s")
def limited(tag):
    return stamp(tag)


@app.task
def on_error(task_id):
    open(os.path.join(HERE, "errback-" + task_id), "w").close()


@app.task
def sleepy_stamp(i):
    time.sleep(0.7)
    return i


@app.task
def boom():
    raise RuntimeError("boom")
"""


@pytest.fixture
def features(project: Project) -> Project:
    project.write("tasks.py", FEATURES)
    return project


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_every_pool_runs_tasks(features: Project, pool: str) -> None:
    worker = features.worker("tasks", "-P", pool, "-c", "2")
    from tasks import add  # type: ignore[import-not-found]

    assert [add.delay(i, i).get(timeout=30) for i in range(5)] == [0, 2, 4, 6, 8]
    assert f"({pool})" in worker.output  # the banner names the pool
    assert worker.stop() == 0


def test_countdown_waits_in_the_broker_not_in_the_worker(features: Project) -> None:
    worker = features.worker("tasks", "-c", "1")
    from tasks import add  # type: ignore[import-not-found]

    sent = time.time()
    result = add.apply_async((1, 1), countdown=2)
    assert add.delay(5, 5).get(timeout=30) == 10
    # The scheduled message sits in the database; the worker hasn't even received it.
    assert f"Task tasks.add[{result.id}] received" not in worker.output
    broker = SQLiteBroker(features.broker_url)
    deadline = time.time() + 10  # the 5+5 message is acked just after its result is stored
    while broker.queue_size("celery") != 1 and time.time() < deadline:
        time.sleep(0.01)
    assert broker.queue_size("celery") == 1
    broker.close()
    assert result.get(timeout=30) == 2
    assert time.time() - sent >= 2  # never early
    assert worker.stop() == 0


def test_expired_task_is_revoked_not_run(features: Project) -> None:
    from tasks import add  # type: ignore[import-not-found]

    result = add.apply_async((1, 2), expires=0.5)
    time.sleep(1.0)
    worker = features.worker("tasks", "-c", "1")
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert result.state == "REVOKED"
    assert "succeeded" not in worker.output
    assert worker.stop() == 0


def test_retry_then_success_and_autoretry_exhaustion(features: Project) -> None:
    worker = features.worker("tasks", "-c", "2")
    from tasks import always_fails, flaky  # type: ignore[import-not-found]

    assert flaky.delay(2).get(timeout=30) == 2
    failing = always_fails.delay()
    with pytest.raises(KeyError):
        failing.get(timeout=30)
    assert worker.output.count(f"Task tasks.always_fails[{failing.id}] retry") == 2
    assert worker.stop() == 0


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_time_limits_in_threads_and_solo(features: Project, pool: str) -> None:
    worker = features.worker("tasks", "-P", pool, "-c", "2")
    from tasks import add, hard_loop, soft_loop  # type: ignore[import-not-found]

    assert soft_loop.delay().get(timeout=30) == "caught soft limit"
    with pytest.raises(TimeLimitExceeded):
        hard_loop.delay().get(timeout=30)
    assert add.delay(1, 1).get(timeout=30) == 2  # the pool still has its slots
    assert worker.stop() == 0


def test_soft_and_hard_time_limits(features: Project) -> None:
    worker = features.worker("tasks", "-c", "2")
    from tasks import add, hard, soft  # type: ignore[import-not-found]

    assert soft.delay().get(timeout=30) == "caught soft limit"
    killed = hard.delay()
    with pytest.raises(TimeLimitExceeded):
        killed.get(timeout=30)
    assert "Hard time limit (1.0s) exceeded" in worker.output
    assert add.delay(1, 1).get(timeout=30) == 2  # the pool recovered
    assert worker.stop() == 0
    assert issubclass(SoftTimeLimitExceeded, Exception)


def test_ignore_result_and_track_started(features: Project) -> None:
    worker = features.worker("tasks", "-c", "2")
    from tasks import fire_and_forget, slow_started  # type: ignore[import-not-found]

    ignored = fire_and_forget.delay("marker")
    deadline = time.time() + 30
    while not (features.path / "marker").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (features.path / "marker").exists()
    worker.wait_for(f"Task tasks.fire_and_forget[{ignored.id}] succeeded")
    assert ignored.state == "PENDING"  # ignore_result: the state is never stored
    started = slow_started.delay()
    deadline = time.time() + 30
    while started.state == "PENDING" and time.time() < deadline:
        time.sleep(0.02)
    assert started.state in ("STARTED", "SUCCESS")
    assert started.get(timeout=30) == "done"
    assert worker.stop() == 0


def test_rate_limit_spaces_out_task_starts(features: Project) -> None:
    worker = features.worker("tasks", "-c", "2")
    from tasks import limited  # type: ignore[import-not-found]

    results = [limited.delay(i) for i in range(5)]
    assert [r.get(timeout=60) for r in results] == list(range(5))
    stamps = sorted(float(line.split()[1]) for line in (features.path / "stamps").read_text().splitlines())
    # 2/s: five starts take at least two seconds (a lower bound; a slow machine only adds to it).
    assert stamps[-1] - stamps[0] >= 1.9
    assert worker.stop() == 0


def test_link_error_and_link_callbacks(features: Project) -> None:
    worker = features.worker("tasks", "-c", "2")
    from tasks import add, boom, on_error, stamp  # type: ignore[import-not-found]

    failing = boom.apply_async(link_error=on_error.s())
    with pytest.raises(RuntimeError, match="boom"):
        failing.get(timeout=30)
    deadline = time.time() + 30
    while not (features.path / f"errback-{failing.id}").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (features.path / f"errback-{failing.id}").exists()
    add.apply_async((2, 3), link=stamp.s())
    deadline = time.time() + 30
    while not (features.path / "stamps").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (features.path / "stamps").read_text().startswith("5 ")
    assert worker.stop() == 0


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_autoscale_grows_under_load_and_shrinks_when_idle(features: Project, pool: str) -> None:
    env = features.env(AUTOSCALE_KEEPALIVE="1")
    worker = features.worker("tasks", "-P", pool, "--autoscale=3,1", env=env)
    assert "1-3 (autoscale)" in worker.output
    from tasks import sleepy_stamp  # type: ignore[import-not-found]

    results = [sleepy_stamp.delay(i) for i in range(6)]
    assert sorted(r.get(timeout=60) for r in results) == list(range(6))
    worker.wait_for("Scaling up", timeout=30)
    worker.wait_for("Scaling down", timeout=30)
    assert worker.stop() == 0


def test_liveness_file_and_http_health_checks(features: Project) -> None:
    import json
    import re
    import urllib.error
    import urllib.request

    alive = features.path / "worker.alive"
    worker = features.worker("tasks", "--liveness-file", str(alive), "--healthcheck-port", "0", "-c", "1")
    worker.wait_for("Health checks on http://")
    port = int(re.search(r"Health checks on http://127\.0\.0\.1:(\d+)/healthz", worker.output).group(1))  # type: ignore[union-attr]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.status == 200
        body = json.loads(response.read())
    assert body["healthy"] is True and body["hostname"].startswith("celery@")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
        assert response.status == 200
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    deadline = time.time() + 20
    while not alive.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert alive.exists()
    assert worker.stop() == 0
    assert not alive.exists()  # removed at shutdown: a stopped worker is not alive


GLOBAL_RATE = """
import os, time
from celeriac import Celery

app = Celery("tasks")
HERE = os.path.dirname(os.path.abspath(__file__))


@app.task(rate_limit="2/s", rate_limit_scope=os.environ.get("SCOPE", "global"))
def limited(tag):
    with open(os.path.join(HERE, "stamps"), "a") as fh:
        fh.write(f"{tag} {time.time()}\\n")
    return tag
"""


def _span_of_two_workers(project: Project, scope: str, count: int = 8) -> float:
    project.write("tasks.py", GLOBAL_RATE)
    env = project.env(SCOPE=scope)
    # One message per worker at a time, so both workers really share the work.
    workers = [project.worker("tasks", "-c", "1", "--prefetch-multiplier", "1", "-n", f"w{i}@%h", env=env)
               for i in range(2)]  # fmt: skip
    import importlib

    import tasks  # type: ignore[import-not-found]

    importlib.reload(tasks)
    results = [tasks.limited.delay(i) for i in range(count)]
    assert sorted(r.get(timeout=60) for r in results) == list(range(count))
    stamps = sorted(float(line.split()[1]) for line in (project.path / "stamps").read_text().splitlines())
    for worker in workers:
        assert worker.stop() == 0
    assert all("succeeded in" in w.output for w in workers)
    return stamps[-1] - stamps[0]


def test_global_rate_limit_holds_across_two_workers(project: Project) -> None:
    # 2/s for all workers together: 8 starts take at least 3.5 s (a lower bound, never flaky;
    # each worker counting for itself would allow 4/s, about 1.5 s).
    assert _span_of_two_workers(project, "global") >= 3.4
