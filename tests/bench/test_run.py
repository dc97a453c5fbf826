"""A report that would come out with holes (no profiler, no matplotlib) is refused before the run starts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bench import plots, profile, run


def refuse_if_run(*args: object) -> None:
    raise AssertionError("the scenarios ran although the report could not be complete")


def test_markdown_without_py_spy_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(profile, "py_spy", lambda: None)
    monkeypatch.setattr(run, "run_scenarios", refuse_if_run)
    doc = tmp_path / "benchmarks.md"
    code = run.main(["--scenarios", "profile", "--amqp-url", "none", "--markdown", str(doc)])
    assert code == 2
    assert not doc.exists()
    err = capsys.readouterr().err
    assert "py-spy (the worker profiles)" in err and "pip install -e '.[bench]'" in err


def test_markdown_without_matplotlib_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(plots, "available", lambda: False)
    monkeypatch.setattr(run, "run_scenarios", refuse_if_run)
    code = run.main(["--scenarios", "cli", "--markdown", str(tmp_path / "b.md")])
    assert code == 2
    assert "matplotlib (the plots)" in capsys.readouterr().err


def test_profile_tools_are_not_asked_for_when_profile_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile, "py_spy", lambda: None)
    settings = run.from_args(run.parse_args(["--scenarios", "throughput,cli"]))
    assert all("py-spy" not in tool for tool in run.missing_tools(settings))
    assert any("py-spy" in tool for tool in run.missing_tools(run.from_args(run.parse_args([]))))


def test_io_without_gevent_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Celery's best io-bound pool: without it the io section would compare with a weaker Celery.
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gevent" else real(name, *a))
    monkeypatch.setattr(run, "run_scenarios", refuse_if_run)
    assert run.main(["--scenarios", "io", "--markdown", str(tmp_path / "b.md")]) == 2
    assert "gevent" in capsys.readouterr().err
    celeriac_alone = run.from_args(run.parse_args(["--scenarios", "io", "--systems", "celeriac"]))
    assert not any("gevent" in tool for tool in run.missing_tools(celeriac_alone))
