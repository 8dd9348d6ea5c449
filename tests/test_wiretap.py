"""WireTap: forwards bytes unchanged, decodes a real PostgreSQL conversation, counts round trips, bounds
its record; DelayProxy and WireTap check their arguments and name them."""
from __future__ import annotations

import math
import os
import socket

import psycopg2
import pytest

from pgfactory_kit.measuring.proxy import DelayProxy
from pgfactory_kit.measuring.wire_protocol import MALFORMED
from pgfactory_kit.measuring.wiretap import MESSAGE_COLUMNS, WireTap, round_trip_table

from .test_latency import IO_TIMEOUT_S, EchoServer, _roundtrip

CONNECT_NAMES = ["SSLRequest", "SSLResponse", "StartupMessage", "AuthenticationSASL", "SASLInitialResponse",
                 "AuthenticationSASLContinue", "SASLResponse", "AuthenticationSASLFinal", "AuthenticationOk"]


def tapped_kwargs(settings, tap: WireTap, **extra) -> dict:
    return settings.with_(host=tap.listen_host, port=tap.port, **extra).connect_kwargs()


def test_random_bytes_pass_through_the_tap_unchanged_and_are_recorded_as_malformed(echo: EchoServer) -> None:
    payload = os.urandom(300_000)
    with WireTap("127.0.0.1", echo.port) as tap:
        assert _roundtrip(tap.port, payload) == payload
        tap.settle()
        names = set(tap.messages()["name"])
    assert names & {MALFORMED, "(unknown)", "StartupMessage", "(cut mid-message)"}


