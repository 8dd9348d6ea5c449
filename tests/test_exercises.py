"""The challenge checkers (pgfactory_kit.lessons.exercises): each passes the worked solution and
fails the wrong answers learners actually write, with a hint that names the mistake."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import pytest

from pgfactory_kit import make_factory
from pgfactory_kit.lessons import backend_pid
from pgfactory_kit.lessons.exercises import ExerciseFailed, nb01


@pytest.fixture
def no_johns(settings) -> Iterator[None]:
    """mytable without rows named John, before and after the test."""
    def tidy() -> None:
        with closing(make_factory(settings)()) as conn, conn, conn.cursor() as cur:
            cur.execute("DELETE FROM mytable WHERE name = %s", ("John",))
    tidy()
    yield
    tidy()


# ------------------------------------------------------------------------------ 01: one connection, committed
def blog_on_one_connection(settings, *, commit: bool = True, insert: bool = True) -> list[int]:
    """The blog's two operations on one connection; what a learner writes (or gets wrong)."""
    pids = []
    with closing(make_factory(settings)()) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM mytable")
            cur.fetchall()
            pids.append(backend_pid(conn))
            if insert:
                cur.execute("INSERT INTO mytable (name) VALUES (%s)", ("John",))
            pids.append(backend_pid(conn))
        if commit:
            conn.commit()
    return pids


def test_nb01_passes_both_operations_on_one_committed_connection(settings, no_johns) -> None:
    before = nb01.before_challenge(settings)
    assert nb01.check_one_connection(settings, before, blog_on_one_connection(settings))


def test_nb01_fails_an_insert_that_was_never_committed(settings, no_johns) -> None:
    before = nb01.before_challenge(settings)
    pids = blog_on_one_connection(settings, commit=False)
    with pytest.raises(ExerciseFailed, match=r"conn\.commit\(\)"):
        nb01.check_one_connection(settings, before, pids)


def test_nb01_fails_when_john_was_not_inserted(settings, no_johns) -> None:
    before = nb01.before_challenge(settings)
    pids = blog_on_one_connection(settings, insert=False)
    with pytest.raises(ExerciseFailed, match="committed row named 'John'"):
        nb01.check_one_connection(settings, before, pids)


def test_nb01_fails_the_blogs_two_connections(settings, no_johns) -> None:
    before = nb01.before_challenge(settings)
    pids = []
    for _ in range(2):
        with closing(make_factory(settings)()) as conn, conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            pids.append(backend_pid(conn))
    with pytest.raises(ExerciseFailed, match="call the factory once"):
        nb01.check_one_connection(settings, before, pids)


def test_nb01_fails_a_second_run_of_the_cell_that_inserts_john_twice(settings, no_johns) -> None:
    before = nb01.before_challenge(settings)
    blog_on_one_connection(settings)
    with pytest.raises(ExerciseFailed, match="exactly 1 new session"):
        nb01.check_one_connection(settings, before, blog_on_one_connection(settings))


# ------------------------------------------------------------------------------ 03: connected once, says the server
@pytest.fixture
def no_names(settings) -> Iterator[None]:
    """mytable without the rows the 03 challenge inserts, before and after the test."""
    from pgfactory_kit.lessons.exercises import nb03

    def tidy() -> None:
        with closing(make_factory(settings)()) as conn, conn, conn.cursor() as cur:
            cur.execute("DELETE FROM mytable WHERE name = ANY(%s)", (list(nb03.NAMES),))
    tidy()
    yield
    tidy()


def insert_names(settings, *, how: str = "reused", close: bool = True):
    """The 03 challenge as a learner writes it (how="reused"), or as learners get it wrong: a new
    ReusedConnection per name ("new-each-time"), get() without a commit ("get"), close() inside the loop
    ("close-in-loop"). Returns (reused, pids, opened), ``opened`` read from the server's counter."""
    from pgfactory_kit import ReusedConnection
    from pgfactory_kit.lessons import server_sessions, wait_until_gone
    from pgfactory_kit.lessons.exercises import nb03

    factory = make_factory(settings)
    before = server_sessions(settings)
    reused = ReusedConnection(factory)
    pids, made = [], [reused]
    for name in nb03.NAMES:
        if how == "new-each-time":
            reused = ReusedConnection(factory)
            made.append(reused)
        if how == "get":
            conn = reused.get()
            with conn.cursor() as cur:
                cur.execute("INSERT INTO mytable (name) VALUES (%s)", (name,))
            pids.append(backend_pid(conn))
        else:
            with reused.connection() as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO mytable (name) VALUES (%s)", (name,))
                pids.append(backend_pid(conn))
        if how == "close-in-loop":
            reused.close()
    if close:
        for each in made:
            each.close()
        wait_until_gone(settings, pids)
    return reused, pids, server_sessions(settings) - before


