"""Celery 5 and celeriac on the same Redis queues and results, in both directions."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Project
from tests.interop.conftest import celery_worker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _wait_for_file(path: object, timeout: float = 30) -> bool:
    from pathlib import Path

    target = Path(str(path))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if target.exists():
            return True
        time.sleep(0.05)
    return False


def test_celery_client_to_celeriac_worker(mixed: Project) -> None:
    worker = mixed.worker("tasks", "-c", "2")
    import ctasks  # type: ignore[import-not-found]

    assert ctasks.add.delay(2, 3).get(timeout=30) == 5
    sent = time.time()
    assert ctasks.add.apply_async((1, 1), countdown=2).get(timeout=30) == 2
    assert time.time() - sent >= 2
    failing = ctasks.fail.delay()
    # The worker's module is tasks.py, the client's ctasks.py: Celery rebuilds the type by name.
    with pytest.raises(Exception, match="from celeriac") as info:
        failing.get(timeout=30)
    assert type(info.value).__name__ == "Oops"
    assert ctasks.add.delay(1, 0).get(timeout=30) == 1
    with pytest.raises(ZeroDivisionError):
        ctasks.app.send_task("tasks.div", (1, 0)).get(timeout=30)
    ctasks.touch.delay("from-celery-client")
    assert _wait_for_file(mixed.path / "from-celery-client")
    results = [ctasks.add.delay(i, i) for i in range(300)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(300)]
    chained = (ctasks.add.s(2, 2) | ctasks.mul.s(10) | ctasks.add.s(1)).apply_async()
    assert chained.get(timeout=30) == 41
    assert worker.stop() == 0
    ctasks.app.close()


def test_celeriac_client_to_celery_worker(mixed: Project) -> None:
    worker = celery_worker(mixed, "ctasks", "-P", "threads", "-c", "2")
    import tasks  # type: ignore[import-not-found]

    assert tasks.add.delay(2, 3).get(timeout=30) == 5
    # Text beyond ASCII in the headers (argsrepr) and a header of the caller's: the envelope
    # celeriac writes is UTF-8 JSON where kombu's is \u-escaped ASCII; kombu reads both.
    assert tasks.add.apply_async(("\u00e9t", "\u00e9 \u2713"), headers={"note": "na\u00efve"}).get(timeout=30) == (
        "\u00e9t\u00e9 \u2713"
    )
    sent = time.time()
    assert tasks.add.apply_async((1, 1), countdown=2).get(timeout=30) == 2
    assert time.time() - sent >= 2
    failing = tasks.fail.delay()
    with pytest.raises(Exception, match="from celery") as info:
        failing.get(timeout=30)
    assert type(info.value).__name__ == "Oops"
    with pytest.raises(ZeroDivisionError):
        tasks.app.send_task("tasks.div", (1, 0)).get(timeout=30)
    tasks.touch.delay("from-celeriac-client")
    assert _wait_for_file(mixed.path / "from-celeriac-client")
    results = [tasks.add.delay(i, i) for i in range(300)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(300)]
    linked = tasks.add.apply_async((2, 2), link=tasks.mul.s(10))
    assert linked.get(timeout=30) == 4
    assert worker.stop() == 0


def test_both_workers_share_one_queue(mixed: Project) -> None:
    celery = celery_worker(mixed, "ctasks", "-P", "threads", "-c", "2", "-n", "celery1@%h")
    celeriac = mixed.worker("tasks", "-c", "2", "-n", "celeriac1@%h")
    import ctasks  # type: ignore[import-not-found]
    import tasks  # type: ignore[import-not-found]

    results = [(ctasks if i % 2 else tasks).add.delay(i, 1) for i in range(200)]
    assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(200)]
    assert "succeeded in" in celery.output and "succeeded in" in celeriac.output
    assert celery.stop() == 0 and celeriac.stop() == 0
    ctasks.app.close()
