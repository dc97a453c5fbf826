"""The application: settings, the task registry, and sending tasks to the broker."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar, overload

from . import _process, _state, signals
from .backends import ResultBackend, create_backend
from .brokers import Broker, broker_class, create_broker
from .brokers.base import Envelope, QueueSpec
from .canvas import Signature
from .config import Settings, load_object
from .exceptions import EncodeError, ImproperlyConfigured, OperationalError
from .protocol import TaskMessage, encode, new_id
from .queues import destination, queue_spec
from .registry import TaskRegistry, gen_task_name
from .result import AsyncResult
from .result import AsyncResult as _AsyncResult
from .routing import Router, annotate_task, queue_not_found
from .signals import Signal
from .task import AsyncTask
from .task import Task as BaseTask

if TYPE_CHECKING:
    from .control import Control
    from .events import Events

__all__ = ["Celery", "shared_task"]

logger = logging.getLogger("celeriac.app")

P = ParamSpec("P")
R = TypeVar("R")


class _TaskDecorator(Protocol):
    """What ``@app.task(...)`` returns: a decorator, typed for sync and ``async def`` functions."""

    @overload
    def __call__(self, fun: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...

    @overload
    def __call__(self, fun: Callable[P, R], /) -> BaseTask[P, R]: ...


class _BoundTaskDecorator(Protocol):
    """``@app.task(bind=True)``: the first parameter (``self``, the task) is not part of the call."""

    @overload
    def __call__(self, fun: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...

    @overload
    def __call__(self, fun: Callable[Concatenate[Any, P], R], /) -> BaseTask[P, R]: ...


DEFAULT_BROKER_URL = "sqlite://"

# Applied to every app unless ``fixups=`` says otherwise; each is called with the app and
# does nothing unless its framework is in use (the Django one: DJANGO_SETTINGS_MODULE is set).
BUILTIN_FIXUPS = ("celeriac.contrib.django.fixup:fixup",)

# apply_async options that Celery hands to the broker as message properties (SQS FIFO queues read them).
BROKER_MESSAGE_PROPERTIES = ("MessageGroupId", "MessageDeduplicationId")

# Functions decorated with @shared_task, registered with every app as it is created.
_shared_tasks: list[BaseTask[Any, Any]] = []
_shared_lock = threading.Lock()


def _original(task: BaseTask[Any, Any]) -> Any:
    """The function a task was made from (under the pydantic wrapper, if any)."""
    wrapped = getattr(task, "__wrapped__", None)
    return getattr(wrapped, "__celeriac_original__", wrapped)


def _with_pydantic(app: Celery | None, fun: Callable[..., Any], name: str, options: dict[str, Any]) -> Any:
    """Apply ``pydantic=True`` (and its ``pydantic_*`` options, taken out of ``options``)."""
    enabled = options.pop("pydantic", False)
    strict = options.pop("pydantic_strict", False)
    context = options.pop("pydantic_context", None)
    dump_kwargs = options.pop("pydantic_dump_kwargs", None)
    if not enabled:
        return fun
    from ._pydantic import pydantic_wrapper

    wrapper = pydantic_wrapper(app or _state.get_current_app(), fun, name, strict, context, dump_kwargs)
    wrapper.__celeriac_original__ = fun  # type: ignore[attr-defined]
    return wrapper


def _unpickle_task(name: str) -> BaseTask[Any, Any]:
    return _state.get_current_app().tasks[name]


class Celery:
    """A celeriac application (Celery's name, so ``from celeriac import Celery`` is a drop-in).

    Args:
        main: the name of the main module; tasks defined in ``__main__`` are named after it.
        broker: broker URL (default: ``broker_url`` setting, else the embedded SQLite broker).
        backend: result backend URL or class (default: ``result_backend``; with the embedded
            broker, the same SQLite file).
        include: modules the worker imports at start-up (where tasks are defined).
        set_as_current: make this the current app (the one ``shared_task`` uses).
        fixups: import paths of callables ``fixup(app)`` applied when the app is created
            (default: :data:`BUILTIN_FIXUPS`, the Django fixup, which acts only when
            ``DJANGO_SETTINGS_MODULE`` is set; see :mod:`celeriac.contrib.django`).
        **kwargs: any setting, e.g. ``task_serializer='json'``.
    """

    def __init__(
        self,
        main: str | None = None,
        loader: Any = None,
        backend: Any = None,
        amqp: Any = None,
        events: Any = None,
        log: Any = None,
        control: Any = None,
        set_as_current: bool = True,
        tasks: Any = None,
        broker: str | None = None,
        include: Iterable[str] | None = None,
        changes: Mapping[str, Any] | None = None,
        config_source: Any = None,
        fixups: Any = None,
        task_cls: type[BaseTask[Any, Any]] | str | None = None,
        autofinalize: bool = True,
        namespace: str | None = None,
        strict_typing: bool = True,
        **kwargs: Any,
    ) -> None:
        self.main = main
        self.namespace = namespace
        self.strict_typing = strict_typing
        self.autofinalize = autofinalize
        self.conf = Settings()
        if changes:
            self.conf.update(changes)
        if config_source is not None:
            self.config_from_object(config_source)
        if broker:
            self.conf.broker_url = broker
        if backend:
            self.conf.result_backend = backend
        if include:
            self.conf.include = tuple(include)
        for key, value in kwargs.items():
            self.conf[key] = value
        if isinstance(task_cls, str):
            task_cls = load_object(task_cls)
        self.task_cls: type[BaseTask[Any, Any]] = task_cls or BaseTask  # type: ignore[assignment]
        self.tasks = TaskRegistry()
        self.finalized = False
        self._oid = new_id()
        self._oid_pid = os.getpid()
        self._lock = threading.RLock()
        self._broker: Broker | None = None
        self._broker_pid: int | None = None
        self._declared_queues: set[str] = set()
        self._routing_mode: tuple[Any, bool] | None = None
        self._send_settings: _SendSettings | None = None
        self._control: Control | None = None
        self._sent_dispatcher: Any = None
        self._sent_dispatcher_pid = 0  # declared through self._broker before the first publish
        self._queue_specs: dict[tuple[Any, ...], QueueSpec] = {}
        self._backend: ResultBackend | None = None
        self._sent_here = threading.local()  # .last: this thread's last sent result, for the read-ahead
        self._router: Router | None = None
        self._autodiscover: list[tuple[Any, str]] = []
        # Celery's app-level signals.
        self.on_configure = Signal("app.on_configure")
        self.on_after_configure = Signal("app.on_after_configure")
        self.on_after_finalize = Signal("app.on_after_finalize")
        self.on_after_fork = Signal("app.on_after_fork")
        self.fixups = tuple(BUILTIN_FIXUPS if fixups is None else fixups)
        self._fixups = [(load_object(f) if isinstance(f, str) else f)(self) for f in self.fixups]
        self._register_builtin_tasks()
        with _shared_lock:
            for task in _shared_tasks:
                self.tasks.setdefault(task.name, task)
        _state.register_app(self)
        if set_as_current:
            self.set_current()

    # -- identity ---------------------------------------------------------------
    def set_current(self) -> None:
        """Make this the current app (used by ``shared_task`` and ``current_app``)."""
        _state.set_current_app(self)

    def set_default(self) -> None:
        self.set_current()

    @property
    def Task(self) -> type[BaseTask[Any, Any]]:
        """The base class for this app's tasks (subclass it for class-based tasks)."""
        return self.task_cls

    @property
    def oid(self) -> str:
        """This app's id in this process (a forked child gets its own): the ``reply_to`` of the tasks it sends."""
        pid = _process.pid()
        if self._oid_pid != pid:
            self._oid, self._oid_pid = new_id(), pid
        return self._oid

    @property
    def origin_name(self) -> str:
        return f"gen{os.getpid()}@{socket.gethostname()}"

    def __repr__(self) -> str:
        return f"<Celery {self.main or '__main__'} at {id(self):#x}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return _state.get_current_app, ()

    # -- configuration ------------------------------------------------------------
    def config_from_object(
        self, obj: Any, silent: bool = False, force: bool = False, namespace: str | None = None
    ) -> bool:
        """Load settings from a module (``'celeryconfig'``), ``'module:attr'``, an object or a dict.

        Args:
            obj: the source, or its import path.
            silent: ignore a source that can't be imported.
            namespace: only take keys with this prefix, e.g. ``'CELERY'`` for ``CELERY_BROKER_URL`` in Django settings.
        """
        namespace = namespace or self.namespace
        try:
            self.conf.load_from_object(obj, namespace=namespace)
        except ImportError:
            # Celery raises the ImportError itself (code catches it), or returns False when silent.
            if silent:
                return False
            raise
        self._router = None
        self.on_after_configure.send(sender=self, source=self.conf)
        return True

    def config_from_envvar(self, variable_name: str, silent: bool = False, force: bool = False) -> bool:
        """Load settings from the module named by an environment variable."""
        module_name = os.environ.get(variable_name)
        if not module_name:
            if silent:
                return False
            raise ImproperlyConfigured(
                f"The environment variable {variable_name!r} is not set, and as such the configuration "
                "could not be loaded. Please set this variable and make it point to a configuration module."
            )
        return self.config_from_object(module_name, silent=silent, force=force)

    def add_defaults(self, values: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> None:
        mapping = values() if callable(values) else values
        for key, value in mapping.items():
            if key not in self.conf.changes():
                self.conf[key] = value

    def setup_security(
        self,
        allowed_serializers: Iterable[str] | None = None,
        key: str | None = None,
        key_password: str | bytes | None = None,
        cert: str | None = None,
        store: str | None = None,
        digest: str | None = None,
        serializer: str = "json",
    ) -> None:
        """Sign every message with ``task_serializer='auth'`` (Celery's message signing).

        Needs ``task_serializer='auth'`` and ``accept_content=['auth']``; ``key``, ``cert``
        and ``store`` default to the ``security_key``, ``security_certificate`` and
        ``security_cert_store`` settings. Affects every app in the process, as in Celery.
        See :mod:`celeriac.security`.
        """
        from .security import setup_security

        setup_security(allowed_serializers, key, key_password, cert, store, digest, serializer, app=self)

    @property
    def timezone(self) -> tzinfo:
        from zoneinfo import ZoneInfo

        name = self.conf.timezone
        if name is None:
            return timezone.utc
        return ZoneInfo(name) if isinstance(name, str) else name

    def now(self) -> datetime:
        """The current time, aware, in the app's time zone (UTC with ``enable_utc``)."""
        return datetime.now(timezone.utc if self.conf.enable_utc else self.timezone)

    # -- tasks ----------------------------------------------------------------------
    @overload
    def task(self, fun: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...

    @overload
    def task(self, fun: Callable[P, R], /) -> BaseTask[P, R]: ...

    @overload
    def task(
        self,
        *,
        bind: Literal[True],
        name: str | None = ...,
        base: type[BaseTask[Any, Any]] | None = ...,
        **options: Any,
    ) -> _BoundTaskDecorator: ...

    @overload
    def task(
        self,
        *,
        name: str | None = ...,
        bind: Literal[False] = ...,
        base: type[BaseTask[Any, Any]] | None = ...,
        **options: Any,
    ) -> _TaskDecorator: ...

    def task(self, *args: Any, **opts: Any) -> Any:
        """Decorator that turns a function into a task: ``@app.task`` or ``@app.task(bind=True, ...)``."""
        if len(args) == 1 and callable(args[0]) and not opts:
            return self._task_from_fun(args[0])
        if args:
            raise TypeError("app.task() takes options as keyword arguments only, e.g. @app.task(name='x')")

        def decorator(fun: Callable[P, R]) -> BaseTask[P, R]:
            return self._task_from_fun(fun, **opts)

        return decorator

    def _task_from_fun(
        self,
        fun: Callable[..., Any],
        name: str | None = None,
        base: type[BaseTask[Any, Any]] | None = None,
        bind: bool = False,
        **options: Any,
    ) -> BaseTask[Any, Any]:
        if not callable(fun):
            raise TypeError(f"@app.task decorates functions, got {fun!r}")
        name = name or self.gen_task_name(fun.__name__, fun.__module__)
        existing = self.tasks.get(name)
        if existing is not None and _original(existing) is fun:
            return existing
        fun = _with_pydantic(self, fun, name, options)
        cls = base or self.task_cls
        task = cls(fun, app=self, name=name, bind=bind, **options)
        return self.register_task(task)

    def register_task(self, task: BaseTask[Any, Any] | type[BaseTask[Any, Any]], **options: Any) -> BaseTask[Any, Any]:
        """Register a task instance (or class-based task) with this app."""
        if isinstance(task, type):
            task = task(app=self, **options)
        if not task.name:
            task.name = self.gen_task_name(type(task).__name__, type(task).__module__)
        if task._app is None:
            task._app = self
        self.tasks.register(task)
        if self.finalized:
            annotate_task(task, self.conf.task_annotations)
        task.on_bound(self)
        return task

    def gen_task_name(self, name: str, module: str) -> str:
        return gen_task_name(self.main, name, module)

    def finalize(self, auto: bool = False) -> None:
        """Apply ``task_annotations`` and pending autodiscovery; done once, on first use."""
        with self._lock:
            if self.finalized:
                return
            self.finalized = True
            with _shared_lock:
                for shared in _shared_tasks:
                    self.tasks.setdefault(shared.name, shared)
            for task in self.tasks.values():
                annotate_task(task, self.conf.task_annotations)
        self.on_after_finalize.send(sender=self)

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
        related_name: str = "tasks",
        force: bool = False,
    ) -> None:
        """Import ``<package>.tasks`` for each package (when the worker starts, or now with ``force``)."""
        self._autodiscover.append((packages, related_name))
        if force:
            self._run_autodiscover()

    def _run_autodiscover(self) -> None:
        pending, self._autodiscover = self._autodiscover, []
        for packages, related_name in pending:
            names = packages() if callable(packages) else packages
            if names is None:
                names = _django_installed_apps()
            for package in names:
                module = f"{package}.{related_name}" if related_name else package
                try:
                    importlib.import_module(module)
                except ModuleNotFoundError as exc:
                    if exc.name not in (module, package):
                        raise

    def add_periodic_task(
        self, schedule: Any, sig: Any, args: Any = (), kwargs: Any = (), name: str | None = None, **opts: Any
    ) -> str:
        """Add ``sig`` to ``beat_schedule`` under ``name`` (default: the signature's repr); returns the key.

        Usually called from an ``@app.on_after_configure.connect`` receiver, which beat fires at start.
        """
        from .beat import periodic_task_entry

        key, entry = periodic_task_entry(self, schedule, sig, args, kwargs, name, **opts)
        if name is None and self.conf.beat_schedule.get(key, entry) != entry:
            logger.warning("Periodic task key=%r shadowed a previous unnamed periodic task.", key)
        # A new dict: the default one is shared by every app.
        self.conf.beat_schedule = {**self.conf.beat_schedule, key: entry}
        return key

    def import_default_modules(self) -> None:
        """Import ``imports`` and ``include`` modules and run autodiscovery (the worker does this at start)."""
        signals.import_modules.send(sender=self)
        for module in tuple(self.conf.imports or ()) + tuple(self.conf.include or ()):
            importlib.import_module(module)
        self._run_autodiscover()

    def _register_builtin_tasks(self) -> None:
        from .builtins import register_builtins

        register_builtins(self)

    # -- broker and backend ----------------------------------------------------------
    @property
    def broker_url(self) -> str:
        url = self.conf.broker_url or self.conf.broker_write_url
        if isinstance(url, (list, tuple)):
            url = url[0] if url else None
        if not url:
            return DEFAULT_BROKER_URL
        return str(url).split(";", 1)[0].strip()

    def connection_for_write(self) -> Broker:
        """The broker this process publishes through, opened on first use (per process)."""
        pid = _process.pid()
        broker = self._broker
        if broker is not None and self._broker_pid == pid:
            return broker
        with self._lock:
            if self._broker is None or self._broker_pid != pid:
                broker = self.create_broker()
                broker.open()
                self._broker, self._broker_pid = broker, pid
                self._declared_queues = set()
            return self._broker

    connection_for_read = connection_for_write

    def create_broker(self) -> Broker:
        """A new, unopened broker connection (the worker's consumer uses its own)."""
        options = {
            "connect_timeout": float(self.conf.broker_connection_timeout),
            "use_ssl": self.conf.broker_use_ssl,
            **{key.removeprefix("broker_"): self.conf[key] for key in broker_class(self.broker_url).app_settings},
            **(self.conf.broker_transport_options or {}),
        }
        return create_broker(self.broker_url, options)

    @property
    def backend(self) -> ResultBackend:
        """The result backend (created on first use; connections open lazily)."""
        backend = self._backend
        if backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = create_backend(
                        self._backend_spec(), self, self.conf.result_backend_transport_options
                    )
                backend = self._backend
        return backend

    def _backend_spec(self) -> Any:
        spec = self.conf.result_backend
        if spec:
            return spec
        broker_url = self.broker_url
        if broker_url.startswith("sqlite:"):
            return broker_url  # the embedded default keeps results in the same file
        return "disabled://"

    def close(self) -> None:
        """Close broker and backend connections of this process."""
        if self._control is not None:
            self._control.close()
        if self._sent_dispatcher is not None and self._sent_dispatcher_pid == os.getpid():
            self._sent_dispatcher.close()
            self._sent_dispatcher = None
        with self._lock:
            broker, self._broker = self._broker, None
            backend, self._backend = self._backend, None
        if broker is not None:
            broker.close()
        if backend is not None:
            backend.close()

    def __enter__(self) -> Celery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- remote control and events ------------------------------------------------------
    @property
    def control(self) -> Control:
        """Remote control of the workers (``app.control.inspect().active()``, ``app.control.revoke(id)``)."""
        if self._control is None:
            from .control import Control

            self._control = Control(self)
        return self._control

    @property
    def events(self) -> Events:
        """Celery's ``app.events``: ``Dispatcher``, ``Receiver`` and ``State``."""
        from .events import Events

        return Events(self)

    # -- routing --------------------------------------------------------------------
    @property
    def router(self) -> Router:
        router = self._router
        if router is None:
            router = self._router = Router(self)
        return router

    def configured_queue_names(self) -> list[str]:
        queues = self.conf.task_queues
        if not queues:
            return [self.conf.task_default_queue]
        if isinstance(queues, Mapping):
            return list(queues)
        return [q if isinstance(q, str) else q.name for q in queues]

    def queue_spec(self, name: str, queue: Any = None) -> QueueSpec:
        """How queue ``name`` is declared (``task_queues`` and Celery's defaults; see :mod:`celeriac.queues`)."""
        if queue is not None:
            return queue_spec(self, name, queue)
        # Sending a task asks for this every time: remembered until a setting changes.
        key = (name, self.conf.version)
        spec = self._queue_specs.get(key)
        if spec is None:
            if len(self._queue_specs) > 1000:
                self._queue_specs.clear()
            spec = self._queue_specs[key] = queue_spec(self, name)
        return spec

    def check_queue(self, name: str) -> None:
        if self.conf.task_create_missing_queues or not self.conf.task_queues:
            return
        if name not in self.configured_queue_names():
            raise queue_not_found(name)

    # -- sending ----------------------------------------------------------------------
    async def asend_task(
        self, name: str, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult[Any]:
        """``send_task`` for async code (same arguments); doesn't block the event loop."""
        from ._aio import to_thread

        return await to_thread(self.send_task, name, args, kwargs, **options)

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        countdown: float | None = None,
        eta: datetime | str | None = None,
        task_id: str | None = None,
        producer: Any = None,
        connection: Any = None,
        router: Router | None = None,
        result_cls: type[AsyncResult[Any]] | None = None,
        expires: float | datetime | str | None = None,
        publisher: Any = None,
        link: Any = None,
        link_error: Any = None,
        add_to_parent: bool = True,
        group_id: str | None = None,
        group_index: int | None = None,
        retries: int = 0,
        chord: Any = None,
        reply_to: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        route_name: str | None = None,
        shadow: str | None = None,
        chain: Any = None,
        task_type: BaseTask[Any, Any] | None = None,
        replaced_task_nesting: int = 0,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Send a task by name (the worker need not share this process's code).

        Returns:
            An :class:`~celeriac.result.AsyncResult` for the task.

        Raises:
            OperationalError: the broker could not be reached within ``broker_connection_timeout``.
            EncodeError: the message body is larger than ``task_max_message_size``.
        """
        if self.autofinalize and not self.finalized:
            self.finalize(auto=True)
        conf = self._sending()
        task_id = task_id or new_id()
        args = tuple(args) if args else ()
        kwargs = dict(kwargs) if kwargs else {}
        parent = _state.current_task_var.get()
        if parent is not None:
            request = parent[1]
            parent_id = parent_id or request.id
            root_id = root_id or request.root_id or request.id
            if conf.inherit_parent_priority and options.get("priority") is None:
                options["priority"] = (request.properties or {}).get("priority")

        route = (router or self.router).route(options, route_name or name, args, kwargs, task_type)
        queue = route["queue"]
        if countdown is None and eta is None and expires is None:
            eta_dt = expires_dt = None
        else:
            now = datetime.now(timezone.utc)
            eta_dt = _eta(now, countdown, eta)
            expires_dt = _expires(now, expires)
        priority = route.get("priority")
        if priority is None:
            priority = conf.default_priority
        ignore_result = bool(options.get("ignore_result", conf.ignore_result))
        serializer = route.get("serializer") or conf.serializer
        headers = options.get("headers")
        message = TaskMessage(
            id=task_id,
            task=name,
            args=args,
            kwargs=kwargs,
            callbacks=_signatures(link),
            errbacks=_signatures(link_error),
            chain=chain,
            chord=chord,
            eta=eta_dt.isoformat() if eta_dt else None,
            expires=expires_dt.isoformat() if expires_dt else None,
            retries=retries,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            root_id=root_id or task_id,
            parent_id=parent_id,
            group=group_id,
            group_index=group_index,
            shadow=shadow,
            ignore_result=ignore_result,
            argsrepr=options.get("argsrepr"),
            kwargsrepr=options.get("kwargsrepr"),
            replaced_task_nesting=replaced_task_nesting,
            reply_to=reply_to or self.oid,
            priority=priority,
            delivery_mode=_delivery_mode(route.get("delivery_mode", conf.delivery_mode)),
            extra_headers=dict(headers) if headers else {},
        )
        envelope = encode(message, serializer)
        limit = conf.max_message_size
        if limit and len(envelope.body) > limit:
            raise EncodeError(
                f"task {name}[{task_id}]: the message body is {len(envelope.body)} bytes, over "
                f"task_max_message_size ({limit} bytes); pass large data by reference (a path, a URL, a key)"
            )
        if options:
            extra = {key: options[key] for key in BROKER_MESSAGE_PROPERTIES if options.get(key) is not None}
            if extra:
                envelope = dataclasses.replace(envelope, properties={**envelope.properties, **extra})
        spec = self.queue_spec(queue, route.get("queue_object"))
        exchange, routing_key = destination(spec, route) if self._exchange_routing() else ("", queue)
        if not ignore_result:
            # Celery's hook: the rpc:// backend declares its reply queue before the first task goes out.
            self.backend.on_task_call(None, task_id)
        self._publish(envelope, message, exchange=exchange, routing_key=routing_key, queue=spec, eta=eta_dt)
        result = (result_cls or AsyncResult)(task_id, task_name=name, app=self)
        result.sent_at = time.monotonic()
        if not ignore_result and self.backend.read_ahead:
            self._link_sent(result)
        if parent is not None and add_to_parent and (task_type is None or task_type.trail):
            parent[1].add_trail(result)
        return result

    def _link_sent(self, result: AsyncResult[Any]) -> None:
        """Link ``result`` after the one this thread sent before it, for :meth:`AsyncResult.get`'s
        read-ahead: weakly (a result nobody holds any more is neither kept nor read), and per thread
        (the requests a threaded web server handles at once don't read each other's results)."""
        ref = weakref.ref(result)
        here = self._sent_here
        previous = getattr(here, "last", None)
        last = previous() if previous is not None else None
        if last is not None:
            last._next_sent = ref
        here.last = ref

    def _sending(self) -> _SendSettings:
        conf, settings = self._send_settings, self.conf
        if conf is None or conf.settings is not settings or conf.version != settings.version:
            conf = self._send_settings = _SendSettings(settings)
        return conf

    def _exchange_routing(self) -> bool:
        """Does this app's broker publish through exchanges (AMQP) or straight to queues?"""
        broker = self._broker
        if broker is not None and self._broker_pid == _process.pid():
            return broker.exchange_routing  # the broker the message goes to
        key = (self.conf.version, os.environ.get("CELERIAC_BROKER_URL"), os.environ.get("CELERY_BROKER_URL"))
        if self._routing_mode is None or self._routing_mode[0] != key:
            self._routing_mode = (key, broker_class(self.broker_url).exchange_routing)
        return self._routing_mode[1]

    def _publish(
        self,
        envelope: Envelope,
        message: TaskMessage,
        *,
        exchange: str,
        routing_key: str,
        queue: QueueSpec,
        eta: datetime | None,
    ) -> None:
        sender = message.task
        conf = self._sending()
        if signals.before_task_publish.has_listeners():
            signals.before_task_publish.send(
                sender=sender,
                body=[list(message.args), dict(message.kwargs), message.embed],
                exchange=exchange,
                routing_key=routing_key,
                headers=envelope.headers,
                properties=envelope.properties,
                declare=[],
                retry_policy=conf.retry_policy,
            )
        policy = conf.retry_policy or {}
        retries_left = int(policy.get("max_retries", 3)) if conf.publish_retry else 0
        interval = float(policy.get("interval_start", 0))
        # Retries never stretch a publish past the connection timeout: delay() fails fast.
        deadline = time.monotonic() + conf.connection_timeout
        while True:
            try:
                broker = self.connection_for_write()
                if queue.name not in self._declared_queues:
                    # As Celery does: a message for a queue that doesn't exist yet would be dropped (AMQP).
                    broker.declare_queue(queue)
                    self._declared_queues.add(queue.name)
                not_before = eta if broker.native_delay else None
                broker.publish(envelope, exchange=exchange, routing_key=routing_key, not_before=not_before)
                break
            except OperationalError:
                if retries_left <= 0 or time.monotonic() + interval >= deadline:
                    raise
                retries_left -= 1
                time.sleep(interval)
                interval = min(float(policy.get("interval_max", 1)), interval + float(policy.get("interval_step", 0.2)))
        if conf.send_sent_event:
            self._send_sent_event(message, exchange, routing_key, queue.name)
        if signals.after_task_publish.has_listeners():
            signals.after_task_publish.send(
                sender=sender,
                body=[list(message.args), dict(message.kwargs), message.embed],
                exchange=exchange,
                routing_key=routing_key,
                headers=envelope.headers,
                properties=envelope.properties,
            )

    def _send_sent_event(self, message: TaskMessage, exchange: str, routing_key: str, queue: str) -> None:
        """``task-sent``, with ``task_send_sent_event``: from the client, as Celery's."""
        from .events import EventDispatcher

        if self._sent_dispatcher is None or self._sent_dispatcher_pid != os.getpid():
            self._sent_dispatcher, self._sent_dispatcher_pid = EventDispatcher(self, self.origin_name), os.getpid()
        self._sent_dispatcher.send(
            "task-sent", uuid=message.id, root_id=message.root_id, parent_id=message.parent_id, name=message.task,
            args=message.argsrepr, kwargs=message.kwargsrepr, retries=message.retries, eta=message.eta,
            expires=message.expires, queue=queue, exchange=exchange, routing_key=routing_key,
        )  # fmt: skip

    def AsyncResult(
        self,
        id: str,
        backend: ResultBackend | None = None,
        task_name: str | None = None,
        parent: AsyncResult[Any] | None = None,
    ) -> AsyncResult[Any]:
        """A handle on the result of task ``id``."""
        return AsyncResult(id, backend=backend, task_name=task_name, app=self, parent=parent)

    def GroupResult(
        self, id: str | None = None, results: Any = None, parent: _AsyncResult[Any] | None = None, **kwargs: Any
    ) -> Any:
        """A handle on the results of group ``id`` (``app.GroupResult.restore(id)`` reads a saved one)."""
        from .result import GroupResult

        return GroupResult(id, results, parent=parent, app=self)

    def signature(self, *args: Any, **kwargs: Any) -> Signature[Any]:
        from .canvas import signature

        kwargs["app"] = self
        return signature(*args, **kwargs)

    # -- entry points ---------------------------------------------------------------------
    def worker_main(self, argv: Sequence[str] | None = None) -> None:
        """Run a worker in this process, as ``celeriac worker`` would (``argv`` like ``['worker', '-l', 'info']``)."""
        from .cli import main

        argv = list(argv or ["worker"])
        if not argv or argv[0] != "worker":
            argv.insert(0, "worker")
        main(argv, app=self)

    def start(self, argv: Sequence[str] | None = None) -> None:
        """Run the ``celeriac`` command line for this app."""
        from .cli import main

        main(list(argv or []), app=self)


class _SendSettings:
    """The settings sending a task reads, taken from ``app.conf`` once per change of it.

    ``conf.version`` is bumped on every change, so a snapshot is never stale; reading a
    dozen settings through ``Settings.__getattr__`` on every ``delay()`` cost more than
    building the message.
    """

    __slots__ = (
        "always_eager",
        "connection_timeout",
        "default_priority",
        "delivery_mode",
        "ignore_result",
        "inherit_parent_priority",
        "max_message_size",
        "publish_retry",
        "retry_policy",
        "send_sent_event",
        "serializer",
        "settings",
        "version",
    )

    def __init__(self, conf: Settings) -> None:
        self.settings = conf
        self.version = conf.version
        self.serializer = conf.task_serializer
        self.ignore_result = conf.task_ignore_result
        priority = conf.task_default_priority
        self.default_priority = None if priority is None else int(priority)
        self.delivery_mode = conf.task_default_delivery_mode
        self.max_message_size = conf.task_max_message_size
        self.inherit_parent_priority = conf.task_inherit_parent_priority
        self.publish_retry = conf.task_publish_retry
        self.retry_policy = conf.task_publish_retry_policy
        self.connection_timeout = float(conf.broker_connection_timeout or 4)
        self.send_sent_event = conf.task_send_sent_event
        self.always_eager = conf.task_always_eager


def _eta(now: datetime, countdown: float | None, eta: datetime | str | None) -> datetime | None:
    if countdown is not None:
        if not isinstance(countdown, (int, float)) or isinstance(countdown, bool):
            raise TypeError(f"countdown must be a number of seconds, got {countdown!r}")
        return now + timedelta(seconds=countdown) if countdown else None
    if eta is None:
        return None
    if isinstance(eta, str):
        from .protocol import parse_iso8601

        return parse_iso8601(eta)
    if not isinstance(eta, datetime):
        raise TypeError(f"eta must be a datetime, got {eta!r}")
    return eta if eta.tzinfo else eta.replace(tzinfo=timezone.utc)


def _expires(now: datetime, expires: float | datetime | str | None) -> datetime | None:
    if expires is None:
        return None
    if isinstance(expires, str):
        from .protocol import parse_iso8601

        return parse_iso8601(expires)
    if isinstance(expires, datetime):
        return expires if expires.tzinfo else expires.replace(tzinfo=timezone.utc)
    if isinstance(expires, timedelta):
        return now + expires
    if isinstance(expires, (int, float)) and not isinstance(expires, bool):
        return now + timedelta(seconds=expires)
    raise TypeError(f"expires must be seconds or a datetime, got {expires!r}")


def _delivery_mode(value: Any) -> int:
    if value in ("transient", 1, "1"):
        return 1
    return 2


def _signatures(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return [dict(value)]
    return [dict(v) for v in value]


def _django_installed_apps() -> list[str]:
    try:
        from django.apps import apps
        from django.conf import settings
    except ImportError:
        return []
    if apps.ready:
        # The app registry resolves AppConfig paths ("blog.apps.BlogConfig") to their packages.
        return [config.name for config in apps.get_app_configs()]
    if not (settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE")):
        return []
    return list(settings.INSTALLED_APPS)


@overload
def shared_task(fun: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...


@overload
def shared_task(fun: Callable[P, R], /) -> BaseTask[P, R]: ...


@overload
def shared_task(*, bind: Literal[True], **options: Any) -> _BoundTaskDecorator: ...


@overload
def shared_task(*, bind: Literal[False] = ..., **options: Any) -> _TaskDecorator: ...


def shared_task(*args: Any, **options: Any) -> Any:
    """A task that belongs to whichever app is current when it's used (for reusable apps/libraries).

    It is registered with every app created in this process, before or after it.
    """

    def create(fun: Callable[..., Any]) -> BaseTask[Any, Any]:
        name = options.pop("name", None)
        # As in Celery, the current app's Task class (e.g. the Django fixup's DjangoTask) is the default base.
        current = _state._current_app
        base = options.pop("base", None) or (current.task_cls if current is not None else BaseTask)
        bind = options.pop("bind", False)
        task_name = name or gen_task_name(None, fun.__name__, fun.__module__)
        with _shared_lock:
            for existing in _shared_tasks:
                if existing.name == task_name and _original(existing) is fun:
                    return existing
            body = _with_pydantic(None, fun, task_name, options)
            task = base(body, app=None, name=task_name, bind=bind, **options)
            _shared_tasks.append(task)
        for app in _state.all_apps():
            app.tasks.setdefault(task.name, task)
            if app.finalized:
                annotate_task(task, app.conf.task_annotations)
        return task

    if len(args) == 1 and callable(args[0]) and not options:
        return create(args[0])
    if args:
        raise TypeError("shared_task() takes options as keyword arguments only")
    return create
