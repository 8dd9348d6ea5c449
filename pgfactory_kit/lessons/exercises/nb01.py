"""Checker for notebook 01 (the blog's factory): do both operations on ONE connection, and commit."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...settings import ConnectionSettings
from ..lesson import server_view, wait_until_gone
from . import Verdict, check, not_attempted, passed, todo

NAME = "John"


@dataclass(frozen=True)
class Before:
    """What the server said before the learner's cell ran: sessions ever opened, committed rows named John."""

    sessions: int
    johns: int


def _committed_johns(settings: ConnectionSettings) -> int:
    """Rows named John that other sessions can see: committed ones only (the observer is autocommit)."""
    return int(server_view(settings).query("SELECT count(*) FROM mytable WHERE name = %s", (NAME,))[0][0])


def before_challenge(settings: ConnectionSettings) -> Before:
    """Read the server's session counter and the committed 'John' rows, before the learner's code runs."""
    return Before(server_view(settings).sessions(), _committed_johns(settings))


def check_one_connection(settings: ConnectionSettings, before: Before | int, pids: Any) -> Verdict:
    """``pids``: the backend PID seen by each of the two operations. The server must have counted
    exactly one new session since ``before``, and one more *committed* row named 'John'.
    (``before`` may be a bare session count, from older notebooks: then only the sessions are checked
    and at least one committed 'John' must exist.)"""
    if not_attempted(pids):
        return todo("one connection", "replace `...` with a list of the backend PID seen by each operation "
                                      "(backend_pid(conn) after the SELECT and after the INSERT).")
    check(isinstance(pids, (list, tuple)) and len(pids) == 2, expected="a list of two PIDs, one per operation",
          seen=pids, hint="append backend_pid(conn) once after the SELECT and once after the INSERT.")
    check(pids[0] == pids[1], expected="the same PID twice: one server process served both operations",
          seen=pids, hint="call the factory once, keep the connection, and run both statements on it.")
    wait_until_gone(settings, set(pids))
    start = before if isinstance(before, Before) else Before(int(before), -1)
    opened = server_view(settings).sessions() - start.sessions
    check(opened == 1, expected="exactly 1 new session on the server (pg_stat_database.sessions)", seen=opened,
          hint="open the connection once (one call to the factory); close it at the end. "
               "Did you run the cell twice, or open an extra connection to look something up?")
    johns = _committed_johns(settings)
    added = johns - start.johns if start.johns >= 0 else min(johns, 1)
    check(added >= 1, expected="one more committed row named 'John' (other sessions can see it)",
          seen=f"{max(added, 0)} new committed rows named 'John'",
          hint="run the INSERT with a %s parameter, then conn.commit() (or use `with conn:`) before closing: "
               "closing without a commit rolls the insert back.")
    check(added == 1, expected="exactly one new row named 'John'", seen=f"{added} new rows",
          hint="insert John once; run the tidy-up cell below, then the challenge cell again.")
    return passed("one connection", "One factory call, one backend, both operations, committed: that is reuse.")
