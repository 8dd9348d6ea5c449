"""Checker for notebook 02: combine psycopg2's connection_factory= and cursor_factory=."""
from __future__ import annotations

from typing import Any

from ...factory import KitConnection
from . import Verdict, check, not_attempted, passed, todo


def check_counted_dict_row(conn: Any, row: Any) -> Verdict:
    """``conn`` must be a KitConnection that ran exactly one statement; ``row`` the row with id 2 as a dict."""
    if not_attempted(conn, row):
        return todo("counted dict row", "replace both `...`: a connection from make_factory(settings, "
                                        "connection_factory=KitConnection, cursor_factory=RealDictCursor), "
                                        "and the row with id = 2 fetched through it.")
    check(isinstance(conn, KitConnection), expected="a KitConnection (connection_factory=KitConnection)",
          seen=type(conn).__name__, hint="pass connection_factory=KitConnection to make_factory.")
    check(isinstance(row, dict), expected="a dict-like row (cursor_factory=RealDictCursor)",
          seen=type(row).__name__, hint="pass cursor_factory=RealDictCursor to make_factory.")
    check(dict(row) == {"id": 2, "name": "Grace"}, expected="{'id': 2, 'name': 'Grace'}", seen=dict(row),
          hint="SELECT id, name FROM mytable WHERE id = %s with the parameter (2,).")
    check(conn.statements == 1, expected="exactly 1 statement counted on this connection",
          seen=conn.statements, hint="use a fresh connection and run only the one SELECT on it.")
    return passed("counted dict row", "One connection class and one cursor class, chosen by two arguments.")
