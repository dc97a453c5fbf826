"""Beat, the periodic task scheduler: Celery's ``Scheduler``/``Service`` with a shared store and a leader lease.

Entries come from ``beat_schedule`` (and ``app.add_periodic_task``). Each tick the
scheduler takes or renews the lease in its store; only the holder sends due tasks,
so several beats (on several hosts, with the Redis store) may run for availability.
A follower checks the lease every third of ``beat_lease_timeout`` and takes over
when the leader stops renewing it. Before sending a run, the leader records it
with :meth:`~celeriac._beat_store.ScheduleStore.claim`, atomically with the lease
check and only if nobody recorded it first: a run is sent at most once, even by a
leader that was paused, lost the lease and woke up.

Where state is kept (:func:`store_for_app`): the file given with ``-s`` (or the
``beat_schedule_filename`` setting) when set explicitly; else the embedded SQLite
broker's own file, or Redis when the broker is Redis; else the
``beat_schedule_filename`` file. Tasks are sent through the app's usual path
(``task.apply_async``/``app.send_task`` with the entry's options), so Celery
workers can run them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import signals
from ._beat_store import (
    EntryState,
    MemoryScheduleStore,
    RedisScheduleStore,
    ScheduleStore,
    SQLiteScheduleStore,
    encode_state,
)
from .exceptions import CeleriacError, ImproperlyConfigured, OperationalError
from .schedules import crontab, maybe_schedule

if TYPE_CHECKING:
    from .app import Celery

__all__ = [
    "BeatLazyFunc",
    "EmbeddedService",
    "PersistentScheduler",
    "ScheduleEntry",
    "Scheduler",
    "SchedulingError",
    "Service",
    "periodic_task_entry",
    "store_for_app",
]

logger = logging.getLogger("celeriac.beat")

DEFAULT_MAX_INTERVAL = 300.0  # Celery's, for the persistent scheduler
_MIN_SLEEP = 0.01
_REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix", "socket", "sentinel")
# Celery's scheduler paths, accepted in beat_scheduler / -S.
_ALIASES = {
    "celery.beat:PersistentScheduler": "celeriac.beat:PersistentScheduler",
    "celery.beat.PersistentScheduler": "celeriac.beat:PersistentScheduler",
    "celery.beat:Scheduler": "celeriac.beat:Scheduler",
    "celery.beat.Scheduler": "celeriac.beat:Scheduler",
}


class SchedulingError(CeleriacError):
    """A due task could not be sent."""


class BeatLazyFunc:
    """An argument computed when the task is sent: ``'args': (BeatLazyFunc(time.time),)``."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._func, self._args, self._kwargs = func, args, kwargs

    def __call__(self) -> Any:
        return self._func(*self._args, **self._kwargs)

    delay = __call__


