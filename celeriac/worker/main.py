"""WorkController: builds the worker from its parts and runs it.

Start order: import task modules, open the broker, declare queues, start the
pool, start the lease keeper, then consume in the main thread. Stop order is
the reverse. Signals:

* SIGTERM, or the first SIGINT (Ctrl-C): warm shutdown. Stop taking messages,
  give back prefetched ones that haven't started, let running tasks finish.
* A second SIGINT, or SIGQUIT: cold shutdown. Stop running tasks now; their
  messages go back to the queue (``acks_late``) so another worker runs them.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import signals
from .._pidbox import LamportClock
from ..brokers.base import Broker, QueueSpec
from ..events import SOFTWARE_INFO, EventDispatcher
from ..exceptions import ImproperlyConfigured, OperationalError, WorkerTerminate
from .consumer import Consumer
from .control import Pidbox
from .pools.base import Pool
from .state import WorkerState

if TYPE_CHECKING:
    from ..app import Celery

__all__ = ["WorkController", "default_nodename", "expand_hostname"]

logger = logging.getLogger("celeriac.worker")

POOLS = ("prefork", "threads", "solo", "asyncio")
HEARTBEAT_FREQ = 2.0  # seconds between worker-heartbeat events, as Celery
RESULTS_AT_SHUTDOWN_WAIT = 10.0  # seconds a stopping worker keeps trying to write the results it holds


def default_nodename(hostname: str | None = None) -> str:
    return f"celery@{hostname or socket.gethostname()}"


def expand_hostname(template: str, hostname: str | None = None) -> str:
    """Celery's node name templates: ``%h`` host, ``%n`` its first label, ``%d`` the domain, ``%%``."""
    host = hostname or socket.gethostname()
    name, _, domain = host.partition(".")
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c == "%" and i + 1 < len(template):
            key = template[i + 1]
            replacement = {"h": host, "n": name, "d": domain, "%": "%"}.get(key)
            if replacement is not None:
                out.append(replacement)
                i += 2
                continue
        out.append(c)
        i += 1
    result = "".join(out)
    return result if "@" in result else f"celery@{result}"


def create_pool(kind: str, app: Celery, concurrency: int, **kwargs: Any) -> Pool:
    if kind == "solo":
        from .pools.solo import SoloPool

        return SoloPool(app, 1)
    if kind == "threads":
        from .pools.threads import ThreadPool

        return ThreadPool(app, concurrency)
    if kind == "prefork":
        from .pools.prefork import PreforkPool

        return PreforkPool(app, concurrency, **kwargs)
    if kind == "asyncio":
        from .pools.aio import AsyncioPool

        return AsyncioPool(app, concurrency)
    raise ImproperlyConfigured(f"unknown pool {kind!r} (choose from {', '.join(POOLS)})", key="worker_pool")


