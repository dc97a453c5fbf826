"""Amazon SQS broker on boto3, laid out as kombu's SQS transport, so Celery and celeriac share queues.

URL: ``sqs://`` (credentials from boto3's chain: environment, profile, instance role),
``sqs://aws_access_key_id:aws_secret_access_key@`` (URL-quote the secret: it may hold ``/`` and ``+``),
``sqs://key:secret@host:port`` (an SQS-compatible server at ``http://host:port``, as kombu reads it;
``is_secure=True`` or ``broker_use_ssl`` for https).

Capabilities: long polling; leases (the visibility timeout) that a live worker keeps, so a task
longer than ``visibility_timeout`` is not handed out twice; broker-side ETA (``DelaySeconds`` up to
15 minutes at publish, then hidden with ``ChangeMessageVisibility``); FIFO queues; dead-lettering.
No fanout (``supports_fanout`` is False): broadcast, remote control and events need Redis or
RabbitMQ. No priorities: SQS has none.

Wire layout (kombu's):

* the SQS queue of celeriac queue ``q`` is ``queue_name_prefix + q`` with every punctuation mark but
  ``-`` and ``_`` turned into ``_`` and ``.`` into ``-`` (kombu's ``entity_name``); a ``.fifo``
  suffix is kept and makes a FIFO queue;
* the SQS message body is base64 of the JSON envelope ``{body (base64), content-encoding,
  content-type, headers, properties: {correlation_id, reply_to, delivery_mode, delivery_info,
  priority, body_encoding, delivery_tag, ...}}``; plain JSON bodies are read too;
* FIFO queues: ``MessageGroupId`` is the message property of that name (Celery's
  ``apply_async(MessageGroupId=...)``) or ``default_message_group_id`` (``"default"``, as kombu);
  ``MessageDeduplicationId`` is the property of that name, else ``<task id>-<retries>``, so a
  publish retried after a network error is not enqueued twice (kombu uses a random id).

How a message moves::

    publish   -> SendMessage (DelaySeconds = ETA, at most 900 s, on standard queues)
    get       -> ReceiveMessage (long poll), invisible for visibility_timeout; with several
                 queues, all but one are short-polled and that one long-polled, in turn, so a
                 message may wait for the length of one poll (a worker polls for a second)
    held      -> ChangeMessageVisibilityBatch every lease_renew_interval (visibility_timeout / 4)
    ack       -> DeleteMessage
    requeue   -> ChangeMessageVisibility(0)
    ETA later -> ChangeMessageVisibility(until the ETA, at most 12 h; a later ETA is hidden again
                 by the worker that receives it then)
    reject    -> a copy (with the queue and reason as message attributes) is sent to the
                 ``celeriac-dead-letter`` queue (prefixed; created on first use, 14 days'
                 retention), then the message is deleted; with ``predefined_queues`` that don't
                 name that queue, the message is hidden in its own queue for 12 hours instead
                 (the queue's redrive policy, if any, takes it from there)

Bounds: SQS messages are at most ``max_message_size`` bytes (262,144 by default; AWS accepts up to
1 MiB where the queue's ``MaximumMessageSize`` allows): a larger one raises :class:`MessageTooLarge`
before anything is sent. The serialized task is base64 inside a JSON envelope that is base64 again
(kombu's layout), so about 140 KiB of arguments fit in 256 KiB. SQS keeps a message invisible for
at most 12 hours from its receipt, so a task running longer than that is delivered again. A message
deferred for its ETA counts as received (``ApproximateReceiveCount``), which matters for a queue with
a redrive policy.

Transport options (``broker_transport_options``):
    region                 AWS region (default: boto3's configuration, else us-east-1)
    endpoint_url           an SQS-compatible server (ElasticMQ, moto, LocalStack)
    queue_name_prefix      prepended to every queue name (default "")
    predefined_queues      {name: {url, access_key_id, secret_access_key[, region, session_token]}}:
                           only these queues are used; none is listed or created
    visibility_timeout     seconds a received message stays invisible without renewal (1800)
    wait_time_seconds      long-poll limit per ReceiveMessage, 0-20 (10); a worker asks for 1 s at a
                           time, so shutdown stays quick
    polling_interval       seconds slept after an empty short poll (1)
    default_message_group_id, dead_letter_queue, max_message_size, sqs-creation-attributes,
    max_pool_connections, is_secure
    sts_role_arn           not supported: use boto3's own role settings (``role_arn`` in a profile,
                           ``AWS_ROLE_ARN`` with web identity), which refresh the credentials
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
import re
import string
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import boto3  # type: ignore[import-untyped]
import botocore.config  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]

from ..exceptions import BrokerUnavailable, EncodeError, ImproperlyConfigured, OperationalError, QueueNotFound
from ..serialization import json_loads_plain
from .base import Broker, Delivery, Envelope, QueueSpec, Subscription

__all__ = ["MessageTooLarge", "SQSBroker", "sqs_queue_name"]

logger = logging.getLogger("celeriac.brokers.sqs")

DEFAULT_REGION = "us-east-1"
DEFAULT_VISIBILITY_TIMEOUT = 1800  # kombu's
DEFAULT_WAIT_TIME_SECONDS = 10
DEFAULT_MESSAGE_GROUP_ID = "default"
DEAD_LETTER_QUEUE = "celeriac-dead-letter"
DEAD_LETTER_RETENTION = 14 * 24 * 3600  # SQS's maximum
MAX_MESSAGE_SIZE = 256 * 1024
MAX_DELAY_SECONDS = 900
MAX_VISIBILITY_TIMEOUT = 12 * 3600
MAX_BATCH = 10  # ReceiveMessage and the *Batch calls take at most 10
MALFORMED = "application/x-celeriac-malformed"

# kombu's entity_name: '.' -> '-', other punctuation but '-' and '_' -> '_'.
_NAME_TABLE = {ord(c): ord("_") for c in string.punctuation if c not in "-_."}
_NAME_TABLE[ord(".")] = ord("-")
_DEDUP_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_PROPERTY_ORDER = ("correlation_id", "reply_to", "delivery_mode")

# Errors after which a call is tried again (still within the connection timeout).
_TRANSIENT_CODES = frozenset(
    {"ThrottlingException", "Throttling", "RequestThrottled", "ServiceUnavailable", "InternalError", "InternalFailure"}
)
_CONNECTION_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.HTTPClientError,
)
_STALE_RECEIPT_CODES = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"})
_MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


class MessageTooLarge(EncodeError):
    """A message is larger than SQS accepts; it was not sent."""

    def __init__(self, message: str, *, size: int, limit: int, queue: str) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit
        self.queue = queue


def sqs_queue_name(name: str, prefix: str = "") -> str:
    """The SQS name kombu gives queue ``name`` (``.fifo`` kept, other dots become dashes)."""
    full = prefix + name
    if full.endswith(".fifo"):
        return full[: -len(".fifo")].translate(_NAME_TABLE) + ".fifo"
    return full.translate(_NAME_TABLE)


# -- clients: shared by the process, per credentials ---------------------------------------------
class _Clients:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.clients: dict[tuple[Any, ...], Any] = {}


_clients = _Clients()


def _shared_client(key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """The process's client for ``key``; boto3 clients are thread-safe, sessions are not."""
    global _clients
    cache = _clients
    if cache.pid != os.getpid():
        # A forked child: never the parent's connections, nor a lock it may have held.
        cache = _clients = _Clients()
    client = cache.clients.get(key)
    if client is None:
        with cache.lock:
            client = cache.clients.get(key)
            if client is None:
                client = cache.clients[key] = make()
    return client


