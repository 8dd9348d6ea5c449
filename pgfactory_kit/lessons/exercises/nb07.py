"""Checker for notebook 07: a caller that survives a connection dying under it."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.errors

from ...factory import make_factory
from ...pooling.pool import ConnectionPool
from ...settings import ConnectionSettings
from ..lesson import server_view, wait_until_gone
from . import Verdict, check, passed, todo

CHECKER_APP = "pgfactory_nb07_checker"
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


def check_retry(fetch_one_with_retry: Callable[..., Any], settings: ConnectionSettings) -> Verdict:
    """``fetch_one_with_retry(pool, sql, params=())`` must return one row, retry once when the
    connection dies under it, and let every other error through."""
    factory = make_factory(settings.with_(application_name=CHECKER_APP))
    with ConnectionPool(factory, min_size=0, max_size=1, name="nb07-checker") as pool:
        first = fetch_one_with_retry(pool, "SELECT 1")
        if first is Ellipsis:
            return todo("retry once", "make fetch_one_with_retry run the query in `with pool.connection() as conn:`, "
                                      "return cur.fetchone(), and try a second time on psycopg2.OperationalError.")
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
                       "it once more: the pool discards the dead connection and opens a new one.")
        finally:
            killer.join(timeout=15)
        if killer.killed is None:
            raise RuntimeError("the checker could not see your query running, so it could not test the retry; "
                               "did fetch_one_with_retry run the SQL it was given?")
        wait_until_gone(settings, [killer.killed])
        check(isinstance(second, tuple) and second[0] != killer.killed,
              expected="a row from a different backend than the terminated one", seen=second,
              hint="retry with a new `with pool.connection()` block, not on the dead connection.")
        try:
            fetch_one_with_retry(pool, "SELECT 1 / 0")
            raised: BaseException | None = None
        except BaseException as exc:  # noqa: BLE001 - the learner's code may raise anything
            raised = exc
        check(isinstance(raised, psycopg2.errors.DivisionByZero),
              expected="SELECT 1 / 0 raises DivisionByZero (only a dead connection is worth a retry)",
              seen=type(raised).__name__ if raised else "no error",
              hint="catch psycopg2.OperationalError only; let other errors (bad SQL, bad data) through.")
    return passed("retry once", "The connection died mid-query; the caller got its row anyway.")
