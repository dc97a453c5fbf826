"""``celeriac control``, ``celeriac inspect`` and ``celeriac status`` (Celery's, same output)."""

from __future__ import annotations

import json
import pprint
import textwrap
from collections.abc import Callable
from typing import Any

import click

from ..exceptions import CeleriacError
from .base import EX_UNAVAILABLE, CLIContext, app_option, pass_cli


def _panel_meta() -> dict[str, Any]:
    # Imported when a command runs, not at start-up: the worker's modules are many, and
    # `celeriac --help` needs none of them.
    from ..worker.control import Panel

    return Panel.meta


__all__ = ["control", "inspect", "status"]

NO_REPLY = "No nodes replied within time constraint"


def _destination(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return [d.strip() for d in value.split(",") if d.strip()] if value else None


def _remote_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("-j", "--json", "as_json", is_flag=True, help="Use json as output format.")(f)
    f = click.option(
        "-d", "--destination", callback=_destination, help="Comma separated list of destination node names."
    )(f)
    f = click.option("-t", "--timeout", type=float, default=1.0, show_default=True,
                     help="Timeout in seconds waiting for reply.")(f)  # fmt: skip
    return app_option(f)


def _indent(text: str, by: int = 4) -> str:
    return textwrap.indent(text, " " * by)


def _pretty(reply: Any) -> tuple[str, str]:
    if isinstance(reply, list):
        return "OK", ("\n".join(f"* {item}" for item in reply) if reply else "- empty -")
    if isinstance(reply, dict):
        if "ok" in reply:
            return "OK", _indent(_pretty(reply["ok"])[1])
        if "error" in reply:
            return "ERROR", _indent(_pretty(reply["error"])[1])
        return "OK", json.dumps(reply, sort_keys=True, indent=4, default=str)
    if isinstance(reply, str):
        return "OK", reply
    return "OK", pprint.pformat(reply)


def _say_reply(cli: CLIContext, replies: dict[str, Any], show_reply: bool = True) -> None:
    node = next(iter(replies))
    status, body = _pretty(replies[node])
    cli.echo(f"->  {node}: {status}" if not cli.quiet else f"{node}: {status}")
    if show_reply and body:
        cli.echo(_indent(body))


def _compile_arguments(command: str, args: list[str]) -> dict[str, Any]:
    meta = _panel_meta()[command]
    arguments: dict[str, Any] = {}
    rest = list(args)
    for i, (name, typ) in enumerate(meta.args or []):
        if i >= len(rest):
            break
        try:
            arguments[name] = typ(rest[i]) if typ is not None else rest[i]
        except ValueError:
            raise click.UsageError(f"Command {command!r}: {name} must be {typ.__name__}, got {rest[i]!r}") from None
    consumed = min(len(rest), len(meta.args or []))
    extra = rest[consumed:]
    if meta.variadic:
        arguments[meta.variadic] = extra
    elif extra:
        raise click.UsageError(f"Command {command!r} takes arguments: {meta.signature or '(none)'}")
    return arguments


def _verify(kind: str, command: str) -> None:
    names = sorted(name for name, info in _panel_meta().items() if info.type == kind and info.visible)
    if command not in names:
        raise click.UsageError(f"Command {command} not recognized. Available {kind} commands: {', '.join(names)}")


def _list(kind: str) -> Callable[..., Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if not value:
            return
        for name, info in sorted(_panel_meta().items()):
            if info.type == kind and info.visible:
                click.echo(f"{name} {info.signature or ''}".rstrip() + f"\n    {info.help}")
        ctx.exit()

    return click.option("--list", "list_", is_flag=True, expose_value=False, is_eager=True, callback=callback,
                        help=f"List available {kind} commands and exit.")  # fmt: skip


def _finish(cli: CLIContext, replies: Any, as_json: bool) -> None:
    if not replies:
        click.echo(f"Error: {NO_REPLY}", err=True)
        raise SystemExit(EX_UNAVAILABLE)
    if as_json:
        merged: dict[str, Any] = {}
        for reply in replies if isinstance(replies, list) else [replies]:
            merged.update(reply)
        click.echo(json.dumps(merged, default=str))
        return
    count = len(replies)
    cli.echo(f"\n{count} node{'' if count == 1 else 's'} online.")


def _run(action: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except CeleriacError as exc:
        click.echo(f"Error: {action}: {exc}", err=True)
        raise SystemExit(EX_UNAVAILABLE) from None


@click.command(context_settings={"allow_extra_args": True, "help_option_names": ["-h", "--help"]})
@click.argument("command")
@_list("control")
@_remote_options
@pass_cli
@click.pass_context
def control(ctx: click.Context, cli: CLIContext, command: str, timeout: float, destination: list[str] | None,
            as_json: bool) -> None:  # fmt: skip
    """Send the COMMAND control command to the workers (e.g. `rate_limit tasks.add 10/m`)."""
    _verify("control", command)
    arguments = _compile_arguments(command, ctx.args)
    app = cli.app
    callback = None if as_json else (lambda reply: _say_reply(cli, reply))
    replies = _run(
        f"control {command}",
        lambda: app.control.broadcast(
            command, arguments=arguments, destination=destination, reply=True, timeout=timeout, callback=callback
        ),
    )
    _finish_control(replies, as_json)


def _finish_control(replies: Any, as_json: bool) -> None:
    if not replies:
        click.echo(f"Error: {NO_REPLY}", err=True)
        raise SystemExit(EX_UNAVAILABLE)
    if as_json:
        merged: dict[str, Any] = {}
        for reply in replies:
            merged.update(reply)
        click.echo(json.dumps(merged, default=str))


@click.command(context_settings={"allow_extra_args": True, "help_option_names": ["-h", "--help"]})
@click.argument("command")
@_list("inspect")
@_remote_options
@pass_cli
@click.pass_context
def inspect(ctx: click.Context, cli: CLIContext, command: str, timeout: float, destination: list[str] | None,
            as_json: bool) -> None:  # fmt: skip
    """Inspect the workers by sending them the COMMAND inspect command (e.g. `ping`, `active`)."""
    _verify("inspect", command)
    arguments = _compile_arguments(command, ctx.args)
    app = cli.app
    callback = None if as_json else (lambda reply: _say_reply(cli, reply))
    inspector = app.control.inspect(timeout=timeout, destination=destination, callback=callback)
    replies = _run(f"inspect {command}", lambda: inspector._request(command, **arguments))
    _finish(cli, replies, as_json)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@_remote_options
@pass_cli
def status(cli: CLIContext, timeout: float, destination: list[str] | None, as_json: bool) -> None:
    """Show the list of workers that are online."""
    app = cli.app
    callback = None if as_json else (lambda reply: _say_reply(cli, reply, show_reply=False))
    inspector = app.control.inspect(timeout=timeout, destination=destination, callback=callback)
    replies = _run("status", lambda: inspector.ping())
    _finish(cli, replies, as_json)
