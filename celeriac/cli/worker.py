"""``celeriac worker``: start a worker."""

from __future__ import annotations

import grp
import os
import pwd
import sys
from typing import Any

import click

from ..log import parse_level, setup_logging
from .base import EX_CANTCREAT, CLIContext, app_option, pass_cli

__all__ = ["worker"]


class LogLevel(click.ParamType):  # type: ignore[type-arg]
    name = "level"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_level(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value).upper()


class Autoscale(click.ParamType):  # type: ignore[type-arg]
    name = "max,min"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        try:
            parts = [int(p) for p in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r} is not max,min (e.g. 10,3)", param, ctx)
        high, low = (parts + [0])[:2] if len(parts) == 1 else parts[:2]
        return max(high, low), min(high, low)


def _comma_list(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    return [item.strip() for chunk in value for item in chunk.split(",") if item.strip()]


def _user_id(value: str | None) -> int | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else pwd.getpwnam(value).pw_uid


def _group_id(value: str | None) -> int | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else grp.getgrnam(value).gr_gid


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@click.option("-n", "--hostname", help="Node name; %h (host), %n (name part) and %d (domain) are expanded.")
@click.option("-D", "--detach", is_flag=True, help="Run in the background (use with --pidfile and --logfile).")
@click.option("-S", "--statedb", hidden=True, help="Accepted for compatibility; revokes are kept by the broker.")
@click.option(
    "-l",
    "--loglevel",
    type=LogLevel(),
    default="WARNING",
    show_default=True,
    help="DEBUG, INFO, WARNING, ERROR or CRITICAL.",
)
@click.option("-O", "--optimization", type=click.Choice(["default", "fair"]), help="Accepted for compatibility.")
@click.option("--prefetch-multiplier", type=click.IntRange(min=1), help="Messages held per pool slot.")
@click.option("--disable-prefetch", is_flag=True, help="Hold only one message per free slot.")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), help="Pool size (default: number of CPUs).")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo", "asyncio"]), help="Pool implementation.")
@click.option(
    "-E",
    "--task-events",
    "--events",
    "task_events",
    is_flag=True,
    default=None,
    help="Send task events (for monitors).",
)
@click.option("--time-limit", type=float, help="Hard time limit per task, in seconds.")
@click.option("--soft-time-limit", type=float, help="Soft time limit per task, in seconds.")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1), help="Replace a pool process after N tasks.")
@click.option("--max-memory-per-child", type=click.IntRange(min=1), help="Replace a pool process above N KiB RSS.")
@click.option("--purge", "--discard", "purge", is_flag=True, help="Delete all waiting messages before starting.")
@click.option("-Q", "--queues", multiple=True, callback=_comma_list, help="Queues to consume from (comma-separated).")
@click.option("-X", "--exclude-queues", multiple=True, callback=_comma_list, help="Queues not to consume from.")
@click.option("-I", "--include", multiple=True, callback=_comma_list, help="Extra modules to import.")
@click.option("--without-gossip", is_flag=True, hidden=True)
@click.option("--without-mingle", is_flag=True, hidden=True)
@click.option("--without-heartbeat", is_flag=True, hidden=True)
@click.option("--heartbeat-interval", type=float, hidden=True)
@click.option(
    "--autoscale", type=Autoscale(), help="max,min: grow the pool up to max while tasks wait, shrink to min when idle."
)
@click.option("--liveness-file", help="Touch this file every few seconds while the worker is healthy.")
@click.option("--healthcheck-port", type=click.IntRange(0, 65535), help="Serve /healthz and /readyz on this port.")
@click.option("--healthcheck-address", default=None, help="Address for --healthcheck-port (default 127.0.0.1).")
@click.option("-f", "--logfile", help="Log to this file (default: stderr).")
@click.option("--pidfile", help="Write the worker's pid here; refuse to start if another worker holds it.")
@click.option("--uid", help="User to run as when detached.")
@click.option("--gid", help="Group to run as when detached.")
@click.option("--umask", help="umask when detached (octal).")
@click.option("-B", "--beat", is_flag=True, help="Also run beat, the periodic task scheduler, in this worker.")
@click.option("-s", "--schedule-filename", "--schedule", help="Beat's schedule state file (with -B; see `beat -s`).")
@click.option("--scheduler", help="Beat's scheduler class (with -B).")
@click.option("--executable", hidden=True)
@pass_cli
def worker(cli: CLIContext, /, **options: Any) -> None:
    """Start a worker: `celeriac -A tasks worker --loglevel=info`."""
    from ..worker.main import WorkController, expand_hostname

    app = cli.app
    hostname = options["hostname"]
    node = expand_hostname(hostname) if hostname else None
    logfile = _expand_path(options["logfile"], node)
    if logfile and options["logfile"] and ("%i" in options["logfile"] or "%I" in options["logfile"]):
        # Each prefork process writes its own file (%i: its index, %I: "-<index>"; the main process: 0, "").
        os.environ["CELERIAC_CHILD_LOGFILE"] = _expand_path(options["logfile"], node, keep_index=True) or ""
    pidfile = _expand_path(options["pidfile"], node)
    if options["include"]:
        app.conf.include = tuple(app.conf.include or ()) + tuple(options["include"])
    if options["detach"]:
        from .daemon import detach

        umask = int(options["umask"], 8) if options["umask"] else None
        detach(
            logfile=logfile,
            workdir=os.getcwd(),
            umask=umask,
            uid=_user_id(options["uid"]),
            gid=_group_id(options["gid"]),
        )
    if pidfile:
        from .daemon import Pidfile, PidfileExists

        try:
            Pidfile(pidfile).acquire()
        except PidfileExists as exc:
            click.echo(f"ERROR: {exc}", err=True)
            sys.exit(EX_CANTCREAT)
        except OSError as exc:
            click.echo(f"ERROR: can't write pidfile {pidfile}: {exc}", err=True)
            sys.exit(EX_CANTCREAT)
    conf = app.conf
    if options["liveness_file"]:
        conf.worker_liveness_file = os.path.abspath(options["liveness_file"])
    if options["healthcheck_port"] is not None:
        conf.worker_healthcheck_port = options["healthcheck_port"]
    if options["healthcheck_address"]:
        conf.worker_healthcheck_address = options["healthcheck_address"]
    setup_logging(
        options["loglevel"],
        logfile,
        conf.worker_log_format,
        conf.worker_task_log_format,
        hijack_root=conf.worker_hijack_root_logger,
        redirect_stdouts=conf.worker_redirect_stdouts,
        redirect_level=conf.worker_redirect_stdouts_level,
    )
    concurrency = options["concurrency"]
    controller = WorkController(
        app,
        hostname=hostname,
        concurrency=concurrency,
        pool=options["pool"],
        queues=options["queues"] or None,
        exclude_queues=options["exclude_queues"],
        prefetch_multiplier=1 if options["disable_prefetch"] else options["prefetch_multiplier"],
        max_tasks_per_child=options["max_tasks_per_child"],
        max_memory_per_child=options["max_memory_per_child"],
        time_limit=options["time_limit"],
        soft_time_limit=options["soft_time_limit"],
        send_events=options["task_events"],
        purge=options["purge"],
        autoscale=options["autoscale"],
        app_path=cli.app_spec,
        quiet=cli.quiet,
    )
    if not options["beat"]:
        controller.start()
        return
    embedded = _embedded_beat(app, options["schedule_filename"], options["scheduler"])
    try:
        controller.start()
    finally:
        embedded.stop()


def _embedded_beat(app: Any, schedule_filename: str | None, scheduler: str | None) -> Any:
    """Beat in a thread of this worker, started once the worker is ready (its modules are imported by then)."""
    from .. import signals
    from ..beat import EmbeddedService

    embedded = EmbeddedService(app, schedule_filename=schedule_filename, scheduler_cls=scheduler)

    def start(**kwargs: Any) -> None:
        if not embedded.is_alive():
            embedded.start()

    signals.worker_ready.connect(start, dispatch_uid=("celeriac-embedded-beat", id(embedded)))
    return embedded


def _expand_path(path: str | None, node: str | None, *, keep_index: bool = False) -> str | None:
    if not path:
        return path
    from ..worker.main import default_nodename

    nodename = node or default_nodename()
    name, _, host = nodename.partition("@")
    path = path.replace("%n", name).replace("%h", host).replace("%d", host.partition(".")[2])
    if keep_index:
        return path
    return path.replace("%i", "0").replace("%I", "")
