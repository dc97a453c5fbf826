"""``celeriac report``: versions and settings, for bug reports (secrets masked)."""

from __future__ import annotations

import platform
import pprint
import sys

import click

from .._version import __version__
from .base import CLIContext, app_option, pass_cli

__all__ = ["bugreport", "report"]


def bugreport(cli: CLIContext) -> str:
    app = cli.app
    broker = app.create_broker()
    lines = [
        f"software -> celeriac:{__version__} py:{platform.python_version()}",
        f"            click:{click.__version__}",
        f"platform -> system:{platform.system()} arch:{platform.architecture()[0]}",
        f"            kernel version:{platform.release()} imp:{platform.python_implementation()}",
        f"app -> {app.main or '__main__'} ({len([t for t in app.tasks if not t.startswith('celery.')])} tasks)",
        f"settings -> transport:{broker.info().get('transport')} results:{app.backend}",
        "",
    ]
    for key, value in sorted(app.conf.table(with_defaults=False).items()):
        lines.append(f"{key}: {pprint.pformat(value)}")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@pass_cli
def report(cli: CLIContext) -> None:
    """Show versions, platform and settings (for bug reports)."""
    click.echo(bugreport(cli))
    sys.stdout.flush()
