"""Checker for notebook 03 (reusing connections): several operations through one ReusedConnection,
and the server's own counter read by the learner to show that it connected once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...pooling.reuse import ReusedConnection
from ...settings import ConnectionSettings
from ..lesson import server_view, wait_until_gone
from . import Verdict, check, not_attempted, passed, todo

# One insert each. Not the seed names (Ada, Grace, …): the notebook's tidy-up deletes these rows again.
NAMES = ("Hedy", "Katherine", "Radia", "Frances", "Niklaus")


@dataclass(frozen=True)
class Before:
    """What the server said before the learner's cell ran: sessions ever opened, committed NAMES rows."""

    sessions: int
    rows: int


def _committed_rows(settings: ConnectionSettings) -> int:
    """Rows named one of NAMES that other sessions can see: committed ones only (the observer is autocommit)."""
    return int(server_view(settings).query("SELECT count(*) FROM mytable WHERE name = ANY(%s)",
                                           (list(NAMES),))[0][0])


def before_challenge(settings: ConnectionSettings) -> Before:
    """Read the server's session counter and the committed NAMES rows, before the learner's code runs."""
    return Before(server_view(settings).sessions(), _committed_rows(settings))


def check_connected_once(settings: ConnectionSettings, before: Before, reused: Any, pids: Any,
                         opened: Any) -> Verdict:
    """``reused``: the ReusedConnection that inserted each of NAMES, closed afterwards; ``pids``: the
    backend PID each insert saw; ``opened``: the sessions the learner read from the server's counter
    (``pg_stat_database.sessions``) since ``before``. One backend, one connect, one session (the
    learner's number and the checker's own reading), and every name committed."""
    if not_attempted(reused, pids, opened):
        return todo("connected once", "replace the three `...`: a ReusedConnection that inserts each name in "
                                      "nb03.NAMES, the backend PID each insert saw, and the sessions the server "
                                      "counted since `before`.")
    check(isinstance(reused, ReusedConnection), expected="a pgfactory_kit.ReusedConnection", seen=type(reused).__name__,
          hint="reused = ReusedConnection(create_connection), once, before the loop.")
    count = len(NAMES)
    check(isinstance(pids, (list, tuple)) and len(pids) == count,
          expected=f"a list of {count} PIDs, one per name inserted", seen=pids,
          hint="append backend_pid(conn) inside the `with reused.connection() as conn:` block, once per name.")
    check(len(set(pids)) == 1, expected="the same backend PID for every insert: one connection, reused",
          seen=sorted(set(pids)),
          hint="make the ReusedConnection once, before the loop, and borrow from it in the loop; calling "
               "create_connection(), making a new ReusedConnection or closing it inside the loop connects again.")
    check(reused.connects == 1, expected="reused.connects == 1: it connected once", seen=reused.connects,
          hint="close the ReusedConnection after the loop, not inside it: a closed one connects again.")
    check(reused.closed, expected="the ReusedConnection closed before the sessions are counted",
          seen="still open", hint="reused.close(), then wait_until_gone(settings, pids): the server records "
                                  "a session as its backend exits.")
    wait_until_gone(settings, set(pids))
    counted = server_view(settings).sessions() - before.sessions
    check(isinstance(opened, int) and not isinstance(opened, bool),
          expected="`opened`: a whole number of sessions, read from the server", seen=opened,
          hint="opened = server_sessions(settings) - before.sessions")
    check(opened == counted, expected=f"your `opened` to be what the server counted: {counted}", seen=opened,
          hint="read server_sessions(settings) after reused.close() and wait_until_gone(settings, pids), and "
               "subtract before.sessions. Counting the PIDs (or the inserts) is not the server's answer.")
    check(counted == 1, expected="exactly 1 new session on the server (pg_stat_database.sessions)", seen=counted,
          hint="one connection for every insert; did your cell open another one (create_connection()) "
               "to look something up?")
    rows = _committed_rows(settings) - before.rows
    check(rows >= count, expected=f"{count} more committed rows, one per name (other sessions can see them)",
          seen=f"{max(rows, 0)} more committed rows",
          hint="insert inside `with reused.connection() as conn:`, which commits when the block ends; "
               "reused.get() hands out the connection but commits nothing, and closing it discards the inserts.")
    check(rows == count, expected=f"exactly {count} more rows", seen=rows,
          hint="insert each name once; run the tidy-up cell below, then the challenge cell again.")
    return passed("connected once", f"{count} inserts, 1 backend, 1 session on the server's own counter: "
                                    "one connect, reused.")