def test_nb03_passes_every_insert_through_one_reused_connection(settings, no_names) -> None:
    from pgfactory_kit.lessons.exercises import nb03

    before = nb03.before_challenge(settings)
    reused, pids, opened = insert_names(settings)
    assert opened == 1
    assert nb03.check_connected_once(settings, before, reused, pids, opened)


def test_nb03_fails_a_new_reused_connection_for_each_insert(settings, no_names) -> None:
    from pgfactory_kit.lessons.exercises import nb03

    before = nb03.before_challenge(settings)
    reused, pids, opened = insert_names(settings, how="new-each-time")
    with pytest.raises(ExerciseFailed, match="make the ReusedConnection once, before the loop"):
        nb03.check_connected_once(settings, before, reused, pids, opened)


def test_nb03_fails_a_close_inside_the_loop(settings, no_names) -> None:
    from pgfactory_kit.lessons.exercises import nb03

    before = nb03.before_challenge(settings)
    reused, pids, opened = insert_names(settings, how="close-in-loop")
    with pytest.raises(ExerciseFailed, match="the same backend PID for every insert|reused.connects == 1"):
        nb03.check_connected_once(settings, before, reused, pids, opened)


def test_nb03_fails_inserts_through_get_that_were_never_committed(settings, no_names) -> None:
    from pgfactory_kit.lessons.exercises import nb03

    before = nb03.before_challenge(settings)
    reused, pids, opened = insert_names(settings, how="get")
    with pytest.raises(ExerciseFailed, match="commits nothing"):
        nb03.check_connected_once(settings, before, reused, pids, opened)


def test_nb03_fails_a_count_of_the_operations_instead_of_the_servers_sessions(settings, no_names) -> None:
    from pgfactory_kit.lessons.exercises import nb03

    before = nb03.before_challenge(settings)
    reused, pids, _ = insert_names(settings)
    with pytest.raises(ExerciseFailed, match="what the server counted: 1"):
        nb03.check_connected_once(settings, before, reused, pids, len(pids))


def test_nb03_fails_a_reused_connection_still_open_when_the_sessions_are_counted(settings, no_names) -> None:
    from pgfactory_kit.lessons.exercises import nb03

    before = nb03.before_challenge(settings)
    reused, pids, opened = insert_names(settings, close=False)
    try:
        with pytest.raises(ExerciseFailed, match="reused.close"):
            nb03.check_connected_once(settings, before, reused, pids, opened)
    finally:
        reused.close()


def test_nb03_fails_a_plain_connection_instead_of_a_reused_one(settings, no_names) -> None:
    from pgfactory_kit.lessons.exercises import nb03

    before = nb03.before_challenge(settings)
    with closing(make_factory(settings)()) as conn:
        with pytest.raises(ExerciseFailed, match="a pgfactory_kit.ReusedConnection"):
            nb03.check_connected_once(settings, before, conn, [backend_pid(conn)] * len(nb03.NAMES), 1)


def test_nb03_prints_what_to_do_while_the_answer_is_still_the_placeholder(settings, capsys) -> None:
    from pgfactory_kit.lessons.exercises import nb03

    assert not nb03.check_connected_once(settings, nb03.before_challenge(settings), ..., ..., ...)
    assert "not attempted yet" in capsys.readouterr().out


# ------------------------------------------------------------------------------ 04: many threads, few connections
def run_tasks(pool, tasks: int = 6, threads: int = 6) -> list[int]:
    from concurrent.futures import ThreadPoolExecutor

    def task(_):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(%s)", (0.05,))
            return backend_pid(conn)
    if threads == 1:
        return [task(i) for i in range(tasks)]
    with ThreadPoolExecutor(max_workers=threads) as executor:
        return list(executor.map(task, range(tasks)))


def test_nb04_passes_six_threads_on_a_pool_of_three(settings) -> None:
    from pgfactory_kit import ConnectionPool
    from pgfactory_kit.lessons.exercises import nb04

    with ConnectionPool(make_factory(settings), max_size=3) as pool:
        assert nb04.check_bounded_pool(pool, run_tasks(pool))


