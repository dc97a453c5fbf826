"""Worker subprocesses and the resident memory of a process tree, read from /proc."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL
SAMPLE_INTERVAL = 0.05  # seconds between two RSS samples
RESCAN_EVERY = 20  # samples between two walks of /proc for new descendants


class WorkerError(RuntimeError):
    """The worker exited, or never answered."""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def worker_command(system: str, module: str, pool: str, concurrency: int) -> list[str]:
    """``python -m <system> -A <module> worker -l warning -P <pool> -c <concurrency>`` (celeriac and Celery)."""
    return [sys.executable, "-m", system, "-A", module, "worker", "-l", "warning", "-P", pool, "-c", str(concurrency)]


class Worker:
    """A worker command in its own session, its output in ``worker-<name>.log`` in ``cwd``."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str], name: str) -> None:
        self.cmd = cmd
        self.cwd = cwd
        self.env = env
        self.log_path = cwd / f"worker-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise WorkerError("the worker was not started")
        return self.proc.pid

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            # A session of its own: Ctrl-C in the terminal reaches the benchmark only, which stops the
            # worker itself, and the whole process tree can be killed as one group.
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # only prctl: safe between fork and exec
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise WorkerError(f"the worker exited with code {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), SIGKILL to the whole group after STOP_TIMEOUT; kill stragglers too."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._report_hang()
        self._kill_group()
        self.proc.wait()

    def _report_hang(self) -> None:
        """SIGABRT: with PYTHONFAULTHANDLER set, the worker writes every thread's stack to its log; show it."""
        assert self.proc is not None
        print(f"bench: the worker did not stop in {STOP_TIMEOUT:.0f}s; its stacks, then SIGKILL:", file=sys.stderr)
        self.proc.send_signal(signal.SIGABRT)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        print(self.log_tail(80), file=sys.stderr)

    def _kill_group(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: fields after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1])


def descendants(root: int) -> set[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def _proc_kib(path: str, field: str) -> int | None:
    """The KiB figure of ``field`` in a /proc file, None when the process is gone, 0 when it has none."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        return None
    return 0  # e.g. a zombie has no VmRSS line


def rss_kib(pid: int) -> int | None:
    """VmRSS of one process in KiB, or None when it is gone."""
    return _proc_kib(f"/proc/{pid}/status", "VmRSS:")


def pss_kib(pid: int) -> int | None:
    """Proportional set size of one process in KiB (each shared page divided among its sharers), or None."""
    return _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:")


def tree_pss_kib(pids: set[int]) -> int:
    """Summed PSS of ``pids`` (the processes still there): pages shared by fork count once in all."""
    return sum(pss or 0 for pss in map(pss_kib, pids))


def tree_rss_kib(pids: set[int]) -> tuple[int, bool]:
    """Summed VmRSS of ``pids``, and whether one of them was gone."""
    total, vanished = 0, False
    for pid in pids:
        rss = rss_kib(pid)
        if rss is None:
            vanished = True
        else:
            total += rss
    return total, vanished


class RssSampler:
    """Samples the summed RSS of a process tree every SAMPLE_INTERVAL in a thread; keeps the peak.

    The list of descendants is rebuilt every RESCAN_EVERY samples (and when a process is gone),
    so a sample reads only a few small files while the benchmark runs.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pids: set[int] = set()
        since_scan = RESCAN_EVERY
        while True:
            if since_scan >= RESCAN_EVERY:
                pids, since_scan = descendants(self.root), 0
            total, vanished = tree_rss_kib(pids)
            self.peak_kib = max(self.peak_kib, total)
            self.samples += 1
            since_scan = RESCAN_EVERY if vanished else since_scan + 1
            if self._stop.wait(SAMPLE_INTERVAL):
                return
