"""ConnectionPool against the session's real server: one test per promised behaviour."""
from __future__ import annotations

import gc
import os
import threading
import time

import psycopg2
import psycopg2.errors
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pgfactory_kit import ConnectionPool, KitConnection, PoolClosed, PoolTimeout, make_factory
from pgfactory_kit.pooling.health import TRUST_WINDOW

from .conftest import number_from_child

STATS_KEYS = {"pool_min", "pool_max", "pool_size", "pool_available", "requests_waiting", "requests_num",
              "requests_queued", "requests_wait_ms", "requests_errors", "connections_num", "connections_ms",
              "connections_errors", "connections_lost", "returns_bad"}


def backend_pid(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Bounded polling wait (20 ms steps) for something another thread or the server does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def backend_count(admin_conn, where: str, params: tuple) -> int:
    with admin_conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM pg_stat_activity WHERE {where}", params)
        return cur.fetchone()[0]


@pytest.fixture
def table(admin_conn):
    """A dedicated table writable by the lesson's role, dropped afterwards."""
    with admin_conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS pool_test_rows")
        cur.execute("CREATE TABLE pool_test_rows (v int)")
        cur.execute("GRANT ALL ON pool_test_rows TO myuser")
    yield "pool_test_rows"
    with admin_conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS pool_test_rows")


def count_rows(admin_conn, table: str) -> int:
    with admin_conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def test_blog_create_connection_works_as_the_factory(settings):
    def create_connection():
        return psycopg2.connect(host=settings.host, port=settings.port, database=settings.dbname,
                                user=settings.user, password=settings.password)

    with ConnectionPool(create_connection, max_size=2) as pool:
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM mytable")
            assert cur.fetchone()[0] >= 0


def test_connection_block_commits_on_success_and_rolls_back_on_error(factory, admin_conn, table):
    with ConnectionPool(factory, max_size=1) as pool:
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO pool_test_rows VALUES (1)")
        with pytest.raises(RuntimeError):
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO pool_test_rows VALUES (2)")
                raise RuntimeError("boom")
        assert count_rows(admin_conn, table) == 1
        assert pool.stats()["connections_num"] == 1


def test_pool_reuses_one_backend_for_sequential_borrowers(factory):
    with ConnectionPool(factory, max_size=4) as pool:
        pids = set()
        for _ in range(10):
            with pool.connection() as conn:
                pids.add(backend_pid(conn))
        assert len(pids) == 1
        assert pool.stats()["connections_num"] == 1


def test_exhausted_pool_makes_callers_wait_first_come_first_served(factory):
    with ConnectionPool(factory, max_size=1) as pool:
        held = pool.getconn()
        order: list[int] = []

        def borrower(i: int) -> None:
            with pool.connection(timeout=20) as conn:
                order.append(i)
                assert conn is held

        threads = []
        for i in range(4):
            t = threading.Thread(target=borrower, args=(i,))
            t.start()
            threads.append(t)
            wait_for(lambda n=i + 1: pool.stats()["requests_waiting"] == n, what=f"{i + 1} waiting clients")
        pool.putconn(held)
        for t in threads:
            t.join(timeout=20)
        assert order == [0, 1, 2, 3]
        stats = pool.stats()
        assert stats["requests_queued"] == 4 and stats["requests_errors"] == 0


def test_timeout_raises_pool_timeout_naming_pool_size_and_wait(factory):
    with ConnectionPool(factory, max_size=1, name="lesson-pool") as pool:
        held = pool.getconn()
        with pytest.raises(PoolTimeout) as info:
            pool.getconn(timeout=0.1)
        message = str(info.value)
        assert "'lesson-pool'" in message and "size 1" in message and "waiting 0.1" in message
        assert isinstance(info.value, psycopg2.OperationalError)
        assert pool.stats()["requests_errors"] == 1
        pool.putconn(held)
        with pool.connection(timeout=1):
            pass


def test_slow_connect_does_not_stall_other_borrowers(settings):
    real = make_factory(settings)
    gate = threading.Event()
    calls = 0

    def slow_second_connect():
        nonlocal calls
        calls += 1
        if calls == 2:
            assert gate.wait(20), "test gate never opened"
        return real()

    with ConnectionPool(slow_second_connect, min_size=1, max_size=2) as pool:
        first = pool.getconn()
        opener = threading.Thread(target=lambda: pool.putconn(pool.getconn()))
        opener.start()
        wait_for(lambda: calls == 2, what="the slow connect to start")
        # While that connect is stuck, the pool keeps serving the connection it has.
        pool.putconn(first)
        for _ in range(5):
            with pool.connection(timeout=2) as conn:
                assert conn is first
        assert opener.is_alive()
        gate.set()
        opener.join(timeout=20)
        assert pool.stats()["connections_num"] == 2


def test_return_rolls_back_open_and_failed_transactions(factory, admin_conn, table):
    with ConnectionPool(factory, max_size=1) as pool:
        conn = pool.getconn()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO pool_test_rows VALUES (1)")
        pool.putconn(conn)
        conn = pool.getconn()
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        with pytest.raises(psycopg2.errors.DivisionByZero), conn.cursor() as cur:
            cur.execute("SELECT 1/0")
        pool.putconn(conn)
        with pool.connection() as again, again.cursor() as cur:
            assert again is conn
            cur.execute("SELECT 1")
        assert count_rows(admin_conn, table) == 0
        assert pool.stats()["returns_bad"] == 0


def test_reset_callback_runs_on_return_and_a_failing_one_discards(factory):
    seen = []

    def reset(conn):
        seen.append(conn)
        with conn.cursor() as cur:
            cur.execute("RESET ALL")
        conn.commit()
        if len(seen) == 2:
            raise RuntimeError("reset failed")

    with ConnectionPool(factory, max_size=1, reset=reset) as pool:
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SET search_path TO pg_catalog")
        with pool.connection() as again, again.cursor() as cur:
            assert again is conn
            cur.execute("SHOW search_path")
            assert cur.fetchone()[0] != "pg_catalog"
        assert seen == [conn, conn] and conn.closed
        with pool.connection() as third:
            assert third is not conn
        assert pool.stats()["returns_bad"] == 1


def test_closed_connection_returned_is_never_handed_out_again(factory):
    with ConnectionPool(factory, max_size=1) as pool:
        conn = pool.getconn()
        conn.close()
        pool.putconn(conn)
        with pool.connection(timeout=5) as fresh:
            assert fresh is not conn and not fresh.closed
        stats = pool.stats()
        assert stats["returns_bad"] == 1 and stats["pool_size"] == 1


def test_putconn_close_true_discards_the_connection(factory):
    with ConnectionPool(factory, max_size=1) as pool:
        conn = pool.getconn()
        pool.putconn(conn, close=True)
        assert conn.closed
        with pool.connection(timeout=5) as fresh:
            assert fresh is not conn
        assert pool.stats()["returns_bad"] == 0


def test_foreign_connection_is_rejected_and_never_handed_out(factory):
    with ConnectionPool(factory, max_size=2, name="mine") as pool:
        stranger = factory()
        try:
            with pytest.raises(ValueError, match="does not come from this pool"):
                pool.putconn(stranger)
            for _ in range(3):
                with pool.connection() as conn:
                    assert conn is not stranger
            assert pool.stats()["pool_size"] == 1
        finally:
            stranger.close()


def test_returning_twice_is_an_error_not_corruption(factory):
    with ConnectionPool(factory, max_size=2) as pool:
        conn = pool.getconn()
        pool.putconn(conn)
        with pytest.raises(ValueError, match="returned twice"):
            pool.putconn(conn)
        a, b = pool.getconn(), pool.getconn()
        assert a is not b
        assert pool.stats()["pool_available"] == 0
        pool.putconn(a)
        pool.putconn(b)
        assert pool.stats()["pool_available"] == 2


def test_putconn_refuses_a_connection_that_a_with_block_holds(factory):
    with ConnectionPool(factory, max_size=2) as pool:
        with pool.connection() as conn:
            with pytest.raises(ValueError, match="block holds"):
                pool.putconn(conn)
            with conn.cursor() as cur:  # still the block's, still usable
                cur.execute("SELECT 1")
        assert pool.stats()["pool_available"] == 1  # returned once, by the block
        a, b = pool.getconn(), pool.getconn()
        assert a is not b
        pool.putconn(a)
        pool.putconn(b)


def test_connection_of_a_with_block_that_never_ends_is_reclaimed_with_a_warning(factory):
    with ConnectionPool(factory, max_size=1) as pool:
        block = pool.connection()
        conn = block.__enter__()  # entered by hand and then abandoned, never exited
        with pytest.warns(RuntimeWarning, match="garbage collected without being returned"):
            del block, conn
            gc.collect()
        with pool.connection(timeout=10) as fresh:
            with fresh.cursor() as cur:
                cur.execute("SELECT 1")
        assert pool.stats()["pool_size"] == 1


def test_recently_used_connection_is_handed_out_without_a_round_trip(settings):
    factory = make_factory(settings, connection_factory=KitConnection)
    with ConnectionPool(factory, max_size=1, check_after=60) as pool:
        with pool.connection() as conn:
            before = conn.counters()["round_trips"]
        for _ in range(10):
            with pool.connection() as again:
                assert again is conn
        assert conn.counters()["round_trips"] == before


def test_connection_idle_within_check_after_is_polled_without_a_round_trip(settings):
    factory = make_factory(settings, connection_factory=KitConnection)
    with ConnectionPool(factory, max_size=1, check_after=60) as pool:
        with pool.connection() as conn:
            before = conn.counters()["round_trips"]
        for _ in range(3):
            time.sleep(TRUST_WINDOW * 2)  # past the no-syscall window: the socket is polled
            with pool.connection() as again:
                assert again is conn
        assert conn.counters()["round_trips"] == before
        assert pool.stats()["connections_lost"] == 0


def test_connection_idle_past_check_after_gets_one_check_round_trip(settings):
    factory = make_factory(settings, connection_factory=KitConnection)
    with ConnectionPool(factory, max_size=1, check_after=0) as pool:
        with pool.connection() as conn:
            before = conn.counters()["round_trips"]
        with pool.connection() as again:
            assert again is conn
        assert conn.counters()["round_trips"] == before + 1


def test_connection_terminated_while_idle_is_replaced_without_error(factory, admin_conn):
    # Default check_after (1 s): caught by the readable socket, not by a SELECT 1 on every checkout.
    with ConnectionPool(factory, max_size=2) as pool:
        with pool.connection() as conn:
            pid = backend_pid(conn)
        with admin_conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_for(lambda: backend_count(admin_conn, "pid = %s", (pid,)) == 0, what="the backend to exit")
        time.sleep(TRUST_WINDOW * 2)  # a connection returned less than TRUST_WINDOW ago is not even polled
        with pool.connection() as conn:
            assert backend_pid(conn) != pid
        assert pool.stats()["connections_lost"] == 1


def test_connection_ended_by_idle_session_timeout_is_replaced_without_error(settings):
    factory = make_factory(settings, session={"idle_session_timeout": "100ms"})
    with ConnectionPool(factory, max_size=1) as pool:
        with pool.connection() as conn:
            pid = backend_pid(conn)
        time.sleep(0.3)  # the server ends the idle session after 100 ms
        with pool.connection() as conn:
            assert backend_pid(conn) != pid
        assert pool.stats()["connections_lost"] == 1


def test_busy_connection_terminated_raises_to_its_caller_and_pool_recovers(factory, admin_conn):
    with ConnectionPool(factory, max_size=1) as pool:

        def terminate_when_busy(pid: int) -> None:
            wait_for(lambda: backend_count(admin_conn, "pid = %s AND state = 'active'", (pid,)) == 1,
                     what="the query to start")
            with admin_conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))

        with pytest.raises(psycopg2.OperationalError):
            with pool.connection() as conn:
                pid = backend_pid(conn)
                killer = threading.Thread(target=terminate_when_busy, args=(pid,))
                killer.start()
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_sleep(30)")
        killer.join(timeout=20)
        with pool.connection(timeout=5) as fresh:
            assert backend_pid(fresh) != pid
        assert pool.stats()["returns_bad"] == 1


