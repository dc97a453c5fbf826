"""RabbitMQ (AMQP 0-9-1) broker on aio-pika, sharing queues with Celery's py-amqp transport.

URL: ``amqp://user:password@host:5672/vhost`` (also ``pyamqp://``; ``amqps://`` or
``broker_use_ssl`` for TLS, port 5671 by default). ``//`` or no path is the vhost ``/``.

Capabilities: fanout (AMQP exchanges), priorities (``x-max-priority``, 9 is most urgent),
broker-side ETA (Celery's native delayed delivery), publisher confirms (collected in the
background), heartbeats (``broker_heartbeat``), reconnection.

How it runs. aio-pika is asynchronous; its event loop runs in one background thread per
process (``_amqp_io``), created on first use and again after a fork. The synchronous
interface drives it with ``asyncio.run_coroutine_threadsafe`` and waits with a timeout.
One connection and one IO thread serve every thread of the process: pika's
``BlockingConnection`` is not thread-safe, so it would take a connection per publishing
thread, and a second AMQP client next to aio-pika.

Publishing (``delay()``) has no round trip per message, and loses nothing it accepted:

* ``publish()`` checks, in the caller's thread, that the connection is up (else it connects,
  and raises :class:`~celeriac.exceptions.OperationalError` within ``broker_connection_timeout``
  when RabbitMQ is unreachable), appends the message to the *outstanding buffer* and returns.
  The IO loop takes what accumulated at each wake-up (one ``call_soon_threadsafe`` per batch)
  and publishes it in order, on a channel with publisher confirms, a few hundred messages per
  frame write; so messages keep the order in which they were published, per thread and overall.
* A message leaves the buffer when RabbitMQ confirms it. The buffer is bounded
  (``max_unconfirmed``, 1000): when it is full, ``publish()`` waits for confirms to free room
  (backpressure), and raises ``OperationalError`` after ``confirm_timeout`` seconds without;
  so it does when the oldest message in the buffer has waited that long.
* A stalled network, or a connection reset that the IO thread hasn't seen yet, looks like a
  live connection. So a publish that comes more than ``confirm_after_idle`` seconds (0.01 by
  default) after the previous one waits for its own confirm, as before: an occasional
  ``delay()`` on a dead connection raises ``OperationalError`` (when reconnecting fails, or
  after ``confirm_timeout``; that message is withdrawn, not published later). Only a stream of
  publishes, where that wait would cost, goes without it.
* If the connection (or the channel) drops, every unconfirmed message is published again, in
  order, as soon as a new channel is open: by the next ``publish()``, or by a background
  reconnection (with backoff) when nobody publishes. A message whose confirm was lost with the
  connection may so reach the queue twice (at least once, as with kombu's retries).
* A nack (RabbitMQ could not take the message: a full queue with ``x-overflow:
  reject-publish``, an internal error) is retried three times, then logged as an error and
  copied to the dead-letter queue with the reason in its headers, so nothing is dropped
  silently. So is a message that fails five times for another reason than a lost connection.
* ``flush(timeout)`` waits for the confirms of everything published so far; ``close()`` flushes
  (up to ``confirm_timeout``) before disconnecting, and so does an exit hook (atexit, or
  multiprocessing's for a pool process): a script that calls ``delay()`` and exits loses
  nothing. What is still unconfirmed then is logged as an error, with the task ids.
  ``queue_size()`` and ``purge()`` flush first, so they see what this process published.
* Workers: ``ack()`` is sent only once RabbitMQ confirmed what the acking thread published
  before (the task's result over ``rpc://``, its retry, the next link of its chain); until
  then it waits on the IO loop and ``ack()`` returns at once. In a prefork pool process, which
  doesn't ack, the task's end (``task_postrun``) waits for those confirms before the outcome
  goes to the parent. If the worker dies in between, the task is delivered again: it runs
  twice rather than its follow-up being lost.

The worker's own moves (parking a message until its ETA, dead-lettering) and broadcasts
(remote control, events) still wait for their confirm.

Wire layout (Celery's):

* a task queue is declared as Celery declares it (see ``celeriac.queues``): the default
  ``celery`` queue, durable, bound to the durable direct exchange ``celery`` with routing
  key ``celery``; tasks for a direct exchange are published to the default exchange ``""``
  with the queue's name as routing key, for topic/fanout exchanges to the exchange;
* properties and headers are those kombu sends (``_amqp_wire``); the broker's own moves
  (parking, dead-lettering, broadcasts) go through aiormq's ``basic_publish``, which adds a
  random ``message_id``; Celery ignores it;
* queue types: classic, priority (``x-max-priority``) and quorum (``x-queue-type``).

Flow: ``basic.qos`` allows the worker as many unacked messages as it asks for with
:meth:`AMQPBroker.set_prefetch` (``concurrency * worker_prefetch_multiplier``), per channel when
it consumes several classic queues, per consumer otherwise (quorum queues have no global
QoS, as in Celery). Messages are acked after the task ran (``task_acks_late``) and
requeued when the worker loses them; RabbitMQ requeues whatever a dead connection held,
so an ack for a delivery of a connection that was lost is a logged no-op.

ETA: a message whose ETA is more than a second away is published into Celery's delay
layout (``celery_delayed_0..27``, see ``_amqp_wire``) and acked, so the worker holds
nothing while it waits, whatever the queue type. The layout's queues are of type
``broker_native_delayed_delivery_queue_type`` (quorum by default). It is Celery's own, so
Celery workers and clients using native delayed delivery share it; clients here publish ETA
tasks straight to the task queue, as Celery's do for classic queues, and the worker parks them.
Why this layout rather than a TTL queue per delay: 28 queues cover any delay up to 8.5 years
(second granularity; a parked message is due at or after its ETA, never before), nothing is
created per delay, and mixed Celery/celeriac fleets agree on it.

``reject(requeue=False)`` dead-letters through the queue's own ``x-dead-letter-exchange`` when it
has one, else copies the message to the ``celeriac.deadletter`` queue (with the reason in its
headers) and acks it, so nothing is dropped.

Not done: the ``expiration`` property is not derived from a task's ``expires`` (celeriac
records an expired task as REVOKED rather than letting RabbitMQ drop it), and RabbitMQ's
``consumer_timeout`` (30 minutes by default) still applies to tasks that run longer.

Transport options: ``confirm_timeout`` (seconds to wait for a publish confirm, for room in
the outstanding buffer, or for a declare, default 10), ``max_unconfirmed`` (size of the
outstanding buffer, default 1000), ``confirm_after_idle`` (a publish that comes that many seconds
after the previous one waits for its own confirm, default 0.01), ``native_delayed_delivery_queue_type`` (also the
Celery setting), ``deadletter_queue``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime, timezone
from functools import partial
from typing import Any, ClassVar, TypeVar, cast

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq
import aiormq.exceptions
import pamqp.exceptions
from aiormq.abc import ChannelFrame, DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from .. import signals
from ..exceptions import BrokerUnavailable, ImproperlyConfigured, OperationalError
from ._amqp_io import IOLoop, io_loop
from ._amqp_wire import (
    MAX_DELAY,
    bind_for_delays,
    declare_delay_chain,
    delay_routing_key,
    incoming_envelope,
    outgoing_properties,
    parse_url,
    queue_arguments,
    ssl_context,
    strip_delay_bits,
)
from .base import Broker, Delivery, Envelope, QueueSpec, Subscription

__all__ = ["AMQPBroker"]

logger = logging.getLogger("celeriac.brokers.amqp")

T = TypeVar("T")

DEADLETTER = "celeriac.deadletter"
# Exchanges Celery declares, with its flags (RabbitMQ refuses a redeclaration that differs).
KNOWN_EXCHANGES: dict[str, tuple[str, bool]] = {
    "celery.pidbox": ("fanout", False),
    "reply.celery.pidbox": ("direct", False),
    "celeryev": ("topic", True),
}
# Headers RabbitMQ adds when it dead-letters; dropped when a message is parked again.
_DEATH_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                  "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason")  # fmt: skip

_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
    pamqp.exceptions.PAMQPException,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    TimeoutError,
)


# Publishing: how many messages may wait for their confirm before publish() blocks.
MAX_UNCONFIRMED = 1000
# A publish that comes this many seconds after the previous one waits for its own confirm: a
# connection can look alive and be dead (stalled, or reset without the IO loop knowing yet).
CONFIRM_AFTER_IDLE = 0.01
NACK_RESENDS = 3  # a nacked message is published again this many times, then dead-lettered
NACK_RESEND_DELAY = 0.5
MAX_PUBLISH_FAILURES = 5  # failed attempts (the connection aside) before a message is dead-lettered
# What a publish attempt fails with when the connection goes: those never count as failures.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    ConnectionError,
    OSError,
    aiormq.exceptions.AMQPConnectionError,
    aio_pika.exceptions.ChannelInvalidStateError,
    asyncio.CancelledError,
)
_QUEUED, _SENT, _IDLE = 0, 1, 2
WRITE_BATCH = 256  # messages per frame write


class _BatchNotWritten(Exception):
    pass


def _batched_writes(channel: aiormq.Channel) -> bool:
    """Does this aiormq channel have what :meth:`AMQPBroker._write_batch` uses?"""
    return all(hasattr(channel, name) for name in ("confirmations", "delivery_tag", "write_queue", "_split_body"))


def _lock_free(channel: aiormq.Channel) -> bool:
    """Is nobody holding the channel's lock (between taking a delivery tag and queueing its frames)?
    aiormq keeps the lock private: if it can't be found, say no (the caller then takes it)."""
    lock = getattr(channel, "_Channel__lock", None)
    # A lock just released is not locked, but its next holder may be woken and not yet running.
    return isinstance(lock, asyncio.Lock) and not lock.locked() and not getattr(lock, "_waiters", True)


