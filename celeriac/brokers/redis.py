"""Redis broker, laid out exactly as kombu's Redis transport, so Celery and celeriac share queues.

URL: ``redis://[:password@]host:6379/0``, ``rediss://`` (TLS), ``redis+socket:///path``,
``sentinel://host:26379;sentinel://host2:26379`` (with ``master_name``); see ``celeriac._redis``.

Capabilities: fanout (PUBLISH), priorities, broker-side ETA (parked in a sorted set),
leases that live workers keep, dead-lettering.

Wire layout (kombu's):

* a queue is a list; producers ``LPUSH``, consumers pop from the right. Priorities use
  extra lists ``<queue>\\x06\\x16<step>`` (steps 0, 3, 6, 9), read in that order;
* each item is JSON ``{body (base64), content-encoding, content-type, headers,
  properties: {correlation_id, reply_to, delivery_mode, delivery_info, priority,
  body_encoding, delivery_tag}}`` (written by orjson, compactly, when it is installed: kombu
  reads either);
* a message being processed is in the ``unacked`` hash (``[payload, exchange, routing_key]``)
  and the ``unacked_index`` sorted set (scored by time); bindings are ``_kombu.binding.<exchange>``.

Where celeriac differs from kombu, and why:

* taking a message and recording it as unacked is one step (a Lua script), so a worker
  killed in between can't lose it;
* an idle worker waits with ``BLMOVE key key RIGHT RIGHT`` (which takes nothing), not
  ``BRPOP``, then claims: a reply lost in a network cut loses no message (``_redis_peek``).
  A claim whose reply is lost is put back by the worker as soon as it reconnects;
* a live celeriac worker refreshes the ``unacked_index`` scores of what it holds, so neither
  Celery's nor celeriac's visibility-timeout restore hands a long task to a second worker;
  a dead celeriac worker's messages are restored as soon as its heartbeat (in
  ``celeriac.consumers``) is stale, instead of after ``visibility_timeout``;
* a message received with an ETA in the future is parked in ``celeriac.delayed`` (a sorted
  set) until due, not kept in worker memory;
* ``reject(requeue=False)`` and malformed items are kept in the ``celeriac.deadletter`` list.

Priorities: with ``priority_order='celeriac'`` (default) a higher number is more urgent,
as on RabbitMQ: priority ``p`` is stored at kombu priority ``9 - p``, so Celery workers on
the same queues agree. ``priority_order='celery'`` keeps Celery's Redis meaning (0 is most
urgent). Either way a message sent without a priority goes to the queue's main list, where
Celery puts its own: in a mixed fleet, plain messages from both sides are served in turn.

Transport options: ``visibility_timeout`` (3600), ``queue_order_strategy``
(``round_robin`` | ``priority`` | ``sorted``), ``global_keyprefix``, ``sep``,
``priority_steps``, ``priority_order``, ``consumer_timeout`` (30: seconds without a heartbeat
after which a celeriac consumer is presumed dead), ``socket_timeout`` (default
``broker_connection_timeout``: a command that gets no reply in that time fails, so a stalled
connection, one that is open but carries nothing, raises ``OperationalError`` instead of
hanging the client or the worker), plus redis-py connection options.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from bisect import bisect
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, cast

import redis
import redis.exceptions

from .._process import new_id
from .._redis import client_from_url, connection_errors, execute_raw, redis_error
from ..exceptions import BrokerUnavailable, ImproperlyConfigured, OperationalError
from ..serialization import json_dumps_plain, json_loads_plain
from ._redis_peek import ListWaiter
from .base import Broker, Delivery, Envelope, QueueSpec, Subscription

__all__ = ["RedisBroker"]

logger = logging.getLogger("celeriac.brokers.redis")

UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
UNACKED_MUTEX = "unacked_mutex"
UNACKED_MUTEX_EXPIRE = 300
BINDING = "_kombu.binding.%s"
REDECLARE_INTERVAL = 30.0  # seconds between a consuming broker's rewrites of its bindings
OWNERS = "celeriac.unacked.owner"
CONSUMERS = "celeriac.consumers"
DELAYED = "celeriac.delayed"
DELAYED_PAYLOADS = "celeriac.delayed.payloads"
DELAYED_TARGETS = "celeriac.delayed.targets"
DEADLETTER = "celeriac.deadletter"
REVOKED = "celeriac.revoked"
DEFAULT_SEP = "\x06\x16"
MALFORMED = "application/x-celeriac-malformed"  # the content type of an item that isn't an envelope
DEFAULT_STEPS = (0, 3, 6, 9)
ACK_DELAY = 0.002  # seconds an ack may wait to share a round trip with others
ACK_BATCH = 256
MAX_BLOCK = 1.0  # longest single wait in Redis for a message (see _redis_peek)

_SCRIPTS = Path(__file__).with_name("redis_scripts")
_PROPERTY_ORDER = ("correlation_id", "reply_to", "delivery_mode")
_PLACED_PROPERTIES = frozenset({*_PROPERTY_ORDER, "delivery_info", "priority"})


def _script(name: str) -> str:
    return (_SCRIPTS / f"{name}.lua").read_text()


class RedisBroker(Broker):
    scheme: ClassVar[str] = "redis"
    supports_fanout: ClassVar[bool] = True
    supports_priority: ClassVar[bool] = True
    supports_global_rate_limits: ClassVar[bool] = True
    native_delay: ClassVar[bool] = False  # clients publish ETA messages as Celery does; workers park them

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        opts = dict(options or {})
        self.visibility_timeout = float(opts.pop("visibility_timeout", 3600))
        self.queue_order_strategy = str(opts.pop("queue_order_strategy", "round_robin"))
        if self.queue_order_strategy not in ("round_robin", "priority", "sorted"):
            raise ImproperlyConfigured(
                "broker_transport_options: queue_order_strategy must be round_robin, priority or sorted",
                key="broker_transport_options",
            )
        self.prefix = str(opts.pop("global_keyprefix", "") or "")
        self.sep = str(opts.pop("sep", DEFAULT_SEP))
        self.priority_steps = tuple(sorted(int(s) for s in opts.pop("priority_steps", DEFAULT_STEPS)))
        self.priority_order = str(opts.pop("priority_order", "celeriac"))
        if self.priority_order not in ("celeriac", "celery"):
            raise ImproperlyConfigured(
                "broker_transport_options: priority_order must be 'celeriac' (9 is most urgent) or 'celery' "
                "(0 is most urgent, Celery's Redis order)",
                key="broker_transport_options",
            )
        self.consumer_timeout = float(opts.pop("consumer_timeout", 30.0))
        self.connect_timeout = float(opts.pop("connect_timeout", 4.0))
        self.use_ssl = opts.pop("use_ssl", None)
        self.socket_timeout = float(opts.pop("socket_timeout", None) or self.connect_timeout)
        opts["socket_timeout"] = self.socket_timeout
        opts.pop("polling_interval", None)
        self._redis_options = opts
        self.consumer_id = f"{uuid.uuid4().hex}@{os.getpid()}"
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._rotation = 0
        self._next_maintenance = 0.0
        self._next_redeclare = time.time() + REDECLARE_INTERVAL  # declare_queue has just written them
        self._next_due_check = 0.0
        self._bound: set[tuple[str, str, str]] = set()
        self._acks: list[str] = []
        self._acks_lock = threading.Lock()
        self._ack_wakeup = threading.Event()
        self._ack_thread: threading.Thread | None = None
        self._closed = False
        self._consumer_thread = 0
        self._waiter: ListWaiter | None = None
        # Tags handed to this process and not yet settled, and whether a claim's reply was lost
        # (its messages are then recorded as ours in Redis but unknown here: see _recover).
        self._held: set[str] = set()
        self._claim_unsure = False

    # -- connection ----------------------------------------------------------
    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = client_from_url(
                self.url, self._redis_options, timeout=self.connect_timeout, use_ssl=self.use_ssl
            )
            for name in ("claim", "defer", "due", "rate_limit"):
                self._scripts[name] = self._client.register_script(_script(name))
        return self._client

    def open(self) -> None:
        try:
            self.client.ping()
        except connection_errors as exc:
            raise BrokerUnavailable(str(redis_error(exc, self.url, "connecting")), url=self.url) from exc
        except redis.exceptions.RedisError as exc:
            raise redis_error(exc, self.url, "connecting") from exc

    def close(self) -> None:
        self._closed = True
        try:
            self.flush_acks()
        except (OperationalError, redis.exceptions.ConnectionError, OSError):
            pass  # not acked: those messages are restored and run again, never lost
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None
        self._ack_wakeup.set()
        self._client = None  # the pool is shared per process; connections return to it

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except connection_errors as exc:
            raise redis_error(exc, self.url, action) from exc
        except redis.exceptions.RedisError as exc:
            raise redis_error(exc, self.url, action) from exc

    # -- keys --------------------------------------------------------------
    def _step(self, priority: int) -> int:
        return self.priority_steps[max(0, bisect(self.priority_steps, priority) - 1)]

    def queue_key(self, queue: str, kombu_priority: int = 0) -> str:
        step = self._step(kombu_priority)
        return self.key(f"{queue}{self.sep}{step}" if step else queue)

    def _queue_keys(self, queue: str) -> list[str]:
        return [self.queue_key(queue, step) for step in self.priority_steps]

    def _ordered_keys(self, queues: Sequence[str]) -> list[str]:
        if self.queue_order_strategy == "sorted":
            queues = sorted(queues)
        elif self.queue_order_strategy == "round_robin" and len(queues) > 1:
            start = self._rotation % len(queues)
            queues = list(queues[start:]) + list(queues[:start])
            self._rotation += 1
        # kombu's order: every queue's most urgent list first, then the next step, ...
        return [self.queue_key(q, step) for step in self.priority_steps for q in queues]

    def _queue_of_key(self, key: str) -> str:
        name = key[len(self.prefix) :] if self.prefix and key.startswith(self.prefix) else key
        return name.rsplit(self.sep, 1)[0] if self.sep in name else name

    def kombu_priority(self, priority: int | None) -> int:
        """The priority as stored (kombu's: 0 is read first). No priority is 0, as Celery sends it."""
        if priority is None:
            return 0
        value = max(0, min(9, int(priority)))
        return 9 - value if self.priority_order == "celeriac" else value

    # -- declaring ---------------------------------------------------------
    def declare_queue(self, spec: QueueSpec) -> None:
        # As Celery declares it: a direct exchange named after the queue, bound with the queue name.
        # Written every time (SADD is idempotent, and callers declare once, not per message): a Redis
        # restarted without persistence, or flushed, has lost its bindings, and declaring is how
        # kombu's clients put them back too. Remembered, for _lookup and _maintain to restore them.
        binding = (spec.exchange or spec.name, spec.routing_key or spec.name, spec.name)
        self._write_bindings([binding])
        self._bound.add(binding)

    def _write_bindings(self, bindings: Sequence[tuple[str, str, str]]) -> None:
        """SADD each (exchange, routing key, queue) to ``_kombu.binding.<exchange>``, as kombu writes it."""
        with self.client.pipeline(transaction=False) as pipe:
            for exchange, routing_key, queue in bindings:
                pipe.sadd(self.key(BINDING % exchange), self.sep.join([routing_key, "", queue]))
            self._call("declaring queues", pipe.execute)

    # -- publishing --------------------------------------------------------
    def _payload(self, envelope: Envelope, exchange: str, routing_key: str, kombu_priority: int) -> dict[str, Any]:
        props = envelope.properties
        properties: dict[str, Any] = {key: props[key] for key in _PROPERTY_ORDER if key in props}
        properties["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
        properties["priority"] = kombu_priority
        for key, value in props.items():  # the others, in their order
            if key not in _PLACED_PROPERTIES:
                properties[key] = value
        properties["body_encoding"] = "base64"
        properties["delivery_tag"] = new_id()
        headers = envelope.headers
        return {
            "body": base64.b64encode(envelope.body).decode("ascii"),
            "content-encoding": envelope.content_encoding,
            "content-type": envelope.content_type,
            "headers": headers if type(headers) is dict else dict(headers),
            "properties": properties,
        }

    def publish(
        self, envelope: Envelope, *, exchange: str, routing_key: str, not_before: datetime | None = None
    ) -> None:
        priority = self.kombu_priority(envelope.priority)
        data = json_dumps_plain(self._payload(envelope, exchange, routing_key, priority))
        if not exchange:
            self._call("publishing", execute_raw, self.client, ("LPUSH", self.queue_key(routing_key, priority), data))
            return
        queues = self._lookup(exchange, routing_key)
        client = self.client
        if len(queues) == 1:
            self._call("publishing", execute_raw, client, ("LPUSH", self.queue_key(queues[0], priority), data))
            return
        with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.lpush(self.queue_key(queue, priority), data)
            self._call("publishing", pipe.execute)

    def _lookup(self, exchange: str, routing_key: str) -> list[str]:
        members = self._call("looking up bindings", self.client.smembers, self.key(BINDING % exchange))
        queues = []
        for member in members or ():
            rkey, _pattern, queue = _text(member).split(self.sep)
            if rkey == routing_key or not rkey:
                queues.append(queue)
        # Nothing bound: treat the routing key as the queue, as Celery's default routing does.
        return queues or self._restore_bindings(exchange, routing_key) or [routing_key]

    def _restore_bindings(self, exchange: str, routing_key: str) -> list[str]:
        """The queues this broker bound to ``exchange`` for ``routing_key``, bound again: Redis lost
        those bindings (restarted without persistence, or flushed). Otherwise a message for a queue
        whose routing key is not its name would go to a list named after the routing key, where no
        worker looks. Asked only when a lookup finds nothing, so it costs nothing on the usual path."""
        bindings = [b for b in list(self._bound) if b[0] == exchange and b[1] == routing_key]
        if not bindings:
            return []
        self._write_bindings(bindings)
        queues = [queue for _exchange, _rkey, queue in bindings]
        if queues != [routing_key]:  # routed elsewhere than the default would have: worth knowing
            logger.warning(
                "Redis had lost the bindings of exchange %r (restarted or flushed?): declared them again", exchange
            )
        return queues

    def _redeclare(self) -> None:
        """Write every binding this broker declared again (a worker does, every REDECLARE_INTERVAL):
        clients that look up an exchange after Redis lost its bindings find the workers' queues."""
        bindings = list(self._bound)
        if bindings:
            self._write_bindings(bindings)

    # -- consuming ------------------------------------------------------------
    def get(self, queues: Sequence[str], *, max_messages: int, timeout: float) -> list[Delivery]:
        if not queues or max_messages <= 0:
            return []
        self._consumer_thread = threading.get_ident()
        if self._claim_unsure:
            self._recover()
        self._maintain()
        keys = self._ordered_keys(queues)
        deliveries = self._claim(keys, max_messages)
        if deliveries or timeout <= 0:
            return deliveries
        waiter = self._list_waiter()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            # Wait at most until the next parked message is due, so it is moved on time.
            wait = min(remaining, max(0.01, self._next_due_check - time.time()) if self._next_due_check else remaining)
            try:
                seen = waiter.wait(keys, wait)
            except connection_errors as exc:
                raise redis_error(exc, self.url, "waiting for messages") from exc
            if seen:
                deliveries = self._claim(keys, max_messages)
                if deliveries:
                    return deliveries
            self._maintain()

    def _list_waiter(self) -> ListWaiter:
        if self._waiter is None:

            def make_connection() -> Any:
                # Connections of its own, outside the pool: each carries a wait whose reply comes later.
                conn: Any = self.client.connection_pool.make_connection()
                conn.socket_timeout = self.socket_timeout
                return conn

            self._waiter = ListWaiter(make_connection, block=MAX_BLOCK, socket_timeout=self.socket_timeout)
        return self._waiter

    def _claim(self, keys: list[str], max_messages: int) -> list[Delivery]:
        """Take what is there (one atomic script), sending pending acks in the same write."""
        self.client  # noqa: B018 - loads the scripts
        script = self._scripts["claim"]
        claim_keys = [self.key(UNACKED_INDEX), self.key(UNACKED), self.key(OWNERS), self.key(DEADLETTER), *keys]
        claim_args = [max_messages, time.time(), self.consumer_id]
        commands: list[tuple[Any, ...]] = []
        with self._acks_lock:
            tags, self._acks = self._acks, []
        if tags:
            commands += self._ack_commands(tags)
        commands.append(("EVALSHA", script.sha, len(claim_keys), *claim_keys, *claim_args))
        try:
            raw = execute_raw(self.client, *commands)[-1]
        except redis.exceptions.NoScriptError:
            raw = self._call("taking messages", script, keys=claim_keys, args=claim_args)  # loads it
        except (redis.exceptions.RedisError, OSError) as exc:
            if tags:
                with self._acks_lock:
                    self._acks[:0] = tags  # sent again with the next call
            if isinstance(exc, connection_errors):
                self._claim_unsure = True  # the script may have run: its messages would be ours, unseen
            raise redis_error(exc, self.url, "taking messages") from exc
        out = []
        for i in range(0, len(raw or ()), 3):
            key, tag, item = raw[i], raw[i + 1], raw[i + 2]
            out.append(self._delivery(_text(key), _text(tag), item))
        with self._acks_lock:
            self._held.update(d.tag for d in out if d.tag)
        return out

    def _recover(self) -> None:
        """Put back what a claim whose reply was lost recorded as ours (found by owner in Redis).

        Rare (only after a connection failed during a claim), so a scan of the owner hash,
        whose size is the number of messages in flight across the fleet, is cheap enough.
        Without this, those messages would wait for ``visibility_timeout``.
        """
        owned = [
            _text(tag)
            for tag, owner in self._call("finding lost messages", self.client.hscan_iter, self.key(OWNERS))
            if _text(owner) == self.consumer_id
        ]
        with self._acks_lock:
            # An acked tag is in _acks until the ack is written; once written its record is gone
            # and restoring it does nothing. ack() adds to _acks before it leaves _held.
            lost = [tag for tag in owned if tag not in self._held and tag not in self._acks]
        for tag in lost:
            if self._restore(tag, leftmost=False):
                logger.warning("message %s: taken when the connection failed; put back on its queue", tag)
        self._claim_unsure = False

    def _ack_commands(self, tags: Sequence[str]) -> list[tuple[Any, ...]]:
        return [
            ("ZREM", self.key(UNACKED_INDEX), *tags),
            ("HDEL", self.key(UNACKED), *tags),
            ("HDEL", self.key(OWNERS), *tags),
        ]

    def _delivery(self, key: str, tag: str, item: bytes | str, *, strict: bool = False) -> Delivery:
        queue = self._queue_of_key(key)
        raw = item if isinstance(item, bytes) else item.encode()
        if not tag and not strict:
            # Already dead-lettered by the script; handed on so the worker logs it.
            return Delivery(Envelope(raw, {}, {}, MALFORMED, "binary"), queue, "", False, "", queue)
        if strict:
            return self._parse(queue, tag, raw)
        try:
            return self._parse(queue, tag, raw)
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than Python's parser goes, which Redis' cjson read.
            # JSON with a delivery tag but not an envelope (a bad base64 body, headers that aren't a
            # mapping): handed on under its tag, so the worker dead-letters it and takes the next one.
            logger.debug("malformed message %s: %s", tag, exc)
            return Delivery(Envelope(raw, {}, {}, MALFORMED, "binary"), queue, tag, False, "", queue, raw=raw)

    def _parse(self, queue: str, tag: str, raw: bytes) -> Delivery:
        payload = json_loads_plain(raw)
        props = dict(payload.get("properties") or {})
        delivery_info = dict(props.get("delivery_info") or {})
        encoding = props.get("body_encoding")
        body = payload.get("body", "")
        body_bytes = base64.b64decode(body) if encoding == "base64" else str(body).encode()
        headers = dict(payload.get("headers") or {})
        redelivered = bool(delivery_info.get("redelivered") or headers.get("redelivered"))
        props["priority"] = self._user_priority(props.get("priority"))
        envelope = Envelope(
            body=body_bytes,
            headers=headers,
            properties=props,
            content_type=str(payload.get("content-type") or ""),
            content_encoding=str(payload.get("content-encoding") or ""),
        )
        return Delivery(
            envelope,
            queue,
            tag,
            redelivered,
            str(delivery_info.get("exchange") or ""),
            str(delivery_info.get("routing_key") or queue),
            raw=raw,
        )

    def _user_priority(self, kombu_priority: Any) -> int | None:
        if not isinstance(kombu_priority, int):
            return None
        return 9 - kombu_priority if self.priority_order == "celeriac" else kombu_priority

    # -- settling ---------------------------------------------------------------
    def ack(self, delivery: Delivery) -> None:
        """Acks are sent in batches, within ``ACK_DELAY``: one round trip for many tasks.

        Until then the message stays recorded as held by this (live) worker, so the
        only cost of the delay is that a worker killed inside it runs those tasks again.
        """
        if not delivery.tag:
            return
        with self._acks_lock:
            self._acks.append(delivery.tag)
            self._held.discard(delivery.tag)
            first = len(self._acks) == 1
            full = len(self._acks) >= ACK_BATCH
        if full:
            self.flush_acks()
        elif threading.get_ident() == self._consumer_thread:
            pass  # the consumer's next get() sends it with its claim (solo pool): no thread to wake
        elif first:
            self._ack_wakeup.set()
            if self._ack_thread is None or not self._ack_thread.is_alive():
                self._ack_thread = threading.Thread(target=self._ack_loop, name="AckFlusher", daemon=True)
                self._ack_thread.start()

    def _ack_loop(self) -> None:
        while not self._closed:
            self._ack_wakeup.wait(1.0)
            self._ack_wakeup.clear()
            time.sleep(ACK_DELAY)
            try:
                self.flush_acks()
            except OperationalError:
                time.sleep(0.5)  # the broker is away; the acks are kept and sent once it is back

    def flush_acks(self) -> None:
        with self._acks_lock:
            tags, self._acks = self._acks, []
        if not tags:
            return
        try:
            self._call("acknowledging", execute_raw, self.client, *self._ack_commands(tags))
        except OperationalError:
            with self._acks_lock:
                self._acks[:0] = tags
            raise

    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        if not delivery.tag:
            return
        try:
            self._settle_rejected(delivery, requeue=requeue, reason=reason)
        finally:
            self._held.discard(delivery.tag)  # after the write: see _recover

    def _settle_rejected(self, delivery: Delivery, *, requeue: bool, reason: str) -> None:
        if requeue:
            self._restore(delivery.tag, leftmost=False)
            return
        entry = {
            "queue": delivery.queue,
            "reason": reason or "rejected",
            "time": time.time(),
            "raw": (delivery.raw or b"").decode("utf-8", "replace"),
        }
        with self.client.pipeline(transaction=True) as pipe:
            pipe.lpush(self.key(DEADLETTER), json.dumps(entry))
            pipe.zrem(self.key(UNACKED_INDEX), delivery.tag)
            pipe.hdel(self.key(UNACKED), delivery.tag)
            pipe.hdel(self.key(OWNERS), delivery.tag)
            self._call("dead-lettering", pipe.execute)

    def _restore(self, tag: str, *, leftmost: bool) -> bool:
        """Put an unacked message back on its queue, marked redelivered (kombu's restore_by_tag)."""
        unacked = self.key(UNACKED)

        def restore(pipe: Any) -> bool:
            entry = pipe.hget(unacked, tag)
            pipe.multi()
            pipe.zrem(self.key(UNACKED_INDEX), tag)
            pipe.hdel(unacked, tag)
            pipe.hdel(self.key(OWNERS), tag)
            if not entry:
                return False
            payload, exchange, routing_key = json.loads(entry)
            try:
                payload["headers"]["redelivered"] = True
                payload["properties"]["delivery_info"]["redelivered"] = True
            except (KeyError, TypeError):
                pass
            priority = payload.get("properties", {}).get("priority") or 0
            queues = [routing_key] if not exchange else self._lookup(exchange, routing_key)
            for queue in queues:
                target = self.queue_key(queue, priority if isinstance(priority, int) else 0)
                (pipe.lpush if leftmost else pipe.rpush)(target, json.dumps(payload))
            return True

        result = self._call("restoring a message", self.client.transaction, restore, unacked, value_from_callable=True)
        return bool(result)

    def defer(self, delivery: Delivery, not_before: datetime) -> bool:
        """Park a message whose ETA is in the future in Redis until it is due."""
        return self.defer_many([(delivery, not_before)])[0]

    def defer_many(self, items: Sequence[tuple[Delivery, datetime]]) -> list[bool]:
        """Park messages in one write (a batch of ETA tasks costs one round trip, not one each)."""
        usable = [(d, when) for d, when in items if d.tag and d.raw is not None]
        if not usable:
            return [False] * len(items)
        self.client  # noqa: B018 - loads the scripts
        script = self._scripts["defer"]
        keys = [self.key(UNACKED_INDEX), self.key(UNACKED), self.key(OWNERS), self.key(DELAYED),
                self.key(DELAYED_PAYLOADS), self.key(DELAYED_TARGETS)]  # fmt: skip
        commands = []
        for delivery, when in usable:
            priority = 0
            try:
                priority = int(json.loads(delivery.raw or b"")["properties"].get("priority") or 0)
            except (ValueError, KeyError, TypeError):
                pass
            target = self.queue_key(delivery.queue, priority)
            commands.append(("EVALSHA", script.sha, len(keys), *keys, delivery.tag, when.timestamp(), delivery.raw,
                             target))  # fmt: skip
        try:
            replies = execute_raw(self.client, *commands)
        except redis.exceptions.NoScriptError:
            # Redis restarted and lost its scripts: load (not run) it, then try again.
            self._call("loading a script", self.client.script_load, script.script)
            replies = self._call("parking messages", execute_raw, self.client, *commands)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise redis_error(exc, self.url, "parking messages") from exc
        earliest = min(when.timestamp() for _, when in usable)
        if not self._next_due_check or earliest < self._next_due_check:
            self._next_due_check = earliest
        parked = {d.tag: bool(reply) for (d, _), reply in zip(usable, replies, strict=True)}
        self._held.difference_update(tag for tag, ok in parked.items() if ok)
        return [parked.get(d.tag, False) for d, _ in items]

    def extend_leases(self, deliveries: Sequence[Delivery]) -> None:
        now = time.time()
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key(CONSUMERS), {self.consumer_id: now})
            tags = {d.tag: now for d in deliveries if d.tag}
            if tags:
                # XX: only refresh what is still ours; never resurrect an acked message.
                pipe.zadd(self.key(UNACKED_INDEX), tags, xx=True)
            self._call("renewing leases", pipe.execute)

    @property
    def lease_renew_interval(self) -> float:
        return max(0.5, min(5.0, self.consumer_timeout / 6, self.visibility_timeout / 4))

    # -- periodic upkeep ------------------------------------------------------------
    def _maintain(self) -> None:
        now = time.time()
        if self._next_due_check and now >= self._next_due_check:
            self._move_due(now)
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + max(1.0, self.lease_renew_interval)
        self._call("heartbeat", self.client.zadd, self.key(CONSUMERS), {self.consumer_id: now})
        if now >= self._next_redeclare:
            self._next_redeclare = now + REDECLARE_INTERVAL
            self._redeclare()
        self._move_due(now)
        self._restore_visible(now)

    def _move_due(self, now: float) -> None:
        moved, nxt = self._call(
            "moving due messages",
            self._scripts["due"],
            keys=[self.key(DELAYED), self.key(DELAYED_PAYLOADS), self.key(DELAYED_TARGETS)],
            args=[now, 1000],
        )
        nxt = _text(nxt)
        self._next_due_check = float(nxt) if nxt else 0.0
        if int(moved) >= 1000:
            self._next_due_check = now  # more are due: keep going on the next call

    def _restore_visible(self, now: float) -> None:
        client = self.client
        lock = client.lock(self.key(UNACKED_MUTEX), timeout=UNACKED_MUTEX_EXPIRE)
        try:
            if not lock.acquire(blocking=False):
                return
        except connection_errors as exc:
            raise redis_error(exc, self.url, "restoring unacked messages") from exc
        try:
            stale = cast("list[Any]", client.zrangebyscore(self.key(CONSUMERS), 0, now - self.consumer_timeout))
            dead = [_text(c) for c in stale]
            if dead:
                dead_set = set(dead)
                for tag, owner in client.hscan_iter(self.key(OWNERS)):
                    if _text(owner) in dead_set:
                        self._restore(_text(tag), leftmost=False)
                client.zrem(self.key(CONSUMERS), *dead)
            # kombu's rule for everything else (e.g. a Celery worker that died).
            stale = client.zrevrangebyscore(self.key(UNACKED_INDEX), now - self.visibility_timeout, 0, start=0, num=100)
            for tag in stale:
                self._restore(_text(tag), leftmost=False)
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                pass

    # -- durable revokes ---------------------------------------------------------------
    def store_revoked(self, task_ids: Sequence[str], ttl: float) -> None:
        if not task_ids:
            return
        expires = time.time() + ttl
        self._call("remembering revoked tasks", execute_raw, self.client,
                   ("ZADD", self.key(REVOKED), *[x for tid in task_ids for x in (expires, tid)]))  # fmt: skip

    def load_revoked(self) -> set[str]:
        key = self.key(REVOKED)
        _, ids = self._call("reading revoked tasks", execute_raw, self.client,
                            ("ZREMRANGEBYSCORE", key, "-inf", time.time()), ("ZRANGE", key, 0, -1))  # fmt: skip
        return {_text(tid) for tid in ids}

    # -- shared rate limits ----------------------------------------------------------
    def take_rate_token(self, key: str, rate: float, capacity: float = 1.0) -> float:
        self.client  # noqa: B018 - loads the scripts
        wait = self._call("taking a rate-limit token", self._scripts["rate_limit"],
                          keys=[self.key(f"celeriac.ratelimit.{key}")], args=[rate, capacity])  # fmt: skip
        return float(_text(wait))

    # -- fanout -------------------------------------------------------------------
    def fanout_topic(self, exchange: str, routing_key: str = "") -> str:
        """kombu's channel name: ``/<db>.<exchange>`` or ``/<db>.<exchange>/<routing key>``."""
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        base = f"{self.prefix}/{db}.{exchange}"
        return f"{base}/{routing_key}" if routing_key else base

    def broadcast(self, exchange: str, envelope: Envelope, *, routing_key: str = "") -> None:
        payload = self._payload(envelope, exchange, routing_key, self.kombu_priority(envelope.priority))
        self._call("broadcasting", execute_raw, self.client,
                   ("PUBLISH", self.fanout_topic(exchange, routing_key), json.dumps(payload)))  # fmt: skip

    def subscribe(self, exchange: str, *, routing_key: str = "") -> Subscription:
        # kombu binds fanout queues with '#' and subscribes to the pattern with '*'.
        pattern = (
            self.fanout_topic(exchange, routing_key.replace("#", "*")) if routing_key else self.fanout_topic(exchange)
        )
        return _RedisSubscription(self, pattern)

    # -- queues ------------------------------------------------------------------
    def purge(self, queue: str) -> int:
        with self.client.pipeline(transaction=True) as pipe:
            for key in self._queue_keys(queue):
                pipe.llen(key)
                pipe.delete(key)
            sizes = self._call("purging", pipe.execute)
        return int(sum(sizes[::2]))

    def queue_size(self, queue: str) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            for key in self._queue_keys(queue):
                pipe.llen(key)
            return int(sum(self._call("counting", pipe.execute)))

    def dead_letters(self) -> list[dict[str, Any]]:
        return [
            json.loads(item)
            for item in self._call("reading dead letters", self.client.lrange, self.key(DEADLETTER), 0, -1)
        ]

    def delayed_count(self) -> int:
        return int(self._call("counting parked messages", self.client.zcard, self.key(DELAYED)))

    def info(self) -> dict[str, Any]:
        from ..config import mask_url

        return {"transport": "redis", "url": mask_url(self.url)}


class _RedisSubscription(Subscription):
    def __init__(self, broker: RedisBroker, pattern: str) -> None:
        self._broker = broker
        self._pubsub: Any = broker.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        broker._call("subscribing", self._pubsub.psubscribe, pattern)

    def get(self, timeout: float) -> Envelope | None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            message = self._broker._call("receiving", self._pubsub.get_message, True, max(0.0, remaining))
            if message is not None and message.get("type") in ("message", "pmessage"):
                try:
                    return self._broker._delivery(
                        _text(message.get("channel")), "", message["data"], strict=True
                    ).envelope
                except (ValueError, TypeError, AttributeError) as exc:
                    # A broadcast nobody can read must not stop the others from being received.
                    logger.warning("ignored a malformed broadcast on %s: %s", _text(message.get("channel")), exc)
            if remaining <= 0:
                return None

    def close(self) -> None:
        try:
            self._pubsub.close()
        except connection_errors:
            pass


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)