def test_max_lifetime_retires_connections_with_jitter(factory):
    with ConnectionPool(factory, min_size=4, max_size=4, max_lifetime=100.0) as pool:
        lifetimes = [rec.expires_at - rec.last_used for rec in pool._idle]
        assert all(89.0 < life <= 100.0 for life in lifetimes)
        assert len({round(life, 6) for life in lifetimes}) == 4  # not all expiring at once
    with ConnectionPool(factory, max_size=1, max_lifetime=0.05) as pool:
        with pool.connection() as conn:
            pid = backend_pid(conn)
        time.sleep(0.06)
        with pool.connection() as conn:
            assert backend_pid(conn) != pid
        assert pool.stats()["connections_num"] == 2


def test_max_idle_retires_idle_connections_down_to_min_size(factory):
    with ConnectionPool(factory, min_size=1, max_size=3, max_idle=0.05) as pool:
        held = [pool.getconn() for _ in range(3)]
        for conn in held:
            pool.putconn(conn)
        assert pool.stats()["pool_size"] == 3
        time.sleep(0.06)
        for _ in range(5):  # each return retires the oldest idle connection past max_idle
            with pool.connection():
                pass
        assert pool.stats()["pool_size"] == 1


def test_dropped_connection_is_reclaimed_with_a_warning(factory, admin_conn):
    with ConnectionPool(factory, max_size=1) as pool:
        conn = pool.getconn()
        pid = backend_pid(conn)
        with pytest.warns(RuntimeWarning, match="garbage collected without being returned"):
            del conn
            gc.collect()
        with pool.connection(timeout=10) as fresh:
            assert backend_pid(fresh) != pid
        wait_for(lambda: backend_count(admin_conn, "pid = %s", (pid,)) == 0, what="the dropped backend to exit")
        assert pool.stats()["pool_size"] == 1


