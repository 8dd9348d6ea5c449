"""Checker for notebook 01 (the blog's factory): do both operations on ONE connection."""
from __future__ import annotations

from typing import Any

from ...settings import ConnectionSettings
from ..lesson import server_sessions, wait_until_gone
from . import Verdict, check, not_attempted, passed, todo


def check_one_connection(settings: ConnectionSettings, sessions_before: int, pids: Any) -> Verdict:
    """``pids``: the backend PID seen by each of the two operations; the server must have counted
    exactly one new session since ``sessions_before``."""
    if not_attempted(pids):
        return todo("one connection", "replace `...` with a list of the backend PID seen by each operation "
                                      "(backend_pid(conn) after the SELECT and after the INSERT).")
    check(isinstance(pids, (list, tuple)) and len(pids) == 2, expected="a list of two PIDs, one per operation",
          seen=pids, hint="append backend_pid(conn) once after the SELECT and once after the INSERT.")
    check(pids[0] == pids[1], expected="the same PID twice: one server process served both operations",
          seen=pids, hint="call the factory once, keep the connection, and run both statements on it.")
    wait_until_gone(settings, set(pids))
    opened = server_sessions(settings) - sessions_before
    check(opened == 1, expected="exactly 1 new session on the server (pg_stat_database.sessions)", seen=opened,
          hint="open the connection once (one call to the factory); close it at the end. "
               "Did you run the cell twice, or open an extra connection to look something up?")
    return passed("one connection", "One factory call, one backend, both operations: that is reuse.")
