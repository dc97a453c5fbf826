"""Identifiers the send path needs on every call, made cheaply.

``pid()``: this process's id, kept current across ``os.fork()``. The send path asks "am I
still the process that opened this connection?" several times per ``delay()``;
``os.getpid()`` is a system call each time, this is a global read.

``new_id()``: a random UUID as text (task ids, delivery tags).
"""

from __future__ import annotations

import os

__all__ = ["new_id", "pid"]

_pid = os.getpid()


def pid() -> int:
    """The current process id (updated in a forked child before any of its code runs)."""
    return _pid


def _after_fork_in_child() -> None:
    global _pid, _stock
    _pid = os.getpid()
    _stock = []  # the parent's: never handed out here


if hasattr(os, "register_at_fork"):  # elsewhere there is no fork: the id never changes
    os.register_at_fork(after_in_child=_after_fork_in_child)


def new_id() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` gives it, at a third of its cost.

    The random bytes are read 64 ids at a time (one ``getrandom`` system call instead of
    one per id). Ids are popped from a list, which is atomic, so two threads never get
    the same one; a forked child never uses its parent's stock.
    """
    if _stock_pid == _pid:
        try:
            return _stock.pop()
        except IndexError:
            pass
    return _restock()


def _restock() -> str:
    global _stock, _stock_pid
    raw = os.urandom(16 * _STOCK)
    stock = [_format(int.from_bytes(raw[i : i + 16], "big")) for i in range(0, len(raw), 16)]
    first = stock.pop()
    # A new list: a thread still popping the old one takes ids no one else gets.
    _stock, _stock_pid = stock, _pid
    return first


def _format(value: int) -> str:
    h = f"{(value & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_STOCK = 64
_stock: list[str] = []
_stock_pid = 0
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version and variant bits
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant
