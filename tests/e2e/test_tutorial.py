"""The seed tutorial, step by step, on the embedded SQLite broker with a real worker."""

from __future__ import annotations

from tests.conftest import Project


def test_add_delay_get(tasks_module: Project) -> None:
    worker = tasks_module.worker("tasks", "-c", "2")
    from tasks import add  # type: ignore[import-not-found]

    result = add.delay(4, 4)
    assert result.get(timeout=20) == 8
    assert result.ready() and result.successful() and result.state == "SUCCESS"
    worker.wait_for("succeeded in")
    assert f"Task tasks.add[{result.id}] received" in worker.output
    assert f"Task tasks.add[{result.id}] succeeded in" in worker.output
    assert worker.output.rstrip().endswith("8") or ": 8" in worker.output
    assert worker.stop() == 0
    assert "Warm shutdown" in worker.output
