"""What the health probes say for a stalled loop and for a lost broker."""

from __future__ import annotations

import time
from types import SimpleNamespace

from celeriac.worker.health import worker_status


def _consumer(since: float, connected: bool) -> SimpleNamespace:
    return SimpleNamespace(last_loop=time.monotonic() - since, connected=connected, state=SimpleNamespace(active={}))


def test_healthy_ready_worker() -> None:
    status = worker_status(_consumer(0.1, True), "celery@h")
    assert status["healthy"] is True and status["ready"] is True and status["reason"] == "ok"


def test_stalled_loop_is_unhealthy() -> None:
    status = worker_status(_consumer(120, True), "celery@h", stall_after=60)
    assert status["healthy"] is False and "stalled" in status["reason"]


def test_lost_broker_is_unhealthy_and_not_ready() -> None:
    status = worker_status(_consumer(0.1, False), "celery@h")
    assert status["healthy"] is False and status["ready"] is False and status["reason"] == "broker unreachable"


def test_starting_worker() -> None:
    assert worker_status(None, "celery@h") == {"hostname": "celery@h", "healthy": False, "ready": False,
                                                "reason": "starting"}  # fmt: skip
