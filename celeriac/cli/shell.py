"""``celeriac shell``: a Python shell with the app and its tasks imported."""

from __future__ import annotations

import code
from typing import Any

import click

from .base import CLIContext, app_option, pass_cli

__all__ = ["shell"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@click.option("--without-tasks", is_flag=True, help="Don't add the tasks to the namespace.")
@pass_cli
def shell(cli: CLIContext, without_tasks: bool) -> None:
    """Start a Python shell with `app`, `celery` and the tasks available."""
    from .. import signature
    from ..result import AsyncResult

    app = cli.app
    app.import_default_modules()
    namespace: dict[str, Any] = {"app": app, "celery": app, "AsyncResult": AsyncResult, "signature": signature}
    if not without_tasks:
        for name, task in app.tasks.items():
            if not name.startswith("celery."):
                namespace[name.rsplit(".", 1)[-1]] = task
    code.interact(banner=f"celeriac shell: app={app!r}; tasks: {', '.join(sorted(namespace))}", local=namespace)
