"""Running detached (``--detach``) and pidfiles, for init systems that don't supervise."""

from __future__ import annotations

import atexit
import errno
import os
import sys

__all__ = ["Pidfile", "PidfileExists", "detach"]


class PidfileExists(Exception):
    """Another process holds the pidfile."""


class Pidfile:
    """A pidfile created exclusively; a stale one (its process is gone) is replaced."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def read_pid(self) -> int | None:
        try:
            with open(self.path) as fh:
                text = fh.read().strip()
        except FileNotFoundError:
            return None
        try:
            return int(text.splitlines()[0]) if text else None
        except ValueError:
            return None

    def acquire(self) -> None:
        pid = self.read_pid()
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise PidfileExists(f"Pidfile ({self.path}) already exists.\nSeems we're already running? (pid: {pid})")
        if os.path.exists(self.path):
            os.unlink(self.path)  # stale
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        atexit.register(self.release)

    def release(self) -> None:
        if self.read_pid() == os.getpid():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def detach(
    *,
    logfile: str | None = None,
    workdir: str | None = None,
    umask: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> None:
    """Double-fork into the background; returns in the daemon process only."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    if workdir:
        os.chdir(workdir)
    if umask is not None:
        os.umask(umask)
    if gid is not None:
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    target = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if logfile else devnull
    os.dup2(target, 1)
    os.dup2(target, 2)
