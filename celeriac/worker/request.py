"""A task message received by the worker: the decoded call, its delivery and its timing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..brokers.base import Delivery
from ..protocol import TaskMessage
from .pools.base import Job

if TYPE_CHECKING:
    from ..task import Task

__all__ = ["Request"]


@dataclass(eq=False)
class Request:
    delivery: Delivery
    message: TaskMessage
    task: Task[Any, Any]
    hostname: str
    received: float = field(default_factory=time.time)
    started: float | None = None
    worker_pid: int | None = None

    @property
    def id(self) -> str:
        return self.message.id

    @property
    def name(self) -> str:
        return self.message.task

    def eta(self) -> datetime | None:
        return self.message.eta_datetime

    def is_expired(self, now: datetime | None = None) -> bool:
        expires = self.message.expires_datetime
        return expires is not None and expires <= (now or datetime.now(timezone.utc))

    def time_limits(self) -> tuple[float | None, float | None]:
        hard = self.message.time_limit or self.task.opt("time_limit")
        soft = self.message.soft_time_limit or self.task.opt("soft_time_limit")
        return (float(hard) if hard else None), (float(soft) if soft else None)

    def context(self) -> dict[str, Any]:
        """The fields of ``task.request`` for this call."""
        return self._context(self.time_limits())

    def _context(self, limits: tuple[float | None, float | None]) -> dict[str, Any]:
        m = self.message
        delivery_info = {
            "exchange": self.delivery.exchange,
            "routing_key": self.delivery.routing_key or self.delivery.queue,
            "priority": m.priority,
            "redelivered": self.delivery.redelivered,
        }
        fields: dict[str, Any] = {
            "id": m.id,
            "task": m.task,
            "args": tuple(m.args),
            "kwargs": dict(m.kwargs),
            "retries": m.retries,
            "is_eager": False,
            "called_directly": False,
            "eta": m.eta,
            "expires": m.expires,
            "group": m.group,
            "group_index": m.group_index,
            "chord": m.chord,
            "chain": m.chain,
            "callbacks": m.callbacks,
            "errbacks": m.errbacks,
            "hostname": self.hostname,
            "delivery_info": delivery_info,
            "reply_to": m.reply_to,
            "correlation_id": m.correlation_id or m.id,
            "root_id": m.root_id,
            "parent_id": m.parent_id,
            "origin": m.origin,
            "timelimit": limits,
            "ignore_result": m.ignore_result,
            "headers": dict(m.extra_headers),
            "shadow": m.shadow,
            "stamps": dict(m.stamps),
            "stamped_headers": m.stamped_headers,
            "replaced_task_nesting": m.replaced_task_nesting,
            "properties": {"priority": m.priority, "correlation_id": m.correlation_id, "reply_to": m.reply_to},
        }
        # Celery exposes custom headers as request attributes too (self.request.my_header).
        if m.extra_headers:
            for key, value in m.extra_headers.items():
                if isinstance(key, str) and key.isidentifier() and key not in fields:
                    fields[key] = value
        return fields

    def info(self, safe: bool = False) -> dict[str, Any]:
        """Celery's ``Request.info()``: what ``inspect active/reserved`` report."""
        m = self.message
        return {
            "id": m.id,
            "name": m.task,
            "args": m.argsrepr if safe else list(m.args),
            "kwargs": m.kwargsrepr if safe else dict(m.kwargs),
            "type": m.task,
            "hostname": self.hostname,
            "time_start": self.started,
            "acknowledged": False,
            "delivery_info": {
                "exchange": self.delivery.exchange,
                "routing_key": self.delivery.routing_key or self.delivery.queue,
                "priority": m.priority,
                "redelivered": self.delivery.redelivered,
            },
            "worker_pid": self.worker_pid,
        }

    def job(self) -> Job:
        limits = self.time_limits()
        m = self.message
        return Job(m.task, m.id, self._context(limits), limits[0], limits[1])
