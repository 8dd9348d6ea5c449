"""Checker for notebook 08 (failure modes): a caller that survives a connection dying under it."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.errors

from ...errors import PoolTimeout
from ...factory import make_factory
from ...pooling.pool import ConnectionPool
from ...settings import ConnectionSettings
from ..lesson import server_view, wait_until_gone
from . import Verdict, check, passed, todo

CHECKER_APP = "pgfactory_nb08_checker"
SLOW_QUERY = "SELECT pg_backend_pid() FROM pg_sleep(%s)"


class _KillFirstSlowQuery(threading.Thread):
    """Terminates the first backend seen running SLOW_QUERY for the checker (once; bounded in time)."""

    def __init__(self, settings: ConnectionSettings, timeout: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.view = server_view(settings)
        self.deadline = time.monotonic() + timeout
        self.killed: int | None = None

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            rows = self.view.query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
                "AND query LIKE %s", (CHECKER_APP, "%pg_sleep%"))
            if rows:
                self.killed = int(rows[0][0])
                self.view.terminate(self.killed)
                return
            time.sleep(0.02)


class _CountingPool:
    """The pool the learner's function gets: the same pool, counting the ``connection()`` blocks opened."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self.borrows = 0

    def connection(self, timeout: float | None = None) -> Any:
        self.borrows += 1
        return self._pool.connection(timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def _attempts(fetch_one_with_retry: Callable[..., Any], pool: ConnectionPool, sql: str,
              params: tuple = ()) -> tuple[BaseException | None, int]:
    """Call the learner's function once; return what it raised (or None) and how many blocks it opened."""
    counting = _CountingPool(pool)
    try:
        fetch_one_with_retry(counting, sql, params)
    except BaseException as exc:  # noqa: BLE001 - the learner's code may raise anything
        return exc, counting.borrows
    return None, counting.borrows


def check_retry(fetch_one_with_retry: Callable[..., Any], settings: ConnectionSettings) -> Verdict:
    """``fetch_one_with_retry(pool, sql, params=())`` must return one row, retry once when the
    connection was lost under it, and let every other error through at once — bad SQL, a query the
    server cancelled (``statement_timeout``: ``QueryCanceled``) and a pool that had no connection
    to give (``PoolTimeout``) are all ``OperationalError``s or errors that a retry does not cure."""
    factory = make_factory(settings.with_(application_name=CHECKER_APP))
    with ConnectionPool(factory, min_size=0, max_size=1, name="nb08-checker") as pool:
        first = fetch_one_with_retry(pool, "SELECT 1")
        if first is Ellipsis:
            return todo("retry once", "make fetch_one_with_retry run the query in `with pool.connection() as conn:`, "
                                      "return cur.fetchone(), and try a second time when the connection was lost.")
        check(first == (1,), expected="one row: (1,) for SELECT 1", seen=first,
              hint="pass params to cur.execute and return cur.fetchone() from inside the `with` block.")
        killer = _KillFirstSlowQuery(settings)
        killer.start()
        try:
            second = fetch_one_with_retry(pool, SLOW_QUERY, (0.5,))
        except psycopg2.OperationalError as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            check(False, expected="the call succeeds on a new connection after the first one was terminated",
                  seen=f"{type(exc).__name__}: {text}",
                  hint="catch psycopg2.OperationalError around the whole `with pool.connection()` block and run "
                       "it once more when the connection was lost (conn.closed is non-zero after the error): the "
                       "pool discards the dead connection and opens a new one.")
        finally:
            killer.join(timeout=15)
        if killer.killed is None:
            raise RuntimeError("the checker could not see your query running, so it could not test the retry; "
                               "did fetch_one_with_retry run the SQL it was given?")
        wait_until_gone(settings, [killer.killed])
        check(isinstance(second, tuple) and second[0] != killer.killed,
              expected="a row from a different backend than the terminated one", seen=second,
              hint="retry with a new `with pool.connection()` block, not on the dead connection.")
        raised, _ = _attempts(fetch_one_with_retry, pool, "SELECT 1 / 0")
        check(isinstance(raised, psycopg2.errors.DivisionByZero),
              expected="SELECT 1 / 0 raises DivisionByZero (only a lost connection is worth a retry)",
              seen=type(raised).__name__ if raised else "no error",
              hint="catch psycopg2.OperationalError only; let other errors (bad SQL, bad data) through.")
    impatient = make_factory(settings.with_(application_name=CHECKER_APP), session={"statement_timeout": "100ms"})
    with ConnectionPool(impatient, min_size=0, max_size=1, name="nb08-checker-timeout") as pool:
        raised, borrows = _attempts(fetch_one_with_retry, pool, "SELECT pg_sleep(%s)", (1,))
        check(isinstance(raised, psycopg2.errors.QueryCanceled) and borrows == 1,
              expected="a statement_timeout (QueryCanceled) raised at once, after one attempt",
              seen=f"{type(raised).__name__ if raised else 'no error'} after {borrows} attempt(s)",
              hint="QueryCanceled is an OperationalError too, but the connection is fine: the server cancelled a "
                   "query that was too slow, and running it again only doubles the wait. Retry only when the "
                   "connection was lost: after the error, conn.closed is non-zero.")
    with ConnectionPool(factory, min_size=0, max_size=1, timeout=0.2, name="nb08-checker-full") as pool:
        hoarded = pool.getconn()
        try:
            raised, borrows = _attempts(fetch_one_with_retry, pool, "SELECT 1")
        finally:
            pool.putconn(hoarded)
        check(isinstance(raised, PoolTimeout) and borrows == 1,
              expected="PoolTimeout raised at once, after one attempt (the pool had no connection to give)",
              seen=f"{type(raised).__name__ if raised else 'no error'} after {borrows} attempt(s)",
              hint="PoolTimeout is an OperationalError too, but no connection was lost: the pool is exhausted, and "
                   "waiting again makes an overloaded service slower. Retry only when you had a connection and "
                   "it was lost (conn.closed is non-zero).")
    return passed("retry once", "The connection died mid-query and the caller got its row anyway; a cancelled "
                                "query and an exhausted pool were reported at once, not retried.")
