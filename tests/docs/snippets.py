"""Run the code blocks of a Markdown page, top to bottom, the way a reader would.

Each page gets a fresh directory (its current directory, first on ``sys.path``), so the default
``Celery("tasks")`` uses a ``celeriac.db`` of its own, and one Python namespace shared by its blocks:

* ```` ```python ```` blocks are executed in that namespace;
* ```` ```pycon ```` blocks are doctests run in that namespace; task ids, times, addresses and the
  page's directory (shown as ``/tmp/project``) are normalized before output is compared;
* ```` ```console ```` / ```` ```bash ```` blocks run each ``$ command`` line in a shell in the page's
  directory. ``celeriac ... worker`` (not ``--help``/``--detach``) starts a real worker in the
  background, kept until the page ends; ``pip install`` lines are not run (celeriac is installed).
  Other commands must exit with 0, and the output shown under a command must appear, line by line
  and in order, in what it prints (extra lines are allowed: help texts grow). A task id shown in
  an output and used in a later command is replaced by the real one.

An HTML comment right before a block changes what happens to it:

* ``<!-- snippet: file PATH -->``: the block is the content of ``PATH``, written, not executed;
* ``<!-- snippet: variant redis|amqp -->``: the block is a complete ``tasks.py`` for that broker.
  It is written to a directory of its own and run with a real worker against the test's Redis
  database (with a key prefix of its own, set after the block's code) or RabbitMQ vhost, and
  ``add.delay(4, 4).get()`` must give 8;
* ``<!-- snippet: skip REASON -->``: not run (needs a server or a machine the tests don't have).

Failures name the page and the line of the block (``docs/first-steps.md:42``).
"""

from __future__ import annotations

import doctest
import importlib
import os
import re
import shlex
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, WorkerProcess

DOCS = ROOT / "docs"
SHOWN_DIR = "/tmp/project"  # where the docs show their commands being run
SHOWN_HOST = "vm"  # the host name in the docs' output

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)[^\n]*$")
_MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<kind>[\w-]+)\s*(?P<arg>.*?)\s*-->\s*$")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str = ""  # "file", "variant", "skip" or ""
    arg: str = ""

    @property
    def where(self) -> str:
        try:
            name = self.path.relative_to(ROOT)
        except ValueError:
            name = self.path
        return f"{name}:{self.line}"


class SnippetError(AssertionError):
    pass


