"""``celeriac dashboard``: the built-in web dashboard (workers, tasks, queues, charts, /metrics)."""

from __future__ import annotations

import logging

import click

from .base import EX_UNAVAILABLE, EX_USAGE, CLIContext, app_option, pass_cli

__all__ = ["dashboard"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@click.option("--port", type=int, default=5555, show_default=True, help="Port to listen on.")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to bind (not loopback: needs --auth).")
@click.option("--auth", envvar="CELERIAC_DASHBOARD_AUTH", help="user:password for basic auth, or a bearer token "
              "(also CELERIAC_DASHBOARD_AUTH).")  # fmt: skip
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Task history file (default: "
              "celeriac-dashboard.db beside the embedded store, or in the current directory).")  # fmt: skip
@click.option("--max-tasks", type=click.IntRange(min=100), default=200_000, show_default=True,
              help="Tasks kept in the history (the oldest go first).")  # fmt: skip
@click.option("-l", "--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))  # fmt: skip
@pass_cli
def dashboard(cli: CLIContext, port: int, address: str, auth: str | None, db_path: str | None, max_tasks: int,
              loglevel: str) -> None:  # fmt: skip
    """Serve the web dashboard, /metrics and /healthz, /readyz (start workers with -E for task events)."""
    try:
        import uvicorn

        from ..config import mask_url
        from ..dashboard import Auth, InsecureBind, check_bind, create_app, default_db_path
    except ImportError as exc:
        cli.error(f"Error: the dashboard needs its extra: pip install 'celeriac[dashboard]' ({exc})")
        raise SystemExit(EX_UNAVAILABLE) from None
    try:
        parsed = Auth.parse(auth)
        check_bind(address, parsed)
    except (ValueError, InsecureBind) as exc:
        cli.error(f"Error: {exc}")
        raise SystemExit(EX_USAGE) from None
    app = cli.app
    db = db_path or default_db_path(app)
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s")
    web = create_app(app, db_path=db, auth=parsed, max_tasks=max_tasks)
    host = f"[{address}]" if ":" in address else address
    cli.echo(f"celeriac dashboard on http://{host}:{port}/ (broker {mask_url(app.broker_url)}, history {db}, "
             f"auth {'on' if parsed else 'off'})")  # fmt: skip
    uvicorn.run(web, host=address, port=port, log_level=loglevel.lower(), lifespan="on")