class SQSBroker(Broker):
    scheme: ClassVar[str] = "sqs"
    supports_fanout: ClassVar[bool] = False
    supports_priority: ClassVar[bool] = False
    native_delay: ClassVar[bool] = True  # DelaySeconds, then the visibility timeout: never worker RAM

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        opts = dict(options or {})
        if opts.get("sts_role_arn"):
            raise ImproperlyConfigured(
                "broker_transport_options: sts_role_arn is not supported by celeriac's SQS broker; "
                "configure the role for boto3 instead (role_arn in an AWS profile, or AWS_ROLE_ARN with "
                "AWS_WEB_IDENTITY_TOKEN_FILE): boto3 then refreshes the credentials itself",
                key="broker_transport_options",
            )
        parts = urlsplit(url)
        self.access_key = unquote(parts.username) if parts.username else None
        self.secret_key = unquote(parts.password) if parts.password else None
        self.region: str | None = opts.get("region") or None
        secure = opts.get("is_secure")
        if secure is None:
            secure = bool(opts.get("use_ssl"))
        self.endpoint_url: str | None = opts.get("endpoint_url") or None
        if self.endpoint_url is None and parts.hostname:
            port = f":{parts.port}" if parts.port else ""
            self.endpoint_url = f"{'https' if secure else 'http'}://{parts.hostname}{port}"
        self.prefix = str(opts.get("queue_name_prefix") or "")
        self.predefined: dict[str, Mapping[str, Any]] = dict(opts.get("predefined_queues") or {})
        self._check_predefined()
        self.visibility_timeout = _bounded_int(
            "visibility_timeout", opts.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT), 1, MAX_VISIBILITY_TIMEOUT
        )
        self.wait_time_seconds = _bounded_int(
            "wait_time_seconds", opts.get("wait_time_seconds", DEFAULT_WAIT_TIME_SECONDS), 0, 20
        )
        self.polling_interval = max(0.0, float(opts.get("polling_interval", 1.0)))
        self.connect_timeout = max(0.1, float(opts.get("connect_timeout", 4.0)))
        self.default_group = str(opts.get("default_message_group_id") or DEFAULT_MESSAGE_GROUP_ID)
        self.dead_letter_queue = str(opts.get("dead_letter_queue") or DEAD_LETTER_QUEUE)
        self.max_message_size = int(opts.get("max_message_size", MAX_MESSAGE_SIZE))
        self.creation_attributes = dict(opts.get("sqs-creation-attributes") or {})
        self.max_pool_connections = int(opts.get("max_pool_connections", 32))
        self._urls: dict[str, str] = {}  # celeriac queue name -> SQS queue URL
        self._bindings: dict[tuple[str, str], str] = {}  # (exchange, routing key) -> queue, from declare_queue
        self._rotation = 0

    def _check_predefined(self) -> None:
        for name, entry in self.predefined.items():
            url = entry.get("url") if isinstance(entry, Mapping) else None
            if not url:
                raise ImproperlyConfigured(
                    f"broker_transport_options: predefined_queues[{name!r}] needs a 'url'",
                    key="broker_transport_options",
                )
            if str(url).endswith(".fifo") != name.endswith(".fifo"):
                raise ImproperlyConfigured(
                    f"broker_transport_options: predefined queue {name!r} and its URL {url!r} must both end "
                    "with .fifo, or neither (SQS names FIFO queues so)",
                    key="broker_transport_options",
                )

    # -- connection ---------------------------------------------------------------
    def _client(self, queue: str | None = None, *, long_poll: bool = False) -> Any:
        """The process's client for ``queue``'s credentials.

        Two per process: long polls need a read timeout longer than ``wait_time_seconds``, and
        every other call gets one of ``connect_timeout``, so a publish to an endpoint that
        accepts connections but doesn't answer still fails within the connection timeout.
        """
        entry = self.predefined.get(queue) if queue is not None else None
        access_key, secret_key, token = self.access_key, self.secret_key, None
        region = self.region
        if entry is not None:
            access_key = entry.get("access_key_id", access_key)
            secret_key = entry.get("secret_access_key", secret_key)
            token = entry.get("session_token")
            region = entry.get("region", region)
        read_timeout = self.wait_time_seconds + self.connect_timeout + 5 if long_poll else self.connect_timeout
        key = (region, self.endpoint_url, access_key, secret_key, token, self.connect_timeout, read_timeout)

        def make() -> Any:
            session = boto3.session.Session(
                aws_access_key_id=access_key, aws_secret_access_key=secret_key, aws_session_token=token
            )
            config = botocore.config.Config(
                connect_timeout=self.connect_timeout,
                read_timeout=read_timeout,
                # _call decides what is tried again: botocore's backoff could outlast the connection timeout.
                retries={"total_max_attempts": 1},
                max_pool_connections=self.max_pool_connections,
            )
            return session.client(
                "sqs",
                region_name=region or session.region_name or DEFAULT_REGION,
                endpoint_url=self.endpoint_url,
                config=config,
            )

        return _shared_client(key, make)

    def open(self) -> None:
        try:
            if self.predefined:
                name, entry = next(iter(self.predefined.items()))
                self._call("connecting", self._client(name).get_queue_attributes,
                           QueueUrl=entry["url"], AttributeNames=["QueueArn"])  # fmt: skip
            else:
                self._call("connecting", self._client().list_queues, QueueNamePrefix=self.prefix, MaxResults=1)
        except _SQSError as exc:
            if exc.code not in ("AccessDenied", "AccessDeniedException"):
                raise
            # Reachable, only not allowed to list: the queues' own calls say whether they may be used.

    def close(self) -> None:
        """Nothing to release: the process's clients are shared (and closed with the process)."""

    def _call(self, action: str, fn: Callable[..., Any], **params: Any) -> Any:
        """Call the SQS API, mapping botocore's errors.

        Throttling is tried again within ``connect_timeout``; a failed connection once, at once
        (a pooled connection the server closed), and only if it failed fast: callers such as
        ``delay()`` retry on their own, and a black hole must fail within the connection timeout.
        A read timeout is not tried again: the request may have been carried out.
        """
        deadline = time.monotonic() + self.connect_timeout
        pause = 0.1
        reconnected = False
        while True:
            try:
                return fn(**params)
            except botocore.exceptions.ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                if code in _TRANSIENT_CODES and time.monotonic() + pause < deadline:
                    time.sleep(pause)
                    pause *= 2
                    continue
                raise self._error(f"{code}: {error.get('Message', exc)}", action, exc) from exc
            except _CONNECTION_ERRORS as exc:
                timed_out = isinstance(exc, botocore.exceptions.ReadTimeoutError)
                if not reconnected and not timed_out and time.monotonic() < deadline - self.connect_timeout / 2:
                    reconnected = True
                    continue
                raise BrokerUnavailable(self._describe(str(exc), action), url=self._masked) from exc
            except botocore.exceptions.NoCredentialsError as exc:
                raise ImproperlyConfigured(
                    "broker_url: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                    "an AWS profile or role, or use sqs://access_key_id:secret_access_key@",
                    key="broker_url",
                ) from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error(str(exc), action, exc) from exc

    def _describe(self, detail: str, action: str) -> str:
        return f"SQS error while {action} ({self._masked}): {detail}"

    def _error(self, detail: str, action: str, exc: BaseException) -> OperationalError:
        return _SQSError(self._describe(detail, action), url=self._masked, cause=exc)

    @property
    def _masked(self) -> str:
        from ..config import mask_url

        return mask_url(self.url)

    # -- queues -------------------------------------------------------------------------
    def sqs_name(self, queue: str) -> str:
        return sqs_queue_name(queue, self.prefix)

    def _queue_url(self, queue: str, *, create: bool = True, attributes: Mapping[str, str] | None = None) -> str | None:
        url = self._urls.get(queue)
        if url is not None:
            return url
        if self.predefined:
            entry = self.predefined.get(queue)
            if entry is None:
                raise QueueNotFound(
                    f"queue {queue!r} is not in broker_transport_options['predefined_queues'] "
                    f"(known: {', '.join(sorted(self.predefined))}); with predefined queues none is created"
                )
            url = self._urls[queue] = str(entry["url"])
            return url
        name = self.sqs_name(queue)
        client = self._client()
        try:
            url = self._call("looking up a queue", client.get_queue_url, QueueName=name)["QueueUrl"]
        except _SQSError as exc:
            if not _is_missing_queue(exc) or not create:
                if _is_missing_queue(exc):
                    return None
                raise
            attrs = {"VisibilityTimeout": str(self.visibility_timeout), **self.creation_attributes}
            attrs.update(attributes or {})
            if name.endswith(".fifo"):
                attrs["FifoQueue"] = "true"
            url = self._call("creating a queue", client.create_queue, QueueName=name, Attributes=attrs)["QueueUrl"]
        self._urls[queue] = str(url)
        return str(url)

    def _require_url(self, queue: str) -> str:
        url = self._queue_url(queue)
        assert url is not None  # create=True: found or made
        return url

    def declare_queue(self, spec: QueueSpec) -> None:
        self._require_url(spec.name)
        if spec.exchange:
            self._bindings[(spec.exchange, spec.routing_key or spec.name)] = spec.name

    def purge(self, queue: str) -> int:
        """Delete the messages that are visible now (not those held by a consumer nor delayed).

        Done by receiving and deleting rather than PurgeQueue, which SQS allows once a minute,
        applies within up to a minute, and also deletes messages being processed.
        """
        url = self._queue_url(queue, create=False)
        if url is None:
            return 0
        client = self._client(queue)
        deleted = 0
        while True:
            got = self._call("purging", client.receive_message, QueueUrl=url,
                             MaxNumberOfMessages=MAX_BATCH, WaitTimeSeconds=0, VisibilityTimeout=30)  # fmt: skip
            messages = got.get("Messages") or []
            if not messages:
                return deleted
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            result = self._call("purging", client.delete_message_batch, QueueUrl=url, Entries=entries)
            deleted += len(result.get("Successful") or [])

    def queue_size(self, queue: str) -> int:
        """Visible plus delayed messages (SQS's approximate counts); those held by a consumer, or
        hidden until their ETA by a worker, are in flight to SQS and not counted."""
        url = self._queue_url(queue, create=False)
        if url is None:
            return 0
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
        attrs = self._call("counting", self._client(queue).get_queue_attributes, QueueUrl=url, AttributeNames=names)
        return sum(int(attrs.get("Attributes", {}).get(name, 0)) for name in names)

    # -- publishing ---------------------------------------------------------------------
    def publish(
        self, envelope: Envelope, *, exchange: str, routing_key: str, not_before: datetime | None = None
    ) -> None:
        queue = self._bindings.get((exchange, routing_key), routing_key) if exchange else routing_key
        body = base64.b64encode(json.dumps(_kombu_payload(envelope, exchange, routing_key)).encode()).decode("ascii")
        if len(body) > self.max_message_size:
            name = envelope.headers.get("task") or "message"
            raise MessageTooLarge(
                f"{name}[{envelope.headers.get('id', '?')}] is {len(body):,} bytes once encoded for SQS "
                f"(base64 of the JSON envelope), over the limit of {self.max_message_size:,} bytes "
                f"(max_message_size; SQS allows up to {MAX_MESSAGE_SIZE // 1024} KiB unless the queue's "
                "MaximumMessageSize is raised): pass large data by reference (e.g. an S3 key)",
                size=len(body),
                limit=self.max_message_size,
                queue=queue,
            )
        params: dict[str, Any] = {"QueueUrl": self._require_url(queue), "MessageBody": body}
        props = envelope.properties
        group = props.get("MessageGroupId")
        if group:
            params["MessageGroupId"] = str(group)  # also SQS fair queues on standard queues, as kombu sends it
        if queue.endswith(".fifo"):
            params.setdefault("MessageGroupId", self.default_group)
            params["MessageDeduplicationId"] = _deduplication_id(envelope)
        elif not_before is not None:
            # FIFO queues take no per-message delay: there the worker hides the message until due.
            delay = math.ceil(not_before.timestamp() - time.time())
            if delay > 0:
                params["DelaySeconds"] = min(delay, MAX_DELAY_SECONDS)
        self._call("publishing", self._client(queue).send_message, **params)

    # -- consuming ----------------------------------------------------------------------
    def get(self, queues: Sequence[str], *, max_messages: int, timeout: float) -> list[Delivery]:
        """Short polls of every queue but the last of this round, which is long-polled for the rest
        of ``timeout`` (whole seconds, at most ``wait_time_seconds``)."""
        if not queues or max_messages <= 0:
            return []
        start = self._rotation % len(queues)
        self._rotation += 1
        order = list(queues[start:]) + list(queues[:start])
        deadline = time.monotonic() + max(0.0, timeout)
        count = min(max_messages, MAX_BATCH)
        while True:
            wait = min(self.wait_time_seconds, int(deadline - time.monotonic() + 0.5))
            for i, queue in enumerate(order):
                deliveries = self._receive(queue, count, max(0, wait) if i == len(order) - 1 else 0)
                if deliveries:
                    return deliveries
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if wait <= 0:
                time.sleep(min(remaining, self.polling_interval))
                if self.polling_interval >= remaining:
                    return []

    def _receive(self, queue: str, count: int, wait: int) -> list[Delivery]:
        url = self._require_url(queue)
        try:
            got = self._call(
                "receiving",
                self._client(queue, long_poll=wait > 0).receive_message,
                QueueUrl=url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait,
                VisibilityTimeout=self.visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except _SQSError as exc:
            if _is_missing_queue(exc):
                self._urls.pop(queue, None)  # deleted under us: looked up (and made) again next time
            raise
        return [_delivery(queue, message) for message in got.get("Messages") or ()]

    # -- settling -----------------------------------------------------------------------
    def _settle(self, action: str, delivery: Delivery, fn_name: str, **params: Any) -> bool:
        """Call ``fn_name`` on the delivery's receipt; False if the receipt is no longer valid."""
        url = self._require_url(delivery.queue)
        client = self._client(delivery.queue)
        try:
            self._call(action, getattr(client, fn_name), QueueUrl=url, ReceiptHandle=delivery.tag, **params)
        except _SQSError as exc:
            if exc.code not in _STALE_RECEIPT_CODES:
                raise
            logger.debug("%s: the receipt of a message from %s is no longer valid: %s", action, delivery.queue, exc)
            return False
        return True

    def ack(self, delivery: Delivery) -> None:
        if delivery.tag:
            self._settle("acknowledging", delivery, "delete_message")

    def reject(self, delivery: Delivery, *, requeue: bool, reason: str = "") -> None:
        if not delivery.tag:
            return
        if requeue:
            self._settle("requeueing", delivery, "change_message_visibility", VisibilityTimeout=0)
            return
        if self.predefined and self.dead_letter_queue not in self.predefined:
            # No queue of ours to dead-letter into, and none may be created: the message stays
            # in its queue, hidden as long as SQS allows, so it neither comes straight back to be
            # rejected again and again nor gets lost; the queue's own redrive policy, if it has
            # one, moves it to its dead-letter queue after maxReceiveCount receipts.
            logger.error(
                "can't dead-letter a message from %s (%s): add %r to predefined_queues; it is hidden "
                "in its queue for 12 hours instead",
                delivery.queue, reason or "rejected", self.dead_letter_queue,
            )  # fmt: skip
            self._settle("parking a rejected message", delivery, "change_message_visibility",
                         VisibilityTimeout=MAX_VISIBILITY_TIMEOUT - 60)  # fmt: skip
            return
        # The copy first: a worker dying in between leaves the message to be dead-lettered again
        # (a duplicate copy), never lost.
        dead_url = self._dead_letter_url(create=True)
        attributes = {
            "celeriac-queue": {"DataType": "String", "StringValue": delivery.queue},
            "celeriac-reason": {"DataType": "String", "StringValue": (reason or "rejected")[:1024]},
            "celeriac-rejected-at": {"DataType": "Number", "StringValue": f"{time.time():.3f}"},
        }
        body = (delivery.raw or b"").decode("utf-8", "replace") or "{}"
        self._call("dead-lettering", self._client(self.dead_letter_queue).send_message,
                   QueueUrl=dead_url, MessageBody=body, MessageAttributes=attributes)  # fmt: skip
        self._settle("dead-lettering", delivery, "delete_message")

    def _dead_letter_url(self, *, create: bool) -> str | None:
        if self.predefined and self.dead_letter_queue not in self.predefined:
            if not create:
                return None
            raise OperationalError(
                f"can't dead-letter: with predefined_queues, add {self.dead_letter_queue!r} to them "
                "(the message is left in its queue)",
                url=self._masked,
            )
        retention = {"MessageRetentionPeriod": str(DEAD_LETTER_RETENTION)}
        return self._queue_url(self.dead_letter_queue, create=create, attributes=retention)

    def defer(self, delivery: Delivery, not_before: datetime) -> bool:
        """Hide a received message until its ETA (at most 12 hours: a later one is hidden again
        by whichever worker receives it then)."""
        if not delivery.tag:
            return False
        seconds = math.ceil(not_before.timestamp() - time.time())
        seconds = max(1, min(seconds, MAX_VISIBILITY_TIMEOUT - 60))
        try:
            return self._settle("deferring", delivery, "change_message_visibility", VisibilityTimeout=seconds)
        except OperationalError as exc:
            logger.warning("could not hand a message back to SQS until its ETA (kept by the worker): %s", exc)
            return False

    def extend_leases(self, deliveries: Sequence[Delivery]) -> None:
        by_queue: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            if delivery.tag:
                by_queue.setdefault(delivery.queue, []).append(delivery)
        for queue, held in by_queue.items():
            url = self._require_url(queue)
            client = self._client(queue)
            for start in range(0, len(held), MAX_BATCH):
                entries = [
                    {"Id": str(i), "ReceiptHandle": d.tag, "VisibilityTimeout": self.visibility_timeout}
                    for i, d in enumerate(held[start : start + MAX_BATCH])
                ]
                result = self._call("renewing leases", client.change_message_visibility_batch,
                                    QueueUrl=url, Entries=entries)  # fmt: skip
                for failed in result.get("Failed") or ():
                    # Acked meanwhile, or the lease was already lost: nothing left to keep.
                    logger.debug("lease of a message from %s not renewed: %s", queue, failed.get("Code"))

    @property
    def lease_renew_interval(self) -> float:
        return max(0.5, min(self.visibility_timeout / 4, 300.0))

    # -- fanout: none -------------------------------------------------------------------
    def broadcast(self, exchange: str, envelope: Envelope, *, routing_key: str = "") -> None:
        raise NotImplementedError(_NO_FANOUT.format(what=f"broadcast on {exchange!r}"))

    def subscribe(self, exchange: str, *, routing_key: str = "") -> Subscription:
        raise NotImplementedError(_NO_FANOUT.format(what=f"subscribe to {exchange!r}"))

    # -- inspection ---------------------------------------------------------------------
    def dead_letters(self, max_messages: int = MAX_BATCH) -> list[dict[str, Any]]:
        """Up to ``max_messages`` dead-lettered messages, left in place (received with no lease)."""
        url = self._dead_letter_url(create=False)
        if url is None:
            return []
        got = self._call("reading dead letters", self._client(self.dead_letter_queue).receive_message,
                         QueueUrl=url, MaxNumberOfMessages=min(MAX_BATCH, max_messages), WaitTimeSeconds=0,
                         VisibilityTimeout=0, MessageAttributeNames=["All"])  # fmt: skip
        out = []
        for message in got.get("Messages") or ():
            attrs = message.get("MessageAttributes") or {}
            delivery = _delivery("", message)
            out.append(
                {
                    "queue": attrs.get("celeriac-queue", {}).get("StringValue"),
                    "reason": attrs.get("celeriac-reason", {}).get("StringValue"),
                    "rejected": float(attrs.get("celeriac-rejected-at", {}).get("StringValue") or 0),
                    "headers": dict(delivery.envelope.headers),
                    "content_type": delivery.envelope.content_type,
                }
            )
        return out

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"transport": "sqs", "url": self._masked, "region": self.region or "(boto3's)"}
        if self.endpoint_url:
            info["endpoint_url"] = self.endpoint_url
        if self.prefix:
            info["queue_name_prefix"] = self.prefix
        return info


