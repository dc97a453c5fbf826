"""The ``celeriac`` command line (Celery's commands and options, on click)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from .._version import __version__
from ..exceptions import ImproperlyConfigured, OperationalError
from .base import EX_FAILURE, EX_UNAVAILABLE, CLIContext, set_workdir

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["celeriac", "main"]


class _Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImproperlyConfigured as exc:
            click.echo(f"Error: configuration: {exc}", err=True)
            ctx.exit(EX_FAILURE)
        except OperationalError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EX_UNAVAILABLE)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.option("-A", "--app", "app_spec", envvar="CELERIAC_APP", help="The application: module, module:attr or package.")
@click.option("-b", "--broker", help="Broker URL (default: the embedded SQLite broker).")
@click.option("--result-backend", help="Result backend URL.")
@click.option("--loader", hidden=True, help="Accepted for compatibility; unused.")
@click.option(
    "--config", envvar="CELERIAC_CONFIG_MODULE", help="Configuration module to load (like config_from_object)."
)
@click.option("--workdir", type=click.Path(exists=True, file_okay=False), help="Change to this directory first.")
@click.option("-C", "--no-color", is_flag=True, envvar="NO_COLOR", help="Disable colors.")
@click.option("-q", "--quiet", is_flag=True, help="Less output.")
@click.option("--skip-checks", is_flag=True, hidden=True, help="Accepted for compatibility; unused.")
@click.version_option(__version__, "--version", prog_name="celeriac", message="%(prog)s %(version)s")
@click.pass_context
def celeriac(
    ctx: click.Context,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    loader: str | None,
    config: str | None,
    workdir: str | None,
    no_color: bool,
    quiet: bool,
    skip_checks: bool,
) -> None:
    """celeriac: a distributed task queue with Celery's API and protocol.

    Run a worker with `celeriac -A tasks worker --loglevel=info`; with no broker
    configured it uses the embedded SQLite broker (celeriac.db in the current directory).
    """
    set_workdir(workdir)
    existing = ctx.obj if isinstance(ctx.obj, CLIContext) else None
    ctx.obj = CLIContext(
        app_spec,
        app=existing._app if existing else None,
        broker=broker,
        result_backend=result_backend,
        config=config,
        quiet=quiet,
        no_color=no_color,
    )
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@celeriac.command(name="help")
@click.pass_context
def help_(ctx: click.Context) -> None:
    """Show this help (same as --help)."""
    parent = ctx.parent
    assert parent is not None
    click.echo(parent.get_help())


def _register() -> None:
    from .beat import beat
    from .call import call
    from .control import control, inspect, status
    from .dashboard import dashboard
    from .events import events
    from .multi import multi
    from .purge import purge, purge_results
    from .report import report
    from .result import result
    from .shell import shell
    from .worker import worker

    for command in (worker, call, result, purge, purge_results, report, shell, multi, control, inspect, status, events):
        celeriac.add_command(command)
    celeriac.add_command(dashboard)
    celeriac.add_command(beat)


_register()


def main(argv: Sequence[str] | None = None, app: Celery | None = None) -> None:
    """Entry point of the ``celeriac`` script (``app`` is set by ``app.worker_main``/``app.start``)."""
    obj = CLIContext(app=app) if app is not None else None
    celeriac.main(
        args=list(argv) if argv is not None else sys.argv[1:],
        prog_name="celeriac",
        obj=obj,
        auto_envvar_prefix="CELERIAC",
    )
