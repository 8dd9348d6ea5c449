"""The lessons' wire functions: one operation's conversation per strategy (05) and the fitted slope
checked against the counted round trips (07), on the real test server."""
from __future__ import annotations

import pandas as pd
import pytest

from pgfactory_kit.lessons.wire import counted_round_trips, slope_vs_counted, watch_strategies
from pgfactory_kit.measuring import runner as bench


@pytest.fixture(scope="module")
def watch(settings):
    return watch_strategies(settings, operations=2)


def test_connect_per_query_opens_a_connection_per_operation_and_waits_for_five_round_trips(watch) -> None:
    trips = watch.round_trips.set_index(["strategy", "number"])
    for number in (1, 2):
        assert trips.loc[("connect_per_query", number), "round_trips"] == 5
        assert trips.loc[("connect_per_query", number), "connections"] == 1
    first, second = watch.operation("connect_per_query", 1), watch.operation("connect_per_query", 2)
    assert first["conn"].iloc[0] != second["conn"].iloc[0]
    assert list(first["name"][:3]) == ["SSLRequest", "SSLResponse", "StartupMessage"]
    assert first["name"].iloc[-1] == "Terminate"


@pytest.mark.parametrize("strategy", ["reused", "pool"])
def test_a_reused_or_pooled_connection_waits_for_the_query_alone(watch, strategy: str) -> None:
    trips = watch.round_trips.set_index(["strategy", "number"])
    assert trips.loc[(strategy, 2), "round_trips"] == 1
    assert list(watch.operation(strategy, 2)["name"]) == ["Query", "RowDescription", "DataRow",
                                                          "CommandComplete", "ReadyForQuery"]


def test_the_watch_records_every_message_with_its_strategy(watch) -> None:
    assert {"strategy", "number", "t", "conn", "direction", "name", "length", "summary"} <= set(watch.messages)
    assert watch.dropped == 0
    assert set(watch.messages["strategy"]) == {"connect_per_query", "reused", "pool"}


def test_watch_strategies_refuses_an_unbounded_number_of_operations(settings) -> None:
    with pytest.raises(ValueError, match="operations must be between 1 and 100"):
        watch_strategies(settings, operations=0)


def test_slope_vs_counted_says_which_strategies_agree_within_one_round_trip() -> None:
    fit = pd.DataFrame(dict(strategy=["connect_per_query", "reused"], round_trips=[6.6, 2.4]))
    counted = pd.DataFrame(dict(strategy=["connect_per_query", "reused"], counted=[6.0, 1.0]))
    check = slope_vs_counted(fit, counted).set_index("strategy")
    assert check.loc["connect_per_query", "agrees"] and not check.loc["reused", "agrees"]
    assert check.loc["reused", "difference"] == pytest.approx(1.4)


def test_the_slope_fitted_from_timings_agrees_with_the_round_trips_counted_on_the_wire(settings) -> None:
    strategies = ("connect_per_query", "reused")
    counted = counted_round_trips(settings, strategies)
    assert list(counted["counted"]) == [6.0, 1.0]  # 5 on the wire + the TCP handshake; the query alone
    # Only delayed levels: every delayed hop leaves the proxy a little late (the event loop wakes up to
    # ~1 ms late, more on a busy machine; about 12 hops per connect), which a 0 ms level lacks, and that
    # step alone tilted the fitted line by up to a round trip. Wide levels keep noise small against them.
    sweep = bench.rtt_sweep(settings, rtt_ms=(10, 25, 40), strategies=strategies, operations=8, warmup=2,
                            repeats=1, progress=False)
    check = slope_vs_counted(bench.fit_rtt_model(sweep.results), counted)
    assert check["agrees"].all(), check.to_string()


def test_each_round_trip_of_a_connect_per_query_operation_is_explained(watch) -> None:
    table = watch.explained("connect_per_query", 1)
    assert list(table["client"][:5]) == ["SSLRequest", "StartupMessage", "SASLInitialResponse", "SASLResponse",
                                         "Query"]
    assert list(watch.explained("reused", 2)["server"]) == [
        "RowDescription, DataRow, CommandComplete, ReadyForQuery"]
