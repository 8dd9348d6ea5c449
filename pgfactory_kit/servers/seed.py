"""The lessons' table ``mytable``, created and seeded from ``data/initdb`` (the one source: docker-compose's
postgres image runs the same files). The kit's server, the bench's database and every provisioned
learner's database get it from here."""
from __future__ import annotations

from collections.abc import Iterable

import psycopg2.extensions
from psycopg2 import sql

from .. import paths


def has_mytable(cur: psycopg2.extensions.cursor) -> bool:
    """Whether the connected database already has ``public.mytable``."""
    cur.execute("SELECT to_regclass('public.mytable') IS NOT NULL")
    row = cur.fetchone()
    return bool(row and row[0])


def seed_mytable(cur: psycopg2.extensions.cursor, *, owner: str | None = None,
                 writers: Iterable[str] = ()) -> None:
    """Run ``data/initdb/*.sql`` on ``cur`` (safe to repeat: the table is created if missing and the rows
    go only into an empty table). With ``owner`` the scripts run as that role (``SET ROLE``), so the
    objects are theirs; ``writers`` may then read and insert (SELECT, INSERT and the id sequence)."""
    if owner is not None:
        cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
    for script in sorted(paths.SQL_DIR.glob("*.sql")):
        cur.execute(script.read_text(encoding="utf-8"))
    roles = sql.SQL(", ").join(sql.Identifier(role) for role in writers)
    if roles.seq:
        cur.execute(sql.SQL("GRANT SELECT, INSERT ON mytable TO {}").format(roles))
        cur.execute(sql.SQL("GRANT USAGE ON SEQUENCE mytable_id_seq TO {}").format(roles))
    if owner is not None:
        cur.execute("RESET ROLE")
