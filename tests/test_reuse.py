"""ReusedConnection: one backend handed out again and again, replaced only when it is gone."""
from __future__ import annotations

import os
import threading
import time

import psycopg2
import pytest

from pgfactory_kit import KitConnection, ReusedConnection, make_factory

from .conftest import number_from_child, run_in_fork


def backend_pid(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def wait_until_gone(admin_conn, pid: int, timeout: float = 10.0) -> None:
    """Bounded wait until backend ``pid`` has left pg_stat_activity."""
    deadline = time.monotonic() + timeout
    with admin_conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            if cur.fetchone()[0] == 0:
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} still present after {timeout}s")


def test_get_returns_the_same_connection_and_opens_once(factory):
    with ReusedConnection(factory) as reused:
        first = reused.get()
        pids = {backend_pid(reused.get()) for _ in range(5)}
        assert reused.get() is first
        assert len(pids) == 1
        assert reused.connects == 1


def test_closed_connection_is_replaced(factory):
    with ReusedConnection(factory) as reused:
        first = reused.get()
        first.close()
        second = reused.get()
        assert second is not first and not second.closed
        assert reused.connects == 2


def test_connection_terminated_by_server_is_replaced_without_error(factory, admin_conn):
    with ReusedConnection(factory) as reused:
        pid = backend_pid(reused.get())
        reused.get().commit()
        with admin_conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until_gone(admin_conn, pid)
        assert backend_pid(reused.get()) != pid
        assert reused.connects == 2


def test_recently_used_connection_is_handed_out_without_a_round_trip(settings):
    with ReusedConnection(make_factory(settings, connection_factory=KitConnection)) as reused:
        conn = reused.get()
        before = conn.counters()["round_trips"]
        for _ in range(10):
            assert reused.get() is conn
        assert conn.counters()["round_trips"] == before


def test_connection_block_commits_on_success(factory, admin_conn):
    with admin_conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS reuse_commit_test (v int)")
        cur.execute("GRANT ALL ON reuse_commit_test TO myuser")
        cur.execute("TRUNCATE reuse_commit_test")
    with ReusedConnection(factory) as reused:
        with reused.connection() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO reuse_commit_test VALUES (1)")
    with admin_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM reuse_commit_test")
        assert cur.fetchone()[0] == 1
        cur.execute("DROP TABLE reuse_commit_test")


def test_connection_block_rolls_back_on_error_and_stays_usable(factory, admin_conn):
    with admin_conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS reuse_rollback_test (v int)")
        cur.execute("GRANT ALL ON reuse_rollback_test TO myuser")
        cur.execute("TRUNCATE reuse_rollback_test")
    with ReusedConnection(factory) as reused:
        with pytest.raises(ZeroDivisionError):
            with reused.connection() as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO reuse_rollback_test VALUES (1)")
                1 / 0  # noqa: B018
        with pytest.raises(psycopg2.errors.DivisionByZero):
            with reused.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1/0")
        with reused.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM reuse_rollback_test")
            assert cur.fetchone()[0] == 0
        assert reused.connects == 1
    with admin_conn.cursor() as cur:
        cur.execute("DROP TABLE reuse_rollback_test")


def test_connection_block_is_serialised_between_threads(factory):
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(20):
            with reused.connection() as conn:
                with guard:
                    inside += 1
                    most = max(most, inside)
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                with guard:
                    inside -= 1

    with ReusedConnection(factory) as reused:
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert most == 1
        assert reused.connects == 1


def test_close_leaves_nothing_on_the_server(factory, admin_conn):
    reused = ReusedConnection(factory)
    pid = backend_pid(reused.get())
    reused.close()
    assert reused.closed
    wait_until_gone(admin_conn, pid)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_neither_uses_nor_closes_the_parents_connection(factory):
    reused = ReusedConnection(factory)
    parent_pid = backend_pid(reused.get())
    reused.get().commit()

    def in_child() -> int:  # must open its own backend, and closing must not touch the parent's
        child_backend = backend_pid(reused.get())
        reused.close()
        return child_backend

    child_backend = number_from_child(in_child)
    assert child_backend not in (0, parent_pid)
    assert backend_pid(reused.get()) == parent_pid  # the parent's session survived the child
    assert reused.connects == 1
    reused.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_inside_a_connection_block_leaves_it_quietly_and_opens_its_own(factory):
    reused = ReusedConnection(factory)
    block = reused.connection()
    parent_backend = backend_pid(block.__enter__())

    def in_child() -> bytes:  # the child leaves the block it inherited: no COMMIT on the parent's session
        block.__exit__(None, None, None)
        return str(backend_pid(reused.get())).encode()

    child_backend = int(run_in_fork(in_child, parent_body=lambda: block.__exit__(None, None, None)) or b"0")
    assert child_backend not in (0, parent_backend)
    assert backend_pid(reused.get()) == parent_backend and reused.connects == 1
    reused.close()
