"""Evidence the notebooks read from the server about one claim each: what a connection really
uses (TLS or not), what an idle transaction holds, how threads fare on one connection or on a pool,
how often psycopg2's ThreadedConnectionPool reconnects, how many connections a learner may open, and
PgBouncer's session-state leak.

Promises (as in ``lesson``): nothing returns or prints a password; every wait and loop is bounded.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions

from ..measuring.machine import connection_transport, describe_transport  # noqa: F401 - the lessons import them from here
from ..settings import ConnectionSettings
from .lesson import server_sessions, server_view, wait_until_gone

# ---------------------------------------------------------------------------- what a connection uses
# connection_transport / describe_transport live in measuring.machine (the bench records the same answer).


# ---------------------------------------------------------------------------- what an idle transaction holds
def held_by(settings: ConnectionSettings, pid: int) -> dict[str, Any]:
    """What backend ``pid`` holds right now, from ``pg_stat_activity`` and ``pg_locks``: its
    ``state``, ``backend_xid`` (a transaction ID: only after a write), ``backend_xmin`` (the oldest
    transaction its snapshot needs: what holds vacuum back), and the table ``locks`` it holds as
    ``{table: mode}`` (its virtual-transaction lock is left out)."""
    view = server_view(settings)
    rows = view.query("SELECT state, backend_xid::text, backend_xmin::text FROM pg_stat_activity "
                      "WHERE pid = %s", (int(pid),))
    if not rows:
        raise LookupError(f"backend {pid} is not connected")
    state, xid, xmin = rows[0]
    locks = view.query("SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                       "WHERE l.pid = %s AND l.locktype = 'relation' AND l.granted AND c.relkind = 'r' "
                       "ORDER BY c.relname, l.mode", (int(pid),))
    return {"state": state, "backend_xid": xid, "backend_xmin": xmin,
            "locks": {name: mode for name, mode in locks}}


# ---------------------------------------------------------------------------- threads, one connection or a pool
def sleep_on_threads(borrow: Callable[[], ContextManager[Any]], *, threads: int = 4, sleep_s: float = 0.2,
                     timeout_s: float = 60.0) -> tuple[float, list[int]]:
    """Start ``threads`` threads at once; each borrows a connection with ``borrow()`` (a ``with``-block
    factory such as ``ReusedConnection.connection`` or ``ConnectionPool.connection``), runs
    ``SELECT pg_sleep(sleep_s)`` on it and notes its backend PID. Returns the wall-clock seconds the
    whole run took and the PIDs, one per thread: queries that share one connection run one after
    another, queries on connections of their own overlap. Bounded by ``timeout_s``."""
    from concurrent.futures import ThreadPoolExecutor

    def task(_: int) -> int:
        with borrow() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(%s)", (sleep_s,))
            return int(conn.info.backend_pid)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as executor:
        pids = list(executor.map(task, range(threads), timeout=timeout_s))
    return time.perf_counter() - started, pids


# ---------------------------------------------------------------------------- ThreadedConnectionPool's churn
TPOOL_APP = "pgfactory_kit_tpool"


@dataclass(frozen=True)
class PoolChurn:
    """What ``threaded_pool_churn`` counted for one ``ThreadedConnectionPool(minconn, maxconn)``."""

    minconn: int
    maxconn: int
    threads: int
    rounds: int
    borrows: int
    sessions_opened: int  # pg_stat_database.sessions, before the pool to after it closed

    def as_row(self) -> dict[str, Any]:
        return {"pool": f"ThreadedConnectionPool({self.minconn}, {self.maxconn})", "threads": self.threads,
                "rounds": self.rounds, "borrows": self.borrows, "sessions_opened": self.sessions_opened}


def threaded_pool_churn(settings: ConnectionSettings, minconn: int, maxconn: int, *, threads: int = 4,
                        rounds: int = 5, timeout_s: float = 30.0) -> PoolChurn:
    """Run ``rounds`` rounds in which ``threads`` threads each borrow a connection from one
    ``psycopg2.pool.ThreadedConnectionPool(minconn, maxconn)``, all hold it at once (a barrier),
    run ``SELECT 1`` and give it back; count the sessions the server opened meanwhile.

    psycopg2's ``putconn`` keeps a returned connection only while fewer than ``minconn`` are idle
    and closes the rest, so with ``minconn < threads`` every round reconnects. Needs
    ``threads <= maxconn``; bounded by ``timeout_s`` (a barrier that times out raises)."""
    from psycopg2.pool import ThreadedConnectionPool

    if threads > maxconn:
        raise ValueError(f"threads ({threads}) must not exceed maxconn ({maxconn}): the pool would refuse them")
    before = server_sessions(settings)
    pool = ThreadedConnectionPool(minconn, maxconn, **settings.with_(application_name=TPOOL_APP).connect_kwargs())
    pids: set[int] = set()
    lock = threading.Lock()
    deadline = time.monotonic() + timeout_s
    held_together = threading.Barrier(threads, timeout=max(1.0, timeout_s / max(1, rounds)))

    def borrower() -> None:
        conn = pool.getconn()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            conn.rollback()
            with lock:
                pids.add(int(conn.info.backend_pid))
            held_together.wait()  # every thread holds a connection at this moment
        finally:
            pool.putconn(conn)

    try:
        for _ in range(rounds):
            if time.monotonic() > deadline:
                raise TimeoutError(f"threaded_pool_churn took longer than {timeout_s:.0f} s")
            workers = [threading.Thread(target=borrower) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=max(0.1, deadline - time.monotonic()))
            held_together.reset()
    finally:
        pids.update(int(p) for p in server_view(settings).activity(TPOOL_APP)["pid"])  # idle ones too
        pool.closeall()
    wait_until_gone(settings, pids)
    return PoolChurn(minconn, maxconn, threads, rounds, threads * rounds, server_sessions(settings) - before)


# ---------------------------------------------------------------------------- how many connections I may open
def connection_budget(settings: ConnectionSettings) -> dict[str, int]:
    """How many more connections this role may open right now, from the server's own limits:
    ``max_connections`` minus the reserved slots minus every session now open, and, when the role or
    the database has a ``CONNECTION LIMIT``, that limit minus its sessions now open. Keys:
    ``max_connections``, ``reserved``, ``in_use``, ``role_limit`` / ``database_limit`` (-1 = none),
    ``role_in_use``, ``database_in_use``, ``available`` (the smallest headroom; the observer
    connection that asks is already counted in ``in_use``)."""
    rows = server_view(settings).query(
        "SELECT current_setting('max_connections')::int, "
        "current_setting('superuser_reserved_connections')::int "
        "+ coalesce((SELECT setting::int FROM pg_settings WHERE name = 'reserved_connections'), 0), "
        "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
        "(SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user), "
        "(SELECT count(*) FROM pg_stat_activity WHERE usename = current_user "
        "   AND backend_type = 'client backend'), "
        "(SELECT datconnlimit FROM pg_database WHERE datname = current_database()), "
        "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "   AND backend_type = 'client backend')")
    max_conn, reserved, in_use, role_limit, role_in_use, db_limit, db_in_use = (int(v) for v in rows[0])
    headroom = [max_conn - reserved - in_use]
    if role_limit >= 0:
        headroom.append(role_limit - role_in_use)
    if db_limit >= 0:
        headroom.append(db_limit - db_in_use)
    return {"max_connections": max_conn, "reserved": reserved, "in_use": in_use, "role_limit": role_limit,
            "role_in_use": role_in_use, "database_limit": db_limit, "database_in_use": db_in_use,
            "available": max(0, min(headroom))}


def fit_to_budget(sizes: tuple[int, ...], available: int, keep_free: int = 2) -> tuple[int, ...]:
    """The ``sizes`` (thread counts or pool sizes) that fit in ``available`` connections with
    ``keep_free`` left over; at least ``(1,)`` so a lesson always has something to run."""
    fitting = tuple(size for size in sizes if size <= available - keep_free)
    return fitting or (1,)


# ---------------------------------------------------------------------------- PgBouncer's session-state leak
def session_state_leak(bouncer: ConnectionSettings, value: str = "alice") -> dict[str, Any]:
    """Through a transaction-pooling PgBouncer with one server connection: client A runs
    ``SET myapp.tenant = value`` (a session setting) and disconnects; client B, a different client
    connection, then reads ``current_setting('myapp.tenant', true)``. Returns both clients' server
    backend PIDs and what B read: with transaction pooling B gets A's server session, setting included."""
    kwargs = bouncer.with_(connect_timeout=5).connect_kwargs()
    a = psycopg2.connect(**kwargs)
    try:
        a.autocommit = True
        with a.cursor() as cur:
            cur.execute("SET myapp.tenant = %s", (value,))
            cur.execute("SELECT pg_backend_pid()")
            a_pid = int(cur.fetchone()[0])
    finally:
        a.close()
    b = psycopg2.connect(**kwargs)
    try:
        b.autocommit = True
        with b.cursor() as cur:
            cur.execute("SELECT pg_backend_pid(), current_setting('myapp.tenant', true)")
            b_pid, seen = cur.fetchone()
    finally:
        b.close()
    return {"a_backend_pid": a_pid, "b_backend_pid": int(b_pid), "a_set": value, "b_read": seen}