def test_sixteen_threads_on_four_connections_never_share_one(factory):
    holders: dict[int, int] = {}
    guard = threading.Lock()
    problems: list[str] = []

    def hammer() -> None:
        me = threading.get_ident()
        for _ in range(150):
            try:
                with pool.connection(timeout=30) as conn:
                    with guard:
                        if id(conn) in holders:
                            problems.append(f"connection {id(conn)} held by two threads")
                        holders[id(conn)] = me
                    with conn.cursor() as cur:
                        cur.execute("SELECT pg_backend_pid()")
                        cur.fetchone()
                    with guard:
                        del holders[id(conn)]
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                problems.append(repr(exc))

    with ConnectionPool(factory, min_size=1, max_size=4) as pool:
        threads = [threading.Thread(target=hammer) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert problems == []
        stats = pool.stats()
        assert stats["pool_size"] <= 4 and stats["connections_num"] <= 4
        assert stats["requests_num"] == 16 * 150 and stats["requests_errors"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_neither_uses_nor_closes_the_parents_connections(factory):
    with ConnectionPool(factory, min_size=2, max_size=2) as pool:
        with pool.connection() as conn:
            parent_backend = backend_pid(conn)
        borrowed = pool.getconn()

        def in_child() -> int:
            nonlocal borrowed
            try:  # the inherited connection must not reach the parent's session
                backend_pid(borrowed)
                os._exit(3)
            except psycopg2.Error:
                pass
            with pool.connection(timeout=10) as mine:
                child_backend = backend_pid(mine)
            pool.close()
            del borrowed  # freeing it in the child must not end the parent's session either
            gc.collect()
            return child_backend

        child_backend = number_from_child(in_child)
        assert child_backend not in (0, parent_backend)
        backend_pid(borrowed)  # the parent's borrowed connection survived the child
        pool.putconn(borrowed)
        with pool.connection() as conn:
            assert backend_pid(conn) == parent_backend
        assert pool.stats()["connections_num"] == 2


def test_close_closes_every_connection_and_leaves_nothing_on_the_server(settings, admin_conn):
    app = f"pool_close_{os.getpid()}"
    pool = ConnectionPool(make_factory(settings.with_(application_name=app)), min_size=3, max_size=4)
    borrowed = pool.getconn()
    with pool.connection():
        pass
    assert backend_count(admin_conn, "application_name = %s", (app,)) == 3
    pool.close()
    assert pool.closed
    with pytest.raises(PoolClosed):
        pool.getconn()
    pool.putconn(borrowed)  # returned after close: closed, not kept
    assert borrowed.closed
    gc.collect()
    wait_for(lambda: backend_count(admin_conn, "application_name = %s", (app,)) == 0,
             what="the pool's backends to exit")


def test_close_wakes_waiting_clients_with_pool_closed(factory):
    pool = ConnectionPool(factory, max_size=1)
    held = pool.getconn()
    errors = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(PoolClosed, pool.getconn, timeout=20)))
    t.start()
    wait_for(lambda: pool.stats()["requests_waiting"] == 1, what="a waiting client")
    pool.close()
    t.join(timeout=10)
    assert len(errors) == 1
    pool.putconn(held)


