"""Events: what workers (and, with ``task_send_sent_event``, clients) report as they work.

The format and exchange are Celery's, so Flower, ``celery events`` and Celery's
``EventReceiver`` read celeriac's events and back: each event is a JSON dict
``{type, timestamp, hostname, utcoffset, pid, clock, ...fields}`` published to the
``celeryev`` exchange (fanout on Redis, topic on RabbitMQ) with the routing key
``task.succeeded`` for type ``task-succeeded``.

* worker events (``worker-online``, ``worker-heartbeat`` every 2 s, ``worker-offline``)
  are always sent by a worker on a broker with fanout;
* task events (``task-received``, ``-started``, ``-succeeded``, ``-failed``, ``-retried``,
  ``-rejected``, ``-revoked``) only with ``-E`` / ``worker_send_task_events`` (or
  ``app.control.enable_events()``).

``app.events.Receiver(handlers={'task-failed': fn})`` reads them; ``app.events.State()``
keeps the picture (workers and tasks) up to date from them.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import states
from ._pidbox import LamportClock
from ._version import __version__
from .brokers.base import Envelope
from .serialization import dumps, loads, prepare_accept_content

if TYPE_CHECKING:
    from .app import Celery
    from .brokers.base import Broker

__all__ = ["EventDispatcher", "EventReceiver", "Events", "State", "event"]

logger = logging.getLogger("celeriac.events")

# What platform.system() says, without loading platform (a MiB more in every worker process).
_SYSTEM = os.uname().sysname if hasattr(os, "uname") else "Windows"
SOFTWARE_INFO: dict[str, Any] = {"sw_ident": "py-celeriac", "sw_ver": __version__, "sw_sys": _SYSTEM}


def utcoffset() -> int:
    """Hours west of UTC, as Celery sends it."""
    return int(time.altzone // 3600 if time.daylight and time.localtime().tm_isdst else time.timezone // 3600)


def event(type: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("timestamp", time.time())
    fields["type"] = type
    return fields


def group_from(type: str) -> str:
    return type.split("-", 1)[0]


class EventDispatcher:
    """Sends events from a background thread, so a task never waits on the broker for them."""

    def __init__(self, app: Celery, hostname: str, *, enabled: bool = True, groups: set[str] | None = None,
                 clock: LamportClock | None = None) -> None:  # fmt: skip
        self.app = app
        self.hostname = hostname
        self.enabled = enabled
        self.groups = groups  # None: every group; {"worker"}: worker events only
        self.clock = clock or LamportClock()
        self.exchange = app.conf.event_exchange or "celeryev"
        self.serializer = app.conf.event_serializer or "json"
        # Events to send; a threading.Event marks a flush point; None stops the thread.
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], str] | threading.Event | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._broker: Broker | None = None
        self._pid = os.getpid()

    def send(self, type: str, blind: bool = False, **fields: Any) -> None:
        if not self.enabled:
            return
        if self.groups is not None and group_from(type) not in self.groups:
            return
        clock = None if blind else self.clock.forward()
        body = event(type, hostname=self.hostname, utcoffset=utcoffset(), pid=os.getpid(), clock=clock, **fields)
        self._ensure_thread()
        self._queue.put((body, type.replace("-", ".")))

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self._pid = os.getpid()
            self._broker = None
            self._thread = threading.Thread(target=self._run, name="EventDispatcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            body, routing_key = item
            try:
                broker = self._connection()
                content_type, content_encoding, payload = dumps(body, self.serializer)
                envelope = Envelope(payload, {"hostname": self.hostname}, {"delivery_mode": 1}, content_type,
                                    content_encoding)  # fmt: skip
                broker.broadcast(self.exchange, envelope, routing_key=routing_key)
            except Exception as exc:
                # Events are best effort: a monitor missing one is better than a worker stalling.
                logger.debug("could not send event %s: %s", body.get("type"), exc)
                self._broker = None

    def _connection(self) -> Broker:
        if self._broker is None:
            broker = self.app.create_broker()
            broker.open()
            self._broker = broker
        return self._broker

    def flush(self, timeout: float = 2.0) -> None:
        """Wait (up to ``timeout``) until everything queued so far has been sent."""
        if self._thread is None or not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(2.0)
        if self._broker is not None:
            try:
                self._broker.close()
            except Exception:
                pass


class EventReceiver:
    """Reads events: ``capture(limit, timeout)`` calls the handler for each event's type (or ``'*'``)."""

    def __init__(self, app: Celery, handlers: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
                 routing_key: str = "#", connection: Any = None) -> None:  # fmt: skip
        self.app = app
        self.handlers = dict(handlers or {})
        self.routing_key = routing_key
        self.clock = LamportClock()
        self._accept = prepare_accept_content(app.conf.accept_content) | {"application/json"}
        self._broker = app.create_broker()
        self._broker.open()
        self._subscription = self._broker.subscribe(app.conf.event_exchange or "celeryev", routing_key=routing_key)

    def itercapture(self, limit: int | None = None, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        count = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while limit is None or count < limit:
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return
            envelope = self._subscription.get(min(remaining, 1.0))
            if envelope is None:
                continue
            try:
                body = loads(envelope.body, envelope.content_type, envelope.content_encoding, self._accept)
            except Exception as exc:
                logger.debug("ignored an undecodable event: %s", exc)
                continue
            if not isinstance(body, dict) or "type" not in body:
                continue
            self.clock.adjust(body.get("clock") or 0)
            count += 1
            yield body

    def capture(self, limit: int | None = None, timeout: float | None = None, wakeup: bool = True) -> None:
        for body in self.itercapture(limit=limit, timeout=timeout):
            self.process(body["type"], body)

    def process(self, type: str, body: dict[str, Any]) -> None:
        handler = self.handlers.get(type) or self.handlers.get("*")
        if handler is not None:
            handler(body)

    def close(self) -> None:
        self._subscription.close()
        self._broker.close()

    def __enter__(self) -> EventReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The task state each event stands for (Celery's TASK_EVENT_TO_STATE), to order late events.
_EVENT_STATES = {
    "sent": states.PENDING,
    "received": states.RECEIVED,
    "started": states.STARTED,
    "failed": states.FAILURE,
    "retried": states.RETRY,
    "succeeded": states.SUCCESS,
    "revoked": states.REVOKED,
    "rejected": states.REJECTED,
}
# What a late task-received may still add (Celery's Task.merge_rules).
_MERGE_KEEP = {"received": ("name", "args", "kwargs", "parent_id", "root_id", "retries", "eta", "expires")}


class State:
    """Workers and tasks as the events describe them (Celery's ``app.events.State``, the essentials)."""

    def __init__(self, max_tasks_in_memory: int = 10000, heartbeat_expires: float = 5.0) -> None:
        self.workers: dict[str, dict[str, Any]] = {}
        self.tasks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.max_tasks = max_tasks_in_memory
        self.heartbeat_expires = heartbeat_expires
        self.event_count = 0
        self.task_count = 0

    def event(self, body: dict[str, Any]) -> None:
        self.event_count += 1
        kind = str(body.get("type", ""))
        if kind.startswith("worker-"):
            worker = self.workers.setdefault(body.get("hostname", "?"), {"hostname": body.get("hostname")})
            worker.update({k: v for k, v in body.items() if k != "type"})
            worker["alive"] = kind != "worker-offline"
            worker["last_heartbeat"] = body.get("timestamp")
        elif kind.startswith("task-"):
            self.task_count += 1
            task_id = body.get("uuid")
            if not task_id:
                return
            task = self.tasks.setdefault(task_id, {"uuid": task_id})
            self.tasks.move_to_end(task_id)
            self._task_event(task, kind[5:], body)
            while len(self.tasks) > self.max_tasks:
                self.tasks.popitem(last=False)

    @staticmethod
    def _task_event(task: dict[str, Any], name: str, body: dict[str, Any]) -> None:
        """Celery's merge rule: events can arrive out of order (the client's ``task-sent`` after the
        worker's ``task-succeeded``, each from its own connection), and one that logically comes
        before the task's current state adds its fields but leaves the state as it is."""
        fields = {k: v for k, v in body.items() if k not in ("type", "uuid")}
        task[name] = body.get("timestamp")
        new = _EVENT_STATES.get(name, name.upper())
        current = task.get("state")
        old = _EVENT_STATES.get(str(current).lower(), str(current)) if current else None
        if old is not None and states.RETRY not in (new, old) and states.precedence(new) > states.precedence(old):
            keep = _MERGE_KEEP.get(name)
            task.update({k: v for k, v in fields.items() if k != "timestamp" and (keep is None or k in keep)})
            return
        task.update(fields)
        task["state"] = name.upper()

    def alive_workers(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            w for w in self.workers.values()
            if w.get("alive") and now - float(w.get("last_heartbeat") or 0) < self.heartbeat_expires * 2
        ]  # fmt: skip

    def tasks_by_state(self, state: str) -> list[dict[str, Any]]:
        return [t for t in self.tasks.values() if t.get("state") == state.upper()]


class Events:
    """``app.events``: the factories, with Celery's names."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def Dispatcher(self, connection: Any = None, hostname: str | None = None, enabled: bool = True,
                   **kwargs: Any) -> EventDispatcher:  # fmt: skip
        import socket

        return EventDispatcher(self.app, hostname or f"gen{os.getpid()}@{socket.gethostname()}", enabled=enabled)

    def Receiver(self, connection: Any = None, handlers: Mapping[str, Callable[..., Any]] | None = None,
                 routing_key: str = "#", **kwargs: Any) -> EventReceiver:  # fmt: skip
        return EventReceiver(self.app, handlers=handlers, routing_key=routing_key)

    def State(self, **kwargs: Any) -> State:
        return State(**kwargs)