# ---------------------------------------------------------------------------- pools side by side
def serve_order(pool: Any, waiters: int = 3, timeout_s: float = 10.0) -> list[int]:
    """With every connection of ``pool`` borrowed (call it on a pool of ``max_size=1`` whose one
    connection is free), start ``waiters`` borrower threads one at a time, each only once the one
    before it is waiting (``stats()["requests_waiting"]``), then give the connection back. Returns
    the order in which the borrowers got it (0 = the first to ask). Bounded by ``timeout_s``."""
    held = pool.getconn(timeout=timeout_s)
    order: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout_s

    def borrower(number: int) -> None:
        with pool.connection(timeout=timeout_s):
            with lock:
                order.append(number)

    threads = []
    try:
        for number in range(waiters):
            thread = threading.Thread(target=borrower, args=(number,), daemon=True)
            thread.start()
            threads.append(thread)
            while pool.stats()["requests_waiting"] < number + 1:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"borrower {number} did not start waiting within {timeout_s:.0f} s")
                time.sleep(0.005)
    finally:
        pool.putconn(held)
        for thread in threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
    return order


def psycopg_pool_after_terminate(settings: ConnectionSettings, *, checked: bool) -> dict[str, Any]:
    """psycopg 3's ``psycopg_pool.ConnectionPool`` (``min_size=max_size=1``) after its idle
    connection's backend was terminated: does the next borrower's query fail? ``checked`` passes
    ``check=ConnectionPool.check_connection``; without it the pool's ``check`` is its default, None.
    Returns ``outcome`` ("ok" or the error's class and first line) and the pool's ``stats``.
    Raises ImportError when psycopg_pool is not installed."""
    import logging

    import psycopg
    import psycopg_pool

    from .lesson import terminate_backend

    conninfo = psycopg.conninfo.make_conninfo(**settings.with_(application_name="pgfactory_kit_psycopg_pool")
                                              .connect_kwargs())
    check = psycopg_pool.ConnectionPool.check_connection if checked else None
    pool_logger = logging.getLogger("psycopg.pool")
    level = pool_logger.level
    pool_logger.setLevel(logging.ERROR)  # its "discarding closed connection" warning is the point, not noise
    try:
        with psycopg_pool.ConnectionPool(conninfo, min_size=1, max_size=1, check=check, open=True,
                                         timeout=10, name="lesson04-psycopg") as pool:
            pool.wait(timeout=10)
            with pool.connection() as conn:
                victim = int(conn.info.backend_pid)
            terminate_backend(settings, victim)
            wait_until_gone(settings, [victim])
            try:
                with pool.connection() as conn:
                    conn.execute("SELECT 1")
                outcome = "ok"
            except psycopg.OperationalError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                outcome = f"{type(exc).__name__}: {first}"
            stats = pool.get_stats()
    finally:
        pool_logger.setLevel(level)
    return {"check": "ConnectionPool.check_connection" if checked else "None (the default)",
            "outcome": outcome, "connections_lost": stats.get("connections_lost", 0),
            "returns_bad": stats.get("returns_bad", 0)}


