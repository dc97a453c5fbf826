"""The custom backend example in docs/custom-backends.md, run as written, with a real worker."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT, Project


def _example() -> str:
    text = (ROOT / "docs" / "custom-backends.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return blocks[0]


def test_documented_file_backend_works_across_processes(project: Project, tmp_path: Path) -> None:
    source = _example()
    assert len(source.splitlines()) <= 40  # the docs promise a small example
    project.write("myapp/__init__.py", "")
    project.write("myapp/backends.py", source)
    results = tmp_path / "results"
    project.write(
        "tasks.py",
        f"""
from celeriac import Celery

app = Celery("tasks", backend="myapp.backends:FileBackend")
app.conf.result_backend_transport_options = {{"path": {str(results)!r}}}


@app.task
def add(x, y):
    return x + y


@app.task
def fail():
    raise KeyError("missing")
""",
    )
    project.result_backend = "myapp.backends:FileBackend"
    assert project.monkeypatch is not None
    project.monkeypatch.setenv("CELERIAC_RESULT_BACKEND", "myapp.backends:FileBackend")
    worker = project.worker("tasks", "-c", "2")
    from tasks import add, app, fail  # type: ignore[import-not-found]

    result = add.delay(4, 4)
    assert result.get(timeout=30) == 8
    assert (results / f"celery-task-meta-{result.id}").exists()
    failed = fail.delay()
    assert isinstance(failed.get(timeout=30, propagate=False), KeyError)
    result.forget()
    assert result.state == "PENDING"
    assert type(app.backend).__name__ == "FileBackend"
    assert worker.stop() == 0


def test_backend_class_passed_directly(project: Project, tmp_path: Path) -> None:
    project.write("myapp/__init__.py", "")
    project.write("myapp/backends.py", _example())
    import myapp.backends  # type: ignore[import-not-found]

    from celeriac import Celery

    app = Celery("direct", broker="memory://", backend=myapp.backends.FileBackend)
    app.conf.result_backend_transport_options = {"path": str(tmp_path / "direct")}
    app.backend.store_result("t", [1, 2], "SUCCESS")
    assert app.AsyncResult("t").get(timeout=5) == [1, 2]
