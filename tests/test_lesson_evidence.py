"""The notebooks' evidence helpers (pgfactory_kit.lessons.evidence), against the tests' own server:
each one reports what the server really does, so the notebooks can assert it."""
from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql

from pgfactory_kit import make_factory
from pgfactory_kit.lessons.evidence import (
    connection_budget,
    connection_transport,
    describe_transport,
    fit_to_budget,
    held_by,
    session_state_leak,
    sleep_on_threads,
    threaded_pool_churn,
)
from pgfactory_kit.servers.pgbouncer import LocalPgBouncer, find_pgbouncer
from pgfactory_kit.servers.scram import scram_verifier

from .conftest import free_port


def test_transport_is_asked_of_the_server_tcp_without_tls_on_the_kit_server(settings) -> None:
    conn = make_factory(settings)()
    try:
        found = connection_transport(conn)
        assert found == {"transport": "TCP", "tls": False, "tls_version": None}
        assert bool(conn.info.ssl_in_use) is found["tls"], "libpq's own view agrees with pg_stat_ssl"
        assert describe_transport(found) == "TCP, no TLS"
    finally:
        conn.close()


def test_idle_read_committed_select_holds_its_table_lock_but_no_xid_and_no_snapshot(settings) -> None:
    conn = make_factory(settings)()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM mytable")
        held = held_by(settings, conn.info.backend_pid)
        assert held["state"] == "idle in transaction"
        assert held["backend_xid"] is None and held["backend_xmin"] is None, held
        assert held["locks"] == {"mytable": "AccessShareLock"}, held
    finally:
        conn.close()


def test_idle_repeatable_read_holds_a_snapshot_and_a_write_gets_a_transaction_id(settings) -> None:
    reader = make_factory(settings)()
    writer = make_factory(settings)()
    try:
        reader.set_session(isolation_level="REPEATABLE READ")
        with reader.cursor() as cur:
            cur.execute("SELECT count(*) FROM mytable")
        with writer.cursor() as cur:
            cur.execute("INSERT INTO mytable (name) VALUES (%s)", ("evidence-test",))
        assert held_by(settings, reader.info.backend_pid)["backend_xmin"] is not None
        written = held_by(settings, writer.info.backend_pid)
        assert written["backend_xid"] is not None and written["locks"] == {"mytable": "RowExclusiveLock"}
    finally:
        writer.close()  # never committed: the row is gone
        reader.close()


def test_threads_on_one_reused_connection_take_turns_and_on_a_pool_overlap(settings) -> None:
    from pgfactory_kit import ConnectionPool, ReusedConnection

    with ReusedConnection(make_factory(settings)) as reused:
        serial_s, serial_pids = sleep_on_threads(reused.connection, threads=3, sleep_s=0.1)
    with ConnectionPool(make_factory(settings), min_size=3, max_size=3) as pool:
        pooled_s, pooled_pids = sleep_on_threads(pool.connection, threads=3, sleep_s=0.1)
    assert len(serial_pids) == len(pooled_pids) == 3
    assert len(set(serial_pids)) == 1 and serial_s >= 0.3 * 0.95, (serial_s, serial_pids)
    assert len(set(pooled_pids)) == 3 and pooled_s < serial_s / 2, (pooled_s, serial_s, pooled_pids)


def test_threaded_pool_below_its_thread_count_reconnects_every_round(settings) -> None:
    churn = threaded_pool_churn(settings, 1, 4, threads=4, rounds=3)
    steady = threaded_pool_churn(settings, 4, 4, threads=4, rounds=3)
    # (1, 4): one idle connection survives each round; the other three are closed on return.
    assert churn.sessions_opened == 1 + 3 * 3, churn
    assert steady.sessions_opened == 4, steady
    assert churn.borrows == steady.borrows == 12


def test_threaded_pool_churn_refuses_more_threads_than_maxconn(settings) -> None:
    with pytest.raises(ValueError, match="must not exceed maxconn"):
        threaded_pool_churn(settings, 1, 2, threads=3)


