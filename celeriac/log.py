"""Logging for the worker: Celery's formats, task-aware records and stdout capture."""

from __future__ import annotations

import io
import logging
import sys
from typing import Any, TextIO

__all__ = ["LoggingProxy", "get_logger", "get_task_logger", "setup_logging"]

LEVELS = {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"}


def parse_level(value: str | int) -> int:
    if isinstance(value, int):
        return value
    name = value.strip().upper()
    if name not in LEVELS:
        raise ValueError(f"invalid log level {value!r} (choose from DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    return int(logging.getLevelName("WARNING" if name == "WARN" else "CRITICAL" if name == "FATAL" else name))


class TaskFormatter(logging.Formatter):
    """The worker's formatter: records from task loggers use the task format
    (``... tasks.add[<id>]: message``) while a task runs, others the process format."""

    def __init__(self, fmt: str, task_fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._task = logging.Formatter(task_fmt) if task_fmt else None

    def format(self, record: logging.LogRecord) -> str:
        if (
            self._task is not None
            and getattr(record, "celeriac_task_log", False)
            and getattr(record, "task_id", "???") != "???"
        ):
            return self._task.format(record)
        return super().format(record)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def get_task_logger(name: str) -> logging.Logger:
    """A logger whose records carry the task name and id (Celery's ``get_task_logger``)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _TaskContext) for f in logger.filters):
        logger.addFilter(_TaskContext())
    return logger


class _TaskContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from ._state import get_current_request

        request = get_current_request()
        record.__dict__.setdefault("task_name", (request.task if request else None) or "???")
        record.__dict__.setdefault("task_id", (request.id if request else None) or "???")
        record.celeriac_task_log = True
        return True


class LoggingProxy(io.TextIOBase):
    """A file-like object that logs each line written to it (stdout of tasks goes to the log)."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        super().__init__()
        self.logger = logger
        self.level = level
        self._buffer = ""
        self._writing = False

    def write(self, text: str) -> int:
        if self._writing:  # a handler that writes to stdout must not loop back here
            return len(text)
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        if not line.strip():
            return
        self._writing = True
        try:
            self.logger.log(self.level, line.rstrip())
        finally:
            self._writing = False

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self._emit(line)

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def setup_logging(
    loglevel: str | int = "WARNING",
    logfile: str | None = None,
    fmt: str | None = None,
    task_fmt: str | None = None,
    *,
    hijack_root: bool = True,
    redirect_stdouts: bool = False,
    redirect_level: str = "WARNING",
    colorize: bool | None = None,
) -> None:
    """Configure the root logger the way Celery's worker does."""
    from . import signals

    level = parse_level(loglevel)
    if signals.setup_logging.has_listeners():
        # As in Celery: an app connected to setup_logging configures logging itself.
        signals.setup_logging.send(sender=None, loglevel=level, logfile=logfile, format=fmt, colorize=colorize)
        return
    stream: TextIO = sys.__stderr__ if sys.__stderr__ is not None else sys.stderr
    handler: logging.Handler
    if logfile and logfile != "-":
        handler = logging.FileHandler(logfile, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream)
    from .config import DEFAULTS

    handler.setFormatter(
        TaskFormatter(fmt or DEFAULTS["worker_log_format"], task_fmt or DEFAULTS["worker_task_log_format"])
    )
    root = logging.getLogger()
    if hijack_root:
        for existing in list(root.handlers):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    signals.after_setup_logger.send(
        sender=None, logger=root, loglevel=level, logfile=logfile, format=fmt, colorize=colorize
    )
    task_handler: Any = handler
    signals.after_setup_task_logger.send(
        sender=None, logger=task_handler, loglevel=level, logfile=logfile, format=task_fmt, colorize=colorize
    )
    if redirect_stdouts:
        sys.stdout = LoggingProxy(logging.getLogger("celeriac.redirected"), parse_level(redirect_level))
