"""The pool's lock-free checkout and return under races (real server; every loop bounded).

Checkout pops an idle record and return pushes it back without taking the pool's lock; these
tests pin what that design promises: a wake-up is never lost, a connection is never lent twice
(not even when two threads return it at the same instant), close() leaves nothing behind while
returns race with it, and the counters stay exact.
"""
from __future__ import annotations

import collections
import sys
import threading
import time

import pytest

from pgfactory_kit import ConnectionPool, PoolClosed, PoolTimeout

ROUNDS = 100


@pytest.fixture(autouse=True)
def switch_threads_often():
    """Let the interpreter switch threads every 10 µs (default 5 ms), so races happen in the pool's code."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def run_together(*targets, timeout: float = 60.0) -> None:
    """Start the targets at the same instant (a barrier) and wait for all of them, bounded."""
    barrier = threading.Barrier(len(targets))

    def start(target):
        def body():
            barrier.wait(timeout=timeout)
            target()
        return body

    threads = [threading.Thread(target=start(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a racing thread did not finish in time"


def test_two_threads_returning_one_connection_at_once_let_exactly_one_through(factory):
    with ConnectionPool(factory, min_size=1, max_size=1) as pool:
        for _ in range(ROUNDS):
            conn = pool.getconn()
            outcomes: list[str] = []

            def give_back(conn=conn, outcomes=outcomes):
                try:
                    pool.putconn(conn)
                    outcomes.append("returned")
                except ValueError:
                    outcomes.append("refused")

            run_together(give_back, give_back)
            assert sorted(outcomes) == ["refused", "returned"]
            assert pool.stats()["pool_available"] == 1  # pooled once, not twice
        only = pool.getconn()
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.05)  # a connection pushed twice would be lent a second time here
        pool.putconn(only)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the other thread"
        time.sleep(0.005)


# The two interleavings that could lose a wake-up, forced one at a time by a container whose
# append first lets the other thread run (white-box: these pin the argument in pool.py's docstring).

@pytest.mark.parametrize("returned_by", ["putconn", "with block"])
def test_a_waiter_queued_between_a_returns_check_and_its_push_is_served(factory, returned_by):
    with ConnectionPool(factory, min_size=1, max_size=1) as pool:
        got: list = []
        waiter = threading.Thread(target=lambda: got.append(pool.getconn(timeout=5)))

        class QueueUpBeforePush(list):
            def append(self, rec):  # the return found nobody waiting; now somebody queues up
                if not waiter.is_alive() and not got:
                    waiter.start()
                    wait_for(lambda: pool.stats()["requests_waiting"] == 1)
                super().append(rec)

        if returned_by == "putconn":
            conn = pool.getconn()
            pool._idle = QueueUpBeforePush(pool._idle)
            pool.putconn(conn)
        else:
            with pool.connection() as conn:
                pool._idle = QueueUpBeforePush(pool._idle)
        waiter.join(timeout=10)
        assert got == [conn]
        pool.putconn(conn)


def test_a_return_pushed_between_a_waiters_look_and_its_queueing_serves_it(factory):
    with ConnectionPool(factory, min_size=1, max_size=1) as pool:
        conn = pool.getconn()
        returner = threading.Thread(target=pool.putconn, args=(conn,))

        class ReturnBeforeQueueing(collections.deque):
            def append(self, waiter):  # the waiter found no idle connection; now one is returned
                if returner.ident is None:
                    returner.start()
                    returner.join(timeout=10)
                super().append(waiter)

        pool._waiting = ReturnBeforeQueueing()
        assert pool.getconn(timeout=5) is conn
        pool.putconn(conn)


def test_waiters_are_never_stranded_by_returns_that_take_no_lock(factory):
    # One connection, eight threads, short queries: returns and new waiters race constantly. A lost
    # wake-up would leave a waiter asleep next to an idle connection until its timeout.
    threads, per_thread = 8, 300
    errors: list[str] = []
    with ConnectionPool(factory, min_size=1, max_size=1, timeout=10) as pool:
        def borrow_many():
            for _ in range(per_thread):
                try:
                    with pool.connection() as conn, conn.cursor() as cur:
                        cur.execute("SELECT 1")  # releases the GIL: others queue up meanwhile
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(repr(exc))

        run_together(*[borrow_many] * threads, timeout=120)
        stats = pool.stats()
        back_on_fast_path = pool._attention is False  # nobody waits now: returns take no lock again
    assert errors == []
    assert stats["requests_num"] == threads * per_thread
    assert stats["requests_errors"] == 0 and stats["connections_num"] == 1
    assert stats["requests_queued"] > 0  # the race was real: some requests had to wait
    assert back_on_fast_path


def test_connection_is_never_lent_to_two_borrowers_while_returns_race_checkouts(factory):
    holders: dict[int, int] = {}
    guard = threading.Lock()
    problems: list[str] = []
    with ConnectionPool(factory, min_size=2, max_size=2, timeout=10) as pool:
        def churn():
            me = threading.get_ident()
            for _ in range(400):
                conn = pool.getconn()
                with guard:
                    if id(conn) in holders:
                        problems.append("one connection lent to two borrowers")
                    holders[id(conn)] = me
                with guard:
                    del holders[id(conn)]
                pool.putconn(conn)

        run_together(*[churn] * 6, timeout=120)
        assert pool.stats()["requests_num"] == 6 * 400
    assert problems == []


def test_returns_racing_close_leave_no_connection_open(factory):
    for _ in range(15):
        pool = ConnectionPool(factory, min_size=0, max_size=3)
        conns = [pool.getconn() for _ in range(3)]
        returners = [lambda c=c, pool=pool: pool.putconn(c) for c in conns]
        run_together(*returners, pool.close)
        assert all(c.closed for c in conns), "a connection returned during close() was kept open"
        assert pool.stats()["pool_size"] == 0 and pool.stats()["pool_available"] == 0


def test_checkouts_racing_close_get_a_connection_or_pool_closed_and_leak_nothing(factory):
    for _ in range(15):
        pool = ConnectionPool(factory, min_size=3, max_size=3)
        lent: list = []
        outcomes: list[str] = []

        def borrow(pool=pool, lent=lent, outcomes=outcomes):
            try:
                lent.append(pool.getconn())
                outcomes.append("lent")
            except PoolClosed:
                outcomes.append("closed")

        run_together(borrow, borrow, borrow, pool.close)
        assert len(outcomes) == 3
        for conn in lent:
            pool.putconn(conn)  # after close: closed on return
        assert all(conn.closed for conn in lent)
        assert pool.stats()["pool_size"] == 0
