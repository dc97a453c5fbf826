"""``celeriac beat``: start the periodic task scheduler (several may run; one leads)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click

from .._version import __version__
from .base import EX_CANTCREAT, CLIContext, app_option, pass_cli
from .worker import LogLevel, _group_id, _user_id

__all__ = ["beat"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@click.option("--detach", is_flag=True, help="Run in the background (use with --pidfile and --logfile).")
@click.option(
    "-s",
    "--schedule",
    "schedule_filename",
    help="Keep schedule state in this SQLite file (default: the broker's store, Redis or the embedded SQLite file).",
)
@click.option("-S", "--scheduler", help="Scheduler class (default: beat_scheduler, celeriac.beat:PersistentScheduler).")
@click.option(
    "--max-interval",
    type=click.FloatRange(min=0, min_open=True),
    help="Most seconds to sleep between checks of the schedule (default 300).",
)
@click.option(
    "--lease-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds after which a silent leader's lease lapses and a standby beat takes over (beat_lease_timeout).",
)
@click.option(
    "-l",
    "--loglevel",
    type=LogLevel(),
    default="WARNING",
    show_default=True,
    help="DEBUG, INFO, WARNING, ERROR or CRITICAL.",
)
@click.option("-f", "--logfile", help="Log to this file (default: stderr).")
@click.option("--pidfile", help="Write beat's pid here; refuse to start if another process holds it.")
@click.option("--uid", help="User to run as when detached.")
@click.option("--gid", help="Group to run as when detached.")
@click.option("--umask", help="umask when detached (octal).")
@click.option("--executable", hidden=True)
@pass_cli
def beat(cli: CLIContext, /, **options: Any) -> None:
    """Start beat, which sends periodic tasks: `celeriac -A proj beat -l info`.

    Several beats may run against one broker for availability: one holds a lease
    and sends due tasks, the others take over within --lease-timeout if it stops.
    """
    from ..beat import Service
    from ..log import setup_logging

    app = cli.app
    umask = _umask(options["umask"])
    if options["detach"]:
        from .daemon import detach

        detach(
            logfile=options["logfile"], workdir=os.getcwd(), umask=umask,
            uid=_user_id(options["uid"]), gid=_group_id(options["gid"]),
        )  # fmt: skip
    if options["pidfile"]:
        _acquire_pidfile(options["pidfile"])
    conf = app.conf
    setup_logging(
        options["loglevel"],
        options["logfile"],
        conf.worker_log_format,
        conf.worker_task_log_format,
        hijack_root=conf.worker_hijack_root_logger,
    )
    service = Service(
        app,
        max_interval=options["max_interval"],
        schedule_filename=options["schedule_filename"],
        scheduler_cls=options["scheduler"],
        lease_timeout=options["lease_timeout"],
    )
    cli.echo(_banner(app, service, options["loglevel"], options["logfile"]), err=True)

    def on_stop(signum: int, frame: Any) -> None:
        service.stop()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    service.start()


def _umask(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal umask (e.g. 022)", param_hint="'--umask'") from None


def _acquire_pidfile(path: str) -> None:
    from .daemon import Pidfile, PidfileExists

    try:
        Pidfile(path).acquire()
    except PidfileExists as exc:
        click.echo(f"ERROR: {exc}", err=True)
        sys.exit(EX_CANTCREAT)
    except OSError as exc:
        click.echo(f"ERROR: can't write pidfile {path}: {exc}", err=True)
        sys.exit(EX_CANTCREAT)


def _banner(app: Any, service: Any, loglevel: str, logfile: str | None) -> str:
    from ..config import mask_url

    scheduler = service.scheduler
    cls = type(scheduler)
    return "\n".join(
        [
            f"celeriac beat v{__version__} is starting.",
            "Configuration ->",
            f"    . broker -> {mask_url(app.broker_url)}",
            f"    . scheduler -> {cls.__module__}.{cls.__name__}",
            scheduler.info,
            f"    . logfile -> {logfile or '[stderr]'}@%{loglevel}",
            f"    . maxinterval -> {scheduler.max_interval:g}s",
            f"    . entries -> {len(scheduler.data)}",
        ]
    )
