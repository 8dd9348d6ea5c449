"""The three defects issue #12 reported in the lock-free pool, each pinned against a real server.

Each of these tests failed on that pool (reproduced before the one-lock rewrite) and passes now.
"""
from __future__ import annotations

import json
import os
import threading
import time

import psycopg2
import pytest

from pgfactory_kit import ConnectionPool, PoolTimeout, make_factory

from .conftest import run_in_fork


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Bounded polling wait (5 ms steps) for something another thread does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def test_a_with_block_owns_its_connection_even_long_after_its_last_return(factory):
    # The old pool set the block's ownership only on its fast path (a return under 10 ms ago).
    with ConnectionPool(factory, min_size=1, max_size=2) as pool:
        with pool.connection():
            pass
        time.sleep(0.05)  # the usual case in a notebook: the next block starts much later
        with pool.connection() as conn:
            with pytest.raises(ValueError, match="block holds"):
                pool.putconn(conn)
            other = pool.getconn(timeout=5)
            assert other is not conn, "the block's connection was lent to a second borrower"
            pool.putconn(other)
        stats = pool.stats()
        assert stats["pool_size"] == 2 and stats["pool_available"] == 2 and stats["returns_bad"] == 0


def test_a_failed_connect_serves_the_borrower_queued_behind_it(settings):
    # max_size=1: A's connect fails while B waits in line. The freed slot must be used for B.
    real = make_factory(settings)
    connecting, fail_now = threading.Event(), threading.Event()
    calls: list[int] = []

    def restarting_server():
        calls.append(1)
        if len(calls) == 1:
            connecting.set()
            fail_now.wait(10)
            raise psycopg2.OperationalError("the server is restarting (simulated)")
        return real()

    with ConnectionPool(restarting_server, min_size=0, max_size=1, timeout=8) as pool:
        outcome: dict[str, object] = {}

        def borrow(who: str) -> None:
            try:
                outcome[who] = pool.getconn()
            except psycopg2.OperationalError as exc:
                outcome[who] = exc

        a = threading.Thread(target=borrow, args=("A",))
        a.start()
        assert connecting.wait(10)
        b = threading.Thread(target=borrow, args=("B",))
        b.start()
        wait_for(lambda: pool.stats()["requests_waiting"] == 1, what="B to queue up")
        started = time.monotonic()
        fail_now.set()
        a.join(10)
        b.join(10)
        assert isinstance(outcome["A"], psycopg2.OperationalError) and "simulated" in str(outcome["A"])
        assert not isinstance(outcome["B"], PoolTimeout), "B was stranded until its timeout"
        conn = outcome["B"]
        assert isinstance(conn, psycopg2.extensions.connection) and not conn.closed
        assert time.monotonic() - started < 8  # served when the server answered, not at B's timeout
        pool.putconn(conn)
        assert pool.stats()["pool_size"] == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_inside_a_with_block_keeps_its_pool_within_max_size(factory):
    # The old pool pushed the parent's record onto the child's fresh pool when the child left the block.
    with ConnectionPool(factory, min_size=1, max_size=2, timeout=5) as pool:
        block = pool.connection()
        parent_backend = block.__enter__().info.backend_pid

        def in_child() -> bytes:
            block.__exit__(None, None, None)  # the child leaves the block it inherited
            after_block = pool.stats()
            mine = [pool.getconn() for _ in range(2)]
            backends = []
            for c in mine:
                with c.cursor() as cur:
                    cur.execute("SELECT pg_backend_pid()")
                    backends.append(cur.fetchone()[0])
            try:
                pool.getconn(timeout=0.2)
                third = "lent"
            except PoolTimeout:
                third = "refused"
            return json.dumps({"after_block": after_block, "backends": backends, "third": third,
                               "size": pool.stats()["pool_size"]}).encode()

        report = json.loads(run_in_fork(in_child, parent_body=lambda: block.__exit__(None, None, None)))
        assert report["after_block"]["pool_size"] == 0 and report["after_block"]["pool_available"] == 0
        assert parent_backend not in report["backends"], "the child used the parent's session"
        assert report["third"] == "refused" and report["size"] == 2  # never more than max_size
        with pool.connection() as again:  # the parent's connection survived the child
            assert again.info.backend_pid == parent_backend
