"""RPC result backend: results travel back as messages over the AMQP broker, as Celery's ``rpc://``.

URL: ``rpc://`` (it uses the app's broker connection; the broker must be ``amqp://``,
``pyamqp://`` or ``amqps://``).

Layout (Celery's ``celery/backends/rpc.py``):

* each client process has one reply queue, named by its ``app.oid`` (the ``reply_to`` of
  every task it sends), declared durable, auto-delete, with ``x-expires`` =
  ``result_expires``, before the first task goes out (the ``on_task_call`` hook);
* the worker publishes each state of a task (STARTED, RETRY, SUCCESS, FAILURE...) to the
  default exchange with ``routing_key = reply_to`` and ``correlation_id = task id``; the body
  is Celery's result meta (the same JSON as the Redis backend stores), ``delivery_mode`` 1
  unless ``result_persistent``;
* the client consumes its reply queue from the moment it sends a task (one consumer per
  process, on the IO thread) and keeps the latest state per task until it is read.

Celery and celeriac clients and workers mix in either direction.

Limits, as in Celery: a result goes to the process that sent the task and nowhere else,
so another process asking for it gets :class:`~celeriac.exceptions.BackendGetMetaError`
saying so (use a result store such as ``redis://`` to read results anywhere); results are
not kept anywhere else, so a result that arrives while the client is disconnected from
RabbitMQ (its auto-delete queue is gone) is lost; no groups or chords.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..brokers.base import Envelope, QueueSpec
from ..exceptions import BackendGetMetaError, ImproperlyConfigured, TimeoutError
from ..serialization import get_serializer, loads
from .base import KeyValueBackend, ResultMeta

if TYPE_CHECKING:
    from ..app import Celery
    from ..brokers.amqp import AMQPBroker

__all__ = ["RPCBackend"]

logger = logging.getLogger("celeriac.backends.rpc")

READ_CACHE = 10_000  # results already read, kept so another AsyncResult for the same id still finds them
RECHECK = 1.0  # seconds between connection checks while waiting

E_NOT_SENT_HERE = (
    "The rpc:// result backend sends a task's result back to the process that sent the task (to that "
    "process's own reply queue), and this process didn't send task {task_id} (or has already read its "
    "result). Read results in the process that sends the tasks, or use a result store that every process "
    "can read, such as redis://, db+postgresql:// or sqlite://."
)


class RPCBackend(KeyValueBackend):
    persistent: ClassVar[bool] = False

    def __init__(self, url: str = "", options: Mapping[str, Any] | None = None, *, app: Celery | None = None) -> None:
        super().__init__(url, options, app=app)
        self.delivery_mode = 2 if (app is not None and app.conf.result_persistent) else 1
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._results: dict[str, ResultMeta] = {}  # latest state of each task not read yet
        self._read: OrderedDict[str, ResultMeta] = OrderedDict()
        self._sent: set[str] = set()
        self._listening: tuple[Any, str] | None = None  # (broker, reply queue)
        # Coroutines awaiting a task: woken from the IO thread through their loop.
        self._async_waiters: dict[str, list[tuple[Any, Any]]] = {}  # task id -> [(loop, asyncio.Event)]

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            self._reset()  # a child has its own reply queue; the parent's results are not its own

    # -- the broker ---------------------------------------------------------------------
    def _broker(self) -> AMQPBroker:
        from ..brokers.amqp import AMQPBroker

        assert self.app is not None, "the rpc:// backend needs an app"
        broker = self.app.connection_for_write()
        if not isinstance(broker, AMQPBroker):
            raise ImproperlyConfigured(
                f"result_backend rpc:// sends results as messages through the broker, so it needs an AMQP broker "
                f"(amqp://, pyamqp://, amqps://), not {broker.scheme}://. With this broker use a result store "
                "such as redis://, db+postgresql:// or sqlite://.",
                key="result_backend",
            )
        return broker

    def reply_queue(self) -> QueueSpec:
        """This process's reply queue, declared as Celery declares it."""
        assert self.app is not None
        oid = self.app.oid
        arguments = {"x-expires": int(self.expires * 1000)} if self.expires else {}
        return QueueSpec(name=oid, routing_key=oid, durable=True, auto_delete=True, queue_arguments=arguments)

    def _listen(self) -> None:
        broker = self._broker()
        spec = self.reply_queue()
        broker.listen(spec, self._on_reply)  # cheap once listening: it only reconnects if needed
        self._listening = (broker, spec.name)

    def on_task_call(self, producer: Any, task_id: str) -> dict[str, Any]:
        self._check_fork()
        with self._cond:
            self._sent.add(task_id)
        listening = self._listening
        if listening is None or listening[0] is not self._broker() or listening[1] != self.reply_queue().name:
            self._listen()
        return {}

    def _on_reply(self, envelope: Envelope) -> None:
        """A reply arrived (runs in the AMQP IO thread)."""
        task_id = str(envelope.properties.get("correlation_id") or "")
        data = loads(envelope.body, envelope.content_type, envelope.content_encoding, self.accept)
        meta = self.meta_from_dict(data, task_id)
        task_id = task_id or meta.task_id
        with self._cond:
            current = self._results.get(task_id)
            if current is not None and current.ready and not meta.ready:
                return  # a late STARTED/RETRY never hides the final state
            self._results[task_id] = meta
            self._cond.notify_all()
            waiters = list(self._async_waiters.get(task_id, ()))
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # that loop is closed

    # -- storing (worker side) ------------------------------------------------------------
    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **_: Any,
    ) -> ResultMeta:
        """Send the task's state to the client's reply queue (``request.reply_to``)."""
        meta = self.build_meta(task_id, result, state, traceback, request)
        reply_to = getattr(request, "reply_to", None)
        if not reply_to:
            logger.debug("task %s has no reply_to: its %s state is not sent", task_id, state)
            return meta
        serializer = get_serializer(self.serializer)
        envelope = Envelope(
            body=self.encode_meta(meta),
            headers={},
            properties={
                "correlation_id": getattr(request, "correlation_id", None) or task_id,
                "delivery_mode": self.delivery_mode,
            },
            content_type=serializer.content_type,
            content_encoding=serializer.content_encoding,
        )
        self._broker().publish(envelope, exchange="", routing_key=str(reply_to))
        return meta

    def store(self, meta: ResultMeta) -> None:
        logger.debug("rpc:// can't send the state of task %s without its request (no reply_to)", meta.task_id)

    # -- reading (client side) ---------------------------------------------------------------
    def _known(self, task_id: str) -> ResultMeta | None:
        """What this process has for ``task_id`` (call with ``_cond`` held); raises if it can't ever have it."""
        meta = self._results.get(task_id)
        if meta is not None:
            if meta.ready:
                del self._results[task_id]
                self._sent.discard(task_id)
                self._remember(meta)
            return meta
        meta = self._read.get(task_id)
        if meta is not None:
            return meta
        if task_id in self._sent:
            return None
        raise BackendGetMetaError(E_NOT_SENT_HERE.format(task_id=task_id), task_id=task_id)

    def _remember(self, meta: ResultMeta) -> None:
        self._read[meta.task_id] = meta
        self._read.move_to_end(meta.task_id)
        while len(self._read) > READ_CACHE:
            self._read.popitem(last=False)

    def load(self, task_id: str) -> ResultMeta | None:
        self._check_fork()
        with self._cond:
            return self._known(task_id)

    def get_meta(self, task_id: str) -> ResultMeta:
        meta = self.load(task_id)
        return meta if meta is not None else ResultMeta(task_id=task_id)

    def wait_for(
        self, task_id: str, *, timeout: float | None = None, interval: float = 0.5, just_sent: bool = False
    ) -> ResultMeta:
        self._check_fork()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                meta = self._known(task_id)
                if meta is not None and meta.ready:
                    return meta
                wait = RECHECK if deadline is None else min(RECHECK, deadline - time.monotonic())
                if wait <= 0:
                    raise TimeoutError(f"The operation timed out waiting for task {task_id}.")
                if self._cond.wait(wait):
                    continue
            self._listen()  # nothing for a while: make sure the connection (and so the reply queue) is up

    async def await_for(
        self, task_id: str, *, timeout: float | None = None, interval: float = 0.5, just_sent: bool = False
    ) -> ResultMeta:
        import asyncio

        self._check_fork()
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        deadline = None if timeout is None else loop.time() + timeout
        with self._cond:
            self._async_waiters.setdefault(task_id, []).append(entry)
        try:
            while True:
                with self._cond:
                    meta = self._known(task_id)
                if meta is not None and meta.ready:
                    return meta
                wait = RECHECK if deadline is None else min(RECHECK, deadline - loop.time())
                if wait <= 0:
                    raise TimeoutError(f"The operation timed out waiting for task {task_id}.")
                try:
                    await asyncio.wait_for(event.wait(), wait)
                    event.clear()
                except asyncio.TimeoutError:
                    # Nothing for a while: make sure the connection (and so the reply queue) is up.
                    await asyncio.to_thread(self._listen)
        finally:
            with self._cond:
                group = self._async_waiters.get(task_id, [])
                if entry in group:
                    group.remove(entry)
                if not group:
                    self._async_waiters.pop(task_id, None)

    def ensure_chords_allowed(self) -> None:
        raise NotImplementedError(
            "rpc:// sends each result only to the process that sent the task, so no worker could "
            "collect a chord's results: use a result store such as redis:// or db+postgresql:// for chords."
        )

    def forget(self, task_id: str) -> None:
        with self._cond:
            self._results.pop(task_id, None)
            self._read.pop(task_id, None)
            self._sent.discard(task_id)

    # -- no keys: results are messages ----------------------------------------------------------
    def _get(self, key: str) -> bytes | None:
        return None

    def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return [None] * len(keys)

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        raise NotImplementedError("the rpc:// result backend keeps no groups or chords (use redis:// for those)")

    def _delete(self, key: str) -> None:
        raise NotImplementedError("the rpc:// result backend keeps no groups or chords (use redis:// for those)")
