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


# ---------------------------------------------------------------------------------------- when things go wrong
def test_hand_overs_from_two_threads_reach_the_decoder_in_arrival_order() -> None:
    """A slow decoder and two threads handing over at once: the batches must not overtake each other."""

    class SlowRecording(InProcessDecoder):
        def __init__(self) -> None:
            super().__init__(10)
            self.seen: list[float] = []

        def send(self, chunks) -> None:
            if chunks and chunks[0][0] // 50 % 2:  # every other burst is slow to decode
                time.sleep(0.02)
            self.seen.extend(chunk[0] for chunk in chunks)

    tap = WireTap("127.0.0.1", 9)  # not started: only the queue and the hand-over run
    tap._decoder = decoder = SlowRecording()
    stop = threading.Event()

    def hand_over() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            tap._hand_over()

    threads = [threading.Thread(target=hand_over) for _ in range(2)]
    for thread in threads:
        thread.start()
    for i in range(1000):
        tap._queue.append((float(i), 1, CLIENT, b"x"))
        if i % 50 == 0:
            time.sleep(0.001)
    stop.set()
    for thread in threads:
        thread.join(30)
    tap._hand_over()
    assert decoder.seen == [float(i) for i in range(1000)]


def test_close_records_a_message_the_teardown_cut_in_the_middle() -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    with listener, WireTap("127.0.0.1", listener.getsockname()[1]) as tap:
        client = socket.create_connection(("127.0.0.1", tap.port), timeout=5)
        server_side, _ = listener.accept()
        client.sendall(b"\x00\x00\x00\x50\x00\x03")  # the first 6 of a StartupMessage's 80 bytes
        tap.settle(0.05)
    client.close()
    server_side.close()
    assert tap.messages()["name"].iloc[-1] == "(cut mid-message)"


def test_questions_while_the_tap_closes_neither_fail_nor_invent_a_lost_decoder() -> None:
    tap = WireTap("127.0.0.1", 9)  # no connection is made: only the tap's own machinery runs
    failures: list[str] = []
    for _ in range(8):
        tap.start()
        stop = threading.Event()

        def ask(stop: threading.Event = stop) -> None:
            deadline = time.monotonic() + 10
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    tap.round_trips()
                except Exception as exc:  # noqa: BLE001 - the test collects them all
                    failures.append(repr(exc))

        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(0.02)
        tap.close()
        stop.set()
        asker.join(10)
    assert failures == [] and len(tap.messages()) == 0


def test_ctrl_c_during_a_question_gives_up_the_decoder_and_says_so_and_the_bytes_still_pass(
        settings, monkeypatch) -> None:
    with WireTap(settings.host, settings.port) as tap:
        conn = psycopg2.connect(**settings.with_(host=tap.listen_host, port=tap.port).connect_kwargs())
        conn.autocommit = True
        child = psutil.Process(tap._decoder.pid)
        real_read = decoder_process._read_message

        def interrupted(stream):
            monkeypatch.setattr(decoder_process, "_read_message", real_read)
            stream.read(2)  # half a header, then the learner presses Ctrl-C
            raise KeyboardInterrupt

        monkeypatch.setattr(decoder_process, "_read_message", interrupted)
        with pytest.raises(KeyboardInterrupt):
            tap.messages()
        with conn.cursor() as cur:
            for i in range(20):
                cur.execute("SELECT %s::int", (i,))
                assert cur.fetchone() == (i,)
        conn.close()
        tap.settle()
        lost = tap.messages().query(f"name == '{MALFORMED}'")
    assert len(lost) == 1 and "interrupted while it answered" in lost["summary"].iloc[0]
    child.wait(10)  # killed when given up, reaped by close()


@pytest.mark.skipif(os.name == "nt", reason="SIGSTOP is POSIX's")
def test_a_stalled_decoder_holds_the_traffic_back_only_briefly_then_is_given_up(monkeypatch) -> None:
    import signal
    import socket

    from pgfactory_kit.measuring import wiretap

    monkeypatch.setattr(wiretap, "MAX_WAITING_BYTES", 1 << 20)
    monkeypatch.setattr(wiretap, "BACK_PRESSURE_TIMEOUT_S", 0.5)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    received = [0]

    def sink() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        with conn:
            while received[0] < 16 << 20:
                data = conn.recv(65536)
                if not data:
                    return
                received[0] += len(data)

    sink_thread = threading.Thread(target=sink)
    sink_thread.start()
    with listener, WireTap("127.0.0.1", listener.getsockname()[1]) as tap:
        os.kill(tap._decoder.pid, signal.SIGSTOP)  # our own child: it stops reading
        client = socket.create_connection(("127.0.0.1", tap.port), timeout=10)
        started = time.monotonic()
        with client:
            for _ in range(256):
                client.sendall(b"x" * 65536)  # 16 MiB: far more than the pipe and the bound hold
            sink_thread.join(30)
        took = time.monotonic() - started
        lost = tap.messages().query(f"name == '{MALFORMED}'")
    assert received[0] == 16 << 20 and took < 15
    assert any("behind the traffic" in summary for summary in lost["summary"])


def test_a_child_that_hangs_or_talks_before_it_is_ready_is_refused_in_bounded_time(monkeypatch) -> None:
    monkeypatch.setattr(decoder_process, "READY_TIMEOUT_S", 1.0)
    for code in ("import time; time.sleep(60)",
                 "import sys; sys.stdout.buffer.write(b'hello from a site customisation\\n' * 99); "
                 "sys.stdout.flush(); import time; time.sleep(60)"):
        monkeypatch.setattr(decoder_process, "CHILD_CODE", code)
        started = time.monotonic()
        with pytest.raises(OSError, match="did not start"):
            DecoderProcess(10)
        assert time.monotonic() - started < 8


def test_the_child_imports_this_kit_even_where_the_current_folder_holds_another(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "pgfactory_kit"
    (fake / "measuring").mkdir(parents=True)
    (fake / "__init__.py").write_text("raise SystemExit(7)  # an old clone\n")
    (fake / "measuring" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    decoder = DecoderProcess(10)
    try:
        assert decoder.collect() == ([], 0)
    finally:
        decoder.stop()


def test_a_failing_hand_over_gives_the_decoder_up_and_the_hand_overs_go_on(settings, monkeypatch) -> None:
    with WireTap(settings.host, settings.port) as tap:
        calls = [0]
        real_send = tap._decoder.send

        def send_once_broken(chunks) -> None:
            calls[0] += 1
            if calls[0] == 1:
                raise MemoryError("no room for the batch")
            real_send(chunks)

        monkeypatch.setattr(tap._decoder, "send", send_once_broken)
        tap._queue.append((0.0, 99, CLIENT, b"x"))
        deadline = time.monotonic() + 5
        while calls[0] < 3 and time.monotonic() < deadline:
            tap._queue.append((0.0, 99, CLIENT, b"x"))
            time.sleep(0.01)
        assert calls[0] >= 3 and tap._hand_over_thread is not None and tap._hand_over_thread.is_alive()
        lost = tap.messages().query(f"name == '{MALFORMED}'")
    assert len(lost) == 1 and "a hand-over failed: MemoryError" in lost["summary"].iloc[0]
