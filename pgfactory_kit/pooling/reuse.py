"""ReusedConnection: the smallest real reuse — one connection, handed out again and again.

The blog's factory opens a new connection on every call. Wrapping it in ``ReusedConnection``
opens one the first time and hands the same one back afterwards, replacing it only when it is
closed or broken (``.connects`` says how many were opened). ``.connection()`` lends it inside a
``with`` block, one thread at a time, committing on success and rolling back on error.

It follows ConnectionPool's rules with the same helpers (health.py): before handing the
connection out again, a zero-timeout poll of its socket, and ``SELECT 1`` only if the server
spoke (the pool's middle tier, on every ``get()``: no hot path to protect here); the same fork
safety (fork.py) and the same constructor check (arguments.py). Its one lock is held for a
whole ``with`` block: with one connection, taking turns *is* the design (a pool is what lets
threads work at once).
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

import psycopg2
import psycopg2.extensions

from . import fork as pool_fork
from .arguments import check_factory
from .health import _IDLE, broken, close_quietly, make_poller, spoken_to, usable

Connection = psycopg2.extensions.connection


class ReusedConnection:
    """One connection from ``factory``, reused until it is closed or broken."""

    def __init__(self, factory: Callable[[], Connection]) -> None:
        check_factory(factory)
        self._factory = factory
        self._lock = threading.RLock()  # re-entrant: get() inside one's own connection() block
        self._conn: Connection | None = None
        self._poller = None
        self.connects = 0
        pool_fork.register(self)

    def __repr__(self) -> str:
        state = "none" if self._conn is None else ("closed" if self._conn.closed else "open")
        return f"<ReusedConnection connection={state} connects={self.connects}>"

    def get(self) -> Connection:
        """The current connection; a new one only if there is none or it is closed or broken.

        "Broken" includes a connection the server has ended while it sat idle (restart,
        ``pg_terminate_backend``): its socket is readable, and ``SELECT 1`` confirms it is gone.
        A connection in the middle of a transaction is never swapped behind the caller's back.
        """
        with self._lock:
            conn = self._conn
            if conn is not None and not self._still_good(conn):
                close_quietly(conn)
                conn = self._conn = self._poller = None
            if conn is None:
                conn = self._factory()
                self._conn = conn
                self._poller = make_poller(conn)
                self.connects += 1
            return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """Lend the connection to one thread at a time; commit on success, roll back on error."""
        with self._lock:
            conn, pid = self.get(), os.getpid()
            try:
                yield conn
            except BaseException:
                if not conn.closed and pid == os.getpid():
                    with contextlib.suppress(psycopg2.Error):
                        conn.rollback()
                raise
            else:
                if pid == os.getpid():  # a child forked inside the block leaves the parent's session alone
                    conn.commit()

    def close(self) -> None:
        """Close the connection, if any. A later ``get()`` opens a new one."""
        with self._lock:
            conn, self._conn, self._poller = self._conn, None, None
        if conn is not None:
            close_quietly(conn)

    @property
    def closed(self) -> bool:
        """True when no open connection is held."""
        conn = self._conn
        return conn is None or bool(conn.closed)

    def __enter__(self) -> ReusedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _still_good(self, conn: Connection) -> bool:
        if broken(conn):
            return False
        if conn.get_transaction_status() != _IDLE or self._poller is None:
            return True  # the caller's transaction: theirs to finish or to see fail
        return not spoken_to(self._poller) or usable(conn)

    # -- fork safety (see pool_fork) --------------------------------------------------------
    # The lock is held across the caller's ``with`` block, so it is not taken around fork():
    # the child reads the one attribute it needs and starts with a fresh lock.
    def _before_fork(self) -> None:
        pass

    def _after_fork_in_parent(self) -> None:
        pass

    def _after_fork_in_child(self) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            pool_fork.neutralise_fd(conn.fileno())
        self._conn = self._poller = None
        self._lock = threading.RLock()
