"""The wire tap for the lessons: what one operation says on the wire, per strategy (05), KitConnection's
count next to the wire's (02), and the slope fitted from timings next to the round trips counted (07).

Promises: every function starts its own ``WireTap``, closes it and everything it opened before it
returns; loops are bounded by their arguments; nothing returned contains a password.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions

from ..factory import KitConnection
from ..measuring.strategies import make_strategy, make_workload
from ..measuring.wiretap import WireTap, round_trip_table
from ..settings import ConnectionSettings

WATCHED_STRATEGIES = ("connect_per_query", "reused", "pool")
# The DelayProxy holds a new connection's first bytes for one round trip, as a real TCP handshake would.
TCP_HANDSHAKE_ROUND_TRIPS = {"connect_per_query": 1, "pgbouncer": 1}


@contextlib.contextmanager
def tapped(settings: ConnectionSettings, *, delay_ms: float = 0.0) -> Iterator[tuple[WireTap, ConnectionSettings]]:
    """A started WireTap in front of ``settings``' server and the settings that go through it."""
    with WireTap(settings.host or "127.0.0.1", settings.port or 5432, delay_ms=delay_ms) as tap:
        yield tap, settings.with_(host=tap.listen_host, port=tap.port)


# ---------------------------------------------------------------------------- 05: the conversation
@dataclass
class WireWatch:
    """What ``watch_strategies`` saw: ``messages`` (one row per message, with ``strategy`` and
    ``operation``), ``round_trips`` (one row per operation) and the tap's drop count."""

    messages: Any
    round_trips: Any
    dropped: int = 0
    notes: list[str] = field(default_factory=list)

    def operation(self, strategy: str, number: int) -> Any:
        """The messages of ``strategy``'s operation ``number`` (1 = the first)."""
        part = self.messages[(self.messages["strategy"] == strategy) & (self.messages["number"] == number)]
        return part.reset_index(drop=True)

    def explained(self, strategy: str, number: int) -> Any:
        """What each round trip of that operation is: client sends, server answers (``round_trip_table``)."""
        return round_trip_table(self.operation(strategy, number))

    def conversations(self, number: int | None = None) -> dict[str, Any]:
        """Panel title -> one operation's messages, per strategy, for ``plots.sequence_diagram``: the
        last operation watched (``number`` to choose), i.e. what a request costs once the pool is warm."""
        from ..measuring.plots import label

        last = int(self.round_trips["number"].max()) if len(self.round_trips) else 1
        chosen = last if number is None else number
        return {f"{label(s)} (operation {chosen})": self.operation(s, chosen)
                for s in dict.fromkeys(self.messages["strategy"])}

    def diagram(self, number: int | None = None, machine: dict[str, Any] | None = None) -> Any:
        """The sequence diagram of ``conversations(number)``: a matplotlib Figure."""
        from ..measuring.plots import sequence_diagram

        return sequence_diagram(self.conversations(number), machine=machine)


def watch_strategies(settings: ConnectionSettings, strategies: Sequence[str] = WATCHED_STRATEGIES,
                     workload: str = "select1", operations: int = 2, *, pool_size: int = 2) -> WireWatch:
    """Run ``operations`` operations of ``workload`` per strategy through a tap and keep every message.

    Each strategy's ``open()`` (a pool's or a reused connection's first connect) is its own operation
    ``number`` 0, so operation 1 onwards is what an application pays per request."""
    import pandas as pd

    if not 1 <= int(operations) <= 100:
        raise ValueError(f"operations must be between 1 and 100, got {operations!r}")
    frames, rows = [], []
    with tapped(settings) as (tap, through):
        work = make_workload(workload, "pgfactory-wire")
        for name in strategies:
            strategy = make_strategy(name, through.with_(application_name=f"pgfactory_kit_wire_{name}"), work,
                                     pool_size)
            try:
                labels = [(0, f"{name} open")]
                with tap.operation(labels[0][1]):
                    strategy.open()
                for number in range(1, int(operations) + 1):
                    label = f"{name} #{number}"
                    labels.append((number, label))
                    with tap.operation(label), strategy.connection() as conn:
                        work.run(conn)
            finally:
                label = f"{name} close"
                labels.append((-1, label))
                with tap.operation(label):
                    strategy.close()
            for number, label in labels:
                part = tap.messages(operation=label)
                part.insert(0, "number", number)
                part.insert(0, "strategy", name)
                frames.append(part)
                rows.append(dict(strategy=name, number=number, operation=label,
                                 round_trips=tap.round_trips(operation=label), messages=len(part),
                                 connections=int(part["conn"].nunique())))
        dropped = tap.dropped
    if workload == "insert":
        _delete_rows(settings, "pgfactory-wire")
    messages = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return WireWatch(messages=messages, round_trips=pd.DataFrame(rows), dropped=dropped)


