"""Prefork pool: tasks run in child processes, one task per child at a time.

Children are started up front (fork on Linux, spawn where fork isn't
available), replaced when they exit or die, and recycled after
``max_tasks_per_child`` tasks or when their peak RSS passes
``max_memory_per_child`` KiB. Each child has its own pipe, so a child that dies
mid-task loses only its own job, which is reported as ``WorkerLostError``; the
parent enforces hard time limits by killing the child (``TimeLimitExceeded``),
soft ones are raised inside the task by SIGALRM.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING, Any, ClassVar

from ... import signals, states
from ...exceptions import TimeLimitExceeded, WorkerLostError
from ..execute import ACK, REQUEUE, Outcome
from .base import Job, OnDone, Pool, run_job

if TYPE_CHECKING:
    from ...app import Celery

__all__ = ["PreforkPool"]

logger = logging.getLogger("celeriac.worker")


@dataclass(eq=False)
class _Child:
    index: int
    process: Any  # multiprocessing.Process (BaseProcess)
    conn: Connection
    job: Job | None = None
    on_done: OnDone | None = None
    started: float = 0.0
    deadline: float | None = None
    exiting: bool = False
    ready: bool = False  # said "ready" after start-up
    accepted: bool = False  # said "accepted" for its current job
    dead: bool = False  # its pipe broke in submit(), not reaped yet: no job goes to it
    spawned: float = field(default_factory=time.monotonic)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        # No is_alive() here (a waitpid() per child each time the consumer looks for a slot):
        # a child that died is seen by its sentinel in the collector, or by its broken pipe in submit().
        return self.ready and self.job is None and not self.exiting and not self.dead

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)


def _reopen_log(index: int) -> None:
    """A ``--logfile`` with ``%i``/``%I`` gives each pool process its own file."""
    template = os.environ.get("CELERIAC_CHILD_LOGFILE")
    if not template:
        return
    import logging

    path = template.replace("%i", str(index)).replace("%I", f"-{index}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            replacement = logging.FileHandler(path, encoding="utf-8")
            replacement.setFormatter(handler.formatter)
            replacement.setLevel(handler.level)
            root.removeHandler(handler)
            root.addHandler(replacement)


def _child_main(
    conn: Connection,
    app: Any,
    app_path: str | None,
    max_tasks: int | None,
    max_memory: int | None,
    index: int = 1,
    hand_over: bool = False,
    keep_sockets: frozenset[int] | None = None,
) -> None:
    # The parent decides when to stop; a Ctrl-C in the terminal reaches the whole
    # process group and must not kill tasks half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if keep_sockets is not None:
        _let_go_of_sockets(keep_sockets)
    _reopen_log(index)
    if app is None:
        from ...cli.app_loader import find_app

        app = find_app(app_path or "")
    app.on_after_fork.send(sender=app)
    signals.worker_process_init.send(sender=None)
    # Successful results go to the parent with the outcome, which writes them with the others
    # (batched behind the pool); this process then needs no connection to the store at all.
    hand_over = hand_over and app.backend.hand_over_writes()
    conn.send(("ready", os.getpid()))
    done = 0
    try:
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                break
            if job is None:
                break
            job = Job(*job)
            conn.send_bytes(ACCEPTED)
            try:
                outcome = run_job(app, job)
            except BaseException as exc:  # the task machinery itself failed
                outcome = _failure(job.task_id, job.task_name, exc)
            writes = app.backend.take_writes() if hand_over else None
            done += 1
            # Said with the outcome, so the parent sends this process no other job: one sent now
            # would find it gone.
            ending = bool((max_tasks and done >= max_tasks) or (max_memory and _peak_rss_kib() > max_memory))
            conn.send_bytes(_dumps(("done", _outcome_fields(outcome), writes, ending)))
            if ending:
                break
    finally:
        signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)


def _tcp_sockets() -> dict[int, int]:
    """This process' TCP sockets, as {inode: descriptor}, read from /proc (none where there is no /proc).

    Only /proc is read: a socket object made around a descriptor to ask its type would set it
    non-blocking under ``socket.setdefaulttimeout()``, the pool's own pipe (a socketpair) included.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return {}
    sockets = {}
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if target.startswith("socket:["):
            sockets[int(target[8:-1])] = int(name)
    if not sockets:
        return {}
    tcp: set[int] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines, None)  # the header
                tcp.update(int(fields[9]) for fields in map(str.split, lines) if len(fields) > 9)
        except OSError:
            continue  # no IPv6
    return {inode: fd for inode, fd in sockets.items() if inode in tcp}


