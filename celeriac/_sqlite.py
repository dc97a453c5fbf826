"""Shared SQLite plumbing for the embedded broker and result store.

One database file, opened in WAL mode so readers never block the writer, with
one connection per thread and per process (connections are never shared
across a fork). ``busy_timeout`` makes concurrent writers from many worker
and client processes queue up instead of failing with "database is locked".
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from .exceptions import ImproperlyConfigured, OperationalError

__all__ = ["DEFAULT_FILENAME", "SQLiteDatabase", "path_from_url"]

DEFAULT_FILENAME = "celeriac.db"
_SYNC_MODES = {"OFF", "NORMAL", "FULL", "EXTRA"}
_FIRST_LOOK = 0.0002  # seconds from an empty look to the next, when polling
_SETTLE = 0.00002  # seconds from a write to the next look, while its commit isn't yet visible
_WATCH_STEP = 0.001  # shorter steps are slept: a watch's wait has millisecond resolution

logger = logging.getLogger(__name__)


def path_from_url(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``; ``sqlite://`` -> the default file.

    The returned path is absolute, resolved against the current directory.
    """
    if not url.startswith("sqlite:"):
        raise ImproperlyConfigured(f"not a sqlite URL: {url!r}")
    parts = urlsplit(url)
    if parts.netloc:
        raise ImproperlyConfigured(
            f"sqlite URL {url!r} has a host part; use sqlite:///relative.db or sqlite:////absolute.db"
        )
    path = unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]  # sqlite:///x -> "x" relative; sqlite:////x -> "/x"
    return os.path.abspath(path or DEFAULT_FILENAME)