def _delete_rows(settings: ConnectionSettings, marker: str) -> None:
    conn = psycopg2.connect(**settings.connect_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM mytable WHERE name = %s", (marker,))
    finally:
        conn.close()


# ---------------------------------------------------------------------------- 02: the count and the wire
@dataclass(frozen=True)
class Case:
    """One lesson workload on a KitConnection: ``run(conn)`` does it; ``autocommit`` is set first."""

    name: str
    autocommit: bool
    run: Callable[[Any], None]


def _select(sql: str) -> Callable[[Any], None]:
    def run(conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute(sql)
            cur.fetchall()
        conn.commit()  # sends COMMIT only when a transaction is open (autocommit off)
    return run


def _insert(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO mytable (name) VALUES (%s)", ("pgfactory-wire",))
    conn.commit()


def _blog_transaction(conn: Any) -> None:
    """Notebook 02's insert-style transaction: three statements, then commit."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO mytable (name) VALUES (%s)", ("pgfactory-wire",))
        cur.execute("SELECT count(*) FROM mytable")
        cur.fetchall()
        cur.execute("DELETE FROM mytable WHERE name = %s", ("pgfactory-wire",))
    conn.commit()


def _executemany(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO mytable (name) VALUES (%s)", [("pgfactory-wire",)] * 3)
    conn.commit()


def _commit_with_nothing_open(conn: Any) -> None:
    conn.commit()
    conn.rollback()


LESSON_CASES = tuple(
    Case(f"{name}", autocommit, run)
    for name, run in (("select1", _select("SELECT 1")), ("select_all", _select("SELECT * FROM mytable")),
                      ("insert", _insert), ("executemany x3", _executemany),
                      ("blog transaction", _blog_transaction), ("commit, nothing open", _commit_with_nothing_open))
    for autocommit in (True, False))


def kit_vs_wire(settings: ConnectionSettings, cases: Sequence[Case] = LESSON_CASES) -> Any:
    """Each case once on a fresh ``KitConnection`` through a tap: the connection's own round-trip count
    next to the wire's, and the queries the wire carried (BEGIN and COMMIT included)."""
    import pandas as pd

    rows = []
    with tapped(settings) as (tap, through):
        kwargs = through.with_(application_name="pgfactory_kit_wire").connect_kwargs()
        for case in cases:
            conn = psycopg2.connect(connection_factory=KitConnection, **kwargs)
            try:
                conn.autocommit = case.autocommit
                before = conn.counters()["round_trips"]
                label = f"{case.name}, autocommit {'on' if case.autocommit else 'off'}"
                with tap.operation(label):
                    case.run(conn)
                kit = conn.counters()["round_trips"] - before
            finally:
                conn.close()
            sent = tap.messages(operation=label)
            queries = sent[(sent["direction"] == "client") & (sent["name"] == "Query")]["summary"]
            wire = tap.round_trips(operation=label)
            rows.append(dict(workload=case.name, autocommit=case.autocommit, kit_round_trips=kit,
                             wire_round_trips=wire, agree=kit == wire, queries=" | ".join(queries)))
    _delete_rows(settings, "pgfactory-wire")
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- 07: slope vs counted
def counted_round_trips(settings: ConnectionSettings, strategies: Sequence[str] = WATCHED_STRATEGIES,
                        workload: str = "select1", operations: int = 3) -> Any:
    """Round trips per operation as the wire shows them (the median over ``operations`` operations), plus
    the TCP handshake that the DelayProxy adds to each new connection: what a fitted slope should find."""
    import pandas as pd

    watch = watch_strategies(settings, strategies, workload, operations)
    per_op = watch.round_trips[watch.round_trips["number"] >= 1]
    rows = []
    for name in strategies:
        wire = float(per_op[per_op["strategy"] == name]["round_trips"].median())
        handshake = TCP_HANDSHAKE_ROUND_TRIPS.get(name, 0)
        rows.append(dict(strategy=name, wire_round_trips=wire, tcp_handshake=handshake, counted=wire + handshake))
    return pd.DataFrame(rows)


def slope_vs_counted(fit: Any, counted: Any, tolerance: float = 1.0) -> Any:
    """The fitted ``round_trips`` (the slope of time against added RTT) next to the counted ones, per
    strategy in both; ``agrees`` when they differ by at most ``tolerance`` round trips."""
    merged = fit[["strategy", "round_trips"]].rename(columns={"round_trips": "fitted"}).merge(
        counted[["strategy", "counted"]], on="strategy")
    merged["difference"] = (merged["fitted"] - merged["counted"]).round(2)
    merged["agrees"] = merged["difference"].abs() <= tolerance
    return merged