# ------------------------------------------------------------------------ one conversation, round trip by round trip
_WHAT_IT_IS = {
    "SSLRequest": "libpq asks for TLS (sslmode=prefer asks even when the server has none)",
    "GSSENCRequest": "libpq asks for GSSAPI encryption",
    "StartupMessage": "start-up: protocol, user, database; the server says how to authenticate",
    "SASLInitialResponse": "SCRAM, first exchange: the client's nonce; the server's salt and iteration count",
    "SASLResponse": "SCRAM, second exchange: the client's proof; the server's signature, then session set-up",
    "PasswordMessage": "the password (or its md5 hash); then session set-up",
    "Query": "the query itself",
}


def _collapse(names: list[str]) -> str:
    """``A, B, B, B`` -> ``A, 3× B``: consecutive repeats of one message name collapsed."""
    parts: list[str] = []
    for name in names:
        if parts and parts[-1][0] == name:
            parts[-1][1] += 1
        else:
            parts.append([name, 1])
    return ", ".join(name if count == 1 else f"{count}× {name}" for name, count in parts)


def round_trip_steps(messages: Any) -> Any:
    """One row per round trip of one connection's conversation (``WireTap.messages()`` rows, in order):
    a run of client messages and the server's answer to it. Columns ``round_trip``, ``client_sends``,
    ``server_answers`` (repeats collapsed, e.g. ``15× ParameterStatus``) and ``what_it_is``. Client
    messages that get no answer (``Terminate``) are not a round trip and are left out."""
    import pandas as pd

    rows: list[tuple[list[str], list[str]]] = []
    sent: list[str] = []
    answer: list[str] = []
    for direction, name in zip(messages["direction"], messages["name"], strict=True):
        if direction == "client":
            if answer:
                rows.append((sent, answer))
                sent, answer = [], []
            sent.append(name)
        elif sent:
            answer.append(name)
    if sent and answer:
        rows.append((sent, answer))
    return pd.DataFrame([{"round_trip": i, "client_sends": _collapse(s), "server_answers": _collapse(a),
                          "what_it_is": _WHAT_IT_IS.get(s[0], "")} for i, (s, a) in enumerate(rows, 1)])
