"""KitConnection counts what the wire carries (issue #13): BEGIN included, a commit with nothing open
sends nothing, executemany sends one statement per row; checked against the WireTap on a real server."""
from __future__ import annotations

import psycopg2
import pytest

from pgfactory_kit.factory import KitConnection
from pgfactory_kit.lessons.wire import LESSON_CASES, Case, kit_vs_wire
from pgfactory_kit.measuring.wiretap import WireTap

# Round trips on the wire per case (autocommit on, off): psycopg2 sends BEGIN before the first statement
# of a transaction and COMMIT only when one is open.
EXPECTED = {"select1": (1, 3), "select_all": (1, 3), "insert": (1, 3), "executemany x3": (3, 5),
            "blog transaction": (3, 5), "commit, nothing open": (0, 0)}


@pytest.fixture(scope="module")
def counts(settings):
    return kit_vs_wire(settings)


def test_every_lesson_workload_is_counted_by_kitconnection_as_the_wire_counts_it(counts) -> None:
    assert len(counts) == len(LESSON_CASES)
    mismatched = counts[counts["kit_round_trips"] != counts["wire_round_trips"]]
    assert mismatched.empty, mismatched.to_string()


@pytest.mark.parametrize("workload", sorted(EXPECTED))
@pytest.mark.parametrize("autocommit", [True, False])
def test_the_wire_carries_the_round_trips_the_lesson_states(counts, workload: str, autocommit: bool) -> None:
    row = counts[(counts["workload"] == workload) & (counts["autocommit"] == autocommit)].iloc[0]
    assert row["wire_round_trips"] == EXPECTED[workload][0 if autocommit else 1]


def test_the_blog_transaction_is_five_round_trips_with_begin_and_commit_on_the_wire(counts) -> None:
    row = counts[(counts["workload"] == "blog transaction") & ~counts["autocommit"]].iloc[0]
    assert row["kit_round_trips"] == 5
    assert row["queries"].split(" | ")[0] == "BEGIN" and row["queries"].split(" | ")[-1] == "COMMIT"


def test_a_failed_statement_still_counts_the_round_trip_it_made(settings) -> None:
    with WireTap(settings.host, settings.port) as tap:
        conn = psycopg2.connect(connection_factory=KitConnection,
                                **settings.with_(host=tap.listen_host, port=tap.port).connect_kwargs())
        try:
            with tap.operation("failing"):
                with conn.cursor() as cur, pytest.raises(psycopg2.errors.UndefinedTable):
                    cur.execute("SELECT * FROM no_such_table")
                conn.rollback()
            assert conn.counters()["round_trips"] == tap.round_trips(operation="failing") == 3
        finally:
            conn.close()


def _with_block(conn) -> None:
    with conn, conn.cursor() as cur:  # psycopg2's with-block calls commit() (or rollback()) at its end
        cur.execute("SELECT 1")


def _empty_executemany(conn) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO mytable (name) VALUES (%s)", [])
    conn.commit()


def _placeholder_error(conn) -> None:
    with conn.cursor() as cur, pytest.raises(IndexError):
        cur.execute("SELECT %s, %s", (1,))  # psycopg2 refuses before sending anything
    conn.rollback()


def _server_error(conn) -> None:
    with conn.cursor() as cur, pytest.raises(psycopg2.errors.UndefinedTable):
        cur.execute("SELECT * FROM no_such_table")
    conn.rollback()


@pytest.mark.parametrize(("run", "wire"), [(_with_block, (3, 3)), (_empty_executemany, (0, 0)),
                                           (_placeholder_error, (0, 0)), (_server_error, (1, 3))])
def test_edge_cases_count_as_the_wire_does(settings, run, wire) -> None:
    counts = kit_vs_wire(settings, [Case(run.__name__, True, run), Case(run.__name__, False, run)])
    assert list(counts["wire_round_trips"]) == list(wire)
    assert list(counts["kit_round_trips"]) == list(wire)
