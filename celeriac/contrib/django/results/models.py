"""The ``django-db`` result backend's models: one row per task, one per saved group.

Fields and indexes follow django-celery-results' ``TaskResult``/``GroupResult``, so
admin code and queries written for those read these the same way. ``result`` and
``meta`` are text encoded with ``result_serializer`` (``content_type`` and
``content_encoding`` say how; binary serializers are base64). A change here needs a
migration: ``python -m django makemigrations celeriac_results`` in a project that
installs the app.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from .... import states

__all__ = ["GroupResult", "TaskResult"]

STATE_CHOICES = [(state, state) for state in sorted(states.ALL_STATES)]


class TaskResult(models.Model):  # type: ignore[misc]  # Django ships no type hints
    """The stored state of one task."""

    task_id = models.CharField(max_length=255, unique=True, verbose_name="task ID")
    task_name = models.CharField(max_length=255, null=True, verbose_name="task name")
    task_args = models.TextField(null=True, verbose_name="positional arguments")
    task_kwargs = models.TextField(null=True, verbose_name="keyword arguments")
    status = models.CharField(max_length=50, default=states.PENDING, choices=STATE_CHOICES, verbose_name="state")
    worker = models.CharField(max_length=100, null=True, default=None, verbose_name="worker")
    content_type = models.CharField(max_length=128, verbose_name="result content type")
    content_encoding = models.CharField(max_length=64, verbose_name="result encoding")
    result = models.TextField(null=True, default=None, editable=False, verbose_name="result data")
    date_created = models.DateTimeField(auto_now_add=True, verbose_name="created")
    date_started = models.DateTimeField(null=True, default=None, verbose_name="started")
    date_done = models.DateTimeField(auto_now=True, verbose_name="completed")
    traceback = models.TextField(blank=True, null=True, verbose_name="traceback")
    meta = models.TextField(null=True, default=None, editable=False, verbose_name="task meta information")

    class Meta:
        ordering = ["-date_done"]
        verbose_name = "task result"
        verbose_name_plural = "task results"
        indexes = [
            models.Index(fields=["task_name"], name="celeriac_task_name_idx"),
            models.Index(fields=["status"], name="celeriac_task_status_idx"),
            models.Index(fields=["worker"], name="celeriac_task_worker_idx"),
            models.Index(fields=["date_created"], name="celeriac_task_created_idx"),
            models.Index(fields=["date_done"], name="celeriac_task_done_idx"),
        ]

    def __str__(self) -> str:
        return f"<Task: {self.task_id} ({self.status})>"

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "task_name": self.task_name,
            "task_args": self.task_args,
            "task_kwargs": self.task_kwargs,
            "status": self.status,
            "result": self.result,
            "date_done": self.date_done,
            "traceback": self.traceback,
            "meta": self.meta,
            "worker": self.worker,
        }


class GroupResult(models.Model):  # type: ignore[misc]  # Django ships no type hints
    """A saved group: the tuple of its results' ids (``GroupResult.save()``)."""

    group_id = models.CharField(max_length=255, unique=True, verbose_name="group ID")
    date_created = models.DateTimeField(auto_now_add=True, verbose_name="created")
    date_done = models.DateTimeField(auto_now=True, verbose_name="completed")
    content_type = models.CharField(max_length=128, verbose_name="result content type")
    content_encoding = models.CharField(max_length=64, verbose_name="result encoding")
    result = models.TextField(null=True, default=None, editable=False, verbose_name="result data")

    class Meta:
        ordering = ["-date_done"]
        verbose_name = "group result"
        verbose_name_plural = "group results"
        indexes = [
            models.Index(fields=["date_created"], name="celeriac_group_created_idx"),
            models.Index(fields=["date_done"], name="celeriac_group_done_idx"),
        ]

    def __str__(self) -> str:
        return f"<Group: {self.group_id}>"
