"""Remote control in the worker: Celery's commands, and the thread that receives them.

Commands are registered like Celery's, so custom ones written for Celery keep working::

    from celeriac.worker.control import control_command, inspect_command

    @inspect_command()
    def current_load(state):
        return {"ok": len(state.worker.state.active)}

A handler gets a ``state`` (``state.app``, ``state.hostname``, ``state.worker`` — the
WorkController — and ``state.consumer``) plus the command's arguments, and returns the
reply (``{"ok": ...}`` or ``{"error": ...}`` by convention). The :class:`Pidbox` thread
listens on the ``celery.pidbox`` fanout exchange and answers on the sender's reply queue.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import resource
import signal as signals_module
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import _pidbox
from ..brokers.base import Envelope, QueueSpec
from ..rate_limits import parse_rate

if TYPE_CHECKING:
    from .main import WorkController

__all__ = ["Panel", "Pidbox", "control_command", "inspect_command"]

logger = logging.getLogger("celeriac.worker")


class CommandInfo(NamedTuple):
    alias: str | None
    type: str  # "control" | "inspect"
    visible: bool
    default_timeout: float
    help: str
    signature: str | None
    args: list[tuple[str, Any]] | None
    variadic: str | None


class Panel:
    """The registry of remote-control commands (Celery's ``Panel``)."""

    data: dict[str, Callable[..., Any]] = {}
    meta: dict[str, CommandInfo] = {}

    @classmethod
    def register(
        cls, name: str | None = None, alias: str | None = None, type: str = "control", visible: bool = True,
        default_timeout: float = 1.0, help: str | None = None, signature: str | None = None,
        args: list[tuple[str, Any]] | None = None, variadic: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # fmt: skip
        def register(fun: Callable[..., Any]) -> Callable[..., Any]:
            command = name or fun.__name__
            summary = help or (fun.__doc__ or "").strip().split("\n")[0]
            cls.data[command] = fun
            cls.meta[command] = CommandInfo(alias, type, visible, default_timeout, summary, signature, args, variadic)
            if alias:
                cls.data[alias] = fun
            return fun

        return register


def control_command(**kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return Panel.register(type="control", **kwargs)


def inspect_command(**kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return Panel.register(type="inspect", **kwargs)


def ok(value: Any) -> dict[str, Any]:
    return {"ok": value}


def nok(value: Any) -> dict[str, Any]:
    return {"error": value}


@dataclass
class ControlState:
    """What a command handler sees."""

    worker: WorkController

    @property
    def app(self) -> Any:
        return self.worker.app

    @property
    def hostname(self) -> str:
        return self.worker.hostname

    @property
    def consumer(self) -> Any:
        return self.worker.consumer


# -- inspect ------------------------------------------------------------------------------
@inspect_command(default_timeout=0.2)
def ping(state: ControlState, **kwargs: Any) -> dict[str, Any]:
    """Ping worker(s)."""
    return ok("pong")


@inspect_command()
def report(state: ControlState) -> dict[str, Any]:
    """Information about the worker's software and settings."""
    from ..cli.report import bugreport_for

    return ok(bugreport_for(state.app))


@inspect_command()
def clock(state: ControlState, **kwargs: Any) -> dict[str, Any]:
    """Get the current logical clock value."""
    return {"clock": state.worker.clock.value}


@inspect_command()
def conf(state: ControlState, with_defaults: bool = False, **kwargs: Any) -> dict[str, Any]:
    """List the worker's settings (secrets masked)."""
    return {k: v for k, v in state.app.conf.table(with_defaults=with_defaults).items() if not k.startswith("_")}


@inspect_command(alias="dump_active")
def active(state: ControlState, safe: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
    """List of tasks currently being executed."""
    return [request.info(safe=safe) for request in list(state.worker.state.active.values())]


@inspect_command(alias="dump_reserved")
def reserved(state: ControlState, **kwargs: Any) -> list[dict[str, Any]]:
    """List of tasks received but not yet started (not including scheduled ones)."""
    consumer = state.consumer
    return [request.info() for request in (consumer.ready_requests() if consumer else [])]


@inspect_command(alias="dump_schedule")
def scheduled(state: ControlState, **kwargs: Any) -> list[dict[str, Any]]:
    """List of ETA/countdown tasks this worker holds (most wait in the broker instead)."""
    consumer = state.consumer
    return [
        {"eta": request.message.eta, "priority": request.message.priority, "request": request.info()}
        for request in (consumer.scheduled_requests() if consumer else [])
    ]


@inspect_command(alias="dump_revoked")
def revoked(state: ControlState, **kwargs: Any) -> list[str]:
    """List of revoked task ids."""
    return sorted(state.worker.state.revoked)


@inspect_command(alias="dump_tasks", variadic="taskinfoitems", signature="[attr1 [attr2 [... [attrN]]]]")
def registered(state: ControlState, taskinfoitems: Any = None, builtins: bool = False, **kwargs: Any) -> list[str]:
    """List of registered tasks."""
    items = taskinfoitems or ("exchange", "routing_key", "rate_limit")
    out = []
    for name, task in sorted(state.app.tasks.items()):
        if name.startswith("celery.") and not builtins:
            continue
        fields = [f"{item}={getattr(task, item)}" for item in items if getattr(task, item, None) is not None]
        out.append(f"{name} [{' '.join(fields)}]" if fields else name)
    return out


@inspect_command(variadic="ids", signature="[id1 [id2 [... [idN]]]]")
def query_task(state: ControlState, ids: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Query for task information by id."""
    wanted = [ids] if isinstance(ids, str) else list(ids or [])
    out: dict[str, Any] = {}
    active_requests = state.worker.state.active
    reserved_requests = state.worker.state.reserved
    for task_id in wanted:
        if task_id in active_requests:
            out[task_id] = ["active", active_requests[task_id].info()]
        elif task_id in reserved_requests:
            out[task_id] = ["reserved", reserved_requests[task_id].info()]
    return out


@inspect_command()
def stats(state: ControlState, **kwargs: Any) -> dict[str, Any]:
    """Worker statistics: totals, pool, broker, resource usage."""
    return state.worker.stats()


@inspect_command()
def active_queues(state: ControlState) -> list[dict[str, Any]]:
    """List the task queues the worker consumes from."""
    out = []
    for name in state.worker.queues:
        spec = state.app.queue_spec(name)
        out.append({
            "name": spec.name,
            "exchange": {"name": spec.exchange, "type": spec.exchange_type, "durable": spec.exchange_durable},
            "routing_key": spec.routing_key or spec.name,
            "durable": spec.durable,
            "exclusive": False,
            "auto_delete": spec.auto_delete,
            "no_ack": False,
            "alias": None,
            "queue_arguments": dict(spec.queue_arguments) or None,
            "binding_arguments": None,
            "consumer_arguments": None,
            "max_priority": spec.max_priority,
        })  # fmt: skip
    return out


@inspect_command()
def memsample(state: ControlState, **kwargs: Any) -> str:
    """Peak resident memory of the worker's main process."""
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB"


@inspect_command(args=[("samples", int)], signature="[n_samples=10]")
def memdump(state: ControlState, samples: int = 10, **kwargs: Any) -> str:
    """Resident memory of the main process and of each pool process."""
    lines = [f"main process {os.getpid()}: {_rss_mib(os.getpid())}"]
    pool = state.worker.pool
    for pid in pool.pids() if pool is not None else []:
        lines.append(f"pool process {pid}: {_rss_mib(pid)}")
    return "\n".join(lines)


def _rss_mib(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return f"{int(line.split()[1]) / 1024:.1f} MiB"
    except OSError:
        pass
    return "unknown"


# -- control ------------------------------------------------------------------------------
@control_command(args=[("task_name", str), ("rate_limit", str)],
                 signature="<task_name> <rate_limit (e.g., 5/s | 5/m | 5/h)>")  # fmt: skip
def rate_limit(state: ControlState, task_name: str, rate_limit: Any, **kwargs: Any) -> dict[str, Any]:
    """Tell worker(s) to modify the rate limit for a task by type."""
    try:
        parse_rate(rate_limit)
    except ValueError as exc:
        return nok(f"Invalid rate limit string: {exc!r}")
    task = state.app.tasks.get(task_name)
    if task is None:
        logger.error("Rate limit attempt for unknown task %s", task_name)
        return nok("unknown task")
    task.rate_limit = rate_limit
    if not rate_limit:
        logger.info("Rate limits disabled for tasks of type %s", task_name)
        return ok("rate limit disabled successfully")
    logger.info("New rate limit for tasks of type %s: %s.", task_name, rate_limit)
    return ok("new rate limit set successfully")


@control_command(args=[("task_name", str), ("soft", float), ("hard", float)],
                 signature="<task_name> <soft_secs> [hard_secs]")  # fmt: skip
def time_limit(state: ControlState, task_name: str | None = None, hard: float | None = None,
               soft: float | None = None, **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    """Tell worker(s) to modify the time limit for a task by type."""
    task = state.app.tasks.get(task_name or "")
    if task is None:
        logger.error("Change time limit attempt for unknown task %s", task_name)
        return nok("unknown task")
    task.soft_time_limit = soft
    task.time_limit = hard
    logger.info("New time limits for tasks of type %s: soft=%s hard=%s", task_name, soft, hard)
    return ok("time limits set successfully")


@control_command(variadic="task_id", signature="[id1 [id2 [... [idN]]]]")
def revoke(state: ControlState, task_id: Any, terminate: bool = False, signal: str | None = None,
           **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    """Revoke task by task id (or list of ids)."""
    ids = {task_id} if isinstance(task_id, str) else set(task_id or [])
    state.worker.revoke(ids)
    if terminate:
        signum = _signum(signal)
        terminated = [
            tid for tid in ids if state.worker.pool is not None and state.worker.pool.terminate_job(tid, signum)
        ]
        if not terminated:
            return ok("terminate: tasks unknown")
        return ok(f"terminate: {', '.join(sorted(terminated))}")
    logger.info("Tasks flagged as revoked: %s", ", ".join(sorted(ids)))
    return ok(f"tasks {ids} flagged as revoked")


@control_command(variadic="task_id", args=[("signal", str)], signature="<signal> [id1 [id2 [... [idN]]]]")
def terminate(state: ControlState, signal: str, task_id: Any, **kwargs: Any) -> dict[str, Any]:
    """Terminate task by task id (or list of ids)."""
    reply: dict[str, Any] = revoke(state, task_id, terminate=True, signal=signal)
    return reply


def _signum(name: str | int | None) -> int:
    if name is None:
        return int(signals_module.SIGTERM)
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    text = str(name).upper()
    return int(getattr(signals_module, text if text.startswith("SIG") else f"SIG{text}"))


@control_command(args=[("n", int)], signature="[N=1]")
def pool_grow(state: ControlState, n: int = 1, **kwargs: Any) -> dict[str, Any]:
    """Grow pool by n processes/threads."""
    if state.worker.autoscaler is not None:
        return nok("pool_grow is not supported with autoscale. Adjust autoscale range instead.")
    state.worker.grow_pool(int(n))
    return ok("pool will grow")


@control_command(args=[("n", int)], signature="[N=1]")
def pool_shrink(state: ControlState, n: int = 1, **kwargs: Any) -> dict[str, Any]:
    """Shrink pool by n processes/threads."""
    if state.worker.autoscaler is not None:
        return nok("pool_shrink is not supported with autoscale. Adjust autoscale range instead.")
    state.worker.shrink_pool(int(n))
    return ok("pool will shrink")


@control_command(args=[("max", int), ("min", int)], signature="[max [min]]")
def autoscale(state: ControlState, max: int | None = None, min: int | None = None) -> dict[str, Any]:
    """Modify autoscale settings."""
    scaler = state.worker.autoscaler
    if scaler is None:
        raise ValueError("Autoscale not enabled")
    high, low = scaler.update(max, min)
    reply: dict[str, Any] = ok(f"autoscale now max={high} min={low}")
    return reply


@control_command()
def enable_events(state: ControlState) -> dict[str, Any]:
    """Tell worker(s) to send task-related events."""
    if state.worker.set_task_events(True):
        return ok("task events enabled")
    return ok("task events already enabled")


@control_command()
def disable_events(state: ControlState) -> dict[str, Any]:
    """Tell worker(s) to stop sending task-related events."""
    if state.worker.set_task_events(False):
        return ok("task events disabled")
    return ok("task events already disabled")


@control_command()
def heartbeat(state: ControlState) -> None:
    """Tell worker(s) to send a heartbeat event now."""
    state.worker.send_heartbeat()


@control_command()
def shutdown(state: ControlState, msg: str = "Got shutdown from remote", **kwargs: Any) -> dict[str, Any]:
    """Shutdown worker(s) (warm)."""
    logger.warning(msg)
    state.worker.stop(warm=True)
    return ok("shutting down")


@control_command(args=[("queue", str), ("exchange", str), ("exchange_type", str), ("routing_key", str)],
                 signature="<queue> [exchange [type [routing_key]]]")  # fmt: skip
def add_consumer(state: ControlState, queue: str, exchange: str | None = None, exchange_type: str | None = None,
                 routing_key: str | None = None, **options: Any) -> dict[str, Any]:  # fmt: skip
    """Tell worker(s) to consume from task queue by name."""
    if queue in state.worker.queues:
        return ok(f"already consuming from {queue!r}")
    spec = state.app.queue_spec(queue)
    if exchange:
        spec = QueueSpec(name=queue, exchange=exchange, routing_key=routing_key or queue,
                         exchange_type=exchange_type or "direct")  # fmt: skip
    state.worker.add_queue(spec)
    return ok(f"add consumer {queue}")


@control_command(args=[("queue", str)], signature="<queue>")
def cancel_consumer(state: ControlState, queue: str, **kwargs: Any) -> dict[str, Any]:
    """Tell worker(s) to stop consuming from task queue by name."""
    state.worker.remove_queue(queue)
    return ok(f"no longer consuming from {queue}")


# -- the listening thread --------------------------------------------------------------------
class Pidbox:
    """Listens for broadcast commands on its own broker connection, answers on the sender's reply queue."""

    def __init__(self, worker: WorkController) -> None:
        self.worker = worker
        self.app = worker.app
        self.names = _pidbox.names_for(worker.app)
        self.state = ControlState(worker)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="Pidbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            broker = self.app.create_broker()
            try:
                broker.open()
                with broker.subscribe(self.names.exchange) as subscription:
                    self.ready.set()
                    backoff = 0.5
                    while not self._stop.is_set():
                        envelope = subscription.get(1.0)
                        if envelope is not None:
                            self.handle(broker, envelope)
            except Exception as exc:
                logger.warning("remote control: %s; listening again in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                try:
                    broker.close()
                except Exception:
                    pass

    def handle(self, broker: Any, envelope: Envelope) -> None:
        if self.worker.stopping:
            return  # a worker on its way out doesn't claim to be there
        headers = dict(envelope.headers or {})
        self.worker.clock.adjust(headers.get("clock") or 0)
        if _pidbox.expired(headers):
            return
        try:
            body = _pidbox.decode(self.app, envelope)
        except Exception as exc:
            logger.warning("remote control: ignored an undecodable command: %s", exc)
            return
        if not isinstance(body, dict) or not self._for_me(body):
            return
        method = body.get("method")
        reply = self.dispatch(str(method), body.get("arguments") or {})
        reply_to, ticket = body.get("reply_to"), body.get("ticket")
        if reply_to and ticket:
            self._reply(broker, reply_to, ticket, {self.worker.hostname: reply})

    def _for_me(self, body: dict[str, Any]) -> bool:
        destination, pattern, matcher = body.get("destination"), body.get("pattern"), body.get("matcher")
        hostname = self.worker.hostname
        if destination:
            return hostname in destination
        if pattern and matcher:
            if matcher == "glob":
                return fnmatch.fnmatchcase(hostname, pattern)
            return re.match(pattern, hostname) is not None
        return True

    def dispatch(self, method: str, arguments: dict[str, Any]) -> Any:
        handler = Panel.data.get(method)
        if handler is None:
            return nok(f"No such command: {method!r}")
        try:
            return handler(self.state, **arguments)
        except Exception as exc:
            logger.exception("remote control command %s failed", method)
            return nok(repr(exc))

    def _reply(self, broker: Any, reply_to: dict[str, Any], ticket: str, body: dict[str, Any]) -> None:
        headers = {"ticket": ticket, "clock": self.worker.clock.forward()}
        try:
            broker.publish(_pidbox.encode(self.app, body, headers), exchange=str(reply_to.get("exchange") or ""),
                           routing_key=str(reply_to.get("routing_key") or ""))  # fmt: skip
        except Exception as exc:
            logger.warning("remote control: could not send a reply: %s", exc)


def wait_ready(pidbox: Pidbox | None, timeout: float = 5.0) -> None:
    if pidbox is not None:
        pidbox.ready.wait(timeout)