def test_stats_use_psycopg_pool_key_names(factory):
    with ConnectionPool(factory, min_size=1, max_size=3) as pool:
        with pool.connection():
            pass
        stats = pool.stats()
        assert set(stats) == STATS_KEYS
        assert stats["pool_min"] == 1 and stats["pool_max"] == 3 and stats["requests_num"] == 1


def test_pool_errors_are_operational_errors():
    assert issubclass(PoolTimeout, psycopg2.OperationalError)
    assert issubclass(PoolClosed, psycopg2.OperationalError)


def test_bad_sizes_are_rejected_with_a_clear_message(factory):
    with pytest.raises(ValueError, match=r"min_size must be between 0 and max_size \(2\), got 3"):
        ConnectionPool(factory, min_size=3, max_size=2)
    with pytest.raises(TypeError, match="zero-argument callable"):
        ConnectionPool("dbname=x")


def test_max_size_given_as_a_string_is_refused_naming_the_parameter(factory):
    with pytest.raises(TypeError, match=r"max_size must be a whole number, got '4' \(str\)"):
        ConnectionPool(factory, max_size="4")


def test_max_lifetime_zero_is_refused_saying_what_it_would_mean(factory):
    with pytest.raises(ValueError, match="max_lifetime must be more than 0 seconds.*closed right after its first use"):
        ConnectionPool(factory, max_lifetime=0)