class _Outgoing:
    """A message handed to publish(), kept until RabbitMQ confirms it."""

    __slots__ = ("attempt", "body", "born", "exchange", "failures", "nacks", "properties", "routing_key", "serial",
                 "state")  # fmt: skip

    def __init__(
        self, serial: int, exchange: str, routing_key: str, body: bytes, properties: Basic.Properties, born: float
    ) -> None:
        self.born = born
        self.serial = serial
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.properties = properties
        self.state = _QUEUED  # _QUEUED: for the IO loop to send; _SENT: awaiting its confirm; _IDLE: to send again
        self.attempt = 0
        self.nacks = 0
        self.failures = 0


def _describe(item: _Outgoing) -> str:
    headers: Mapping[str, Any] = item.properties.headers or {}
    task = f"task {headers.get('task')!s}[{headers.get('id')!s}]" if headers.get("id") else "a message"
    return f"{task} for exchange {item.exchange!r}, routing key {item.routing_key!r}"


# Every broker of this process that publishes (the worker's consumer has its own, separate one).
_publishers: weakref.WeakSet[AMQPBroker] = weakref.WeakSet()
_registry_lock = threading.Lock()


def _new_registry_lock() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_new_registry_lock)


def _live_publishers() -> list[AMQPBroker]:
    pid = os.getpid()
    with _registry_lock:
        return [b for b in _publishers if b._pid == pid]


# The brokers each thread published to (.brokers, a WeakSet): what its acks may have to wait for.
_published_here = threading.local()


def _unconfirmed_by_this_thread() -> list[tuple[AMQPBroker, int]]:
    """(broker, serial) for every broker where this thread published something not yet confirmed.

    Asked on every ack: a thread that never published (most pool threads) answers at once."""
    brokers: weakref.WeakSet[AMQPBroker] | None = getattr(_published_here, "brokers", None)
    if not brokers:
        return []
    pid = os.getpid()
    pending = []
    for broker in list(brokers):
        last = getattr(broker._local, "last", 0)
        if broker._pid == pid and last and broker._unconfirmed_up_to(last):
            pending.append((broker, last))
    return pending


def _confirm_before_reporting(sender: Any = None, **kwargs: Any) -> None:
    """After a task ran in a process that doesn't ack it (a prefork pool process): wait for the
    confirms of what it published before its outcome goes to the parent, which then acks."""
    brokers = _live_publishers()
    if not brokers or any(b._consuming_here for b in brokers):
        return  # acked here: ack() itself waits for the confirms
    for broker, serial in _unconfirmed_by_this_thread():
        if not broker._wait_confirmed(serial, broker.confirm_timeout):
            logger.warning("RabbitMQ has not confirmed what task %s published yet: kept to be published again",
                           kwargs.get("task_id"))  # fmt: skip


signals.task_postrun.connect(_confirm_before_reporting, dispatch_uid="celeriac.brokers.amqp.confirms")


