"""Shared CLI plumbing: the context object, app loading and error reporting."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .app_loader import AppNotFound, find_app

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["CLIContext", "EX_CANTCREAT", "EX_FAILURE", "EX_UNAVAILABLE", "EX_USAGE", "app_option", "pass_cli"]

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73

F = TypeVar("F", bound=Callable[..., Any])


class CLIContext:
    """What the root command's options set up, shared with sub-commands."""

    def __init__(
        self,
        app_spec: str | None = None,
        *,
        app: Celery | None = None,
        broker: str | None = None,
        result_backend: str | None = None,
        config: str | None = None,
        quiet: bool = False,
        no_color: bool = False,
    ) -> None:
        self.app_spec = app_spec
        self._app = app
        # As Celery does: -b/--result-backend go through the environment, so they win over
        # the app's own settings and reach child processes too.
        if broker:
            from ..config import coerce

            os.environ["CELERIAC_BROKER_URL"] = coerce("broker_url", broker)
        if result_backend:
            from ..config import coerce

            os.environ["CELERIAC_RESULT_BACKEND"] = coerce("result_backend", result_backend)
        self.broker = broker
        self.result_backend = result_backend
        self.config = config
        self.quiet = quiet
        self.no_color = no_color

    @property
    def app(self) -> Celery:
        if self._app is None:
            if self.app_spec:
                try:
                    self._app = find_app(self.app_spec)
                except AppNotFound as exc:
                    raise click.BadParameter(
                        f"\nUnable to load celeriac application.\n{exc}", param_hint="'-A' / '--app'"
                    ) from None
            else:
                from .._state import get_current_app

                self._app = get_current_app()
            self._configure(self._app)
        return self._app

    def _configure(self, app: Celery) -> None:
        if self.config:
            app.config_from_object(self.config)

    def echo(self, message: Any = "", **kwargs: Any) -> None:
        if not self.quiet:
            click.echo(message, **kwargs)

    def error(self, message: str) -> None:
        click.echo(message, err=True)


pass_cli = click.make_pass_decorator(CLIContext, ensure=True)


def app_option(f: F) -> F:
    """``-A`` accepted after the sub-command too (``celeriac worker -A tasks``)."""

    def set_app(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value:
            ctx.ensure_object(CLIContext).app_spec = value

    return click.option(
        "-A",
        "--app",
        "app_",
        expose_value=False,
        callback=set_app,
        is_eager=True,
        help="The application: module, module:attr or package with a celery.py.",
    )(f)


def set_workdir(workdir: str | None) -> None:
    if workdir:
        os.chdir(workdir)
        if workdir not in sys.path:
            sys.path.insert(0, os.path.abspath(workdir))