@given(parameter=st.sampled_from(["min_size", "max_size", "timeout", "max_lifetime", "max_idle", "check_after"]),
       value=st.one_of(st.integers(max_value=-1), st.floats(max_value=-1e-9), st.just(float("nan")),
                       st.text(max_size=3), st.none(), st.booleans(), st.lists(st.integers(), max_size=1)))
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_bad_constructor_argument_is_refused_before_connecting_and_named(parameter, value):
    opened: list[int] = []

    def factory():  # never called: arguments are checked before the first connection is opened
        opened.append(1)
        raise AssertionError("connected before checking the arguments")

    with pytest.raises((TypeError, ValueError)) as caught:
        ConnectionPool(factory, **({"min_size": 0} | {parameter: value}))
    assert parameter in str(caught.value) and opened == []


def test_putconn_of_something_else_raises_type_error(factory):
    with ConnectionPool(factory, max_size=1) as pool:
        with pytest.raises(TypeError, match="expects a connection it gave out"):
            pool.putconn("not a connection")
        with pool.connection(timeout=5):
            pass


def test_failed_connect_reaches_the_caller_and_frees_its_slot(settings):
    real = make_factory(settings)
    failures = [True]

    def flaky():
        if failures and failures.pop():
            raise psycopg2.OperationalError("server not reachable (simulated)")
        return real()

    with ConnectionPool(flaky, min_size=0, max_size=1) as pool:
        with pytest.raises(psycopg2.OperationalError, match="simulated"):
            pool.getconn(timeout=1)
        stats = pool.stats()
        assert stats["connections_errors"] == 1 and stats["pool_size"] == 0
        with pool.connection(timeout=5) as conn:
            assert not conn.closed


def test_a_connection_block_used_twice_by_hand_says_so_and_loses_nothing(factory):
    with ConnectionPool(factory, max_size=2) as pool:
        block = pool.connection()
        conn = block.__enter__()
        with pytest.raises(RuntimeError, match="already in use"):
            block.__enter__()
        block.__exit__(None, None, None)
        with pytest.raises(RuntimeError, match="holds no connection"):
            block.__exit__(None, None, None)
        assert pool.stats()["pool_available"] == 1  # given back once
        with pool.connection() as again:
            assert again is conn


def test_a_block_whose_commit_fails_raises_it_and_gives_back_a_clean_connection(factory, admin_conn):
    with admin_conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS pool_deferred")
        cur.execute("CREATE TABLE pool_deferred (v int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
        cur.execute("GRANT ALL ON pool_deferred TO myuser")
    try:
        with ConnectionPool(factory, max_size=1) as pool:
            with pytest.raises(psycopg2.errors.UniqueViolation):
                with pool.connection() as conn, conn.cursor() as cur:
                    cur.execute("INSERT INTO pool_deferred VALUES (1), (1)")  # checked only at COMMIT
            stats = pool.stats()
            assert stats["pool_available"] == 1 and stats["returns_bad"] == 0
            with pool.connection() as again, again.cursor() as cur:
                assert again is conn
                cur.execute("SELECT count(*) FROM pool_deferred")
                assert cur.fetchone()[0] == 0
    finally:
        with admin_conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS pool_deferred")


def test_a_connection_handed_straight_to_a_waiter_costs_no_check_round_trip(settings):
    # A busy pool hands returned connections to waiters without ever pushing them idle; each
    # hand-over must count as "just used", or every checkout after check_after would pay a SELECT 1.
    factory = make_factory(settings, connection_factory=KitConnection)
    with ConnectionPool(factory, min_size=1, max_size=1, check_after=0.05) as pool:
        conn = pool.getconn()
        time.sleep(0.1)  # older than check_after since it was last pooled
        before = conn.counters()["round_trips"]
        got: list = []
        waiter = threading.Thread(target=lambda: got.append(pool.getconn(timeout=5)))
        waiter.start()
        wait_for(lambda: pool.stats()["requests_waiting"] == 1, what="the waiter to queue up")
        pool.putconn(conn)
        waiter.join(10)
        assert got == [conn] and conn.counters()["round_trips"] == before
        pool.putconn(conn)