def _let_go_of_sockets(keep: frozenset[int]) -> None:
    """In a child forked while the worker runs: drop its copies of the worker's connections (broker,
    result store, health check port). A copy keeps a connection open after the worker is gone: the
    broker would not see it close (RabbitMQ gives unacked messages back only then) and the port
    stays taken, until the child's task ends. The descriptor numbers stay taken, by /dev/null, so
    the inherited socket objects, which still own them, can never close a descriptor opened since."""
    stale = [fd for inode, fd in _tcp_sockets().items() if inode not in keep]
    if not stale:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in stale:
            os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)


def _peak_rss_kib() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak / 1024) if sys.platform == "darwin" else int(peak)


class PreforkPool(Pool):
    name: ClassVar[str] = "prefork"
    tasks_in_this_process: ClassVar[bool] = False

    def __init__(self, app: Celery, concurrency: int, *, app_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, concurrency, **kwargs)
        self.app_path = app_path
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._ctx = multiprocessing.get_context(method)
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._running = False
        self._collector: threading.Thread | None = None
        self._wakeup_r, self._wakeup_w = self._ctx.Pipe(duplex=False)
        self._first_sockets: frozenset[int] | None = None  # inodes of the TCP sockets the first children inherit
        self.alive_timeout = float(app.conf.worker_proc_alive_timeout or 4.0)
        self.hand_over_writes = bool(app.conf.worker_result_write_behind)

    # -- life cycle -----------------------------------------------------------
    def start(self) -> None:
        # Create the backend before forking so children inherit a ready object instead of
        # building one under a lock another thread may hold at fork time.
        self.app.backend  # noqa: B018
        self._running = True
        _settle_heap()
        if self._ctx.get_start_method() == "fork":
            # Opened by the task module (a child's own business); children forked later keep only these.
            self._first_sockets = frozenset(_tcp_sockets())  # by inode: a descriptor number is reused
        with self._lock:
            for index in range(1, self.concurrency + 1):
                self._children.append(self._spawn(index))
        self._collector = threading.Thread(target=self._collect, name="PoolCollector", daemon=True)
        self._collector.start()

    def _spawn(self, index: int) -> _Child:
        signals.worker_before_create_process.send(sender=self)
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        fork = self._ctx.get_start_method() == "fork"
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_child_main,
            args=(
                child_conn,
                self.app if fork else None,
                self.app_path,
                self.max_tasks_per_child,
                self.max_memory_per_child,
                index,
                self.hand_over_writes,
                self._first_sockets,
            ),
            name=f"ForkPoolWorker-{index}",
            daemon=True,
        )
        process.start()
        child_conn.close()
        return _Child(index=index, process=process, conn=parent_conn)

    def stop(self, *, graceful: bool, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if graceful:
            while deadline is None or time.monotonic() < deadline:
                with self._lock:
                    busy = [c for c in self._children if c.job is not None]
                if not busy:
                    break
                time.sleep(0.02)
        self._running = False
        self._wake()
        if self._collector is not None:
            # Gone before the children exit: it would reap them (and close their pipes) while
            # this thread does the same.
            self._collector.join(2.0)
        with self._lock:
            children, self._children = self._children, []
        for child in children:
            if child.job is None and graceful:
                try:
                    child.conn.send(None)
                except OSError:
                    pass
            else:
                _kill(child.process, signal.SIGTERM)
        end = time.monotonic() + (2.0 if graceful else 1.0)
        for child in children:
            child.process.join(max(0.0, end - time.monotonic()))
            if child.process.is_alive():
                _kill(child.process, signal.SIGKILL)
                child.process.join(1.0)
            try:
                child.conn.close()
            except OSError:
                pass  # closed already

    # -- jobs -----------------------------------------------------------------
    def free_slots(self) -> int:
        with self._lock:
            return sum(1 for c in self._children if c.usable)

    def submit(self, job: Job, on_done: OnDone) -> None:
        with self._lock:
            child = next((c for c in self._children if c.usable), None)
            if child is None:
                raise RuntimeError("no free process in the pool (check free_slots() before submit)")
            # The collector reads these without the lock (_find_stuck): the job goes last, so it never
            # sees the new job with the previous job's start time (a fresh child's is 0: "stuck").
            child.accepted, child.on_done = False, on_done
            child.started = time.monotonic()
            child.deadline = child.started + job.time_limit if job.time_limit else None
            child.job = job
        try:
            # A plain tuple through pickle's C code: ForkingPickler and a dataclass' __getstate__
            # cost more than the rest of the hand-over.
            payload = _dumps((job.task_name, job.task_id, job.request, job.time_limit, job.soft_time_limit))
            child.conn.send_bytes(payload)
        except OSError:
            # The child died and its sentinel has not been seen yet: the task never ran, so it goes
            # back; no other job goes to that child before the collector replaces it.
            with self._lock:
                child.job, child.on_done, child.dead = None, None, True
            on_done(Outcome(job.task_id, job.task_name, states.REJECTED, 0.0, REQUEUE))
            return
        except Exception as exc:
            # Arguments that can't be pickled: the task can't run in a child, which is its failure.
            with self._lock:
                child.job, child.on_done = None, None
            on_done(_failure(job.task_id, job.task_name, exc))
            return
        if job.time_limit:
            self._wake()  # the collector's next wait must end by this job's deadline

    def terminate_job(self, task_id: str, signum: int) -> bool:
        with self._lock:
            child = next((c for c in self._children if c.job is not None and c.job.task_id == task_id), None)
        if child is None:
            return False
        _kill(child.process, signum)
        return True

    def pids(self) -> list[int]:
        with self._lock:
            return [c.pid for c in self._children]

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "processes": self.pids(),
            "max-tasks-per-child": self.max_tasks_per_child or "N/A",
        }

    # -- the collector thread -------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wakeup_w.send_bytes(b"x")
        except OSError:
            pass

    def _collect(self) -> None:
        while self._running:
            with self._lock:
                children = list(self._children)
            by_conn = {c.conn: c for c in children}
            by_sentinel = {c.process.sentinel: c for c in children}
            timeout = self._next_deadline_in(children)
            try:
                ready = wait([self._wakeup_r, *by_conn, *by_sentinel], timeout=timeout)
            except OSError:
                continue
            for obj in ready:
                if obj is self._wakeup_r:
                    while self._wakeup_r.poll():
                        self._wakeup_r.recv_bytes()
                elif obj in by_conn:
                    self._drain(by_conn[obj])
            for obj in ready:
                if obj in by_sentinel:
                    self._reap(by_sentinel[obj])
            self._enforce_time_limits(children)
            self._find_stuck(children)

    def _next_deadline_in(self, children: list[_Child]) -> float:
        deadlines = [c.deadline for c in children if c.deadline is not None and c.job is not None]
        if not deadlines:
            return 1.0
        return max(0.0, min(min(deadlines) - time.monotonic(), 1.0))

    def _drain(self, child: _Child) -> None:
        """Read every message waiting in ``child``'s pipe (a fast task's "accepted" and "done" can
        both be there, and a child that exited may have left its last outcome)."""
        try:
            while child.conn.poll() and self._receive(child):
                pass
        except OSError:
            pass  # closed: the child is gone and reaped

    def _receive(self, child: _Child) -> bool:
        """Read one message from ``child``; False once its pipe is at its end."""
        try:
            data = child.conn.recv_bytes()
        except (EOFError, OSError):
            return False  # the child died; its sentinel reports it
        if data == ACCEPTED:
            child.accepted = True
            return True
        try:
            # What Connection.recv() does: this pipe only ever carries what this pool's own child sent.
            message = ForkingPickler.loads(data)
        except Exception:
            logger.exception("unreadable message from pool process %d", child.pid)
            return True
        if message[0] == "done":
            if message[3]:
                child.exiting = True  # it ends after this task (--max-tasks-per-child, --max-memory-per-child)
            outcome = Outcome(*message[1])
            if message[2]:
                try:
                    self.app.backend.accept_writes(message[2])
                except Exception as exc:  # the store can't take them: the task can't count as done
                    logger.exception("could not take the results of task %s", outcome.task_id)
                    outcome = _failure(outcome.task_id, outcome.task_name, exc, outcome.runtime)
            self._finish(child, outcome)
        elif message[0] == "ready":
            child.ready = True
            self._capacity_changed()
        return True

    def _finish(self, child: _Child, outcome: Outcome) -> None:
        with self._lock:
            on_done, child.job, child.on_done, child.deadline = child.on_done, None, None, None
        if on_done is not None:
            try:
                on_done(outcome)
            except Exception:
                logger.exception("error handling the outcome of task %s", outcome.task_id)

    def _reap(self, child: _Child) -> None:
        child.process.join(0.1)
        if child.process.is_alive():
            return
        child.dead = True  # no job may go to it while its last one is reported, before it is replaced
        # A child that ends after its last task (--max-tasks-per-child) sent that task's outcome
        # first: read it, rather than report the task lost.
        self._drain(child)
        job = child.job
        if job is not None and child.extra.get("stuck") and not child.accepted:
            # It never started the task: give the message back rather than report a failure.
            self._finish(child, Outcome(job.task_id, job.task_name, states.REJECTED, 0.0, REQUEUE))
            job = None
        if job is not None:
            code = child.process.exitcode
            reason = _exit_reason(code)
            if not child.extra.get("time_limit"):
                logger.error("Process %r pid:%d exited with %s", child.process.name, child.pid, reason)
            exc = child.extra.get("time_limit") or WorkerLostError(
                f"Worker exited prematurely: {reason} Job: {child.index}."
            )
            self._finish(child, _failure(job.task_id, job.task_name, exc, time.monotonic() - child.started))
        child.conn.close()
        with self._lock:
            if child in self._children:
                index = self._children.index(child)
                if self._running:
                    self._children[index] = self._spawn(child.index)
                else:
                    del self._children[index]

    def _enforce_time_limits(self, children: list[_Child]) -> None:
        now = time.monotonic()
        for child in children:
            job = child.job
            if job is None or child.deadline is None or now < child.deadline:
                continue
            logger.error("Hard time limit (%ss) exceeded for %s[%s]", job.time_limit, job.task_name, job.task_id)
            child.extra["time_limit"] = TimeLimitExceeded(job.time_limit)
            child.deadline = None
            _kill(child.process, signal.SIGKILL)

    def _find_stuck(self, children: list[_Child]) -> None:
        """A child that never says "ready", or never takes the job it was sent, is stuck (e.g. a lock
        inherited mid-use across fork): kill it so it is replaced, instead of a pool that silently stops."""
        now = time.monotonic()
        for child in children:
            if child.ready and (child.job is None or child.accepted):
                continue  # the usual case, decided without a system call
            if child.extra.get("stuck") or not child.process.is_alive():
                continue
            if not child.ready and now - child.spawned > self.alive_timeout:
                logger.error("Timed out waiting for UP message from %r (pid %d): replacing it",
                             child.process.name, child.pid)  # fmt: skip
                child.extra["stuck"] = True
                _kill(child.process, signal.SIGKILL)
            elif child.job is not None and not child.accepted and now - child.started > self.alive_timeout:
                logger.error("%r (pid %d) did not take job %s[%s] within %ss: replacing it; the task goes back",
                             child.process.name, child.pid, child.job.task_name, child.job.task_id,
                             self.alive_timeout)  # fmt: skip
                child.extra["stuck"] = True
                _kill(child.process, signal.SIGKILL)

    def _capacity_changed(self) -> None:
        if self.on_capacity is not None:
            self.on_capacity()

    # -- autoscaling ---------------------------------------------------------------
    def grow(self, n: int = 1) -> int:
        with self._lock:
            indices = {c.index for c in self._children}
            added = 0
            index = 1
            while added < n:
                if index not in indices:
                    self._children.append(self._spawn(index))
                    added += 1
                index += 1
            self.concurrency = len(self._children)
        self._wake()
        return added

    def shrink(self, n: int = 1) -> int:
        removed = []
        with self._lock:
            for child in [c for c in self._children if c.usable][:n]:
                child.exiting = True
                self._children.remove(child)
                removed.append(child)
            self.concurrency = len(self._children)
        for child in removed:
            try:
                child.conn.send(None)
            except OSError:
                pass
            child.process.join(2.0)
            if child.process.is_alive():
                _kill(child.process, signal.SIGKILL)
            child.conn.close()
        self._wake()
        return len(removed)


