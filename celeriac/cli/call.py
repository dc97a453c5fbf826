"""``celeriac call``: send a task by name."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from .base import CLIContext, app_option, pass_cli

__all__ = ["call"]


class JSONValue(click.ParamType):  # type: ignore[type-arg]
    name = "json"

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, self.kind):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            self.fail(f"{value!r} is not valid JSON: {exc}", param, ctx)
        if not isinstance(parsed, self.kind):
            self.fail(f"expected a JSON {'array' if self.kind is list else 'object'}, got {value!r}", param, ctx)
        return parsed


class ISODateTime(click.ParamType):  # type: ignore[type-arg]
    name = "iso-8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date and time", param, ctx)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@click.argument("name")
@click.option(
    "-a", "--args", "args_", type=JSONValue(list), default="[]", help="Positional arguments (JSON), e.g. '[2, 2]'."
)
@click.option("-k", "--kwargs", "kwargs_", type=JSONValue(dict), default="{}", help="Keyword arguments (JSON).")
@click.option("--eta", type=ISODateTime(), help="Earliest time to run (ISO 8601).")
@click.option("--countdown", type=float, help="Seconds to wait before running.")
@click.option("--expires", type=float, help="Seconds after which the task is discarded if not started.")
@click.option("--serializer", default="json", show_default=True, help="Serializer for the arguments.")
@click.option("--queue", help="Queue to send to.")
@click.option("--exchange", help="Exchange to send to.")
@click.option("--routing-key", help="Routing key.")
@pass_cli
def call(
    cli: CLIContext,
    name: str,
    args_: list[Any],
    kwargs_: dict[str, Any],
    eta: datetime | None,
    countdown: float | None,
    expires: float | None,
    serializer: str,
    queue: str | None,
    exchange: str | None,
    routing_key: str | None,
) -> None:
    """Send task NAME and print its id: `celeriac -A tasks call tasks.add --args='[2, 2]'`."""
    result = cli.app.send_task(
        name,
        args=args_,
        kwargs=kwargs_,
        eta=eta,
        countdown=countdown,
        expires=expires,
        serializer=serializer,
        queue=queue,
        exchange=exchange,
        routing_key=routing_key,
    )
    click.echo(result.id)