def parse(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the marker comment just before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match["indent"], match["fence"], match["lang"].lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        marker = arg = ""
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        if prev >= 0 and (m := _MARKER.match(lines[prev])):
            marker, arg = m["kind"], m["arg"]
            if marker not in ("file", "variant", "skip"):
                raise SnippetError(f"{path}:{prev + 1}: unknown snippet marker {marker!r}")
            if marker == "skip" and not arg:
                raise SnippetError(f"{path}:{prev + 1}: a skipped snippet needs a reason")
        blocks.append(Block(path, start + 1, lang, "\n".join(body) + "\n", marker, arg))
    return blocks


def runnable(block: Block) -> bool:
    if block.marker in ("file", "variant"):
        return True
    if block.lang in ("python", "py", "pycon"):
        return True
    return block.lang in ("console", "bash", "shell", "sh") and any(
        line.startswith("$ ") for line in block.code.splitlines()
    )


def normalize(text: str, workdir: Path) -> str:
    """Make output comparable: the page's directory, host, ids, times, addresses and durations."""
    text = text.replace(str(workdir.resolve()), SHOWN_DIR).replace(str(workdir), SHOWN_DIR)
    host = socket.gethostname()
    if host != SHOWN_HOST:
        text = text.replace(f"@{host}", f"@{SHOWN_HOST}")
    text = _UUID.sub("<uuid>", text)
    text = re.sub(r"0x[0-9a-f]{6,}", "0x<addr>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(,\d+|\.\d+)?", "<time>", text)
    text = re.sub(r"\b\d+\.\d+s\b", "<seconds>s", text)
    # The worker's banner: version, platform and CPU count.
    text = re.sub(r" v\d+\.\d+\.\d+\S* \(celeriac\)", " v<version> (celeriac)", text)
    text = re.sub(r"^-- \*{7} ---- \S+ <time>", "-- ******* ---- <platform> <time>", text, flags=re.M)
    text = re.sub(r"concurrency: \d+ \(", "concurrency: <n> (", text)
    return text


class _Checker(doctest.OutputChecker):
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        # A printed traceback ends with a newline: no <BLANKLINE> in the docs for it.
        want, got = (normalize(text, self.workdir).rstrip("\n") + "\n" for text in (want, got))
        return super().check_output(want, got, optionflags)


@dataclass
class Page:
    """One page being run: its directory, namespace, workers and the ids seen so far."""

    path: Path
    workdir: Path
    env: dict[str, str]
    namespace: dict[str, Any] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # id shown in the docs -> real id
    variant_urls: dict[str, str] = field(default_factory=dict)  # "redis"/"amqp" -> the test's broker URL
    redis_url: str = ""  # results of a variant that keeps them in Redis go here
    redis_prefix: str = ""  # the test's own Redis keys: appended to a variant as transport options

    def run(self, block: Block) -> None:
        try:
            if block.marker == "skip":
                return
            if block.marker == "file":
                self._write(block)
            elif block.marker == "variant":
                self._variant(block)
            elif block.lang == "pycon":
                self._doctest(block)
            elif block.lang in ("python", "py"):
                self._exec(block)
            else:
                self._console(block)
        except SnippetError:
            raise
        except Exception as exc:
            detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3))
            raise SnippetError(f"{block.where}: the {block.lang} block failed:\n{block.code}\n{detail}") from exc

    # -- kinds of block ---------------------------------------------------------------------------------
    def _write(self, block: Block) -> None:
        name = block.arg.split()[0]
        target = self.workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code)
        module = name[:-3].replace("/", ".").removesuffix(".__init__") if name.endswith(".py") else None
        if module and module in sys.modules:
            self._close_module(module)
        importlib.invalidate_caches()

    def _exec(self, block: Block) -> None:
        # Padded so that a traceback's line numbers are the page's.
        code = compile("\n" * block.line + block.code, str(block.path), "exec")
        exec(code, self.namespace)

    def _doctest(self, block: Block) -> None:
        parser = doctest.DocTestParser()
        test = parser.get_doctest(block.code, self.namespace, block.where, str(block.path), block.line)
        runner = doctest.DocTestRunner(checker=_Checker(self.workdir), optionflags=doctest.ELLIPSIS)
        out: list[str] = []
        runner.run(test, out=out.append, clear_globs=False)
        self.namespace.update(test.globs)  # DocTest runs on a copy of the namespace
        if runner.failures:
            raise SnippetError(f"{block.where}: the pycon block's output differs:\n{''.join(out)}")

    def _console(self, block: Block) -> None:
        for command, shown in _commands(block.code):
            for doc_id, real_id in self.ids.items():
                command = command.replace(doc_id, real_id)
            argv = shlex.split(command, comments=True)
            if not argv or argv[:2] == ["pip", "install"]:
                continue
            if argv[0] == "celeriac" and "worker" in argv and not {"--help", "-h", "--detach", "-D"} & set(argv):
                worker = self._start_worker(argv[1:], block)
                self._compare(block, command, shown, worker.output)
                continue
            done = subprocess.run(
                command,
                shell=True,
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if done.returncode != 0:
                raise SnippetError(
                    f"{block.where}: `{command}` exited with {done.returncode}:\n{done.stdout}{done.stderr}"
                )
            self._compare(block, command, shown, done.stdout + done.stderr)

    def _start_worker(self, args: list[str], block: Block) -> WorkerProcess:
        worker = WorkerProcess(self.workdir, "", [], self.env)
        worker.cmd = [sys.executable, "-m", "celeriac", *args]
        self.workers.append(worker)
        try:
            worker.start(ready_timeout=60)
        except AssertionError as exc:
            raise SnippetError(f"{block.where}: the worker did not start:\n{exc}") from None
        return worker

    def _compare(self, block: Block, command: str, shown: list[str], output: str) -> None:
        if not shown:
            return
        got = output.splitlines()
        got_norm = [normalize(line, self.workdir).rstrip() for line in got]
        at = 0
        for want in shown:
            want_norm = normalize(want, self.workdir).rstrip()
            while at < len(got_norm) and got_norm[at] != want_norm:
                at += 1
            if at == len(got_norm):
                raise SnippetError(
                    f"{block.where}: `{command}` did not print {want!r} (in the order shown). It printed:\n{output}"
                )
            self.ids.update(zip(_UUID.findall(want), _UUID.findall(got[at]), strict=True))
            at += 1

    def _variant(self, block: Block) -> None:
        kind = block.arg.split()[0]
        broker = self.variant_urls[kind]
        backend = "rpc://" if "rpc://" in block.code else self.redis_url if "redis://" in block.code else ""
        where = self.workdir / f"variant-{kind}-{block.line}"
        where.mkdir()
        code = block.code
        if self.redis_prefix:
            options = {"global_keyprefix": self.redis_prefix}
            code += f"\napp.conf.broker_transport_options = {options!r}\n"
            code += f"app.conf.result_backend_transport_options = {options!r}\n"
        (where / "tasks.py").write_text(code)
        env = dict(self.env, CELERIAC_BROKER_URL=broker)
        if backend:
            env["CELERIAC_RESULT_BACKEND"] = backend
        env["PYTHONPATH"] = os.pathsep.join([str(where), env.get("PYTHONPATH", "")])
        worker = WorkerProcess(where, "tasks", ["worker", "-l", "info", "-c", "1"], env)
        worker.cmd = [sys.executable, "-m", "celeriac", "-A", "tasks", "worker", "-l", "info", "-c", "1"]
        self.workers.append(worker)
        worker.start(ready_timeout=60)
        client = "from tasks import add, app\nprint(add.delay(4, 4).get(timeout=30))\napp.close()\n"
        done = subprocess.run(
            [sys.executable, "-c", client], cwd=where, env=env, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0 or done.stdout.strip() != "8":
            raise SnippetError(f"{block.where}: add.delay(4, 4).get() on {kind} failed:\n{done.stdout}{done.stderr}")
        worker.stop()

    # -- end of the page ----------------------------------------------------------------------------------
    def close(self) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.stop()
            elif worker.proc is not None:
                worker._reap()
        for name, module in list(sys.modules.items()):
            origin = getattr(module, "__file__", None) or ""
            if origin.startswith(str(self.workdir)):
                self._close_module(name)
        from celeriac.app import Celery

        for value in list(self.namespace.values()):
            if isinstance(value, Celery):
                value.close()
        self.namespace.clear()

    def _close_module(self, name: str) -> None:
        from celeriac.app import Celery

        module = sys.modules.pop(name)
        for value in vars(module).values():
            if isinstance(value, Celery):
                value.close()


def _commands(code: str) -> Iterator[tuple[str, list[str]]]:
    """``($ command, [output lines shown under it])`` of a console block; ``\\`` continues a command."""
    command: str | None = None
    shown: list[str] = []
    lines = iter(code.splitlines())
    for line in lines:
        if line.startswith("$ "):
            if command is not None:
                yield command, shown
            command, shown = line[2:], []
            while command.endswith("\\"):
                command = command[:-1] + next(lines, "").strip()
        elif command is not None and line.strip():
            shown.append(line)
    if command is not None:
        yield command, shown


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def page_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CELERIAC_BROKER_URL", None)
    env.pop("CELERIAC_RESULT_BACKEND", None)
    env.pop("CELERY_BROKER_URL", None)
    env.pop("CELERY_RESULT_BACKEND", None)
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "80"
    return env
