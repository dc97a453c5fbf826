"""Django ORM result backend: Celery's ``django-db`` (as django-celery-results provides it).

URL: ``django-db`` (no ``://``): ``CELERY_RESULT_BACKEND = "django-db"`` in Django settings
read with ``namespace="CELERY"``, or ``result_backend = "django-db"``. Needs
``"celeriac.contrib.django.results"`` in ``INSTALLED_APPS``, its migration applied
(``manage.py migrate``). A process that hasn't set Django up (a script, ``celeriac -A proj
result``) gets ``django.setup()`` on first use when ``DJANGO_SETTINGS_MODULE`` is set.

Capabilities: durable; a stored ``SUCCESS`` is final (a late ``FAILURE``/``STARTED``
from a duplicate run doesn't replace it); groups (``save_group``/``restore_group``);
``result_expires`` applied by :meth:`DjangoBackend.cleanup` (``celeriac purge-results``,
or the ``celery.backend_cleanup`` task); ``get()`` polls with the base class's backoff
(5 ms, doubling up to ``interval``). The database is the one Django's router picks for
:class:`~celeriac.contrib.django.results.models.TaskResult`, used through the calling
thread's Django connection: in a worker, the one the task used, which the Django fixup
closes after the task.

Row layout (django-celery-results')::

    task_id, status, date_done, traceback
    result            the return value; for FAILURE/RETRY/REVOKED {"exc_type", "exc_message",
                      "exc_module"}; encoded with result_serializer (json by default)
    content_type      how result and meta are encoded (application/json, ...)
    content_encoding  utf-8, or binary: then the text is base64
    meta              {"children"} plus "group_id", "parent_id", "retries", "queue" when set
    date_started      when the task was stored as STARTED (task_track_started)
    task_name, task_args, task_kwargs, worker    with result_extended
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import django  # noqa: F401  # a missing Django is reported when the backend is chosen, not at first use

from .... import states
from ....backends.base import ResultBackend, ResultMeta, exception_from_meta, exception_to_meta
from ....exceptions import BackendError, ImproperlyConfigured
from ....serialization import dumps, loads, prepare_accept_content

if TYPE_CHECKING:
    from ....app import Celery

__all__ = ["DjangoBackend"]

APP = "celeriac.contrib.django.results"
_META_KEYS = ("group_id", "parent_id", "retries", "queue")

T = TypeVar("T")


def _models() -> Any:
    from django.apps import apps

    if not apps.ready:
        if not os.environ.get("DJANGO_SETTINGS_MODULE"):
            raise ImproperlyConfigured(
                "result_backend: the django-db backend needs Django set up in this process "
                "(set DJANGO_SETTINGS_MODULE, or call django.setup())",
                key="result_backend",
            )
        # A process that reads results but never set Django up (``celeriac -A proj result``,
        # a script importing the app): do what manage.py would.
        from ..fixup import setup_django

        setup_django(checks=False)
    if not apps.is_installed(APP):
        raise ImproperlyConfigured(
            f"result_backend: the django-db backend needs {APP!r} in INSTALLED_APPS (then run manage.py migrate)",
            key="result_backend",
        )
    from . import models

    return models


class DjangoBackend(ResultBackend):
    def __init__(self, url: str = "", options: Mapping[str, Any] | None = None, *, app: Celery | None = None) -> None:
        super().__init__(url or "django-db", options, app=app)
        conf = app.conf if app is not None else None
        self.serializer: str = conf.result_serializer if conf is not None else "json"
        accept = (conf.result_accept_content or conf.accept_content) if conf is not None else ("json",)
        self.accept = prepare_accept_content(accept)
        self.extended = bool(conf.result_extended) if conf is not None else False
        expires = conf.result_expires if conf is not None else timedelta(days=1)
        self.expires = expires.total_seconds() if isinstance(expires, timedelta) else float(expires or 0)

    # -- the interface -------------------------------------------------------------
    def store(self, meta: ResultMeta) -> None:
        task_result = _models().TaskResult
        values = self._row(meta)

        def write(alias: str) -> None:
            from django.db import IntegrityError, transaction

            objects = task_result._default_manager.db_manager(alias)
            try:
                # A savepoint: a duplicate key must not spoil a transaction the caller has open.
                with transaction.atomic(using=alias):
                    objects.create(task_id=meta.task_id, **values)
                return
            except IntegrityError:
                pass  # the row exists: update it
            rows = objects.filter(task_id=meta.task_id)
            if meta.status != states.SUCCESS:
                # A stored SUCCESS is final: a duplicate run's late update must not undo it.
                rows = rows.exclude(status=states.SUCCESS)
            rows.update(**values)

        self._run(task_result, write, write=True, what=f"store the result of task {meta.task_id}")

    def load(self, task_id: str) -> ResultMeta | None:
        task_result = _models().TaskResult
        row = self._run(
            task_result,
            lambda alias: task_result._default_manager.db_manager(alias).filter(task_id=task_id).first(),
            write=False,
            what=f"read the result of task {task_id}",
        )
        return None if row is None else self._meta(row)

    def forget(self, task_id: str) -> None:
        task_result = _models().TaskResult
        self._run(
            task_result,
            lambda alias: task_result._default_manager.db_manager(alias).filter(task_id=task_id).delete(),
            write=True,
            what=f"forget task {task_id}",
        )

    # -- groups and cleanup ---------------------------------------------------------
    def save_group(self, group_id: str, result: Any) -> None:
        """Store a group's result tuple (``GroupResult.save()``), replacing a previous one."""
        group_result = _models().GroupResult
        as_tuple = result.as_tuple() if hasattr(result, "as_tuple") else result
        content_type, content_encoding, text = self._encode(as_tuple)
        self._run(
            group_result,
            lambda alias: group_result._default_manager.db_manager(alias).update_or_create(
                group_id=group_id,
                defaults={"content_type": content_type, "content_encoding": content_encoding, "result": text},
            ),
            write=True,
            what=f"save group {group_id}",
        )

    def restore_group(self, group_id: str) -> Any:
        """The stored group tuple, or None."""
        group_result = _models().GroupResult
        row = self._run(
            group_result,
            lambda alias: group_result._default_manager.db_manager(alias).filter(group_id=group_id).first(),
            write=False,
            what=f"read group {group_id}",
        )
        return None if row is None else self._decode(row.result, row.content_type, row.content_encoding)

    def delete_group(self, group_id: str) -> None:
        group_result = _models().GroupResult
        self._run(
            group_result,
            lambda alias: group_result._default_manager.db_manager(alias).filter(group_id=group_id).delete(),
            write=True,
            what=f"delete group {group_id}",
        )

    def cleanup(self) -> int:
        """Delete finished results and groups older than ``result_expires``; returns how many rows went."""
        if not self.expires:
            return 0
        from django.utils import timezone as django_timezone

        models = _models()
        cutoff = django_timezone.now() - timedelta(seconds=self.expires)

        def delete(alias: str) -> int:
            tasks = models.TaskResult._default_manager.db_manager(alias)
            groups = models.GroupResult._default_manager.db_manager(alias)
            removed, _ = tasks.filter(date_done__lt=cutoff, status__in=states.READY_STATES).delete()
            removed_groups, _ = groups.filter(date_done__lt=cutoff).delete()
            return int(removed) + int(removed_groups)

        return self._run(models.TaskResult, delete, write=True, what="delete expired results")

    # -- rows ----------------------------------------------------------------------
    def _row(self, meta: ResultMeta) -> dict[str, Any]:
        from django.utils import timezone as django_timezone

        result = meta.result
        if meta.status in states.EXCEPTION_STATES and isinstance(result, BaseException):
            result = exception_to_meta(result)
        content_type, content_encoding, text = self._encode(result)
        extra = {key: getattr(meta, key) for key in _META_KEYS if getattr(meta, key) is not None}
        row: dict[str, Any] = {
            "status": meta.status,
            "content_type": content_type,
            "content_encoding": content_encoding,
            "result": text,
            "traceback": meta.traceback,
            "meta": self._encode({"children": meta.children, **extra})[2],
            # update() skips auto_now, so date_done is always given.
            "date_done": _to_db(meta.date_done) if meta.date_done else django_timezone.now(),
        }
        if meta.status == states.STARTED:
            row["date_started"] = django_timezone.now()
        if self.extended and meta.name is not None:
            row.update(
                task_name=meta.name,
                task_args=self._encode(meta.args)[2] if meta.args is not None else None,
                task_kwargs=self._encode(meta.kwargs)[2] if meta.kwargs is not None else None,
                worker=meta.worker,
            )
        return row

    def _meta(self, row: Any) -> ResultMeta:
        status = row.status or states.PENDING
        result = self._decode(row.result, row.content_type, row.content_encoding)
        if status in states.EXCEPTION_STATES:
            result = exception_from_meta(result)
        extra = self._decode(row.meta, row.content_type, row.content_encoding)
        extra = extra if isinstance(extra, Mapping) else {}
        return ResultMeta(
            task_id=row.task_id,
            status=status,
            result=result,
            traceback=row.traceback,
            children=list(extra.get("children") or []),
            date_done=_from_db(row.date_done) if status in states.READY_STATES else None,
            group_id=extra.get("group_id"),
            parent_id=extra.get("parent_id"),
            name=row.task_name,
            args=self._decode(row.task_args, row.content_type, row.content_encoding),
            kwargs=self._decode(row.task_kwargs, row.content_type, row.content_encoding),
            worker=row.worker,
            retries=extra.get("retries"),
            queue=extra.get("queue"),
        )

    def _encode(self, value: Any) -> tuple[str, str, str]:
        content_type, content_encoding, payload = dumps(value, self.serializer)
        if content_encoding == "binary":
            return content_type, content_encoding, base64.b64encode(payload).decode("ascii")
        return content_type, content_encoding, payload.decode(content_encoding)

    def _decode(self, text: str | None, content_type: str, content_encoding: str) -> Any:
        if text is None:
            return None
        data = base64.b64decode(text) if content_encoding == "binary" else text.encode(content_encoding or "utf-8")
        return loads(data, content_type, content_encoding, self.accept)

    # -- connections ------------------------------------------------------------------
    def _run(self, model: Any, operation: Callable[[str], T], *, write: bool, what: str) -> T:
        """Run ``operation(alias)``; once more on a fresh connection if the one it got was dead.

        A connection left idle in a long-lived thread (the worker's own, a client's) can be
        killed by a database restart or an idle timeout; nothing but the next query finds out.
        Inside a transaction the connection can't be replaced, so the error is raised as is.
        """
        from django.db import Error, InterfaceError, OperationalError, connections, router

        alias = router.db_for_write(model) if write else router.db_for_read(model)
        try:
            try:
                return operation(alias)
            except (InterfaceError, OperationalError):
                connection = connections[alias]
                if connection.in_atomic_block:
                    raise
                connection.close()
                return operation(alias)
        except Error as exc:
            raise BackendError(f"can't {what}: {exc}") from exc

    def __repr__(self) -> str:
        return "<celeriac.contrib.django.results.backend.DjangoBackend django-db>"

    __str__ = __repr__


def _to_db(value: datetime) -> datetime:
    """An aware datetime as Django stores it: aware with USE_TZ, naive local time without."""
    from django.conf import settings
    from django.utils import timezone as django_timezone

    if settings.USE_TZ:
        return value
    naive: datetime = django_timezone.make_naive(value)
    return naive


def _from_db(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # USE_TZ = False: naive, in TIME_ZONE
        from django.utils import timezone as django_timezone

        value = django_timezone.make_aware(value)
    return value.astimezone(timezone.utc)
