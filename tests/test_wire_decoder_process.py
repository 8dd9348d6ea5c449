"""The wire tap's decoder process: the same record as decoding here, a child that cannot outlive the tap,
a dead child that costs the record (said in it) but never the bytes, and a fallback where no child starts."""
from __future__ import annotations

import os
import random
import threading
import time

import psutil
import psycopg2
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pgfactory_kit.measuring import decoder_process
from pgfactory_kit.measuring.decoder_process import DecoderProcess, InProcessDecoder
from pgfactory_kit.measuring.proxy import DelayProxy
from pgfactory_kit.measuring.wire_protocol import CLIENT, MALFORMED, SERVER, Conversation
from pgfactory_kit.measuring.wire_record import FIELDS, RecordMaker
from pgfactory_kit.measuring.wiretap import WireTap

CONNECT_AND_QUERY = ["SSLRequest", "SSLResponse", "StartupMessage", "AuthenticationSASL", "SASLInitialResponse",
                     "AuthenticationSASLContinue", "SASLResponse", "AuthenticationSASLFinal", "AuthenticationOk"]


class Recorder(DelayProxy):
    """A DelayProxy that keeps each connection's raw chunks, stamped, as the tap queues them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.chunks: list[tuple[float, int, str | None, bytes]] = []

    def _observer(self, number: int):
        chunks = self.chunks

        class Keep:
            def from_client(self, data: bytes) -> None:
                chunks.append((time.perf_counter(), number, CLIENT, data))

            def from_server(self, data: bytes) -> None:
                chunks.append((time.perf_counter(), number, SERVER, data))
        return Keep()

    def _connection_ended(self, number: int) -> None:
        self.chunks.append((time.perf_counter(), number, None, b""))


@pytest.fixture(scope="module")
def recorded(server) -> list[tuple[float, int, str | None, bytes]]:
    """Real chunks of three interleaved connections: connect, SELECT, INSERT in a transaction, close."""
    settings = server.settings()
    with Recorder(settings.host, settings.port, 0.0) as recorder:
        kwargs = settings.with_(host=recorder.listen_host, port=recorder.port).connect_kwargs()
        conns = [psycopg2.connect(**kwargs) for _ in range(3)]
        for i, conn in enumerate(conns):
            with conn, conn.cursor() as cur:
                cur.execute("SELECT %s::int, repeat('x', 70000)", (i,))
                cur.fetchall()
        for conn in conns:
            conn.close()
        deadline = time.monotonic() + 5
        while sum(1 for c in recorder.chunks if c[2] is None) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(recorder.chunks)


def frames_per_connection(flat: list) -> dict[int, list[tuple]]:
    out: dict[int, list[tuple]] = {}
    for i in range(0, len(flat), FIELDS):
        out.setdefault(flat[i + 1], []).append(tuple(flat[i + 2:i + FIELDS]))
    return out


def test_the_record_maker_gives_each_connection_what_its_own_conversation_gives(recorded) -> None:
    maker = RecordMaker(1_000_000)
    maker.feed(recorded)
    flat, dropped = maker.collect()
    expected: dict[int, list[tuple]] = {}
    conversations: dict[int, Conversation] = {}
    for _, number, direction, data in recorded:
        conv = conversations.setdefault(number, Conversation())
        if data:
            expected.setdefault(number, []).extend(tuple(f) for f in conv.feed(direction, data))
    assert dropped == 0 and frames_per_connection(flat) == expected
    assert [name for _, name, _, _ in expected[1][:9]] == CONNECT_AND_QUERY


@hsettings(max_examples=40, deadline=None)
@given(cap=st.integers(1, 200), batches=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_the_record_maker_keeps_at_most_its_cap_between_collects_and_counts_the_rest(
        recorded, cap: int, batches: int, seed: int) -> None:
    everything = RecordMaker(1_000_000)
    everything.feed(recorded)
    total = len(everything.collect()[0]) // FIELDS
    maker = RecordMaker(cap)
    cuts = sorted(random.Random(seed).sample(range(1, len(recorded)), min(batches, len(recorded) - 1)))
    kept = dropped = 0
    for start, end in zip([0, *cuts], [*cuts, len(recorded)], strict=True):
        maker.feed(recorded[start:end])
        if (start + end) % 3 == 0:  # collect now and then
            flat, lost = maker.collect()
            assert len(flat) // FIELDS <= cap
            kept, dropped = kept + len(flat) // FIELDS, dropped + lost
    flat, lost = maker.collect()
    kept, dropped = kept + len(flat) // FIELDS, dropped + lost
    assert kept + dropped == total


def test_the_decoder_process_makes_the_same_record_as_decoding_in_this_process(recorded) -> None:
    here, there = InProcessDecoder(1_000_000), DecoderProcess(1_000_000)
    try:
        for start in range(0, len(recorded), 7):
            here.send(recorded[start:start + 7])
            there.send(recorded[start:start + 7])
        assert there.collect() == here.collect()
        assert there.collect() == ([], 0)  # collected once: handed over, not kept
    finally:
        there.stop()
    assert not psutil.pid_exists(there.pid) or psutil.Process(there.pid).status() == psutil.STATUS_ZOMBIE


def test_the_decoder_process_exits_when_its_input_ends_so_it_cannot_outlive_the_tap() -> None:
    decoder = DecoderProcess(10)
    process = decoder._process
    assert process.stdin is not None
    process.stdin.close()  # what a crashed parent's exit does to the pipe
    assert process.wait(10) == 0


def test_a_tap_decodes_in_a_process_of_its_own_and_leaves_no_process_or_thread_behind(settings) -> None:
    before = {t.name for t in threading.enumerate()}
    with WireTap(settings.host, settings.port) as tap:
        decoder = tap._decoder
        assert decoder.where == "another process" and "decoding in another process" in repr(tap)
        child = psutil.Process(decoder.pid)
        assert child.ppid() == os.getpid()
        conn = psycopg2.connect(**settings.with_(host=tap.listen_host, port=tap.port).connect_kwargs())
        conn.close()
        tap.settle()
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert "WireTap-hand-over" not in {t.name for t in threading.enumerate()} - before
    names = list(tap.messages()["name"])  # the record stays after close
    assert names[:9] == CONNECT_AND_QUERY and names[-1] == "Terminate"


def test_a_dead_decoder_process_is_said_in_the_record_and_the_bytes_still_pass(settings) -> None:
    with WireTap(settings.host, settings.port) as tap:
        conn = psycopg2.connect(**settings.with_(host=tap.listen_host, port=tap.port).connect_kwargs())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            tap.settle()
            assert len(tap.messages()) > 9  # decoded so far
            child = psutil.Process(tap._decoder.pid)
            child.kill()  # our own child, by its PID
            child.wait(10)
            for i in range(50):
                cur.execute("SELECT %s::int", (i,))
                assert cur.fetchone() == (i,)
        conn.close()
        tap.settle()
        messages = tap.messages()
    lost = messages[messages["name"] == MALFORMED]
    assert len(lost) == 1 and "decoder process ended" in lost["summary"].iloc[0]
    assert "still forwarded" in lost["summary"].iloc[0]


def test_without_a_second_python_the_tap_decodes_in_this_process_and_records_the_same(settings,
                                                                                       monkeypatch) -> None:
    monkeypatch.setattr(decoder_process.sys, "executable", "/nonexistent/python")
    with WireTap(settings.host, settings.port) as tap:
        assert tap._decoder.where == "this process"
        conn = psycopg2.connect(**settings.with_(host=tap.listen_host, port=tap.port).connect_kwargs())
        conn.close()
        tap.settle()
        names = list(tap.messages()["name"])
    assert names[:9] == CONNECT_AND_QUERY


def test_a_child_that_fails_before_it_is_ready_is_replaced_by_decoding_here(settings, monkeypatch) -> None:
    monkeypatch.setattr(decoder_process, "CHILD_CODE", "import sys; sys.exit(3)")
    with pytest.raises(OSError, match="did not start"):
        DecoderProcess(10)
    with WireTap(settings.host, settings.port) as tap:
        assert tap._decoder.where == "this process"


def test_the_decoder_process_ignores_ctrl_c_meant_for_the_learners_code() -> None:
    if os.name == "nt":  # pragma: no cover
        pytest.skip("a SIGINT sent to one process is POSIX's")
    decoder = DecoderProcess(10)
    try:
        os.kill(decoder.pid, 2)  # SIGINT, as a terminal's Ctrl-C sends it to the whole group
        time.sleep(0.2)
        assert decoder._process.poll() is None
        assert decoder.collect() == ([], 0)
    finally:
        decoder.stop()
