"""``celeriac purge``: delete every waiting message."""

from __future__ import annotations

import click

from .base import CLIContext, app_option, pass_cli

__all__ = ["purge"]


def _comma_list(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    return [item.strip() for chunk in value for item in chunk.split(",") if item.strip()]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@click.option("-f", "--force", is_flag=True, help="Don't ask for confirmation.")
@click.option("-Q", "--queues", multiple=True, callback=_comma_list, help="Only these queues (comma-separated).")
@click.option("-X", "--exclude-queues", multiple=True, callback=_comma_list, help="Not these queues.")
@pass_cli
def purge(cli: CLIContext, force: bool, queues: list[str], exclude_queues: list[str]) -> None:
    """Delete all waiting tasks from the queues (there is no undo)."""
    app = cli.app
    names = [q for q in (queues or app.configured_queue_names()) if q not in set(exclude_queues)]
    if not names:
        cli.echo("No queues to purge.")
        return
    plural = "s" if len(names) > 1 else ""
    if not force:
        click.echo(
            f"WARNING: This will remove all tasks from queue{plural}: {', '.join(names)}.\n"
            "         There is no undo for this operation!\n\n(to skip this prompt use the -f option)"
        )
        answer = click.prompt("Are you sure you want to delete all tasks (yes/NO)?", default="NO", show_default=False)
        if answer.strip().lower() not in ("y", "yes"):
            return
    broker = app.connection_for_write()
    purged = sum(broker.purge(name) for name in names)
    if purged:
        cli.echo(f"Purged {purged} message{'' if purged == 1 else 's'} from {len(names)} known task queue{plural}.")
    else:
        cli.echo(f"No messages purged from {len(names)} queue{plural}.")


@click.command(name="purge-results", context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@pass_cli
def purge_results(cli: CLIContext) -> None:
    """Delete stored results older than result_expires (what the celery.backend_cleanup task does)."""
    backend = cli.app.backend
    cleanup = getattr(backend, "cleanup", None)
    if cleanup is None:
        raise click.UsageError(f"{backend!r} has no cleanup: it expires results itself, or keeps none")
    removed = cleanup()
    cli.echo(f"Deleted {removed} expired result{'' if removed == 1 else 's'}.")
