"""make_factory: a new backend per call, with settings passed through to psycopg2."""
from __future__ import annotations

import psycopg2
import psycopg2.extras
import pytest

from pgfactory_kit import KitConnection, make_factory


def backend_pid(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def test_each_factory_call_opens_a_new_backend(factory):
    conns = [factory() for _ in range(3)]
    try:
        assert len({backend_pid(c) for c in conns}) == 3
    finally:
        for c in conns:
            c.close()


def test_session_settings_are_applied_at_connect(settings):
    conn = make_factory(settings, session={"statement_timeout": "5s", "search_path": "public, pg_catalog"})()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "5s"
            cur.execute("SHOW search_path")
            assert cur.fetchone()[0] == "public, pg_catalog"
    finally:
        conn.close()


def test_connection_and_cursor_factories_are_passed_through(settings):
    conn = make_factory(settings, connection_factory=psycopg2.extras.LoggingConnection,
                        cursor_factory=psycopg2.extras.RealDictCursor)()
    try:
        assert isinstance(conn, psycopg2.extras.LoggingConnection)
        conn.initialize(None)
        with conn.cursor() as cur:
            cur.execute("SELECT 1 AS one")
            assert cur.fetchone() == {"one": 1}
    finally:
        conn.close()


def test_autocommit_is_passed_through(settings):
    conn = make_factory(settings, autocommit=True)()
    try:
        assert conn.autocommit is True
    finally:
        conn.close()


def test_kit_connection_counts_statements_and_round_trips(settings):
    conn = make_factory(settings, connection_factory=KitConnection)()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.execute("SELECT %s", (2,))
        conn.commit()
        conn.commit()  # nothing open: psycopg2 sends nothing, so nothing is counted
        # BEGIN (sent by psycopg2 before the first statement), two statements, COMMIT.
        assert conn.counters() == {"statements": 2, "round_trips": 4, "begins": 1, "commits": 1, "rollbacks": 0}
    finally:
        conn.close()


def test_bad_session_setting_name_is_rejected():
    with pytest.raises(ValueError, match="not a valid PostgreSQL setting name"):
        make_factory(session={"x; DROP TABLE mytable": "1"})


def test_the_blogs_credentials_work_against_the_kits_server(server):
    conn = psycopg2.connect(host="127.0.0.1", port=server.port, database="mydatabase",
                            user="myuser", password="mypassword")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM mytable")
            assert len(cur.fetchall()) >= 5
    finally:
        conn.close()


def test_wrong_password_error_says_what_to_do_without_the_password(settings):
    bad = settings.with_(password="definitely-wrong-pw")
    with pytest.raises(psycopg2.OperationalError) as info:
        make_factory(bad)()
    text = str(info.value)
    assert "password authentication failed" in text and "What to do" in text
    assert "definitely-wrong-pw" not in text
