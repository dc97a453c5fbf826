"""``celeriac report``: versions and settings, for bug reports (secrets masked)."""

from __future__ import annotations

import platform
import pprint
import sys
from typing import TYPE_CHECKING

import click

from .._version import __version__
from ..brokers import scheme_of
from ..exceptions import ImproperlyConfigured
from .base import CLIContext, app_option, pass_cli

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["bugreport", "bugreport_for", "report"]


def bugreport(cli: CLIContext) -> str:
    app = cli.app
    app.import_default_modules()
    return bugreport_for(app)


def bugreport_for(app: Celery) -> str:
    """Versions, platform and settings (secrets masked): ``celeriac report`` and ``inspect report``."""
    lines = [
        f"software -> celeriac:{__version__} py:{platform.python_version()}",
        f"            click:{click.__version__}",
        f"platform -> system:{platform.system()} arch:{platform.architecture()[0]}",
        f"            kernel version:{platform.release()} imp:{platform.python_implementation()}",
        f"app -> {app.main or '__main__'} ({len([t for t in app.tasks if not t.startswith('celery.')])} tasks)",
        f"settings -> transport:{scheme_of(app.broker_url)} results:{_results(app)}",
        "",
    ]
    for key, value in sorted(app.conf.table(with_defaults=False).items()):
        lines.append(f"{key}: {pprint.pformat(value)}")
    return "\n".join(lines)


def _results(app: Celery) -> str:
    # A report must work even when the configured backend can't be created here.
    try:
        return str(app.backend)
    except ImproperlyConfigured as exc:
        return f"unavailable ({exc})"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@pass_cli
def report(cli: CLIContext) -> None:
    """Show versions, platform and settings (for bug reports)."""
    click.echo(bugreport(cli))
    sys.stdout.flush()
