"""Model-based test of ConnectionPool: Hypothesis drives random sequences of what borrowers do.

Rules: getconn, putconn (right, twice, a block's, a foreign connection, close=True), `with` blocks
entered and exited (with and without an error, with a putconn attempt inside), backends terminated
by the server, and close(). After every step the pool must agree with a model kept by the test:
no connection lent to two borrowers at once, pool_size <= max_size, every accepted return matches
one lend, and the stats() counters add up. A real server; bounded example counts.
"""
from __future__ import annotations

import itertools
import os
import time

import psycopg2
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from pgfactory_kit import ConnectionPool, PoolClosed, PoolTimeout, make_factory

MAX_SIZE = 3
_RUNS = itertools.count(1)


class PoolModel(RuleBasedStateMachine):
    """The pool, and what the test knows it has lent out."""

    server_settings = None  # set by the test below
    admin_kwargs: dict = {}

    def __init__(self) -> None:
        super().__init__()
        self.app = f"pool_model_{os.getpid()}_{next(_RUNS)}"
        factory = make_factory(self.server_settings.with_(application_name=self.app))
        self.pool = ConnectionPool(factory, min_size=0, max_size=MAX_SIZE, timeout=2, check_after=0.5)
        self.lent: list = []  # from getconn(), in our hands
        self.blocks: list = []  # (block, conn) entered and not yet exited
        self.returned: list = []  # given back: returning them again must be refused
        self.requests = self.accepted_returns = self.lends = 0
        self.closed = False
        self.foreign = psycopg2.connect(**self.server_settings.connect_kwargs())

    def held(self) -> list:
        return self.lent + [conn for _, conn in self.blocks]

    # -------------------------------------------------------------- borrowing
    @precondition(lambda self: not self.closed)
    @rule()
    def getconn(self) -> None:
        self.requests += 1
        if len(self.held()) == MAX_SIZE:
            with pytest.raises(PoolTimeout):
                self.pool.getconn(timeout=0.02)
            return
        conn = self.pool.getconn()
        assert all(conn is not other for other in self.held()), "one connection lent to two borrowers"
        self.lent.append(conn)
        self.lends += 1

    @precondition(lambda self: not self.closed and len(self.held()) < MAX_SIZE)
    @rule()
    def enter_block(self) -> None:
        self.requests += 1
        block = self.pool.connection()
        conn = block.__enter__()
        assert all(conn is not other for other in self.held()), "one connection lent to two borrowers"
        self.blocks.append((block, conn))
        self.lends += 1

    @precondition(lambda self: self.blocks)
    @rule(data=st.data(), failing=st.booleans(), try_putconn=st.booleans())
    def exit_block(self, data, failing: bool, try_putconn: bool) -> None:
        block, conn = self.blocks.pop(data.draw(st.integers(0, len(self.blocks) - 1)))
        if try_putconn:
            with pytest.raises(ValueError, match="block holds"):
                self.pool.putconn(conn)
        if failing:
            error = RuntimeError("the borrower's code failed")
            block.__exit__(RuntimeError, error, None)
        else:
            try:
                block.__exit__(None, None, None)
            except psycopg2.OperationalError:
                pass  # its backend was terminated while lent: the commit's failure reaches the borrower
        self.accepted_returns += 1
        self.returned.append(conn)

    # -------------------------------------------------------------- returning
    @precondition(lambda self: self.lent)
    @rule(data=st.data(), close=st.booleans())
    def putconn(self, data, close: bool) -> None:
        conn = self.lent.pop(data.draw(st.integers(0, len(self.lent) - 1)))
        self.pool.putconn(conn, close=close)
        self.accepted_returns += 1
        self.returned.append(conn)

    @precondition(lambda self: self.returned)
    @rule(data=st.data())
    def putconn_twice(self, data) -> None:
        conn = data.draw(st.sampled_from(self.returned))
        if any(conn is other for other in self.held()):
            return  # lent out again since: returning it is legitimate, not a second return
        with pytest.raises(ValueError):
            self.pool.putconn(conn)

    @rule()
    def putconn_foreign(self) -> None:
        with pytest.raises(ValueError, match="does not come from this pool"):
            self.pool.putconn(self.foreign)

    # -------------------------------------------------------------- the server and the end
    @precondition(lambda self: not self.closed)
    @rule(which=st.sampled_from(["idle", "held"]))
    def terminate_backends(self, which: str) -> None:
        held = [conn.info.backend_pid for conn in self.held() if not conn.closed]
        with psycopg2.connect(**self.admin_kwargs) as admin, admin.cursor() as cur:
            if which == "held":
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = %s AND pid = ANY(%s)", (self.app, held))
            else:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = %s AND NOT pid = ANY(%s)", (self.app, held))
        admin.close()

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        self.pool.close()
        self.closed = True
        with pytest.raises(PoolClosed):
            self.pool.getconn(timeout=0.01)

    # -------------------------------------------------------------- after every step
    @invariant()
    def books_balance(self) -> None:
        stats = self.pool.stats()
        held = self.held()
        assert len({id(conn) for conn in held}) == len(held), "one connection lent to two borrowers"
        assert 0 <= stats["pool_size"] <= MAX_SIZE
        if self.closed:
            assert stats["pool_available"] == 0 and stats["pool_size"] == len(held)
        else:
            assert stats["pool_available"] + len(held) == stats["pool_size"]
        assert stats["requests_waiting"] == 0
        assert stats["requests_num"] == self.requests
        assert self.lends - self.accepted_returns == len(held), "a return matched no lend, or a lend was lost"

    def teardown(self) -> None:
        for conn in self.lent:
            self.pool.putconn(conn)
        for block, _ in self.blocks:
            try:
                block.__exit__(None, None, None)
            except psycopg2.Error:
                pass
        self.pool.close()
        self.foreign.close()
        stats = self.pool.stats()
        assert stats["pool_size"] == 0 and stats["pool_available"] == 0
        # The server, an independent observer, agrees: none of this run's sessions is left.
        with psycopg2.connect(**self.admin_kwargs) as admin, admin.cursor() as cur:
            for _ in range(200):  # backends exit just after their socket closes: bounded wait, 5 ms steps
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (self.app,))
                if cur.fetchone()[0] == 0:
                    break
                time.sleep(0.005)
            else:
                raise AssertionError(f"sessions of {self.app} are still on the server after close()")
        admin.close()


def test_pool_agrees_with_its_model_under_random_use(server):
    PoolModel.server_settings = server.settings()
    PoolModel.admin_kwargs = server.admin_settings("mydatabase").connect_kwargs()
    run_state_machine_as_test(PoolModel, settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow]))