def test_connection_budget_sees_a_role_connection_limit(settings, admin_conn) -> None:
    role = "evidence_limited"
    password = "evidence-limited-pw"
    with admin_conn.cursor() as cur:
        cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 3 PASSWORD %s").format(sql.Identifier(role)),
                    (scram_verifier(password),))
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(settings.dbname), sql.Identifier(role)))
    limited = settings.with_(user=role, password=password)
    try:
        budget = connection_budget(limited)
        assert budget["role_limit"] == 3 and budget["role_in_use"] == 1, budget  # the observer asking
        assert budget["available"] == 2, budget
        held = psycopg2.connect(**limited.connect_kwargs())
        try:
            assert connection_budget(limited)["available"] == 1
        finally:
            held.close()
    finally:
        from pgfactory_kit.lessons.lesson import server_view

        server_view(limited).close_quietly()
        with admin_conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            cur.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                sql.Identifier(settings.dbname), sql.Identifier(role)))
            cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_connection_budget_without_limits_is_the_server_headroom(settings) -> None:
    budget = connection_budget(settings)
    assert budget["role_limit"] == -1
    assert budget["available"] == budget["max_connections"] - budget["reserved"] - budget["in_use"]


def test_fit_to_budget_keeps_sizes_that_fit_and_never_returns_nothing() -> None:
    assert fit_to_budget((1, 2, 4, 8, 16), available=7) == (1, 2, 4)
    assert fit_to_budget((1, 2, 4, 8, 16), available=100) == (1, 2, 4, 8, 16)
    assert fit_to_budget((4, 8), available=2) == (1,)


@pytest.mark.skipif(find_pgbouncer() is None, reason="PgBouncer is not installed")
def test_a_set_through_transaction_pooling_is_seen_by_the_next_client(server) -> None:
    LocalPgBouncer(server).stop()  # one left by an earlier test for the same session server
    bouncer = LocalPgBouncer(server, port=free_port(), pool_size=1)
    try:
        leak = session_state_leak(bouncer.start(), value="alice")
    finally:
        bouncer.destroy()
    assert leak["a_backend_pid"] == leak["b_backend_pid"], "one server connection served both clients"
    assert leak["b_read"] == "alice", leak


def test_waiting_borrowers_are_served_first_come_first_served(settings) -> None:
    from pgfactory_kit import ConnectionPool
    from pgfactory_kit.lessons.evidence import serve_order

    with ConnectionPool(make_factory(settings), min_size=0, max_size=1, name="evidence-fifo") as pool:
        assert serve_order(pool, waiters=4) == [0, 1, 2, 3]


def test_psycopg_pool_hands_out_a_dead_connection_unless_given_check(settings) -> None:
    pytest.importorskip("psycopg_pool")
    from pgfactory_kit.lessons.evidence import psycopg_pool_after_terminate

    unchecked = psycopg_pool_after_terminate(settings, checked=False)
    checked = psycopg_pool_after_terminate(settings, checked=True)
    assert unchecked["outcome"].startswith("AdminShutdown"), unchecked
    assert checked["outcome"] == "ok" and checked["connections_lost"] == 1, checked


def test_round_trip_steps_pairs_each_client_run_with_the_servers_answer() -> None:
    import pandas as pd

    from pgfactory_kit.lessons.evidence import round_trip_steps

    names = [("client", "SSLRequest"), ("server", "SSLResponse"), ("client", "StartupMessage"),
             ("server", "AuthenticationSASL"), ("client", "Query"), ("server", "RowDescription"),
             ("server", "DataRow"), ("server", "DataRow"), ("server", "ReadyForQuery"), ("client", "Terminate")]
    steps = round_trip_steps(pd.DataFrame(names, columns=["direction", "name"]))
    assert list(steps["client_sends"]) == ["SSLRequest", "StartupMessage", "Query"]
    assert steps.loc[2, "server_answers"] == "RowDescription, 2× DataRow, ReadyForQuery"
    assert steps.loc[2, "what_it_is"] == "the query itself" and list(steps["round_trip"]) == [1, 2, 3]


def test_round_trip_steps_of_a_real_connect_per_query_operation(settings) -> None:
    from pgfactory_kit.lessons import wire
    from pgfactory_kit.lessons.evidence import round_trip_steps

    watch = wire.watch_strategies(settings, ("connect_per_query",), operations=1)
    steps = round_trip_steps(watch.operation("connect_per_query", 1))
    assert list(steps["client_sends"]) == ["SSLRequest", "StartupMessage", "SASLInitialResponse", "SASLResponse",
                                           "Query"], steps
    assert len(steps) == int(watch.round_trips.query("number == 1")["round_trips"].iloc[0])
