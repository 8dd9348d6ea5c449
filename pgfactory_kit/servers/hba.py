"""pg_hba.conf: the rules the kit writes, and the rules that would let someone in without a password.

The kit's own server gets scram-sha-256 for every role, over TCP (127.0.0.1) and the Unix socket, and
nothing else. Only a private, throw-away server made for comparing authentication methods
(``LocalServer(compare_auth=True)``) also lets ``auth_trust`` in with ``trust`` and ``auth_md5`` with ``md5``.
"""
from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extensions

# Roles that differ only in how they authenticate, for the connect-cost comparison (private servers only).
AUTH_ROLES = {"scram-sha-256": "auth_scram", "md5": "auth_md5", "trust": "auth_trust"}
WEAK_METHODS = ("trust", "md5")
HEADER = "# Written by pgfactory-kit on every start; edit LocalServer instead.\n"


def kit_rules(compare_auth: bool = False) -> str:
    """The pg_hba.conf the kit writes: scram-sha-256 only, or (``compare_auth``) plus the comparison roles."""
    lines = [HEADER.rstrip("\n")]
    if compare_auth:
        lines += [
            "# A private, throw-away server for comparing authentication methods: auth_trust logs in",
            "# without a password, auth_md5 with md5; everyone else with scram-sha-256.",
            "# TYPE  DATABASE  USER        ADDRESS        METHOD",
            f"local   all       {AUTH_ROLES['trust']}                 trust",
            f"local   all       {AUTH_ROLES['md5']}                   md5",
            f"host    all       {AUTH_ROLES['trust']}  127.0.0.1/32   trust",
            f"host    all       {AUTH_ROLES['md5']}    127.0.0.1/32   md5",
        ]
    else:
        lines += ["# Every role logs in with a password (scram-sha-256), over the Unix socket and 127.0.0.1.",
                  "# TYPE  DATABASE  USER        ADDRESS        METHOD"]
    lines += ["local   all       all                        scram-sha-256",
              "host    all       all         127.0.0.1/32   scram-sha-256"]
    return "\n".join(lines) + "\n"


def weak_lines(text: str) -> list[str]:
    """The lines of a pg_hba.conf text whose method is trust or md5 (comments and blank lines skipped)."""
    found = []
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 4:
            continue
        method_at = 3 if fields[0] == "local" else 4
        if method_at == 4 and len(fields) > 5 and _looks_like_netmask(fields[4]):
            method_at = 5  # host DATABASE USER ADDRESS MASK METHOD
        if len(fields) > method_at and fields[method_at] in WEAK_METHODS:
            found.append(" ".join(fields))
    return found


def _looks_like_netmask(field: str) -> bool:
    return any(c.isdigit() for c in field) and all(c in "0123456789abcdef.:" for c in field.lower())


@dataclass(frozen=True)
class WeakRule:
    """A live pg_hba.conf rule that lets a login role in with trust or md5."""

    line_number: int
    type: str
    database: list[str]
    user_name: list[str]
    address: str | None
    auth_method: str

    def __str__(self) -> str:
        where = f" {self.address}" if self.address else ""
        return (f"line {self.line_number}: {self.type} {','.join(self.database)} {','.join(self.user_name)}"
                f"{where} {self.auth_method}")


def weak_rules(cur: psycopg2.extensions.cursor) -> tuple[str, list[WeakRule]]:
    """(the server's hba_file, its trust/md5 rules that match a role that can log in), as the server itself
    reads the file (``pg_hba_file_rules``; needs a superuser)."""
    cur.execute("SELECT current_setting('hba_file')")
    (hba_file,), = cur.fetchall()
    cur.execute(
        "SELECT line_number, type, database, user_name, address, auth_method FROM pg_hba_file_rules "
        "WHERE error IS NULL AND auth_method = ANY(%s) AND EXISTS ("
        "  SELECT 1 FROM pg_roles r WHERE r.rolcanlogin AND ("
        "    'all' = ANY(user_name) OR r.rolname = ANY(user_name) OR EXISTS ("
        "      SELECT 1 FROM pg_roles g WHERE '+' || g.rolname = ANY(user_name)"
        "        AND pg_has_role(r.oid, g.oid, 'MEMBER'))"
        "  )) ORDER BY line_number", (list(WEAK_METHODS),))
    return hba_file, [WeakRule(*row) for row in cur.fetchall()]