def test_a_connect_and_select_through_the_tap_records_the_documented_conversation(settings) -> None:
    with WireTap(settings.host, settings.port) as tap:
        conn = psycopg2.connect(**tapped_kwargs(settings, tap, sslmode="prefer"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchall() == [(1,)]
        conn.close()
        tap.settle()
        messages = tap.messages()
    assert list(messages.columns) == MESSAGE_COLUMNS
    names = list(messages["name"])
    assert names[:9] == CONNECT_NAMES
    assert names[-6:] == ["Query", "RowDescription", "DataRow", "CommandComplete", "ReadyForQuery", "Terminate"]
    assert "ParameterStatus" in names and "BackendKeyData" in names
    assert set(messages["conn"]) == {1}
    assert messages["t"].is_monotonic_increasing
    assert list(messages[messages["name"] == "ReadyForQuery"]["summary"]) == ["I (idle)", "I (idle)"]
    # SSLRequest/N, startup/SASL, SASL/continue, SASL/final..ready, query: 5; Terminate is not waited for.
    assert tap.round_trips() == 5 and tap.round_trips(conn=1) == 5 and tap.round_trips(conn=2) == 0


def test_sslmode_disable_sends_no_sslrequest_and_saves_a_round_trip(settings) -> None:
    with WireTap(settings.host, settings.port) as tap:
        psycopg2.connect(**tapped_kwargs(settings, tap, sslmode="disable")).close()
        tap.settle()
        names = list(tap.messages()["name"])
        assert names[0] == "StartupMessage" and "SSLRequest" not in names
        assert tap.round_trips() == 3


def test_operations_split_messages_and_round_trips_by_piece_of_work(settings) -> None:
    with WireTap(settings.host, settings.port) as tap:
        with tap.operation("connect"):
            conn = psycopg2.connect(**tapped_kwargs(settings, tap))
        with tap.operation("two queries"):
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.execute("SELECT 2")
            conn.rollback()
        with tap.operation("close"):
            conn.close()
        ops = tap.operations().set_index("operation")
        assert ops.loc["connect", "round_trips"] == 4
        assert ops.loc["two queries", "round_trips"] == 4  # BEGIN, SELECT 1, SELECT 2, ROLLBACK
        assert ops.loc["close", "round_trips"] == 0
        assert list(tap.messages(operation="close")["name"]) == ["Terminate"]
        queries = tap.messages(operation="two queries").query("name == 'Query'")["summary"]
        assert list(queries) == ["BEGIN", "SELECT 1", "SELECT 2", "ROLLBACK"]
        with pytest.raises(KeyError, match="no operation 'nope'"):
            tap.messages(operation="nope")


def test_two_connections_are_numbered_apart(settings) -> None:
    with WireTap(settings.host, settings.port) as tap:
        first = psycopg2.connect(**tapped_kwargs(settings, tap))
        second = psycopg2.connect(**tapped_kwargs(settings, tap))
        first.close()
        second.close()
        tap.settle()
        assert tap.round_trips_by_connection() == {1: 4, 2: 4}


def test_the_record_is_capped_and_counts_what_it_dropped(settings) -> None:
    with WireTap(settings.host, settings.port, max_messages=10) as tap:
        psycopg2.connect(**tapped_kwargs(settings, tap)).close()
        tap.settle()
        assert len(tap.messages()) == 10
        assert tap.dropped > 10
        assert "dropped" in repr(tap)
        tap.clear()
        assert len(tap.messages()) == 0 and tap.dropped == 0


def test_the_tap_keeps_its_delay(settings) -> None:
    with WireTap(settings.host, settings.port, delay_ms=5.0) as tap:
        conn = psycopg2.connect(**tapped_kwargs(settings, tap))
        conn.close()
        tap.settle()
        messages = tap.messages()
    # Each server reply comes after the client's request has waited 5 ms on the way in.
    first, answer = messages.iloc[0], messages.iloc[1]
    assert (first["name"], answer["name"]) == ("SSLRequest", "SSLResponse")
    assert answer["t"] - first["t"] >= 0.005 * 0.9


def test_a_server_that_closes_mid_message_is_recorded_as_cut() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(IO_TIMEOUT_S)
    try:
        with WireTap("127.0.0.1", listener.getsockname()[1]) as tap:
            with socket.create_connection(("127.0.0.1", tap.port), timeout=IO_TIMEOUT_S) as client:
                server, _ = listener.accept()
                with server:
                    server.sendall(b"Z\x00\x00\x00\x05")  # ReadyForQuery without its status byte
                client.recv(16)
            tap.settle(0.05)
            last = tap.messages().iloc[-1]
    finally:
        listener.close()
    assert last["name"] == "(cut mid-message)" and last["direction"] == "server"
    assert last["summary"] == "ReadyForQuery: 5 bytes, then the end"


# ---------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("cls", [DelayProxy, WireTap])
@pytest.mark.parametrize(("kwargs", "error", "named"), [
    (dict(target_port=70000), ValueError, "target_port"), (dict(target_port="5432"), TypeError, "target_port"),
    (dict(target_port=True), TypeError, "target_port"), (dict(target_host=""), TypeError, "target_host"),
    (dict(target_host=None), TypeError, "target_host"), (dict(delay_ms=-5), ValueError, "delay_ms"),
    (dict(delay_ms=math.nan), ValueError, "delay_ms"), (dict(delay_ms="10"), TypeError, "delay_ms"),
    (dict(delay_ms=1e9), ValueError, "delay_ms"), (dict(listen_port=-1), ValueError, "listen_port"),
    (dict(emulate_handshake="yes"), TypeError, "emulate_handshake"),
])
def test_bad_constructor_arguments_are_refused_naming_the_parameter(cls, kwargs, error, named) -> None:
    args = dict(target_host="127.0.0.1", target_port=5432, delay_ms=0.0)
    args.update(kwargs)
    host, port = args.pop("target_host"), args.pop("target_port")
    call = (lambda: cls(host, port, args.pop("delay_ms"), **args)) if cls is DelayProxy else (
        lambda: cls(host, port, **args))
    with pytest.raises(error, match=named) as raised:
        call()
    assert cls.__name__ in str(raised.value)


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", None])
def test_max_messages_must_be_a_positive_whole_number(value) -> None:
    with pytest.raises((TypeError, ValueError), match="WireTap: max_messages"):
        WireTap("127.0.0.1", 5432, max_messages=value)


def test_the_round_trip_table_says_what_each_round_trip_is(settings) -> None:
    with WireTap(settings.host, settings.port) as tap:
        conn = psycopg2.connect(**tapped_kwargs(settings, tap, sslmode="prefer"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.close()
        tap.settle()
        table = round_trip_table(tap.messages())
    assert list(table["round_trip"]) == [1, 2, 3, 4, 5, 0]
    assert list(table["client"]) == ["SSLRequest", "StartupMessage", "SASLInitialResponse", "SASLResponse", "Query",
                                     "Terminate"]
    assert table["server"].iloc[0] == "SSLResponse" and table["server"].iloc[1] == "AuthenticationSASL"
    assert table["server"].iloc[3].startswith("AuthenticationSASLFinal, AuthenticationOk, ")
    assert "× ParameterStatus" in table["server"].iloc[3] and table["server"].iloc[3].endswith("ReadyForQuery")
    assert table["server"].iloc[-1] == "(no reply awaited)"
    assert (table["round_trip"] > 0).sum() == 5


def test_raw_bytes_waiting_for_the_decoder_stay_bounded_in_a_large_transfer(settings, monkeypatch) -> None:
    """About 9 MB in one result, with the every-20-ms hand-over switched off and a small bound: the
    byte count wakes the hand-over, and when the decoder is behind the proxy waits for it (the bound)."""
    import threading
    import time

    from pgfactory_kit.measuring import proxy, wiretap

    monkeypatch.setattr(wiretap, "FLUSH_AFTER_S", 30.0)
    monkeypatch.setattr(wiretap, "FLUSH_BYTES", 256 << 10)
    monkeypatch.setattr(wiretap, "MAX_WAITING_BYTES", 1 << 20)
    largest = [0]
    done = threading.Event()

    def sample(tap: WireTap) -> None:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            largest[0] = max(largest[0], tap._bytes_in - tap._bytes_out)
            time.sleep(0.0005)

    with WireTap(settings.host, settings.port) as tap:
        conn = psycopg2.connect(**tapped_kwargs(settings, tap))
        sampler = threading.Thread(target=sample, args=(tap,))
        sampler.start()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT repeat('x', 1000) FROM generate_series(1, 9000)")
                assert len(cur.fetchall()) == 9000
        finally:
            done.set()
            sampler.join()
            conn.close()
        tap.settle()
        rows = tap.messages().query("name == 'DataRow'")
    assert 0 < largest[0] < wiretap.MAX_WAITING_BYTES + proxy.CHUNK, largest[0]
    assert len(rows) == 9000 and set(rows["summary"]) == {"1 column, 1004 bytes (values not shown)"}