def test_nb04_fails_tasks_run_one_after_another(settings) -> None:
    from pgfactory_kit import ConnectionPool
    from pgfactory_kit.lessons.exercises import nb04

    with ConnectionPool(make_factory(settings), max_size=3) as pool:
        pids = run_tasks(pool, threads=1)
        with pytest.raises(ExerciseFailed, match="requests_queued > 0"):
            nb04.check_bounded_pool(pool, pids)


def test_nb04_fails_a_pool_as_big_as_the_thread_count(settings) -> None:
    from pgfactory_kit import ConnectionPool
    from pgfactory_kit.lessons.exercises import nb04

    with ConnectionPool(make_factory(settings), max_size=6) as pool:
        pids = run_tasks(pool)
        with pytest.raises(ExerciseFailed, match="max_size == 3"):
            nb04.check_bounded_pool(pool, pids)


# ------------------------------------------------------------------------------ 08: retry only a lost connection
def retry_when_lost(pool, sql, params=()):
    """The worked solution: retry once, only when the connection was lost."""
    import psycopg2

    for attempt in (1, 2):
        conn = None
        try:
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchone()
        except psycopg2.OperationalError:
            if attempt == 2 or conn is None or not conn.closed:
                raise
    return None


def retry_any_operational_error(pool, sql, params=()):
    """The catch-all retry the issue warns about: QueryCanceled and PoolTimeout are retried too."""
    import psycopg2

    for attempt in (1, 2):
        try:
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchone()
        except psycopg2.OperationalError:
            if attempt == 2:
                raise
    return None


def retry_unless_cancelled(pool, sql, params=()):
    """Better, but still retries an exhausted pool (PoolTimeout)."""
    import psycopg2

    for attempt in (1, 2):
        try:
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchone()
        except psycopg2.errors.QueryCanceled:
            raise
        except psycopg2.OperationalError:
            if attempt == 2:
                raise
    return None


def test_nb08_passes_a_retry_only_when_the_connection_was_lost(settings) -> None:
    from pgfactory_kit.lessons.exercises import nb08

    assert nb08.check_retry(retry_when_lost, settings)


def test_nb08_fails_a_catch_all_retry_of_a_cancelled_query(settings) -> None:
    from pgfactory_kit.lessons.exercises import nb08

    with pytest.raises(ExerciseFailed, match="QueryCanceled is an OperationalError too"):
        nb08.check_retry(retry_any_operational_error, settings)


def test_nb08_fails_a_retry_of_an_exhausted_pool(settings) -> None:
    from pgfactory_kit.lessons.exercises import nb08

    with pytest.raises(ExerciseFailed, match="PoolTimeout is an OperationalError too"):
        nb08.check_retry(retry_unless_cancelled, settings)


# ------------------------------------------------------------------------------ 05: read the result, then use it
def select1_summary():
    import pandas as pd

    return pd.DataFrame({"strategy": ["connect_per_query", "reused", "pool"], "workload": ["select1"] * 3,
                         "median_ms": [5.05, 0.05, 0.06]})


def test_nb05_passes_overhead_added_to_a_slow_query_and_a_shrinking_ratio() -> None:
    from pgfactory_kit.lessons.exercises import nb05

    assert nb05.check_reading(5.0, 5.0 + 5.0, "smaller", select1_summary(), slow_query_ms=5.0)


def test_nb05_fails_a_prediction_that_multiplies_the_query_by_the_select1_ratio() -> None:
    from pgfactory_kit.lessons.exercises import nb05

    with pytest.raises(ExerciseFailed, match="it adds"):
        nb05.check_reading(5.0, 5.0 * 101, "smaller", select1_summary(), slow_query_ms=5.0)


def test_nb05_fails_a_ratio_that_grows_with_the_query() -> None:
    from pgfactory_kit.lessons.exercises import nb05

    with pytest.raises(ExerciseFailed, match="shrinks as the query grows"):
        nb05.check_reading(5.0, 10.0, "bigger", select1_summary(), slow_query_ms=5.0)


def test_nb05_fails_an_overhead_in_seconds() -> None:
    from pgfactory_kit.lessons.exercises import nb05

    with pytest.raises(ExerciseFailed, match="looks like seconds"):
        nb05.check_reading(0.005, 10.0, "smaller", select1_summary(), slow_query_ms=5.0)


# ------------------------------------------------------------------------------ 07: read the fitted lines
def rtt_fit():
    import pandas as pd

    return pd.DataFrame({"strategy": ["connect_per_query", "reused", "pool"], "fixed_ms": [8.0, 0.1, 0.12],
                         "round_trips": [6.2, 1.05, 1.1]})


