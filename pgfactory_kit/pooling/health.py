"""Is this idle connection still good? Cheap checks first, a round trip only when needed.

An idle connection should receive nothing from the server. If its socket is readable, the
server has spoken: almost always to say goodbye (``pg_terminate_backend``, a restart, an
``idle_session_timeout``), occasionally a NOTIFY or a parameter change. A zero-timeout
``poll()`` sees that with no round trip; only then, or for a connection idle for long, is a
``SELECT 1`` sent to be sure.
"""
from __future__ import annotations

import select
from typing import Any

import psycopg2
import psycopg2.extensions

_UNKNOWN = psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN
_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
if hasattr(select, "poll"):  # Linux, macOS: a poll object made once per connection
    _POLLIN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP

    def make_poller(conn: psycopg2.extensions.connection) -> Any:
        """Something that watches ``conn``'s socket, made once per connection (no per-check allocation)."""
        poller = select.poll()
        poller.register(conn.fileno(), _POLLIN)
        return poller

    def spoken_to(poller: Any) -> bool:
        """Whether the server sent something (zero timeout: one syscall, no round trip)."""
        return bool(poller.poll(0))

else:  # Windows has no poll(); select() works on sockets there
    def make_poller(conn: psycopg2.extensions.connection) -> Any:
        """Something that watches ``conn``'s socket (here simply its descriptor)."""
        return conn.fileno()

    def spoken_to(poller: Any) -> bool:
        """Whether the server sent something (zero timeout: one syscall, no round trip)."""
        return bool(select.select([poller], [], [], 0)[0])


def usable(conn: psycopg2.extensions.connection) -> bool:
    """Whether ``conn`` is open, not in a transaction, and answers ``SELECT 1`` (one round trip).

    The check runs in autocommit so it leaves no transaction behind.
    """
    if conn.closed or conn.get_transaction_status() != _IDLE:
        return False
    autocommit = conn.autocommit
    try:
        if not autocommit:
            conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        if not autocommit:
            conn.autocommit = False
    except psycopg2.Error:
        return False
    return True


def broken(conn: psycopg2.extensions.connection) -> bool:
    """Whether psycopg2 already knows ``conn`` is closed or its session is lost (no I/O)."""
    return bool(conn.closed) or conn.get_transaction_status() == _UNKNOWN


def close_quietly(conn: psycopg2.extensions.connection) -> None:
    """Close ``conn``, ignoring errors from a connection that is already gone."""
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is gone either way
        pass

# A connection returned less than this many seconds ago is lent with no check at all (no syscall):
# the hot path of a busy pool. A server that ended it within that moment looks like one that ended it
# a moment later, mid-query: the borrower sees the error.
TRUST_WINDOW = 0.01


def fit_to_lend(conn: psycopg2.extensions.connection, poller: Any, idle_for: float, check_after: float) -> bool:
    """Whether an idle connection may be lent, checked as cheaply as its idle time allows.

    Idle under TRUST_WINDOW (and under ``check_after``): yes, no syscall. Under ``check_after``:
    yes unless its socket is readable (one zero-timeout poll; readable -> confirm with SELECT 1).
    Longer: one SELECT 1.
    """
    if idle_for < TRUST_WINDOW and idle_for < check_after:
        return True  # reset and found clean on its return, a moment ago
    if broken(conn):
        return False
    if idle_for < check_after and not spoken_to(poller):
        return True
    return usable(conn)