class _ForkGuard:
    """Keeps ``os.fork()`` out of the moments when a thread of this process is inside SQLite.

    SQLite's unix layer takes process-wide mutexes while it opens, locks and unlocks
    files; a fork at such a moment (the prefork pool replacing a process, from its
    collector thread) copies the mutex locked, and the new process hangs in its first
    SQLite call. Every SQLite call here runs as a "reader" of this guard; a fork waits
    until there are none, and no new one starts until the fork is done.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._forking = False
        self._depth = threading.local()

    def __enter__(self) -> None:
        depth = getattr(self._depth, "n", 0)
        self._depth.n = depth + 1
        with self._cond:
            # A thread already inside (nested calls) goes on, or it would wait for itself.
            while self._forking and depth == 0:
                self._cond.wait()
            self._readers += 1

    def __exit__(self, *exc: object) -> None:
        self._depth.n -= 1
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def before_fork(self) -> None:
        if getattr(self._depth, "n", 0):
            return  # forking from inside SQLite work: waiting would never end
        self._cond.acquire()
        self._forking = True
        while self._readers:
            self._cond.wait()
        # The lock stays held through the fork: no thread can enter SQLite meanwhile.

    def after_fork_in_parent(self) -> None:
        if getattr(self._depth, "n", 0):
            return
        self._forking = False
        self._cond.notify_all()
        self._cond.release()

    def after_fork_in_child(self) -> None:
        # Only the forking thread exists in the child: start from a clean state.
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._forking = False
        self._depth = threading.local()


_guard = _ForkGuard()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_guard.before_fork,
        after_in_parent=_guard.after_fork_in_parent,
        after_in_child=_guard.after_fork_in_child,
    )


class _Rows:
    """A statement's outcome, read in full while the fork guard is held (a cursor would go
    back into SQLite on each fetch)."""

    __slots__ = ("_rows", "description", "lastrowid", "rowcount")

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._rows = cursor.fetchall()
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid
        self.description = cursor.description

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class SQLiteDatabase:
    """A SQLite file with per-thread connections and a schema created on first use."""

    def __init__(self, path: str, *, schema: str, timeout: float = 60.0, synchronous: str = "NORMAL") -> None:
        synchronous = synchronous.upper()
        if synchronous not in _SYNC_MODES:
            raise ImproperlyConfigured(f"sqlite synchronous must be one of {sorted(_SYNC_MODES)}, got {synchronous!r}")
        self.path = path
        self.schema = schema
        self.timeout = timeout
        self.synchronous = synchronous
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[tuple[int, sqlite3.Connection]] = []
        self._no_watch = sys.platform != "linux"

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (a new one after fork)."""
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == pid:
            return conn
        with _guard:
            conn = self._connect()
            self._local.conn, self._local.pid = conn, pid
            with self._lock:
                self._all.append((pid, conn))
        return conn

    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path)
        try:
            if directory:
                os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OperationalError(f"can't put {self.path} in WAL mode (got {mode!r})", url=self.path)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            with _immediate(conn):
                for statement in self.schema.split(";"):
                    if statement.strip():
                        conn.execute(statement)
        except sqlite3.Error as exc:
            raise OperationalError(f"can't open SQLite database {self.path}: {exc}", url=self.path) from exc
        return conn

    def execute(self, sql: str, params: Any = ()) -> _Rows:
        try:
            with _guard:
                return _Rows(self.connection().execute(sql, params))
        except sqlite3.Error as exc:
            raise OperationalError(f"SQLite error on {self.path}: {exc}", url=self.path) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock up front, so two writers never deadlock."""
        try:
            with _guard:
                conn = self.connection()
                with _immediate(conn):
                    yield conn
        except sqlite3.Error as exc:
            raise OperationalError(f"SQLite error on {self.path}: {exc}", url=self.path) from exc

    def data_version(self) -> int:
        """Changes when another connection commits; cheap enough to poll every few milliseconds."""
        with _guard:
            return int(self.connection().execute("PRAGMA data_version").fetchone()[0])

    def wait_for_change(
        self,
        timeout: float,
        should_stop: Callable[[], bool] | None = None,
        *,
        since: int | None = None,
        longest: float = 0.01,
    ) -> None:
        """Sleep until another connection commits, ``timeout`` passes or ``should_stop()`` says so.

        ``since``: the :meth:`data_version` read before the caller last looked (at the queue, at a
        result). A commit made between that look and this call then ends the wait at once; without
        it, that commit would be taken as the starting point, and the wait would last the whole
        ``timeout`` with the message (or result) already there. ``longest``: the longest step
        between two looks once idle (the broker's ``polling_interval``).

        SQLite tells no other process of a commit, but every commit writes the ``-wal`` file: on
        Linux the wait is woken by that write (inotify) and looks at once, and looks every
        ``longest`` only in case a wake-up went astray. Elsewhere, or when inotify can't be had
        (``fs.inotify.max_user_instances`` reached), it polls.
        """
        deadline = time.monotonic() + timeout
        start = self.data_version() if since is None else since
        watch = self._watch()
        # Without a watch, the first look 0.2 ms after the last one: a task sent just after the
        # worker found its queue empty is seen within half a millisecond (1 ms at first made a round
        # trip's p50 1.4 ms; it is about 0.7 ms so). Each step is half again the last, so an idle
        # wait is back to ``longest`` within about 30 ms. With a watch, a step starts short only
        # after a write was seen.
        interval = min(_FIRST_LOOK, longest)
        if watch is not None:
            interval = min(_SETTLE, longest) if watch.written(0) else longest
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (should_stop is not None and should_stop()):
                return
            step = min(interval, remaining)
            interval = min(interval * 1.5, longest)
            if watch is not None and step >= _WATCH_STEP:
                if watch.written(step):
                    # The write comes just before the commit shows (SQLite then publishes it in the
                    # -shm index): look now, then again in short steps until it does.
                    interval = min(_SETTLE, longest)
            else:
                time.sleep(step)
            if self.data_version() != start:
                return

    def _watch(self) -> _LogWatch | None:
        """This thread's watch on the write-ahead log (a new one after fork), or None to poll."""
        if self._no_watch:
            return None
        pid = os.getpid()
        watch: _LogWatch | None = getattr(self._local, "watch", None)
        if watch is not None and self._local.watch_pid == pid:
            return watch
        self.connection()  # the -wal file exists while a connection is open
        try:
            watch = _LogWatch(self.path + "-wal")
        except (ImportError, OSError) as exc:
            # Not Linux, or no inotify instance left: poll, as everywhere else.
            logger.debug("polling %s for commits: can't watch its write-ahead log (%s)", self.path, exc)
            self._no_watch = True
            return None
        # Held by the thread only: a thread that ends, or a close(), lets it go, and it closes itself.
        self._local.watch, self._local.watch_pid = watch, pid
        return watch

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            mine = [conn for owner, conn in self._all if owner == pid]
            self._all = [(owner, conn) for owner, conn in self._all if owner != pid]
        for conn in mine:
            try:
                with _guard:
                    conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()


class _LogWatch:
    """Tells a waiter when a database's write-ahead log has been written to (Linux inotify).

    One per thread: an inotify queue read by two threads would give each the other's events. It
    closes when let go, so the threads of a server that come and go don't use up the instances.
    Writes to the file coalesce into one pending event until it is read, so the queue stays short
    however busy the database is.
    """

    def __init__(self, wal_path: str) -> None:
        from inotify_simple import INotify, flags

        self._inotify = INotify()
        try:
            self._inotify.add_watch(wal_path, flags.MODIFY)
        except BaseException:
            self._inotify.close()
            raise

    def written(self, seconds: float) -> bool:
        """Whether the log has been written to since the last call, waiting up to ``seconds`` for it."""
        return bool(self._inotify.read(timeout=seconds * 1000.0))

    def close(self) -> None:
        inotify = getattr(self, "_inotify", None)  # None when __init__ failed
        if inotify is not None:
            inotify.close()

    __del__ = close


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