def _settle_heap() -> None:
    """Before the first fork: collect start-up garbage and hand freed heap back to the system, so
    children don't inherit it (every page the parent has when it forks counts in each child's
    resident size too); freeze the survivors, so no child's collection writes to the pages it
    shares with the parent (CPython's advice for fork without exec). Done once: what a later
    freeze caught would never be collected in the parent."""
    gc.collect()
    gc.freeze()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            pass  # not glibc


ACCEPTED = b"A"  # a child took its job (never a pickle: those start with the PROTO opcode, 0x80)


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


def _outcome_fields(outcome: Outcome) -> tuple[Any, ...]:
    """An outcome as the plain values the parent rebuilds it from (without the task's objects)."""
    o = outcome
    return (o.task_id, o.task_name, o.state, o.runtime, o.message_action, o.retval_repr, o.exc_repr,
            o.exc_type, o.traceback, o.retry_reason, o.stored)  # fmt: skip


def _failure(task_id: str, task_name: str, exc: BaseException, runtime: float = 0.0) -> Outcome:
    """A task failed outside the task itself (its process died, its arguments or its result could not
    cross the pipe): a failure for the consumer to record (``stored=False``)."""
    return Outcome(task_id, task_name, states.FAILURE, runtime, ACK, exc_repr=repr(exc),
                   exc_type=type(exc).__name__, stored=False)  # fmt: skip


def _kill(process: Any, signum: int) -> None:
    try:
        if process.pid:
            os.kill(process.pid, signum)
    except (ProcessLookupError, OSError):
        pass


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"signal {-code} ({name})"
    return f"exitcode {code}"