def test_nb07_passes_the_added_round_trips_the_prediction_and_network() -> None:
    from pgfactory_kit.lessons.exercises import nb07

    assert nb07.check_reading(6.2 - 1.05, 8.0 + 6.2 * 20, "network", rtt_fit(), rtt_ms=20)


def test_nb07_fails_all_round_trips_counted_as_connecting() -> None:
    from pgfactory_kit.lessons.exercises import nb07

    with pytest.raises(ExerciseFailed, match="the query itself is one"):
        nb07.check_reading(6.2, 8.0 + 6.2 * 20, "network", rtt_fit(), rtt_ms=20)


def test_nb07_fails_a_prediction_with_the_one_way_delay() -> None:
    from pgfactory_kit.lessons.exercises import nb07

    with pytest.raises(ExerciseFailed, match="half the RTT"):
        nb07.check_reading(5.15, 8.0 + 6.2 * 10, "network", rtt_fit(), rtt_ms=20)


def test_nb07_fails_work_when_the_waiting_dominates() -> None:
    from pgfactory_kit.lessons.exercises import nb07

    with pytest.raises(ExerciseFailed, match="of waiting for the network"):
        nb07.check_reading(5.15, 8.0 + 6.2 * 20, "work", rtt_fit(), rtt_ms=20)


# ------------------------------------------------------------------------------ 09: the capstone service
def service_pool(settings):
    from pgfactory_kit import ConnectionPool

    return ConnectionPool(make_factory(settings, autocommit=True, session={"statement_timeout": "2s"}),
                          min_size=0, max_size=2, timeout=5)


def service_list_names(pool):
    import psycopg2

    for attempt in (1, 2):
        conn = None
        try:
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT name FROM mytable ORDER BY id")
                return [name for (name,) in cur.fetchall()]
        except psycopg2.OperationalError:
            if attempt == 2 or conn is None or not conn.closed:
                raise
    return []


def service_add_name(pool, name):
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO mytable (name) VALUES (%s)", (name,))


def test_nb09_passes_the_worked_service(settings) -> None:
    from pgfactory_kit.lessons.exercises import nb09

    assert nb09.check_service(service_pool, service_list_names, service_add_name, settings, requests=8)


def test_nb09_fails_a_service_that_retries_its_write(settings) -> None:
    from pgfactory_kit.lessons.exercises import nb09

    def add_with_retry(pool, name):
        import psycopg2

        for attempt in (1, 2):
            try:
                return service_add_name(pool, name)
            except psycopg2.OperationalError:
                if attempt == 2:
                    raise
        return None

    with pytest.raises(ExerciseFailed, match="a write is not retried blindly"):
        nb09.check_service(service_pool, service_list_names, add_with_retry, settings, requests=8)


def test_nb09_fails_a_read_without_a_retry(settings) -> None:
    from pgfactory_kit.lessons.exercises import nb09

    def list_once(pool):
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT name FROM mytable ORDER BY id")
            return [name for (name,) in cur.fetchall()]

    with pytest.raises(ExerciseFailed, match="retries once when its connection was lost"):
        nb09.check_service(service_pool, list_once, service_add_name, settings, requests=8)


def test_nb09_fails_a_pool_without_timeouts(settings) -> None:
    from pgfactory_kit import ConnectionPool
    from pgfactory_kit.lessons.exercises import nb09

    def default_pool(s):
        return ConnectionPool(make_factory(s, autocommit=True), min_size=0, max_size=2)

    with pytest.raises(ExerciseFailed, match="pool timeout of at most 10 s"):
        nb09.check_service(default_pool, service_list_names, service_add_name, settings, requests=8)


def test_nb09_fails_reads_that_open_a_transaction(settings) -> None:
    from pgfactory_kit import ConnectionPool
    from pgfactory_kit.lessons.exercises import nb09

    def transactional_pool(s):
        return ConnectionPool(make_factory(s, session={"statement_timeout": "2s"}), min_size=0, max_size=2, timeout=5)

    with pytest.raises(ExerciseFailed, match="one round trip per read"):
        nb09.check_service(transactional_pool, service_list_names, service_add_name, settings, requests=8)


def test_nb09_measures_the_blogs_way_as_a_connection_per_request(settings) -> None:
    from pgfactory_kit.lessons.exercises import nb09

    blog = nb09.measure(nb09.blog_pool, service_list_names, service_add_name, settings, requests=4)
    assert blog["connections"] == 4 and blog["sessions_opened"] == 4, blog
    assert blog["round_trips_list"] == 5, "SSLRequest, start-up, two SCRAM exchanges, the query"
