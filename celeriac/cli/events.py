"""``celeriac events``: watch the event stream (``--dump`` prints every event, else a live summary)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click

from ..events import EventReceiver, State
from .base import EX_UNAVAILABLE, CLIContext, app_option, pass_cli

__all__ = ["events"]


def _line(event: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(float(event.get("timestamp") or time.time())).isoformat(sep=" ", timespec="seconds")
    fields = {k: v for k, v in event.items() if k not in ("type", "hostname", "timestamp", "clock", "utcoffset",
                                                           "pid", "local_received")}  # fmt: skip
    return f"{event.get('hostname')} [{when}] {event.get('type')}: {json.dumps(fields, default=str, sort_keys=True)}"


def _summary(state: State) -> str:
    lines = [f"celeriac events: {state.event_count} events, {len(state.tasks)} tasks", "", "Workers:"]
    for worker in sorted(state.workers.values(), key=lambda w: str(w.get("hostname"))):
        alive = "online" if worker in state.alive_workers() else "offline"
        lines.append(f"  {worker.get('hostname')}: {alive}, active {worker.get('active', 0)}, "
                     f"processed {worker.get('processed', 0)}")  # fmt: skip
    counts: dict[str, int] = {}
    for task in state.tasks.values():
        counts[str(task.get("state"))] = counts.get(str(task.get("state")), 0) + 1
    lines += ["", "Tasks: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none yet"), ""]
    for task in list(state.tasks.values())[-10:]:
        lines.append(f"  {task.get('uuid')} {task.get('name', '?')} {task.get('state')}")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@app_option
@click.option("-d", "--dump", is_flag=True, help="Print every event as it arrives.")
@click.option("-F", "--frequency", "--freq", "frequency", type=float, default=1.0, show_default=True,
              help="Seconds between refreshes of the live view.")  # fmt: skip
@click.option("--limit", type=int, help="Stop after this many events.")
@click.option("--timeout", type=float, help="Stop after this many seconds.")
@pass_cli
def events(cli: CLIContext, dump: bool, frequency: float, limit: int | None, timeout: float | None) -> None:
    """Watch what workers report (start workers with -E for task events)."""
    app = cli.app
    try:
        receiver = EventReceiver(app)
    except Exception as exc:
        click.echo(f"Error: can't receive events: {exc}", err=True)
        raise SystemExit(EX_UNAVAILABLE) from None
    state = State()
    with receiver:
        try:
            _watch(receiver, state, dump, frequency, limit, timeout)
        except KeyboardInterrupt:
            pass
    if not dump:
        click.echo(_summary(state))


def _watch(receiver: EventReceiver, state: State, dump: bool, frequency: float, limit: int | None,
           timeout: float | None) -> None:  # fmt: skip
    next_draw = 0.0
    for event in receiver.itercapture(limit=limit, timeout=timeout):
        state.event(event)
        if dump:
            click.echo(_line(event))
        elif time.monotonic() >= next_draw:
            click.clear()
            click.echo(_summary(state))
            next_draw = time.monotonic() + frequency