class WorkController:
    """A worker: one consumer feeding one pool."""

    def __init__(
        self,
        app: Celery,
        *,
        hostname: str | None = None,
        concurrency: int | None = None,
        pool: str | None = None,
        queues: Sequence[str] | None = None,
        exclude_queues: Sequence[str] | None = None,
        prefetch_multiplier: int | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        send_events: bool | None = None,
        disable_rate_limits: bool | None = None,
        purge: bool = False,
        autoscale: tuple[int, int] | None = None,
        state_db: str | None = None,
        app_path: str | None = None,
        quiet: bool = False,
        banner: bool = True,
    ) -> None:
        conf = app.conf
        self.app = app
        self.hostname = expand_hostname(hostname) if hostname else default_nodename()
        self.pool_kind = pool or conf.worker_pool
        if self.pool_kind not in POOLS:
            raise ImproperlyConfigured(f"unknown pool {self.pool_kind!r} (choose from {', '.join(POOLS)})")
        self.concurrency = (
            1 if self.pool_kind == "solo" else (concurrency or conf.worker_concurrency or os.cpu_count() or 1)
        )
        multiplier = conf.worker_prefetch_multiplier if prefetch_multiplier is None else prefetch_multiplier
        self.prefetch_multiplier = max(1, int(multiplier or 1))
        if conf.worker_disable_prefetch:
            self.prefetch_multiplier = 1
        if time_limit is not None:
            conf.task_time_limit = time_limit
        if soft_time_limit is not None:
            conf.task_soft_time_limit = soft_time_limit
        self.send_events = conf.worker_send_task_events if send_events is None else send_events
        self.disable_rate_limits = (
            conf.worker_disable_rate_limits if disable_rate_limits is None else disable_rate_limits
        )
        self.max_tasks_per_child = max_tasks_per_child or conf.worker_max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child or conf.worker_max_memory_per_child
        excluded = set(exclude_queues or ())
        self.queues = [q for q in (list(queues) if queues else app.configured_queue_names()) if q not in excluded]
        if not self.queues:
            raise ImproperlyConfigured("the worker has no queue to consume from (check -Q and -X)")
        self.purge = purge
        self.autoscale = autoscale
        if autoscale:
            self.concurrency = max(autoscale)  # fetch for the most slots the pool can have
        self.autoscaler: Any = None
        self.health: Any = None
        self.app_path = app_path
        self.quiet = quiet
        self.show_banner = banner
        self.state = WorkerState()
        self.broker: Broker | None = None
        self.pool: Pool | None = None
        self.consumer: Consumer | None = None
        self._lease_stop = threading.Event()
        self._lease_thread: threading.Thread | None = None
        self._shutdown_requested = 0
        self._cold = False
        self._restart = False
        self.clock = LamportClock()
        self.events: EventDispatcher | None = None
        self.pidbox: Pidbox | None = None
        self._beat_stop = threading.Event()
        self.state_db = state_db or self.app.conf.worker_state_db

    # -- running ------------------------------------------------------------------
    def start(self) -> None:
        """Run until a shutdown signal; returns after a clean (warm or cold) shutdown."""
        app = self.app
        signals.celeryd_init.send(sender=self.hostname, instance=self, conf=app.conf, options={})
        app.import_default_modules()
        app.finalize()
        self.pool = create_pool(
            self.pool_kind,
            app,
            min(self.autoscale) if self.autoscale and self.pool_kind != "solo" else self.concurrency,
            app_path=self.app_path,
            max_tasks_per_child=self.max_tasks_per_child,
            max_memory_per_child=self.max_memory_per_child,
        )
        signals.worker_init.send(sender=self)
        forks = not self.pool.tasks_in_this_process
        if forks:
            # Child processes are forked before the broker is opened: they inherit neither its
            # connections nor its client library, only what running tasks needs (each page this
            # process has at fork time counts in every child's resident size).
            self.pool.start()
        try:
            broker, consumer = self._connect()
        except BaseException:
            if forks:
                self.pool.stop(graceful=False)
            raise
        if not forks:
            self.pool.start()
        self._start_lease_keeper()
        self._start_health()
        self._start_events()
        self._start_pidbox()
        if self.autoscale and self.pool_kind != "solo":
            from .autoscale import Autoscaler

            self.autoscaler = Autoscaler(
                self.pool, consumer.waiting, lambda: len(self.state.active),
                max_concurrency=max(self.autoscale), min_concurrency=min(self.autoscale),
            )  # fmt: skip
            self.autoscaler.start()
        self._install_signal_handlers()
        logger.info("Connected to %s", broker.info().get("url"))
        logger.info("%s ready.", self.hostname)
        signals.worker_ready.send(sender=self)
        try:
            consumer.run()
            self._warm_stop()
        except (WorkerTerminate, KeyboardInterrupt):
            self._cold_stop()
        finally:
            self._finish()
        if self._restart:
            self._exec_again()

    def _connect(self) -> tuple[Broker, Consumer]:
        """Open the broker, declare the queues and make the consumer."""
        app = self.app
        assert self.pool is not None
        self.broker = broker = self._open_broker()
        for name in self.queues:
            broker.declare_queue(app.queue_spec(name))
        if self.purge:
            purged = sum(broker.purge(q) for q in self.queues)
            _say(
                f"Purged {purged} message{'' if purged == 1 else 's'} from {len(self.queues)} known task queue"
                f"{'' if len(self.queues) == 1 else 's'}."
            )
        signals.celeryd_after_setup.send(sender=self.hostname, instance=self, conf=app.conf)
        if self.show_banner and not self.quiet:
            from ..cli.banner import worker_banner

            _say(worker_banner(self))
        self.consumer = consumer = Consumer(
            app,
            broker,
            self.pool,
            queues=self.queues,
            hostname=self.hostname,
            prefetch_limit=self.concurrency * self.prefetch_multiplier,
            state=self.state,
            disable_rate_limits=bool(self.disable_rate_limits),
        )
        self._load_revoked()
        if app.conf.worker_result_write_behind:
            # Successful results go out in batches from a writer thread (prefork children hand
            # theirs over with their outcomes); each message is acked once its result is written
            # (the consumer settles through backend.after_writes).
            app.backend.write_behind(busy=lambda: consumer.waiting() > 0)
        return broker, consumer

    def _open_broker(self) -> Broker:
        broker = self.app.create_broker()
        retry = self.app.conf.broker_connection_retry_on_startup
        if retry is None:
            retry = self.app.conf.broker_connection_retry
        attempts = int(self.app.conf.broker_connection_max_retries or 0) if retry else 0
        delay = 1.0
        for attempt in range(attempts + 1):
            try:
                broker.open()
                return broker
            except OperationalError as exc:
                if attempt >= attempts:
                    raise
                logger.error(
                    "consumer: Cannot connect to %s: %s.\nTrying again in %.2f seconds... (%d/%d)",
                    broker.info().get("url"),
                    exc,
                    delay,
                    attempt + 1,
                    attempts,
                )
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        return broker

    def _start_lease_keeper(self) -> None:
        assert self.broker is not None
        period = self.broker.lease_renew_interval
        if not period:
            return

        def keep() -> None:
            while not self._lease_stop.wait(period):
                consumer, broker = self.consumer, self.broker
                if consumer is None or broker is None:
                    continue
                try:
                    broker.extend_leases(consumer.held_deliveries())
                except Exception as exc:
                    logger.warning("could not renew message leases: %s", exc)

        self._lease_thread = threading.Thread(target=keep, name="LeaseKeeper", daemon=True)
        self._lease_thread.start()

    # -- shutdown --------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_warm_signal)
        signal.signal(signal.SIGINT, self._on_int)
        signal.signal(signal.SIGQUIT, self._on_cold_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        # SIGUSR1: the stack of every thread to stderr (the log), from C, so it works even when
        # the interpreter is stuck; pool processes inherit it.
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__ or sys.stderr, all_threads=True)

    def _on_hup(self, signum: int, frame: Any) -> None:
        # Restart: warm shutdown, then exec the same command again in this process.
        self._restart = True
        self.stop(warm=True)

    def _exec_again(self) -> None:
        argv = list(sys.argv)
        if argv and os.path.basename(argv[0]) == "__main__.py":
            command = [sys.executable, "-m", "celeriac", *argv[1:]]
        else:
            command = [sys.executable, *argv]
        # --detach would fork away from the pid the supervisor (or pidfile) knows.
        command = [arg for arg in command if arg not in ("-D", "--detach")]
        _say(f"worker: Restarting: {' '.join(command)}")
        sys.stdout.flush()
        os.execv(sys.executable, command)

    def _on_warm_signal(self, signum: int, frame: Any) -> None:
        self.stop(warm=True)

    def _on_int(self, signum: int, frame: Any) -> None:
        self.stop(warm=self._shutdown_requested == 0)
        if self._cold:
            raise WorkerTerminate(1)

    def _on_cold_signal(self, signum: int, frame: Any) -> None:
        self.stop(warm=False)
        raise WorkerTerminate(1)

    @property
    def stopping(self) -> bool:
        return self._shutdown_requested > 0

    def stop(self, warm: bool = True) -> None:
        """Request shutdown (callable from signal handlers and other threads)."""
        self._shutdown_requested += 1
        if warm:
            if self._shutdown_requested == 1:
                _say(f"\nworker: Warm shutdown ({_process_name()})")
        else:
            self._cold = True
            _say(f"\nworker: Cold shutdown ({_process_name()})")
        signals.worker_shutting_down.send(
            sender=self.hostname, sig="SIGTERM" if warm else "SIGQUIT", how="Warm" if warm else "Cold", exitcode=0
        )
        if self.consumer is not None:
            self.consumer.stop()

    def _warm_stop(self) -> None:
        assert self.consumer is not None and self.pool is not None
        released = self.consumer.release_unstarted()
        if released:
            logger.info("Returned %d unstarted message%s to the queue", released, "" if released == 1 else "s")
        self.pool.stop(graceful=True)

    def _cold_stop(self) -> None:
        soft = float(self.app.conf.worker_soft_shutdown_timeout or 0)
        if self.consumer is not None:
            self.consumer.release_unstarted()
        if soft > 0 and self.pool is not None and self.state.active:
            # Soft shutdown (Celery 5.5): running tasks get this long to finish; the rest are
            # stopped and their messages requeued below.
            logger.warning("Soft shutdown: waiting up to %.1fs for %d running task(s)", soft, len(self.state.active))
            self.pool.stop(graceful=True, timeout=soft)
        elif self.pool is not None:
            self.pool.stop(graceful=False)
        if self.consumer is not None:
            self.consumer.release_active()

    def _start_health(self) -> None:
        conf = self.app.conf
        if not conf.worker_liveness_file and conf.worker_healthcheck_port is None:
            return
        from .health import HealthReporter, worker_status

        self.health = HealthReporter(
            lambda: worker_status(self.consumer, self.hostname),
            liveness_file=conf.worker_liveness_file,
            port=conf.worker_healthcheck_port,
            address=conf.worker_healthcheck_address,
        )
        self.health.start()

    # -- events, remote control, revokes -----------------------------------------------
    def _start_events(self) -> None:
        assert self.broker is not None and self.consumer is not None
        if not self.broker.supports_fanout:
            return
        groups = None if self.send_events else {"worker"}
        self.events = EventDispatcher(self.app, self.hostname, groups=groups, clock=self.clock)
        self.consumer.events = self.events
        self.events.send("worker-online", freq=HEARTBEAT_FREQ, **SOFTWARE_INFO)

        def beat() -> None:
            beats = 0
            while not self._beat_stop.wait(HEARTBEAT_FREQ):
                self.send_heartbeat()
                beats += 1
                if beats % 3 == 0:
                    self._sync_revoked()

        threading.Thread(target=beat, name="Heartbeat", daemon=True).start()

    def send_heartbeat(self) -> None:
        if self.events is None:
            return
        try:
            loadavg = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            loadavg = []
        self.events.send("worker-heartbeat", freq=HEARTBEAT_FREQ, active=len(self.state.active),
                         processed=sum(self.state.total.values()), loadavg=loadavg, **SOFTWARE_INFO)  # fmt: skip
        signals.heartbeat_sent.send(sender=self)

    def set_task_events(self, enabled: bool) -> bool:
        """Turn task events on or off; returns False when nothing changed."""
        changed = bool(self.send_events) != enabled
        self.send_events = enabled
        if self.events is not None:
            self.events.groups = None if enabled else {"worker"}
        return changed

    def _start_pidbox(self) -> None:
        assert self.broker is not None
        if not self.app.conf.worker_enable_remote_control or not self.broker.supports_fanout:
            return
        self.pidbox = Pidbox(self)
        self.pidbox.start()
        # Ready means reachable: a command sent right after "ready." must not be missed.
        if not self.pidbox.ready.wait(10):
            logger.warning("remote control is not listening yet")

    def revoke(self, task_ids: set[str]) -> None:
        """Don't run these tasks here; remember it (statedb, and in the broker for every worker)."""
        self.state.revoked.update(task_ids)
        for task_id in task_ids:
            try:
                self.app.backend.mark_as_revoked(task_id, reason="revoked")
            except NotImplementedError:
                pass
            except Exception as exc:
                logger.warning("could not mark task %s as revoked in the result store: %s", task_id, exc)
        self._save_revoked()

    def _load_revoked(self) -> None:
        if self.state_db:
            import json

            try:
                with open(self.state_db) as fh:
                    self.state.revoked.update(json.load(fh).get("revoked", []))
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                logger.warning("could not read the state db %s: %s", self.state_db, exc)
        self._sync_revoked()

    def _sync_revoked(self) -> None:
        load = getattr(self.broker, "load_revoked", None)
        if load is None:
            return
        try:
            self.state.revoked.update(load())
        except Exception as exc:
            logger.debug("could not read revoked tasks from the broker: %s", exc)

    def _save_revoked(self) -> None:
        if not self.state_db:
            return
        import json

        tmp = f"{self.state_db}.tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump({"revoked": sorted(self.state.revoked)}, fh)
            os.replace(tmp, self.state_db)
        except OSError as exc:
            logger.warning("could not write the state db %s: %s", self.state_db, exc)

    def stats(self) -> dict[str, Any]:
        """``inspect stats``."""
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "total": dict(self.state.total),
            "pid": os.getpid(),
            "clock": str(self.clock.value),
            "uptime": int(time.time() - self.state.started),
            "pool": self.pool.info() if self.pool is not None else {},
            "broker": self.broker.info() if self.broker is not None else {},
            "prefetch_count": self.consumer.prefetch_limit if self.consumer is not None else 0,
            "rusage": {
                "utime": usage.ru_utime,
                "stime": usage.ru_stime,
                "maxrss": usage.ru_maxrss,
                "minflt": usage.ru_minflt,
                "majflt": usage.ru_majflt,
                "nvcsw": usage.ru_nvcsw,
                "nivcsw": usage.ru_nivcsw,
            },  # fmt: skip
            **SOFTWARE_INFO,
        }

    def grow_pool(self, n: int) -> None:
        assert self.pool is not None
        added = self.pool.grow(n)
        self._resize_prefetch(added)

    def shrink_pool(self, n: int) -> None:
        assert self.pool is not None
        removed = self.pool.shrink(n)
        self._resize_prefetch(-removed)

    def _resize_prefetch(self, delta: int) -> None:
        self.concurrency = max(1, self.concurrency + delta)
        if self.consumer is not None and self.broker is not None:
            self.consumer.prefetch_limit = self.concurrency * self.prefetch_multiplier
            self.broker.set_prefetch(self.consumer.prefetch_limit)

    def add_queue(self, spec: QueueSpec) -> None:
        assert self.broker is not None and self.consumer is not None
        self.broker.declare_queue(spec)
        self.queues = [*self.queues, spec.name]
        self.consumer.set_queues(self.queues)

    def remove_queue(self, name: str) -> None:
        assert self.consumer is not None
        self.queues = [q for q in self.queues if q != name]
        self.consumer.set_queues(self.queues)

    def _finish(self) -> None:
        self._beat_stop.set()
        if self.pidbox is not None:
            self.pidbox.stop()
        if self.events is not None:
            self.events.send("worker-offline", freq=HEARTBEAT_FREQ, **SOFTWARE_INFO)
            self.events.close()
        self._save_revoked()
        self._lease_stop.set()
        if self.health is not None:
            self.health.stop()
        if self.autoscaler is not None:
            self.autoscaler.stop()
        signals.worker_shutdown.send(sender=self)
        # Results left to the writer go out before the broker closes, so their acks go with it;
        # a result that can't be written leaves its message unacked, to run again (never lost).
        if not self.app.backend.flush_writes(timeout=RESULTS_AT_SHUTDOWN_WAIT):
            requeued = self.consumer.requeue_unwritten() if self.consumer is not None else 0
            logger.error("could not write the results of %d task(s) at shutdown; their messages go back "
                         "to the queue and they will run again", requeued)  # fmt: skip
        if self.broker is not None:
            self.broker.close()
        self.app.close()

    def info(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "pool": self.pool.info() if self.pool else {},
            "concurrency": self.concurrency,
            "prefetch_count": self.concurrency * self.prefetch_multiplier,
            "queues": list(self.queues),
        }


def _say(text: str) -> None:
    # The real stdout: sys.stdout may be redirected into the log (worker_redirect_stdouts).
    stream = sys.__stdout__ or sys.stdout
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def _process_name() -> str:
    import multiprocessing

    return multiprocessing.current_process().name