class ScheduleEntry:
    """One periodic task: its schedule, what to send, and when it last ran."""

    def __init__(
        self,
        name: str | None = None,
        task: str | None = None,
        last_run_at: datetime | None = None,
        total_run_count: int | None = None,
        schedule: Any = None,
        args: Any = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        relative: bool = False,
        app: Celery | None = None,
    ) -> None:
        self.app = app
        self.name = name or ""
        self.task = task or ""
        self.args = tuple(args or ())
        self.kwargs = dict(kwargs or {})
        self.options = dict(options or {})
        self.schedule = maybe_schedule(schedule, relative, app=app)
        self.last_run_at = last_run_at or self.default_now()
        self.total_run_count = total_run_count or 0

    def default_now(self) -> datetime:
        if self.schedule is not None:
            now: datetime = self.schedule.now()
            return now
        assert self.app is not None
        return self.app.now()

    def is_due(self) -> Any:
        """``schedstate(is_due, next)``: see :meth:`celeriac.schedules.schedule.is_due`."""
        return self.schedule.is_due(self.last_run_at)

    def update(self, other: ScheduleEntry) -> None:
        """Take the editable fields (task, schedule, args, kwargs, options) from ``other``."""
        self.task, self.schedule = other.task, other.schedule
        self.args, self.kwargs, self.options = other.args, other.kwargs, other.options

    def editable_fields_equal(self, other: ScheduleEntry) -> bool:
        return (self.task, self.args, self.kwargs, self.options, self.schedule) == (
            other.task, other.args, other.kwargs, other.options, other.schedule,
        )  # fmt: skip

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(vars(self).items())

    def __repr__(self) -> str:
        args = ", ".join([*(repr(a) for a in self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"<ScheduleEntry: {self.name} {self.task}({args}) {self.schedule!r}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ScheduleEntry):
            return self.name == other.name and self.editable_fields_equal(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class Scheduler:
    """Celery's scheduler interface; state in a :class:`~celeriac._beat_store.ScheduleStore`.

    The plain ``Scheduler`` keeps state in this process only; :class:`PersistentScheduler`
    (the default) uses the shared store chosen by :func:`store_for_app`.
    """

    Entry = ScheduleEntry

    def __init__(
        self,
        app: Celery,
        schedule: Mapping[str, Any] | None = None,
        max_interval: float | None = None,
        Producer: Any = None,
        lazy: bool = False,
        sync_every_tasks: int | None = None,
        *,
        store: ScheduleStore | None = None,
        schedule_filename: str | None = None,
        lease_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.app = app
        self.data: dict[str, ScheduleEntry] = {}
        self.max_interval = float(max_interval or app.conf.beat_max_loop_interval or DEFAULT_MAX_INTERVAL)
        self.lease_timeout = float(lease_timeout or app.conf.beat_lease_timeout)
        if self.lease_timeout <= 0:
            raise ImproperlyConfigured("beat_lease_timeout must be a positive number of seconds")
        self.schedule_filename = schedule_filename
        self.scope = app.main or "default"
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.store = store if store is not None else self.create_store()
        self.is_leader = False
        self._standing_by_logged = False
        self._extra = dict(schedule or {})
        if not lazy:
            self.setup_schedule()

    def create_store(self) -> ScheduleStore:
        return MemoryScheduleStore()

    # -- the schedule ----------------------------------------------------------------
    def setup_schedule(self) -> None:
        self.install_default_entries(self.data)
        self.merge_inplace(self.app.conf.beat_schedule)
        if self._extra:
            self.update_from_dict(self._extra)

    def install_default_entries(self, data: dict[str, ScheduleEntry]) -> None:
        """Celery's ``celery.backend_cleanup`` at 04:00, for result stores that don't expire results themselves."""
        if not self.app.conf.result_expires or "celery.backend_cleanup" in data:
            return
        backend = self.app.backend
        if getattr(backend, "cleanup", None) is None or getattr(backend, "supports_autoexpire", False):
            return
        data["celery.backend_cleanup"] = self._entry(
            "celery.backend_cleanup",
            {
                "task": "celery.backend_cleanup",
                "schedule": crontab(minute="0", hour="4"),
                "options": {"expires": 43200},
            },
        )

    def _entry(self, name: str, fields: Mapping[str, Any] | ScheduleEntry) -> ScheduleEntry:
        if isinstance(fields, ScheduleEntry):
            return fields
        if not isinstance(fields, Mapping):
            raise ImproperlyConfigured(f"beat_schedule[{name!r}] must be a dict with 'task' and 'schedule'")
        if "task" not in fields or "schedule" not in fields:
            raise ImproperlyConfigured(
                f"beat_schedule[{name!r}] needs 'task' and 'schedule' keys, got {sorted(fields)}"
            )
        unknown = set(fields) - {"task", "schedule", "args", "kwargs", "options", "relative"}
        if unknown:
            raise ImproperlyConfigured(f"beat_schedule[{name!r}]: unknown keys {sorted(unknown)}")
        try:
            return self.Entry(name=name, app=self.app, **fields)
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"beat_schedule[{name!r}]: {exc}") from None

    def update_from_dict(self, schedule: Mapping[str, Any]) -> None:
        self.data.update({name: self._entry(name, fields) for name, fields in schedule.items()})

    def merge_inplace(self, schedule: Mapping[str, Any]) -> None:
        """Make the entries those of ``schedule`` (keeping the defaults), updating existing ones in place."""
        defaults = {"celery.backend_cleanup"}
        for name in [n for n in self.data if n not in schedule and n not in defaults]:
            del self.data[name]
        for name, fields in schedule.items():
            entry = self._entry(name, fields)
            if name in self.data:
                self.data[name].update(entry)
            else:
                self.data[name] = entry

    def add(self, **kwargs: Any) -> ScheduleEntry:
        entry = self.Entry(app=self.app, **kwargs)
        self.data[entry.name] = entry
        return entry

    @property
    def schedule(self) -> dict[str, ScheduleEntry]:
        return self.data

    def get_schedule(self) -> dict[str, ScheduleEntry]:
        return self.data

    def set_schedule(self, schedule: dict[str, ScheduleEntry]) -> None:
        self.data = schedule

    # -- ticking ----------------------------------------------------------------------
    def tick(self) -> float:
        """Renew the lease, send what is due if this beat leads; seconds until the next tick."""
        renew_every = self.lease_timeout / 3
        if not self._hold_lease():
            return max(min(renew_every, self.max_interval), _MIN_SLEEP)
        states = self._load_states()
        next_check = min(self.max_interval, renew_every)
        for entry in list(self.data.values()):
            state = states[entry.name]
            entry.last_run_at, entry.total_run_count = state.last_run_at, state.total_run_count
            is_due, next_seconds = self.is_due(entry)
            if is_due:
                self._claim_and_send(entry, state)
            next_check = min(next_check, next_seconds)
        return max(next_check, _MIN_SLEEP)

    def is_due(self, entry: ScheduleEntry) -> Any:
        return entry.is_due()

    def _hold_lease(self) -> bool:
        leader = self.store.acquire(self.owner, self.lease_timeout)
        if leader and not self.is_leader:
            logger.info("beat: Acquired the leader lease (%s); sending due tasks.", self.store.description)
        elif self.is_leader and not leader:
            logger.warning("beat: Lost the leader lease; another beat sends due tasks now.")
        elif not leader and not self._standing_by_logged:
            logger.info("beat: Another beat holds the leader lease (%s); standing by.", self.store.description)
        self._standing_by_logged = self._standing_by_logged or not leader
        self.is_leader = leader
        return leader

    def _load_states(self) -> dict[str, EntryState]:
        states = self.store.load()
        missing = [entry for name, entry in self.data.items() if name not in states]
        for entry in missing:
            # A new entry starts its first interval now (Celery's rule); with several beats the first one's time wins.
            self.store.add(entry.name, encode_state(entry.default_now(), 0))
        return self.store.load() if missing else states

    def _claim_and_send(self, entry: ScheduleEntry, state: EntryState) -> None:
        now = entry.default_now()
        if not self.store.claim(self.owner, entry.name, state.version, encode_state(now, state.total_run_count + 1)):
            logger.info("beat: %s was recorded by another beat (or the lease ran out); not sending it.", entry.name)
            return
        entry.last_run_at, entry.total_run_count = now, state.total_run_count + 1
        # The id is derived from the state the run was claimed from: were a run ever sent
        # twice, both messages would carry one id, and result stores would see one task.
        task_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"celeriac-beat:{self.scope}:{entry.name}:{state.version}"))
        self.apply_entry(entry, task_id=task_id)

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None, **options: Any) -> None:
        logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            result = self.apply_async(entry, producer=producer, advance=False, **options)
        except Exception as exc:
            logger.error("Message Error: %s", exc, exc_info=True)
        else:
            logger.debug("%s sent. id->%s", entry.task, getattr(result, "id", None))

    def apply_async(self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        """Send ``entry``'s task now (``advance`` is accepted for Celery compatibility: runs are recorded by tick)."""
        args = [a() if isinstance(a, BeatLazyFunc) else a for a in entry.args]
        kwargs_ = {k: v() if isinstance(v, BeatLazyFunc) else v for k, v in entry.kwargs.items()}
        options = {**kwargs, **entry.options}
        try:
            task = self.app.tasks.get(entry.task)
            if task is not None:
                return task.apply_async(args, kwargs_, **options)
            return self.send_task(entry.task, args, kwargs_, **options)
        except Exception as exc:
            raise SchedulingError(f"Couldn't apply scheduled task {entry.name}: {exc}") from exc

    def send_task(self, *args: Any, **kwargs: Any) -> Any:
        return self.app.send_task(*args, **kwargs)

    def should_sync(self) -> bool:
        return False  # every run is recorded in the store as it is claimed

    def sync(self) -> None:
        return None

    def close(self) -> None:
        """Give up the lease (a standby beat takes over at once) and close the store."""
        try:
            self.store.release(self.owner)
        except OperationalError as exc:
            logger.warning("beat: couldn't release the leader lease: %s", exc)
        self.store.close()

    @property
    def info(self) -> str:
        return f"    . db -> {self.store.description}\n    . lease -> {self.lease_timeout:g}s"


class PersistentScheduler(Scheduler):
    """The default: state and lease in the shared store chosen by :func:`store_for_app`."""

    def create_store(self) -> ScheduleStore:
        return store_for_app(self.app, self.schedule_filename, self.scope)


def store_for_app(app: Celery, schedule_filename: str | None = None, scope: str = "default") -> ScheduleStore:
    """The store beat uses for ``app`` (see the module docstring for the order)."""
    from ._sqlite import path_from_url

    url = app.broker_url
    scheme = url.split(":", 1)[0].lower()
    explicit = schedule_filename or app.conf.changes().get("beat_schedule_filename")
    if explicit:
        if scheme in _REDIS_SCHEMES:
            logger.warning("beat: schedule state in the local file %s: beats on other hosts won't share it", explicit)
        return _sqlite_store(os.path.abspath(explicit), scope)
    if scheme == "sqlite":
        return _sqlite_store(path_from_url(url), scope)
    if scheme in _REDIS_SCHEMES:
        return RedisScheduleStore(url, scope, app.conf.broker_transport_options or {}, use_ssl=app.conf.broker_use_ssl)
    if scheme == "memory":
        return MemoryScheduleStore()
    return _sqlite_store(os.path.abspath(app.conf.beat_schedule_filename), scope)


def _sqlite_store(path: str, scope: str) -> SQLiteScheduleStore:
    store = SQLiteScheduleStore(path, scope)
    try:
        store.load()
    except OperationalError as exc:
        raise ImproperlyConfigured(
            f"can't use {path} for the beat schedule ({exc}); if it is an old Celery schedule file, "
            "delete it or pass another path with -s"
        ) from None
    return store


def load_scheduler_class(spec: Any) -> type[Scheduler]:
    """``beat_scheduler`` / ``-S``: a class or an import path (Celery's paths map to ours)."""
    if isinstance(spec, type):
        return spec
    from .config import load_object

    path = _ALIASES.get(str(spec), str(spec))
    try:
        cls = load_object(path)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ImproperlyConfigured(f"can't load the beat scheduler {spec!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Scheduler)):
        raise ImproperlyConfigured(f"beat scheduler {spec!r} is not a celeriac.beat.Scheduler subclass")
    return cls


class Service:
    """Runs a scheduler until stopped: ``Service(app).start()`` is what ``celeriac beat`` does."""

    def __init__(
        self,
        app: Celery,
        max_interval: float | None = None,
        schedule_filename: str | None = None,
        scheduler_cls: Any = None,
        lease_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.max_interval = max_interval or app.conf.beat_max_loop_interval
        self.schedule_filename = schedule_filename
        self.scheduler_cls = load_scheduler_class(scheduler_cls or app.conf.beat_scheduler)
        self.lease_timeout = lease_timeout
        self._is_shutdown = threading.Event()
        self._is_stopped = threading.Event()
        self._scheduler: Scheduler | None = None

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            self._scheduler = self.get_scheduler()
        return self._scheduler

    def get_scheduler(self, lazy: bool = False) -> Scheduler:
        prepare_app(self.app)
        return self.scheduler_cls(
            self.app,
            max_interval=self.max_interval or None,
            lazy=lazy,
            schedule_filename=self.schedule_filename,
            lease_timeout=self.lease_timeout,
        )

    def start(self, embedded_process: bool = False) -> None:
        logger.info("beat: Starting...")
        scheduler = self.scheduler
        signals.beat_init.send(sender=self)
        if embedded_process:
            signals.beat_embedded_init.send(sender=self)
        try:
            while not self._is_shutdown.is_set():
                try:
                    interval = scheduler.tick()
                except OperationalError as exc:
                    # The store is unreachable: keep trying; if this beat led, its lease runs out meanwhile.
                    logger.error("beat: %s; retrying", exc)
                    interval = min(scheduler.lease_timeout / 3, 5.0)
                logger.debug("beat: Waking up in %.2f seconds.", interval)
                self._is_shutdown.wait(interval)
        except (KeyboardInterrupt, SystemExit):
            self._is_shutdown.set()
        finally:
            self.sync()

    def sync(self) -> None:
        if self._scheduler is not None:
            self._scheduler.close()
        self._is_stopped.set()

    def stop(self, wait: bool = False) -> None:
        logger.info("beat: Shutting down...")
        self._is_shutdown.set()
        if wait:
            self._is_stopped.wait()


class _Threaded(threading.Thread):
    """Beat in a thread of the worker (``worker -B``)."""

    def __init__(self, app: Celery, **kwargs: Any) -> None:
        super().__init__(name="Beat", daemon=True)
        self.app = app
        self.service = Service(app, **kwargs)

    def run(self) -> None:
        self.app.set_current()
        try:
            self.service.start(embedded_process=True)
        except Exception:
            logger.exception("beat: the embedded scheduler stopped")

    def stop(self, timeout: float = 30.0) -> None:
        self.service.stop()
        if self.is_alive():
            self.join(timeout)  # it releases the lease on the way out


def EmbeddedService(app: Celery, max_interval: float | None = None, **kwargs: Any) -> _Threaded:
    """Beat to run inside a worker; a thread (``thread=`` is accepted for Celery compatibility)."""
    kwargs.pop("thread", None)
    return _Threaded(app, max_interval=max_interval, **kwargs)


def prepare_app(app: Celery) -> None:
    """Import the app's modules and fire ``on_after_configure`` once, before the schedule is read.

    Celery sends ``on_after_configure`` when the settings are first read, which is after
    the app module was imported, so receivers that call ``add_periodic_task`` run then.
    celeriac reads settings eagerly, so beat sends it here (receivers connected before a
    ``config_from_object`` call may run twice; ``add_periodic_task`` is idempotent).
    """
    if getattr(app, "_beat_prepared", False):
        return
    app._beat_prepared = True  # type: ignore[attr-defined]
    app.import_default_modules()
    app.on_after_configure.send(sender=app, source=app.conf)
    app.finalize()


def periodic_task_entry(
    app: Celery, schedule: Any, sig: Any, args: Any = (), kwargs: Any = None, name: str | None = None, **opts: Any
) -> tuple[str, dict[str, Any]]:
    """``(key, beat_schedule entry)`` for ``app.add_periodic_task`` (Celery's rules)."""
    from .canvas import Signature

    if isinstance(sig, Signature):
        sig = sig.clone(tuple(args or ()), dict(kwargs or {}))
    else:
        sig = app.signature(getattr(sig, "name", sig), tuple(args or ()), dict(kwargs or {}))
    entry = {
        "schedule": schedule,
        "task": sig["task"],
        "args": tuple(sig.get("args") or ()),
        "kwargs": dict(sig.get("kwargs") or {}),
        "options": {**dict(sig.get("options") or {}), **opts},
    }
    return name or repr(sig), entry
