"""Fork safety for ReusedConnection and ConnectionPool.

A forked child inherits the parent's open sockets. If the child used one, two processes would
talk over one PostgreSQL session; if it merely closed one (``conn.close()`` or garbage
collection), libpq would send a Terminate message and end the *parent's* session. So, right
after ``os.fork()``, every connection the kit's wrappers hold has its file descriptor replaced
(``dup2``) by ``/dev/null`` in the child: using it fails with an error, closing it is harmless,
and the parent's session is untouched. Each wrapper then starts afresh in the child.
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol


class ForkAware(Protocol):
    """What a wrapper provides to be made safe across ``os.fork()``."""

    def _before_fork(self) -> None: ...
    def _after_fork_in_parent(self) -> None: ...
    def _after_fork_in_child(self) -> None: ...


_LIVE: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()
_HELD: list[ForkAware] = []


def register(obj: ForkAware) -> None:
    """Have ``obj`` told about every future fork of this process."""
    with _LIVE_LOCK:
        _LIVE.add(obj)


def unregister(obj: ForkAware) -> None:
    """Stop telling ``obj`` about forks (it holds no connections any more)."""
    with _LIVE_LOCK:
        _LIVE.discard(obj)


def neutralise_fd(fd: int) -> None:
    """Point ``fd`` at /dev/null in this process, so it no longer reaches the server socket."""
    if fd < 0:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, fd, inheritable=False)
    except OSError:
        pass  # already closed in this process: nothing to protect
    finally:
        os.close(devnull)


def _before() -> None:
    # Take every wrapper's lock so the child inherits each in a consistent state.
    _LIVE_LOCK.acquire()
    _HELD[:] = list(_LIVE)
    for obj in _HELD:
        obj._before_fork()


def _after_in_parent() -> None:
    for obj in reversed(_HELD):
        obj._after_fork_in_parent()
    _HELD.clear()
    _LIVE_LOCK.release()


def _after_in_child() -> None:
    global _LIVE_LOCK
    held = list(_HELD)
    _HELD.clear()
    _LIVE_LOCK = threading.Lock()
    for obj in held:
        obj._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child)
