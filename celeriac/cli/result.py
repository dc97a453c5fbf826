"""``celeriac result``: print a task's result."""

from __future__ import annotations

import pprint
import sys

import click

from .base import EX_FAILURE, CLIContext, app_option, pass_cli

__all__ = ["result"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@click.argument("task_id")
@click.option("-t", "--task", help="Name of the task (for its own result backend, if it has one).")
@click.option("--traceback", is_flag=True, help="Show the traceback instead of the result.")
@click.option("--timeout", type=float, help="Seconds to wait for the task (default: wait until it finishes).")
@pass_cli
def result(cli: CLIContext, task_id: str, task: str | None, traceback: bool, timeout: float | None) -> None:
    """Wait for task TASK_ID and print its result (or traceback)."""
    app = cli.app
    if task and task not in app.tasks:
        raise click.BadParameter(f"no task named {task!r} is registered", param_hint="'-t' / '--task'")
    res = app.tasks[task].AsyncResult(task_id) if task else app.AsyncResult(task_id)
    if traceback:
        value = res.traceback
    else:
        try:
            value = res.get(timeout=timeout, propagate=False)
        except TimeoutError as exc:  # celeriac.exceptions.TimeoutError subclasses it
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EX_FAILURE)
    click.echo(value if isinstance(value, str) else pprint.pformat(value))
