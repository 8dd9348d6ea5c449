"""The wire's sequence diagram: lanes, message names on arrows, bursts collapsed, round trips counted."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from pgfactory_kit.measuring.plots import _arrow_groups, sequence_diagram  # noqa: E402


def conversation(*messages: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(messages, columns=["direction", "name", "summary"])


CONNECT = conversation(
    ("client", "SSLRequest", ""), ("server", "SSLResponse", "N"), ("client", "StartupMessage", ""),
    ("server", "AuthenticationSASL", ""), ("client", "SASLInitialResponse", ""),
    ("server", "AuthenticationSASLContinue", ""), ("client", "SASLResponse", ""),
    ("server", "AuthenticationSASLFinal", ""), ("server", "AuthenticationOk", ""),
    *[("server", "ParameterStatus", f"p{i}=v") for i in range(14)], ("server", "BackendKeyData", ""),
    ("server", "ReadyForQuery", "I (idle)"), ("client", "Query", "SELECT 1"), ("server", "RowDescription", ""),
    ("server", "DataRow", ""), ("server", "CommandComplete", "SELECT 1"), ("server", "ReadyForQuery", "I (idle)"),
    ("client", "Terminate", ""))
REUSED = conversation(("client", "Query", "SELECT 1"), ("server", "RowDescription", ""), ("server", "DataRow", ""),
                      ("server", "CommandComplete", "SELECT 1"), ("server", "ReadyForQuery", "I (idle)"))


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]


def test_bursts_collapse_and_each_round_trip_is_numbered() -> None:
    groups = _arrow_groups(CONNECT)
    assert ("server", "14× ParameterStatus", 4, 14) in groups
    assert [g[2] for g in groups if g[0] == "client"] == [1, 2, 3, 4, 5, 0]  # Terminate waits for nothing
    assert ("client", "Query: SELECT 1", 5, 1) in groups
    assert ("server", "ReadyForQuery (I)", 5, 1) in groups


def test_the_diagram_puts_connect_per_query_next_to_reuse_with_lanes_and_labels() -> None:
    fig = sequence_diagram({"connect per query": CONNECT, "reused": REUSED})
    assert len(fig.axes) == 2
    shown = texts(fig)
    assert shown.count("client") == 2 and shown.count("server") == 2
    assert "14× ParameterStatus" in shown and "Terminate (no reply awaited)" in shown
    assert any("TCP handshake" in t for t in shown)
    titles = [ax.get_title() for ax in fig.axes]
    assert "5 round trips on the tap + the TCP handshake, 31 messages" in titles[0]
    assert "1 round trip on the tap, 5 messages" in titles[1]


def test_a_long_conversation_is_cut_with_a_count_of_what_is_left() -> None:
    many = conversation(*[m for i in range(60) for m in (("client", "Query", f"SELECT {i}"),
                                                          ("server", "ReadyForQuery", "I (idle)"))])
    shown = texts(sequence_diagram({"many": many}))
    assert "… 80 more arrows" in shown
