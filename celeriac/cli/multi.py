"""``celeriac multi``: start, stop and restart several detached workers, as ``celery multi`` does.

    celeriac multi start w1 w2 -A proj -l INFO          two named workers
    celeriac multi start 3 -A proj -c 3 -c:1 10         celery1..celery3, the first with -c 10
    celeriac multi stopwait w1 w2 -A proj               SIGTERM, then wait for them to exit
    celeriac multi restart w1 w2 -A proj -l INFO
    celeriac multi kill w1 w2                           SIGKILL
    celeriac multi names 3 / show 3 ...                 print node names / worker commands

Each node runs ``celeriac worker -n <node> --detach --pidfile=%n.pid --logfile=%n%I.log``
plus the options given (``--pidfile``/``--logfile`` override those defaults; ``%n`` is the
node's name, ``%h`` the host). An option written ``-opt:<selector> value`` applies only to
the nodes selected: by name (``-c:image 10``), index (``-c:1 10``), range (``-Q:1-3 a``) or
list (``-Q:4,5 b``). Options aren't stored anywhere, so give the same ones to ``stop``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import click

from .base import EX_FAILURE, CLIContext, pass_cli

__all__ = ["multi"]

DEFAULT_PIDFILE = "%n.pid"
DEFAULT_LOGFILE = "%n%I.log"


@dataclass
class Node:
    name: str  # full node name, e.g. w1@host
    index: int
    options: list[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        return self.name.split("@", 1)[0]

    def expand(self, template: str) -> str:
        host = self.name.split("@", 1)[1] if "@" in self.name else socket.gethostname()
        return (
            template.replace("%n", self.short).replace("%h", host).replace("%d", host.partition(".")[2])
            .replace("%I", "").replace("%i", "0")
        )  # fmt: skip

    def option(self, name: str, default: str) -> str:
        for i, arg in enumerate(self.options):
            if arg == name and i + 1 < len(self.options):
                return self.options[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
        return default

    @property
    def pidfile(self) -> str:
        return os.path.abspath(self.expand(self.option("--pidfile", DEFAULT_PIDFILE)))


def _selects(selector: str, node_name: str, index: int) -> bool:
    for part in selector.split(","):
        if "-" in part and all(p.isdigit() for p in part.split("-", 1)):
            low, high = (int(p) for p in part.split("-", 1))
            if low <= index <= high:
                return True
        elif part.isdigit() and int(part) == index:
            return True
        elif part in (node_name, node_name.split("@", 1)[0]):
            return True
    return False


def parse(argv: list[str]) -> list[Node]:
    """``[names or count] [options]`` -> nodes, each with its own worker options."""
    names: list[str] = []
    rest = list(argv)
    while rest and not rest[0].startswith("-"):
        names.append(rest.pop(0))
    hostname = socket.gethostname()
    prefix = "celery"
    for i, arg in enumerate(rest):
        if arg.startswith("--range-prefix"):
            prefix = arg.split("=", 1)[1] if "=" in arg else rest[i + 1]
        if arg.startswith("--hostname"):
            hostname = arg.split("=", 1)[1] if "=" in arg else rest[i + 1]
    if len(names) == 1 and names[0].isdigit():
        names = [f"{prefix}{n}" for n in range(1, int(names[0]) + 1)]
    if not names:
        raise click.UsageError("name the nodes (celeriac multi start w1 w2) or give a count (celeriac multi start 3)")
    nodes = [Node(n if "@" in n else f"{n}@{hostname}", i) for i, n in enumerate(names, start=1)]
    nodes = [Node(n.name.replace("%h", socket.gethostname()), n.index) for n in nodes]
    for node in nodes:
        node.options = _options_for(node, rest)
    return nodes


def _options_for(node: Node, args: list[str]) -> list[str]:
    out: list[str] = []
    overridden: set[str] = set()
    i = 0
    pairs: list[tuple[str, str | None, str | None]] = []  # (option, selector, value)
    while i < len(args):
        arg = args[i]
        value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("-") else None
        step = 2 if value is not None else 1
        if arg.startswith(("--range-prefix", "--hostname")):
            i += 1 if "=" in arg else 2
            continue
        if arg.startswith("-") and ":" in arg and "=" not in arg.split(":", 1)[0]:
            option, selector = arg.split(":", 1)
            pairs.append((option, selector, value))
        else:
            pairs.append((arg, None, value))
        i += step
    for opt, sel, val in pairs:
        if sel is not None and _selects(sel, node.name, node.index):
            overridden.add(opt)
            out += [opt] + ([val] if val is not None else [])
    for opt, sel, val in pairs:
        if sel is None and opt not in overridden:
            out += [opt] + ([val] if val is not None else [])
    return out


def worker_command(node: Node) -> list[str]:
    options = list(node.options)
    if node.option("--pidfile", "") == "":
        options.append(f"--pidfile={DEFAULT_PIDFILE}")
    if node.option("--logfile", "") == "" and node.option("-f", "") == "":
        options.append(f"--logfile={DEFAULT_LOGFILE}")
    return [sys.executable, "-m", "celeriac", "worker", "-n", node.name, "--detach", *options]


def _read_pid(node: Node) -> int | None:
    try:
        with open(node.pidfile) as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(nodes: list[Node], echo: bool = True) -> int:
    if echo:
        click.echo("celeriac multi v" + __import__("celeriac").__version__)
        click.echo("> Starting nodes...")
    failed = 0
    for node in nodes:
        done = subprocess.run(worker_command(node), capture_output=True, text=True)
        deadline = time.monotonic() + 30
        pid = None
        while done.returncode == 0 and time.monotonic() < deadline:
            pid = _read_pid(node)
            if pid is not None and _alive(pid):
                break
            time.sleep(0.05)
        ok = done.returncode == 0 and pid is not None and _alive(pid)
        failed += not ok
        click.echo(f"\t> {node.name}: {'OK' if ok else 'FAILED'}")
        if not ok and (done.stderr or done.stdout):
            click.echo((done.stderr or done.stdout).strip(), err=True)
    return EX_FAILURE if failed else 0


def stop(nodes: list[Node], sig: int, wait: bool) -> int:
    click.echo("> Stopping nodes...")
    pids: list[tuple[Node, int]] = []
    for node in nodes:
        pid = _read_pid(node)
        if pid is None or not _alive(pid):
            click.echo(f"\t> {node.name}: DOWN")
            continue
        os.kill(pid, sig)
        click.echo(f"\t> {node.name}: {signal.Signals(sig).name.removeprefix('SIG')} -> {pid}")
        pids.append((node, pid))
    if wait:
        for node, pid in pids:
            click.echo(f"> Waiting for {node.name} to shut down", nl=False)
            while _alive(pid):
                time.sleep(0.1)
            click.echo(" OK")
    return 0


def _signal_arg(args: list[str]) -> tuple[int, list[str]]:
    sig = signal.SIGTERM
    rest = []
    for arg in args:
        name = arg[1:].upper()
        if arg.startswith("-") and not arg.startswith("--") and (name.isdigit() or hasattr(signal, f"SIG{name}")):
            sig = signal.Signals(int(name)) if name.isdigit() else getattr(signal, f"SIG{name}")
        else:
            rest.append(arg)
    return sig, rest


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": ["-h", "--help"]})  # fmt: skip
@click.argument("action", type=click.Choice(["start", "stop", "stopwait", "restart", "kill", "names", "show"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def multi(cli: CLIContext, action: str, args: tuple[str, ...]) -> None:
    """Start/stop several workers in the background (like `celery multi`)."""
    sig, argv = _signal_arg(list(args))
    if cli.app_spec and "-A" not in argv and not any(a.startswith("--app") for a in argv):
        argv += ["-A", cli.app_spec]  # `celeriac -A proj multi start w1` passes -A on to the workers
    nodes = parse(argv)
    if action == "names":
        click.echo("\n".join(node.name for node in nodes))
        return
    if action == "show":
        click.echo("\n".join(" ".join(["celeriac", *worker_command(node)[3:]]) for node in nodes))
        return
    if action == "start":
        sys.exit(start(nodes))
    if action in ("stop", "stopwait"):
        sys.exit(stop(nodes, sig, wait=action == "stopwait"))
    if action == "kill":
        sys.exit(stop(nodes, signal.SIGKILL, wait=False))
    stop(nodes, signal.SIGTERM, wait=True)
    sys.exit(start(nodes, echo=False))