class AMQPBroker(Broker):
    scheme: ClassVar[str] = "amqp"
    supports_fanout: ClassVar[bool] = True
    supports_priority: ClassVar[bool] = True
    native_delay: ClassVar[bool] = False  # clients publish ETA tasks as Celery's do; workers park them
    exchange_routing: ClassVar[bool] = True
    app_settings: ClassVar[tuple[str, ...]] = ("broker_heartbeat", "broker_native_delayed_delivery_queue_type")

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        opts = dict(options or {})
        self.connect_timeout = float(opts.pop("connect_timeout", None) or 4.0)
        use_ssl = opts.pop("use_ssl", None)
        self.params = parse_url(url, use_ssl)
        self._ssl = ssl_context(use_ssl) if self.params.tls else None
        heartbeat = opts.pop("heartbeat", 120)
        self.heartbeat = float(heartbeat) if heartbeat else 0.0
        self.confirm_timeout = float(opts.pop("confirm_timeout", None) or 10.0)
        self.max_unconfirmed = max(1, int(opts.pop("max_unconfirmed", None) or MAX_UNCONFIRMED))
        idle = opts.pop("confirm_after_idle", None)
        self.confirm_after_idle = float(CONFIRM_AFTER_IDLE if idle is None else idle)
        self.delayed_queue_type = str(opts.pop("native_delayed_delivery_queue_type", None) or "quorum")
        self.deadletter_queue = str(opts.pop("deadletter_queue", None) or DEADLETTER)
        self._prefetch: int | None = None
        self._reset()

    def _reset(self) -> None:
        """Fresh connection state (at creation, and in a forked child, which must not touch the parent's)."""
        self._pid = os.getpid()
        self._io: IOLoop | None = None
        # Owned by the IO loop.
        self._conn: aio_pika.abc.AbstractConnection | None = None
        self._generation = 0
        self._setup_lock = asyncio.Lock()
        self._channels: dict[str, aio_pika.abc.AbstractChannel] = {}
        self._channel_ids = 0
        self._consume_channel_id = 0
        self._declared: dict[str, QueueSpec] = {}
        self._exchanges: set[str] = set()
        self._delays_ready = False
        self._delay_bound: set[str] = set()
        self._delay_lock = asyncio.Lock()  # parks run concurrently; the layout is declared once
        self._consumers: dict[str, str] = {}
        self._listeners: dict[str, tuple[QueueSpec, Callable[[Envelope], None]]] = {}
        self._subscriptions: dict[int, _AMQPSubscription] = {}
        # Shared with the calling threads, under _cond.
        self._cond = threading.Condition()
        self._inbox: deque[Delivery] = deque()
        self._held: dict[str, DeliveredMessage] = {}
        self._consuming: frozenset[str] = frozenset()
        self._lost = False
        # Acks with no confirm to wait for, handed to the IO loop in batches (see ack()); under _cond.
        self._acks: list[DeliveredMessage] = []
        self._acks_wakeup = False
        # Publishing (see the module docstring): the outstanding buffer, in publishing order, and
        # what waits for the IO loop to send it; shared with the calling threads, under _out_lock.
        self._out_lock = threading.Condition()
        self._outstanding: dict[int, _Outgoing] = {}
        self._queued: list[_Outgoing] = []
        self._wakeup_pending = False
        self._serial = 0
        self._local = threading.local()  # .last: the serial of the last message this thread published
        self._closing = False
        self._consuming_here = False
        self._exchanges_seen: set[str] = set()
        self._connect_failures: tuple[int, str] = (0, "")  # failed reconnections so far, the last error
        self._last_handoff = -math.inf  # time.monotonic() of the last hand-off: the first publish is after a pause
        # Owned by the IO loop.
        self._pub_channel: aiormq.Channel | None = None
        self._pub_owner: aio_pika.abc.AbstractChannel | None = None
        self._republisher: asyncio.Task[None] | None = None
        self._confirm_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._deferred_acks: set[asyncio.Task[Any]] = set()
        self._ack_writes: set[asyncio.Future[None]] = set()  # batches of acks queued, not yet written
        self._background: set[asyncio.Task[Any]] = set()
        # Publishes handed to tasks whose frames may not be queued yet: later ones queue behind them.
        self._write_tasks: set[asyncio.Task[Any]] = set()
        with _registry_lock:
            _publishers.add(self)

    # -- running coroutines -----------------------------------------------------------
    def _loop(self) -> IOLoop:
        if os.getpid() != self._pid:
            self._reset()
        if self._io is None:
            self._io = io_loop()
            self._io.register_flush(self._flush_at_exit)
        return self._io

    def _run(self, action: str, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        io = self._loop()
        limit = timeout if timeout is not None else self.connect_timeout + self.confirm_timeout
        try:
            return io.run(coro, limit)
        except (OperationalError, ImproperlyConfigured):
            raise
        except _ERRORS as exc:
            raise self._error(exc, action) from exc

    def _where(self) -> str:
        p = self.params
        return f"amqp{'s' if p.tls else ''}://{p.login}@{p.host}:{p.port}/{p.vhost.replace('/', '%2F')}"

    def _error(self, exc: BaseException, action: str) -> OperationalError:
        if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
            reason = f"authentication failed for user {self.params.login!r}: {exc}"
        elif isinstance(exc, aiormq.exceptions.ConnectionNotAllowed):
            reason = f"vhost {self.params.vhost!r} does not exist or is not allowed for {self.params.login!r}"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            reason = "timed out"
        else:
            reason = str(exc) or type(exc).__name__
        return OperationalError(f"{action} on {self._where()}: {reason}")

    # -- connection ---------------------------------------------------------------
    def open(self) -> None:
        try:
            self._run("connecting", self._publish_channel())
        except OperationalError as exc:
            raise BrokerUnavailable(str(exc), url=self.url) from exc

    def close(self) -> None:
        """Wait (up to ``confirm_timeout``) for RabbitMQ to confirm what was published, then disconnect."""
        if os.getpid() != self._pid or self._io is None or not self._io.thread.is_alive():
            return
        if not self._io.in_loop() and not self.flush(self.confirm_timeout):
            self._report_unconfirmed("Closing")
        try:
            self._io.run(self.aclose(), self.connect_timeout)
        except Exception as exc:  # closing must not raise: the connection is gone either way
            logger.debug("closing %s: %r", self._where(), exc)

    async def aclose(self) -> None:
        self._closing = True
        if self._republisher is not None:
            self._republisher.cancel()
        self._send_acks()
        if self._deferred_acks or self._ack_writes:
            await asyncio.wait([*self._deferred_acks, *self._ack_writes], timeout=self.confirm_timeout)
        conn, self._conn = self._conn, None
        self._pub_channel = self._pub_owner = None
        self._drop_consumer_state(lost=False)
        if conn is not None and not conn.is_closed:
            await conn.close()

    async def _ensure(self) -> aio_pika.abc.AbstractConnection:
        conn = self._conn
        if conn is not None and not conn.is_closed:
            return conn
        async with self._setup_lock:
            if self._conn is not None and not self._conn.is_closed:
                return self._conn
            conn = aio_pika.Connection(
                self.params.url(self.heartbeat),
                ssl_context=self._ssl,
                client_properties={"connection_name": f"celeriac pid {os.getpid()}"},
            )
            try:
                await asyncio.wait_for(conn.connect(timeout=self.connect_timeout), self.connect_timeout)
            except BaseException:
                # Closed here, or aio-pika's finalizer would later schedule a close on no loop.
                await conn.close()
                raise
            assert self._io is not None
            self._io.register(conn)  # closed politely at exit, whoever still holds it
            self._generation += 1
            conn.close_callbacks.add(partial(self._on_connection_closed, self._generation))
            self._channels.clear()
            self._exchanges.clear()
            self._conn = conn
            try:
                await self._restore()
            except BaseException:
                self._conn = None
                await conn.close()
                raise
            return conn

    async def _restore(self) -> None:
        """After a reconnection: declare what was declared, consume what was consumed."""
        if self._generation > 1:
            logger.info("Connected to %s again", self._where())
        for spec in list(self._declared.values()):
            await self._declare_now(spec)
        for spec, callback in list(self._listeners.values()):
            await self._listen_now(spec, callback)
        for subscription in list(self._subscriptions.values()):
            await self._subscribe_now(subscription)

    def _in_background(
        self, coro: Coroutine[Any, Any, T], held: set[asyncio.Task[Any]] | None = None
    ) -> asyncio.Task[T]:
        """On the IO loop: run ``coro`` without waiting for it, held in ``held`` (``_background``
        unless said) until it ends (the loop keeps only weak references to its tasks)."""
        task = asyncio.get_running_loop().create_task(coro)
        tasks = self._background if held is None else held
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def _on_connection_closed(self, generation: int, sender: Any, exc: BaseException | None) -> None:
        if isinstance(sender, aio_pika.abc.AbstractConnection) and not sender.is_closed:
            # Lost rather than closed: aio-pika leaves it open, and would close it from its
            # finalizer, in whatever thread collects it. Close it here, on the loop.
            self._in_background(sender.close())
        if generation != self._generation:
            return
        self._conn = None
        self._pub_channel = self._pub_owner = None
        self._channels.clear()
        self._consumers.clear()
        dropped = self._drop_consumer_state(lost=True)
        if getattr(sender, "close_called", False):  # closed from this side: nothing to report
            return
        logger.warning(
            "Connection to %s lost: %s%s",
            self._where(),
            exc or "closed",
            f" ({dropped} unacked message{'s' if dropped != 1 else ''} will be redelivered by RabbitMQ)"
            if dropped
            else "",
        )

    def _drop_consumer_state(self, *, lost: bool) -> int:
        with self._cond:
            dropped = len(self._held)
            self._inbox.clear()
            self._held.clear()
            if lost and self._consuming:
                self._lost = True
            self._consuming = frozenset()
            self._cond.notify_all()
        return dropped

    async def _channel(self, role: str) -> aio_pika.abc.AbstractChannel:
        channel = self._channels.get(role)
        if channel is not None and not channel.is_closed:
            return channel
        await self._ensure()
        async with self._setup_lock:
            current = self._channels.get(role)
            if current is not None and not current.is_closed:
                return current
            return await self._open_channel(role)

    async def _open_channel(self, role: str) -> aio_pika.abc.AbstractChannel:
        assert self._conn is not None
        channel: aio_pika.abc.AbstractChannel = await self._conn.channel(publisher_confirms=role == "publish")
        self._channel_ids += 1
        channel.close_callbacks.add(partial(self._on_channel_closed, role, self._channel_ids))
        self._channels[role] = channel
        if role == "consume":
            self._consume_channel_id = self._channel_ids
        elif role == "publish":
            self._pub_channel, self._pub_owner = cast(aiormq.Channel, await channel.get_underlay_channel()), channel
            self._resend_unconfirmed()
        return channel

    def _on_channel_closed(self, role: str, channel_id: int, sender: Any, exc: BaseException | None) -> None:
        if self._channels.get(role) is sender:
            del self._channels[role]
        if role == "publish" and self._pub_owner is sender:
            self._pub_channel = self._pub_owner = None
        if role == "consume" and self._conn is not None and self._consume_channel_id == channel_id:
            self._consumers.clear()
            dropped = self._drop_consumer_state(lost=True)
            logger.warning("Consuming channel closed: %s (%d unacked messages will be redelivered)", exc, dropped)

    # -- declaring ------------------------------------------------------------------
    def declare_queue(self, spec: QueueSpec) -> None:
        if self._declared.get(spec.name) == spec and self._conn is not None:
            return
        self._run(f"declaring queue {spec.name!r}", self._declare(spec))

    async def _declare(self, spec: QueueSpec) -> None:
        await self._ensure()
        async with self._setup_lock:
            await self._declare_now(spec)
        self._declared[spec.name] = spec

    async def _declare_now(self, spec: QueueSpec) -> None:
        channel = self._channels.get("declare")
        if channel is None or channel.is_closed:
            channel = await self._open_channel("declare")
        try:
            if spec.exchange and not spec.exchange.startswith("amq."):
                await channel.declare_exchange(spec.exchange, spec.exchange_type, durable=spec.exchange_durable)
            self._exchanges_seen.add(spec.exchange)
            queue = await channel.declare_queue(
                spec.name,
                durable=spec.durable,
                auto_delete=spec.auto_delete,
                arguments=queue_arguments(spec) or None,
            )
            if spec.exchange:
                await queue.bind(spec.exchange, spec.routing_key)
            if _is_quorum(spec):
                # As Celery's worker does for quorum queues: its clients may publish delayed tasks.
                await self._delays_for(channel, spec)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise ImproperlyConfigured(
                f"RabbitMQ refused to declare queue {spec.name!r} (exchange {spec.exchange!r}) on {self._where()}: "
                f"{exc}. A queue must be declared with the same arguments everywhere (task_queues, "
                "task_default_queue_type, task_queue_max_priority); to change them, delete it first "
                f"(rabbitmqctl delete_queue -p {self.params.vhost} {spec.name}).",
                key="task_queues",
            ) from exc

    async def _delays_for(self, channel: aio_pika.abc.AbstractChannel, spec: QueueSpec) -> None:
        if self._delays_ready and spec.name in self._delay_bound:
            return
        async with self._delay_lock:
            if not self._delays_ready:
                await declare_delay_chain(channel, self.delayed_queue_type)
                self._delays_ready = True
            if spec.name not in self._delay_bound:
                await bind_for_delays(channel, spec)
                self._delay_bound.add(spec.name)

    # -- publishing ---------------------------------------------------------------------
    def publish(
        self, envelope: Envelope, *, exchange: str, routing_key: str, not_before: datetime | None = None
    ) -> None:
        seconds = _delay(not_before)
        if seconds and not exchange:
            self._run("publishing a delayed message", self._park(envelope, routing_key, seconds))
            return
        # Publishing to an exchange that doesn't exist closes the channel: find out here, while
        # the caller can still be told.
        if exchange in KNOWN_EXCHANGES:
            if exchange not in self._exchanges:  # e.g. a remote-control reply; non-durable: again after a restart
                self._run(f"declaring {exchange!r}", self._ensure_exchange(exchange, routing_key))
        elif exchange and exchange not in self._exchanges_seen:
            self._run(f"checking exchange {exchange!r}", self._check_exchange(exchange))
        self._hand_off(exchange, routing_key, envelope.body, outgoing_properties(envelope))

    def _hand_off(self, exchange: str, routing_key: str, body: bytes, properties: Basic.Properties) -> None:
        """Queue a message for the IO loop to publish, and return (see the module docstring)."""
        if len(routing_key.encode()) > 255:
            raise ValueError(f"routing key too long (max 255 bytes): {routing_key[:40]!r}...")
        io = self._loop()
        # Checked here, in the caller's thread: delay() fails fast when RabbitMQ is unreachable.
        if not self._publisher_ready():
            self._run("connecting", self._publish_channel())
        # A connection can look up and be dead (stalled, or reset without the IO loop knowing
        # yet): unless it is one of a stream, a publish waits for its own confirm.
        now = time.monotonic()
        probe = now - self._last_handoff > self.confirm_after_idle and not io.in_loop()
        self._last_handoff = now
        with self._out_lock:
            self._closing = False
            oldest = next(iter(self._outstanding.values()), None)
            if oldest is not None and now - oldest.born > self.confirm_timeout:
                # The connection looks up, but nothing comes back (a stalled network): say so.
                raise self._no_confirms()
            if len(self._outstanding) >= self.max_unconfirmed and not io.in_loop():
                if not self._out_lock.wait_for(lambda: len(self._outstanding) < self.max_unconfirmed,
                                               self.confirm_timeout):  # fmt: skip
                    raise self._no_confirms()
            failures = self._connect_failures[0]
            self._serial += 1
            item = _Outgoing(self._serial, exchange, routing_key, body, properties, now)
            self._outstanding[item.serial] = item
            self._queued.append(item)
            wake, self._wakeup_pending = not self._wakeup_pending, True
        self._local.last = item.serial
        brokers = getattr(_published_here, "brokers", None)
        if brokers is None:
            brokers = _published_here.brokers = weakref.WeakSet()
        if self not in brokers:
            brokers.add(self)
        if wake:
            io.call_soon(self._send_queued)
        if probe:
            self._probe(item, failures)

    def _probe(self, item: _Outgoing, failures: int) -> None:
        """Wait for ``item``'s confirm; if none comes (or reconnecting fails meanwhile), withdraw it and raise."""
        with self._out_lock:
            self._out_lock.wait_for(
                lambda: item.serial not in self._outstanding or self._connect_failures[0] != failures,
                self.confirm_timeout,
            )
            # Withdrawn: the caller is told it failed, so it isn't published again later.
            withdrawn = self._outstanding.pop(item.serial, None) is not None
            self._out_lock.notify_all()
        if withdrawn:
            count, error = self._connect_failures
            if count != failures and error:
                raise OperationalError(error)
            raise OperationalError(
                f"publishing on {self._where()}: no confirm from RabbitMQ within {self.confirm_timeout:g} seconds"
            )

    def _no_confirms(self) -> OperationalError:
        return OperationalError(
            f"publishing on {self._where()}: {len(self._outstanding)} messages are still waiting for "
            f"RabbitMQ's confirm after {self.confirm_timeout:g} seconds"
        )

    def _publisher_ready(self) -> bool:
        conn, channel = self._conn, self._pub_channel
        return conn is not None and not conn.is_closed and channel is not None and not channel.is_closed

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until RabbitMQ has confirmed every message published so far by this process.

        Returns False if some are still unconfirmed after ``timeout`` seconds (they stay
        buffered, and are published again if the connection is lost)."""
        return self._wait_confirmed(self._serial, timeout)

    def _wait_confirmed(self, serial: int, timeout: float | None) -> bool:
        if os.getpid() != self._pid or not serial:
            return True
        if self._io is not None and self._io.in_loop():
            return not self._unconfirmed_up_to(serial)
        with self._out_lock:
            return self._out_lock.wait_for(lambda: not self._unconfirmed_up_to(serial), timeout)

    def _unconfirmed_up_to(self, serial: int) -> bool:
        with self._out_lock:
            first = next(iter(self._outstanding), None)
        return first is not None and first <= serial

    def _report_unconfirmed(self, when: str) -> None:
        with self._out_lock:
            items = list(self._outstanding.values())
        if items:
            ids = ", ".join(_describe(item) for item in items[:20])
            logger.error(
                "%s: %d message%s published to %s still unconfirmed by RabbitMQ (they may be lost): %s%s",
                when, len(items), "s" if len(items) != 1 else "", self._where(), ids,
                " ..." if len(items) > 20 else "",
            )  # fmt: skip

    def _flush_at_exit(self) -> None:
        """At interpreter (or pool process) exit: wait for the confirms, then for the acks waiting on them."""
        if os.getpid() != self._pid or self._io is None:
            return
        if not self.flush(self.confirm_timeout):
            self._report_unconfirmed("At exit")
        if self._deferred_acks or self._ack_writes or self._acks:
            try:
                self._io.run(self._drain_deferred_acks(), self.connect_timeout)
            except Exception as exc:  # at exit: report, never raise
                logger.debug("acks at exit: %r", exc)

    # The IO loop's side.
    def _send_queued(self) -> None:
        with self._out_lock:
            batch = [item for item in self._queued if item.serial in self._outstanding]
            self._queued = []
            self._wakeup_pending = False
        channel = self._pub_channel
        if channel is None or channel.is_closed or self._conn is None:
            for item in batch:
                item.state = _IDLE
            self._kick_republisher()
            return
        self._send(channel, batch)

    def _send(self, channel: aiormq.Channel, items: list[_Outgoing]) -> None:
        """Publish ``items`` in order: one write of a few hundred messages at a time (one
        ``send()`` for them all), their confirms awaited through aiormq's own futures."""
        if not items:
            return
        for item in items:
            item.state = _SENT
            item.attempt += 1
        assert self._io is not None
        if not _batched_writes(channel):
            self._send_one_by_one(channel, items)
            return
        for start in range(0, len(items), WRITE_BATCH):
            chunk = items[start : start + WRITE_BATCH]
            if not self._write_tasks and _lock_free(channel) and not channel.write_queue.full():
                # No earlier publish is yet to queue its frames (in a task, or waiting for the
                # channel's lock), and there is room: queue these now rather than in a task's first
                # step, a loop turn later. Nothing here awaits, so nothing can come in between.
                try:
                    payload, futures = self._frames(channel, chunk)
                except _BatchNotWritten:
                    self._send_one_by_one(channel, chunk)
                    continue
                channel.write_queue.put_nowait(payload)
                self._on_written(chunk, futures)
                continue
            task = self._writing(self._write_batch(channel, chunk))
            task.add_done_callback(partial(self._on_batch_written, channel, chunk, [i.attempt for i in chunk]))

    def _send_one_by_one(self, channel: aiormq.Channel, items: list[_Outgoing]) -> None:
        """aiormq's ``basic_publish``, a task per message (when a batch can't be written, or aiormq changed)."""
        assert self._io is not None
        for item in items:
            task = self._writing(
                channel.basic_publish(
                    item.body,
                    exchange=item.exchange,
                    routing_key=item.routing_key,
                    properties=item.properties,
                    wait=False,
                )
            )
            task.add_done_callback(partial(self._on_confirm, item, item.attempt))

    def _writing(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task that publishes: until it ends, later publishes go through tasks too, so that they
        queue their frames after its own."""
        return self._in_background(coro, self._write_tasks)

    async def _write_batch(self, channel: aiormq.Channel, items: list[_Outgoing]) -> None:
        async with channel.lock:
            payload, futures = self._frames(channel, items)
            await channel.write_queue.put(payload)
        self._on_written(items, futures)

    def _frames(self, channel: aiormq.Channel, items: list[_Outgoing]) -> tuple[Any, list[asyncio.Future[Any]]]:
        """What aiormq's basic_publish does for one message, for several in one frame write: take
        the next delivery tags, register a confirmation future for each, marshal the frames.
        Raises :class:`_BatchNotWritten`, with nothing taken, if a message can't be encoded."""
        first = channel.delivery_tag
        futures: list[asyncio.Future[Any]] = []
        try:
            frames: list[Any] = []
            for item in items:
                channel.delivery_tag += 1
                future = channel.create_future()
                channel.confirmations[channel.delivery_tag] = future
                futures.append(future)
                frames.append(Basic.Publish(exchange=item.exchange, routing_key=item.routing_key))
                frames.append(ContentHeader(properties=item.properties, body_size=len(item.body)))
                frames.extend(channel._split_body(item.body))
            payload = ChannelFrame.marshall(channel_number=channel.number, frames=frames)
        except Exception as exc:  # nothing was sent: undo, then one by one finds the culprit
            for tag in range(first + 1, channel.delivery_tag + 1):
                channel.confirmations.pop(tag, None)
            for future in futures:
                future.cancel()
            channel.delivery_tag = first
            raise _BatchNotWritten from exc
        return payload, futures

    def _on_written(self, items: list[_Outgoing], futures: list[asyncio.Future[Any]]) -> None:
        for item, future in zip(items, futures, strict=True):
            future.add_done_callback(partial(self._on_confirm, item, item.attempt))

    def _on_batch_written(
        self, channel: aiormq.Channel, items: list[_Outgoing], attempts: list[int], task: asyncio.Task[None]
    ) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is None and not task.cancelled():
            return
        current = [item for item, attempt in zip(items, attempts, strict=True) if item.attempt == attempt]
        if isinstance(exc, _BatchNotWritten) and not channel.is_closed:
            self._send_one_by_one(channel, current)
            return
        for item in current:
            item.state = _IDLE
        self._kick_republisher()

    def _resend_unconfirmed(self) -> None:
        """On a new publishing channel: send again, in order, what the old one left unconfirmed."""
        channel = self._pub_channel
        if channel is None:
            return
        with self._out_lock:
            items = [item for item in self._outstanding.values() if item.state != _QUEUED]
        if items:
            logger.warning("Publishing %d unconfirmed message%s again on %s", len(items),
                           "s" if len(items) != 1 else "", self._where())  # fmt: skip
        self._send(channel, items)

    def _on_confirm(self, item: _Outgoing, attempt: int, task: asyncio.Future[Any]) -> None:
        if item.attempt != attempt or item.serial not in self._outstanding:
            return  # sent again since (or given up): this answer is for an older attempt
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        if exc is None:
            self._forget(item)
        elif isinstance(exc, aiormq.exceptions.DeliveryError):
            self._nacked(item, exc)
        elif isinstance(exc, (ValueError, TypeError)):
            self._give_up(item, repr(exc))  # can't be sent at all (a bad header value?)
        else:
            item.state = _IDLE
            if not isinstance(exc, _CONNECTION_LOST):
                # Not the connection: the broker closed the channel over this message (an exchange
                # deleted meanwhile?), or worse. Try again, but not forever.
                item.failures += 1
                if item.failures >= MAX_PUBLISH_FAILURES:
                    self._give_up(item, f"failed {item.failures} times, last: {exc!r}")
                    return
            self._kick_republisher()

    def _forget(self, item: _Outgoing) -> None:
        with self._out_lock:
            self._outstanding.pop(item.serial, None)
            self._out_lock.notify_all()
            first = next(iter(self._outstanding), None)
        if self._confirm_waiters:
            waiting, self._confirm_waiters = self._confirm_waiters, []
            for serial, future in waiting:
                if first is None or first > serial:
                    if not future.done():
                        future.set_result(None)
                else:
                    self._confirm_waiters.append((serial, future))

    async def _confirmed_up_to(self, serial: int) -> None:
        """Return once every message up to ``serial`` is confirmed (on the IO loop)."""
        if not self._unconfirmed_up_to(serial):
            return
        assert self._io is not None
        future: asyncio.Future[None] = self._io.loop.create_future()
        self._confirm_waiters.append((serial, future))
        await future

    def _nacked(self, item: _Outgoing, exc: BaseException) -> None:
        item.nacks += 1
        if item.nacks > NACK_RESENDS:
            self._give_up(item, f"RabbitMQ refused it {item.nacks} times (nack)")
            return
        logger.warning("RabbitMQ refused %s (nack): publishing it again", _describe(item))
        item.state = _IDLE
        assert self._io is not None
        self._io.loop.call_later(NACK_RESEND_DELAY * item.nacks, self._kick_republisher)

    def _give_up(self, item: _Outgoing, reason: str) -> None:
        """Not silently: log it, and copy it to the dead-letter queue (if RabbitMQ takes that)."""
        logger.error("Could not publish %s: %s; a copy goes to the %r queue", _describe(item), reason,
                     self.deadletter_queue)  # fmt: skip
        self._forget(item)
        self._in_background(self._dead_letter_unpublished(item, reason))

    async def _dead_letter_unpublished(self, item: _Outgoing, reason: str) -> None:
        try:
            if self.deadletter_queue not in self._declared:
                await self._declare(QueueSpec(name=self.deadletter_queue, exchange="", routing_key=""))
            properties = item.properties
            headers = dict(properties.headers or {})
            headers.update({"x-celeriac-reason": f"not published: {reason}", "x-celeriac-exchange": item.exchange,
                            "x-celeriac-routing-key": item.routing_key})  # fmt: skip
            properties.headers = headers
            channel = await self._channel("publish")
            underlay = await channel.get_underlay_channel()
            await underlay.basic_publish(item.body, exchange="", routing_key=self.deadletter_queue,
                                         properties=properties, timeout=self.confirm_timeout)  # fmt: skip
        except Exception as exc:
            logger.error("Could not dead-letter %s either (%r): it is lost", _describe(item), exc)

    def _kick_republisher(self) -> None:
        if self._closing or (self._republisher is not None and not self._republisher.done()):
            return
        assert self._io is not None
        self._republisher = self._io.loop.create_task(self._republish())

    async def _republish(self) -> None:
        """Reconnect (with backoff) until what waits to be published again is on a live channel."""
        delay, warned = 0.2, False
        while not self._closing:
            with self._out_lock:
                waiting = sum(1 for item in self._outstanding.values() if item.state == _IDLE)
            if not waiting:
                return
            try:
                if self._publisher_ready():
                    self._resend_unconfirmed()
                else:
                    await self._publish_channel()  # a new channel sends them again as it opens
                return
            except Exception as exc:
                with self._out_lock:
                    self._connect_failures = (self._connect_failures[0] + 1, str(self._error(exc, "reconnecting")))
                    self._out_lock.notify_all()
                if not warned:
                    logger.warning("%d unconfirmed message%s will be published again once %s is back: %s",
                                   waiting, "s" if waiting != 1 else "", self._where(), exc)  # fmt: skip
                    warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _publish_channel(self) -> aio_pika.abc.AbstractChannel:
        return await self._channel("publish")

    async def _check_exchange(self, name: str) -> None:
        if not name.startswith("amq."):
            conn = await self._ensure()
            probe = await conn.channel(publisher_confirms=False)
            try:
                await probe.declare_exchange(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise OperationalError(
                    f"publishing on {self._where()}: the exchange {name!r} does not exist (declare a queue bound "
                    "to it first)"
                ) from None
            finally:
                if not probe.is_closed:
                    await probe.close()
        self._exchanges_seen.add(name)

    async def _drain_deferred_acks(self) -> None:
        self._send_acks()
        if self._deferred_acks or self._ack_writes:
            await asyncio.wait([*self._deferred_acks, *self._ack_writes])

    async def _publish(self, exchange: str, routing_key: str, envelope: Envelope, *, drop: Sequence[str] = ()) -> None:
        """Publish and wait for the confirm (for the worker's own moves: parking, dead-lettering, broadcasts)."""
        channel = await self._channel("publish")
        underlay = await channel.get_underlay_channel()
        try:
            await underlay.basic_publish(
                envelope.body,
                exchange=exchange,
                routing_key=routing_key,
                properties=outgoing_properties(envelope, drop=drop),
                timeout=self.confirm_timeout,
            )
        except aiormq.exceptions.DeliveryError as exc:
            raise OperationalError(f"RabbitMQ refused the message for {routing_key!r} (nack): {exc}") from exc

    async def _park(self, envelope: Envelope, queue: str, seconds: int) -> None:
        """Publish ``envelope`` into the delay layout, to reach ``queue`` after ``seconds``."""
        channel = await self._channel("declare")
        spec = self._declared.get(queue) or QueueSpec(name=queue)
        await self._delays_for(channel, spec)
        await self._publish(
            "celery_delayed_27", delay_routing_key(seconds, queue), envelope, drop=(*_DEATH_HEADERS, "expiration")
        )

    # -- consuming ------------------------------------------------------------------------
    def set_prefetch(self, count: int) -> None:
        self._prefetch = max(1, int(count))
        if self._io is not None and self._channels.get("consume") is not None:
            self._run("setting the prefetch count", self._apply_qos())

    async def _apply_qos(self, queues: frozenset[str] | None = None) -> None:
        channel = self._channels.get("consume")
        if channel is not None and not channel.is_closed and self._prefetch:
            queues = frozenset(self._consumers) if queues is None else queues
            await channel.set_qos(prefetch_count=self._prefetch, global_=self._global_qos(queues))

    def _global_qos(self, queues: frozenset[str]) -> bool:
        # One limit for the whole channel when it consumes several queues, except that
        # quorum queues refuse a channel-wide limit (Celery turns it off for them too).
        quorum = any(_is_quorum(self._declared.get(q)) for q in queues)
        return len(queues) > 1 and not quorum

    def get(self, queues: Sequence[str], *, max_messages: int, timeout: float) -> list[Delivery]:
        if not queues or max_messages <= 0:
            return []
        wanted = frozenset(queues)
        self._consuming_here = True
        with self._cond:
            lost, self._lost = self._lost, False
        if lost:
            raise OperationalError(f"the connection to {self._where()} was lost; reconnecting")
        if self._prefetch is None:
            self._prefetch = max_messages
        if self._consuming != wanted or self._conn is None or self._conn.is_closed:
            self._run("starting to consume", self._consume(wanted))
        with self._cond:
            if not self._inbox and timeout > 0:
                self._cond.wait_for(lambda: bool(self._inbox) or self._lost, timeout)
            if not self._inbox and self._lost:
                self._lost = False
                raise OperationalError(f"the connection to {self._where()} was lost; reconnecting")
            count = min(max_messages, len(self._inbox))
            return [self._inbox.popleft() for _ in range(count)]

    async def _consume(self, wanted: frozenset[str]) -> None:
        channel = await self._channel("consume")
        for name in sorted(set(self._consumers) - wanted):
            queue = await channel.get_queue(name, ensure=False)
            await queue.cancel(self._consumers.pop(name))
        channel_id = self._consume_channel_id
        await self._apply_qos(wanted)
        for name in sorted(wanted - set(self._consumers)):
            self._consumers[name] = await _consume(channel, name, partial(self._on_message, name, channel_id))
        with self._cond:
            self._consuming = wanted

    def _on_message(self, queue: str, channel_id: int, message: DeliveredMessage) -> None:
        frame = message.delivery
        assert isinstance(frame, Basic.Deliver)
        tag = f"{channel_id}.{frame.delivery_tag}"
        try:
            envelope = incoming_envelope(message)
        except Exception as exc:  # RabbitMQ relayed properties we can't read: keep the message, aside
            if queue == self.deadletter_queue:  # copying it there again would loop: leave it unacked there
                logger.error("Message %s in %r has unreadable properties (%r): left there", tag, queue, exc)
                return
            logger.error("Message %s from %r has unreadable properties (%r): dead-lettering it", tag, queue, exc)
            self._in_background(self._dead_letter_unreadable(message, queue, repr(exc)))
            return
        delivery = Delivery(
            envelope,
            queue,
            tag,
            bool(frame.redelivered),
            frame.exchange or "",
            strip_delay_bits(frame.routing_key or queue),
        )
        with self._cond:
            self._held[tag] = message
            self._inbox.append(delivery)
            if len(self._inbox) == 1:  # get() waits for an empty inbox to fill, nothing else
                self._cond.notify_all()

    async def _dead_letter_unreadable(self, message: DeliveredMessage, queue: str, reason: str) -> None:
        try:
            await self._dead_letter(Envelope(message.body, {}, {}, "", ""), queue, reason, _settler(message))
        except Exception as exc:
            logger.error("could not dead-letter a message from %r (%s): RabbitMQ will redeliver it", queue, exc)

    def _take(self, delivery: Delivery) -> DeliveredMessage | None:
        with self._cond:
            message = self._held.pop(delivery.tag, None)
        if message is None:
            logger.info(
                "Message %s from %r was received on a connection that has since been lost: RabbitMQ has "
                "requeued it, so there is nothing to settle here",
                delivery.tag,
                delivery.queue,
            )
        return message

    def ack(self, delivery: Delivery) -> None:
        """Ack, but only after RabbitMQ confirmed what this thread published before (a task's follow-ups).

        The ack is handed to the IO loop, which sends it (once those confirms are in) while this
        thread goes on: an ack has no reply to wait for, and a worker whose next messages come
        only as RabbitMQ sees acks (the prefetch window) would otherwise wait for a thread hop
        per task. If the process dies first, RabbitMQ delivers the task again: run twice rather
        than its follow-ups lost. ``close()`` waits for the acks handed over before it.

        Acks with no confirm to wait for (the usual case: a task that published nothing) are
        handed over in batches: the first wakes the IO loop, those that come before it runs ride
        along, and each batch leaves as one frame write per channel. At a few thousand tasks a
        second, a wake-up, a task and a ``send()`` per ack were most of the IO thread's work."""
        message = self._take(delivery)
        if message is None:
            return
        pending = _unconfirmed_by_this_thread()
        if pending:
            self._loop().call_soon(self._start_deferred_ack, message, pending)
            return
        with self._cond:
            self._acks.append(message)
            if self._acks_wakeup:
                return
            self._acks_wakeup = True
        self._loop().call_soon(self._send_acks)

    def _send_acks(self) -> None:
        """On the IO loop: send the acks handed over since the last batch."""
        with self._cond:
            messages, self._acks = self._acks, []
            self._acks_wakeup = False
        by_channel: dict[Any, list[DeliveredMessage]] = {}
        for message in messages:
            by_channel.setdefault(message.channel, []).append(message)
        for channel, batch in by_channel.items():
            if channel.is_closed:
                # Its connection was lost after the task ran: RabbitMQ has requeued the messages.
                logger.info("%d ack(s) for a closed channel: RabbitMQ redelivers those messages", len(batch))
                continue
            if not _batched_writes(channel):
                for message in batch:
                    self._start_deferred_ack(message, [])
                continue
            done: asyncio.Future[None] = channel.create_future()
            frames = [Basic.Ack(delivery_tag=message.delivery_tag or 0) for message in batch]
            payload = ChannelFrame.marshall(channel_number=channel.number, frames=frames, drain_future=done)
            self._ack_writes.add(done)
            done.add_done_callback(self._ack_writes.discard)
            try:
                channel.write_queue.put_nowait(payload)
            except asyncio.QueueFull:
                # The channel's write queue is full (a burst of publishes on it): these acks wait
                # for room in a task rather than being lost, and close() waits for that task.
                self._in_background(channel.write_queue.put(payload), self._deferred_acks)

    def _start_deferred_ack(self, message: DeliveredMessage, pending: list[tuple[AMQPBroker, int]]) -> None:
        self._in_background(self._ack_when_confirmed(message, pending), self._deferred_acks)

    async def _ack_when_confirmed(self, message: DeliveredMessage, pending: list[tuple[AMQPBroker, int]]) -> None:
        for broker, serial in pending:
            await broker._confirmed_up_to(serial)
        try:
            await _settler(message).ack()
        except Exception as exc:
            logger.warning("acknowledging a message failed (%s): RabbitMQ will redeliver it", exc)

    def _settle(self, action: str, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            self._run(action, coro)
        except OperationalError as exc:
            logger.warning("%s a message failed (%s): RabbitMQ will redeliver it", action, exc)

    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        held = self._take(delivery)
        if held is None:
            return
        message = _settler(held)
        if requeue:
            self._settle("requeueing", message.reject(requeue=True))
            return
        spec = self._declared.get(delivery.queue)
        if spec is not None and spec.queue_arguments.get("x-dead-letter-exchange"):
            self._settle("dead-lettering", message.reject(requeue=False))
            return
        self._run("dead-lettering", self._dead_letter(delivery.envelope, delivery.queue, reason or "rejected", message))

    async def _dead_letter(
        self, envelope: Envelope, queue: str, reason: str, message: aio_pika.IncomingMessage
    ) -> None:
        """Copy the message to the dead-letter queue, with why and where from in its headers, then ack it."""
        if self.deadletter_queue not in self._declared:
            await self._declare(QueueSpec(name=self.deadletter_queue, exchange="", routing_key=""))
        headers = {**envelope.headers, "x-celeriac-reason": reason, "x-celeriac-queue": queue}
        copy = Envelope(envelope.body, headers, envelope.properties, envelope.content_type, envelope.content_encoding)
        await self._publish("", self.deadletter_queue, copy, drop=("expiration",))  # kept until someone looks
        await message.ack()

    def defer(self, delivery: Delivery, not_before: datetime) -> bool:
        """Park the message in the delay layout until ``not_before``, then ack it here."""
        return self.defer_many([(delivery, not_before)])[0]

    def defer_many(self, items: Sequence[tuple[Delivery, datetime]]) -> list[bool]:
        """:meth:`defer` for several messages: published together (one wait for all the confirms), then acked."""
        parked: list[tuple[Delivery, DeliveredMessage, int]] = []
        handled: list[bool] = []
        for delivery, not_before in items:
            seconds = _delay(not_before)
            with self._cond:
                message = self._held.get(delivery.tag)
            if not seconds or seconds > MAX_DELAY:
                handled.append(False)
            elif message is None:
                handled.append(True)  # its connection was lost: RabbitMQ delivers it again, to be parked then
            else:
                parked.append((delivery, message, seconds))
                handled.append(True)
        if not parked:
            return handled

        async def park() -> None:
            await asyncio.gather(*(self._park(d.envelope, d.queue, seconds) for d, _, seconds in parked))

        self._run("parking messages until their ETA", park())
        with self._cond:
            for delivery, _, _ in parked:
                self._held.pop(delivery.tag, None)

        async def ack() -> None:
            await asyncio.gather(*(_settler(message).ack() for _, message, _ in parked))

        self._settle("acknowledging parked messages", ack())
        return handled

    # -- queues -------------------------------------------------------------------------------
    def purge(self, queue: str) -> int:
        self.flush(self.confirm_timeout)  # what this process published before counts as waiting

        async def purge() -> int:
            channel = await self._channel("declare")
            result = await (await channel.get_queue(queue, ensure=False)).purge()
            return int(result.message_count or 0)

        return self._run(f"purging {queue!r}", purge())

    def queue_size(self, queue: str) -> int:
        """Messages ready in ``queue`` (not those held by consumers, nor those parked until their ETA).

        Counts what this process published before (it waits for those confirms first)."""
        self.flush(self.confirm_timeout)

        async def size() -> int:
            channel = await self._channel("declare")
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)

        return self._run(f"counting {queue!r}", size())

    def info(self) -> dict[str, Any]:
        from ..config import mask_url

        return {"transport": "amqp", "url": mask_url(self.url)}

    # -- replies (the rpc:// result backend) ------------------------------------------------
    def listen(self, spec: QueueSpec, on_message: Callable[[Envelope], None]) -> None:
        """Declare ``spec`` and call ``on_message`` (in the IO thread) for each message in it, without acks.

        Kept across reconnections; calling it again reconnects if the connection was lost
        (and does nothing else). Used by the ``rpc://`` result backend for its reply queue."""
        self._run(f"listening on {spec.name!r}", self._listen(spec, on_message))

    async def _listen(self, spec: QueueSpec, on_message: Callable[[Envelope], None]) -> None:
        known = spec.name in self._listeners
        self._listeners[spec.name] = (spec, on_message)
        alive = self._conn is not None and not self._conn.is_closed
        try:
            await self._ensure()  # a reconnection restores every listener, this one included
            if alive and not known:
                async with self._setup_lock:
                    await self._listen_now(spec, on_message)
        except BaseException:
            if not known:
                self._listeners.pop(spec.name, None)
            raise

    async def _listen_now(self, spec: QueueSpec, on_message: Callable[[Envelope], None]) -> None:
        await self._declare_now(spec)
        channel = self._channels.get("replies")
        if channel is None or channel.is_closed:
            channel = await self._open_channel("replies")

        def deliver(message: DeliveredMessage) -> None:
            try:
                on_message(incoming_envelope(message))
            except Exception:
                logger.exception("error handling a message from %r", spec.name)

        await _consume(channel, spec.name, deliver, no_ack=True)

    # -- fanout -------------------------------------------------------------------------------
    def broadcast(self, exchange: str, envelope: Envelope, *, routing_key: str = "") -> None:
        async def broadcast() -> None:
            await self._ensure_exchange(exchange, routing_key)
            await self._publish(exchange, routing_key, envelope)

        self._run(f"broadcasting on {exchange!r}", broadcast())

    async def _ensure_exchange(self, name: str, routing_key: str) -> None:
        if name in self._exchanges:
            return
        await self._ensure()
        async with self._setup_lock:
            await self._ensure_exchange_now(name, routing_key)

    async def _ensure_exchange_now(self, name: str, routing_key: str) -> None:
        assert self._conn is not None
        channel = self._channels.get("declare")
        if channel is None or channel.is_closed:
            channel = await self._open_channel("declare")
        known = KNOWN_EXCHANGES.get(name)
        if known is not None:
            await channel.declare_exchange(name, known[0], durable=known[1])
        else:
            # Whoever declared it first chose its type; only a missing one gets ours.
            probe = await self._conn.channel(publisher_confirms=False)
            try:
                await probe.declare_exchange(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                await channel.declare_exchange(name, "topic" if routing_key else "fanout", durable=True)
            finally:
                if not probe.is_closed:
                    await probe.close()
        self._exchanges.add(name)
        self._exchanges_seen.add(name)

    def subscribe(self, exchange: str, *, routing_key: str = "") -> Subscription:
        subscription = _AMQPSubscription(self, exchange, routing_key)
        self._run(f"subscribing to {exchange!r}", self._subscribe(subscription))
        return subscription

    async def _subscribe(self, subscription: _AMQPSubscription) -> None:
        await self._ensure()
        async with self._setup_lock:
            await self._subscribe_now(subscription)
        self._subscriptions[id(subscription)] = subscription

    async def _subscribe_now(self, subscription: _AMQPSubscription) -> None:
        # kombu's broadcast consumer: an exclusive, auto-delete queue per subscriber.
        channel = self._channels.get("subscribe")
        if channel is None or channel.is_closed:
            channel = await self._open_channel("subscribe")
        await self._ensure_exchange_now(subscription.exchange, subscription.routing_key)
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(subscription.exchange, subscription.routing_key)
        subscription.queue_name = queue.name
        subscription.consumer_tag = await _consume(channel, queue.name, subscription.on_message, no_ack=True)

    async def _unsubscribe(self, subscription: _AMQPSubscription) -> None:
        self._subscriptions.pop(id(subscription), None)
        channel = self._channels.get("subscribe")
        if channel is None or channel.is_closed or not subscription.queue_name:
            return
        queue = await channel.get_queue(subscription.queue_name, ensure=False)
        if subscription.consumer_tag:
            await queue.cancel(subscription.consumer_tag)
        await queue.delete(if_unused=False, if_empty=False)


class _AMQPSubscription(Subscription):
    def __init__(self, broker: AMQPBroker, exchange: str, routing_key: str) -> None:
        self.broker = broker
        self.exchange = exchange
        self.routing_key = routing_key
        self.queue_name = ""
        self.consumer_tag = ""
        self._messages: deque[Envelope] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def on_message(self, message: DeliveredMessage) -> None:
        try:
            envelope = incoming_envelope(message)
        except Exception as exc:  # a broadcast is not kept (no ack): report and go on
            logger.error("dropping a broadcast on %r with unreadable properties: %r", self.exchange, exc)
            return
        with self._cond:
            self._messages.append(envelope)
            self._cond.notify_all()

    def get(self, timeout: float) -> Envelope | None:
        with self._cond:
            if not self._messages and timeout > 0:
                self._cond.wait_for(lambda: bool(self._messages) or self._closed, timeout)
            return self._messages.popleft() if self._messages else None

    def close(self) -> None:
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        try:
            self.broker._run(f"unsubscribing from {self.exchange!r}", self.broker._unsubscribe(self))
        except OperationalError as exc:
            logger.debug("unsubscribing from %r: %s", self.exchange, exc)


async def _consume(
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    callback: Callable[[DeliveredMessage], None],
    *,
    no_ack: bool = False,
) -> str:
    """Consume ``queue`` with ``callback`` taking aiormq's messages; returns the consumer tag.

    aio-pika's ``Queue.consume`` would wrap every delivery in an ``IncomingMessage`` (its properties
    converted once more) and run the callback in a task of its own: at thousands of messages a
    second that was a fifth of the IO thread. Settling goes through :func:`_settler` where needed."""
    underlay = await channel.get_underlay_channel()
    # aiormq takes a plain function too (it wraps it), though its annotation asks for a coroutine.
    ok = await underlay.basic_consume(queue=queue, consumer_callback=cast(Any, callback), no_ack=no_ack)
    if ok.consumer_tag is None:
        raise RuntimeError(f"RabbitMQ gave no consumer tag for {queue!r}")
    return ok.consumer_tag


def _settler(message: DeliveredMessage) -> aio_pika.IncomingMessage:
    """aio-pika's message around a delivery, for its ``ack()`` and ``reject()`` (off the hot path)."""
    return aio_pika.IncomingMessage(message)


def _delay(not_before: datetime | None) -> int:
    """Whole seconds until ``not_before``, rounded up so a parked message never arrives early (0: due)."""
    if not_before is None:
        return 0
    if not_before.tzinfo is None:
        not_before = not_before.replace(tzinfo=timezone.utc)
    remaining = (not_before - datetime.now(timezone.utc)).total_seconds()
    return math.ceil(remaining) if remaining > 0 else 0


def _is_quorum(spec: QueueSpec | None) -> bool:
    return spec is not None and spec.queue_arguments.get("x-queue-type") == "quorum"