_NO_FANOUT = (
    "the SQS broker has no fanout (supports_fanout is False), so it can't {what}: remote control "
    "(inspect/control), broadcast and events need a broker with fanout, such as Redis or RabbitMQ"
)


class _SQSError(OperationalError):
    def __init__(self, message: str, *, url: str | None, cause: BaseException) -> None:
        super().__init__(message, url=url)
        response = getattr(cause, "response", None) or {}
        self.code = str(response.get("Error", {}).get("Code", ""))


def _is_missing_queue(exc: _SQSError) -> bool:
    return exc.code in _MISSING_QUEUE_CODES


def _bounded_int(key: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise ImproperlyConfigured(
            f"broker_transport_options: {key} must be a number, got {value!r}", key="broker_transport_options"
        ) from None
    if not low <= number <= high:
        raise ImproperlyConfigured(
            f"broker_transport_options: {key} must be between {low} and {high} (SQS's bounds), got {value!r}",
            key="broker_transport_options",
        )
    return number


def _kombu_payload(envelope: Envelope, exchange: str, routing_key: str) -> dict[str, Any]:
    """The JSON envelope kombu's virtual transports store (its ``prepare_message`` + ``basic_publish``)."""
    props = dict(envelope.properties)
    properties: dict[str, Any] = {key: props.pop(key) for key in _PROPERTY_ORDER if key in props}
    properties["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
    props.pop("delivery_info", None)
    properties["priority"] = props.pop("priority", None) or 0
    properties.update(props)
    properties["body_encoding"] = "base64"
    properties["delivery_tag"] = str(uuid.uuid4())
    return {
        "body": base64.b64encode(envelope.body).decode("ascii"),
        "content-encoding": envelope.content_encoding,
        "content-type": envelope.content_type,
        "headers": dict(envelope.headers),
        "properties": properties,
    }


def _deduplication_id(envelope: Envelope) -> str:
    given = envelope.properties.get("MessageDeduplicationId")
    if given:
        return str(given)
    task_id = envelope.headers.get("id") or envelope.properties.get("correlation_id")
    if not task_id:
        return str(uuid.uuid4())
    # A retry republishes the same task id: the retry count keeps it from being deduplicated away.
    candidate = f"{task_id}-{envelope.headers.get('retries') or 0}"
    if _DEDUP_ID.match(candidate):
        return candidate
    return hashlib.sha256(candidate.encode()).hexdigest()


def _parse_body(text: str) -> dict[str, Any] | None:
    """kombu's envelope from an SQS body: base64 of JSON (kombu's default) or plain JSON."""
    candidate = text.strip()
    if not candidate.startswith("{"):
        try:
            candidate = base64.b64decode(candidate, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
    try:
        payload = json_loads_plain(candidate)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's parser goes
        return None
    return payload if isinstance(payload, dict) and isinstance(payload.get("properties", {}), dict) else None


def _delivery(queue: str, message: Mapping[str, Any]) -> Delivery:
    text = str(message.get("Body") or "")
    raw = text.encode()
    tag = str(message.get("ReceiptHandle") or "")
    received = int((message.get("Attributes") or {}).get("ApproximateReceiveCount") or 1)
    payload = _parse_body(text)
    malformed = Delivery(Envelope(raw, {}, {}, MALFORMED, "binary"), queue, tag, received > 1, "", queue, raw=raw)
    if payload is None:
        # Handed on so the worker logs and dead-letters it (content type nobody accepts).
        return malformed
    try:
        props = dict(payload.get("properties") or {})
        info = dict(props.get("delivery_info") or {})
        body = payload.get("body", "")
        body_bytes = base64.b64decode(body) if props.get("body_encoding") == "base64" else str(body).encode()
    except (binascii.Error, ValueError, TypeError):
        # delivery_info or body of the wrong type: one bad message must not fail the whole receive.
        return malformed
    info["redelivered"] = received > 1
    props["delivery_info"] = info
    headers = payload.get("headers")
    envelope = Envelope(
        body=body_bytes,
        headers=dict(headers) if isinstance(headers, Mapping) else {},
        properties=props,
        content_type=str(payload.get("content-type") or ""),
        content_encoding=str(payload.get("content-encoding") or ""),
    )
    return Delivery(
        envelope,
        queue,
        tag,
        received > 1,
        str(info.get("exchange") or ""),
        str(info.get("routing_key") or queue),
        raw=raw,
    )
