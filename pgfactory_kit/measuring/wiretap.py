"""WireTap: the DelayProxy with PostgreSQL protocol decoding, so a lesson can *see* the round trips
that the bench only infers from timings.

Promises: bytes are forwarded exactly as the DelayProxy forwards them (same plumbing, same optional
delay), whatever the decoder makes of them; the record holds at most ``max_messages`` messages (later
ones are counted in ``dropped``, not kept: about 200 bytes each, so the default 100 000 is ~20 MB at
most); every summary is safe (see ``wire_protocol``): no password, SASL payload or bind value.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from .decoder_process import Decoder, InProcessDecoder, start_decoder
from .proxy import STOP_TIMEOUT_S, DelayProxy, check_int
from .wire_protocol import CLIENT, SERVER, Frame, summarize
from .wire_record import FIELDS, Chunk

MESSAGE_COLUMNS = ["t", "conn", "direction", "name", "length", "summary"]
OPERATION_COLUMNS = ["operation", "start", "end", "conns", "messages", "round_trips"]
DEFAULT_MAX_MESSAGES = 100_000
SETTLE_S = 0.005  # at an operation's end: time for the tap to read what the client has already sent
FLUSH_AFTER_S = 0.02  # the hand-over thread sends the queue to the decoder this often...
FLUSH_BYTES = 1 << 20  # ...and as soon as this many bytes wait
MAX_WAITING_BYTES = 8 << 20  # a decoder this far behind makes the proxy wait for it (back-pressure)...
BACK_PRESSURE_TIMEOUT_S = 5.0  # ...for at most this long, then the decoder is abandoned


class _Connection:
    """What the proxy calls for each chunk of one connection: straight into the tap's queue."""

    __slots__ = ("from_client", "from_server")

    def __init__(self, tap: WireTap, number: int) -> None:
        self.from_client = functools.partial(tap._arrived, number, CLIENT)
        self.from_server = functools.partial(tap._arrived, number, SERVER)


class WireTap(DelayProxy):
    """``with WireTap("127.0.0.1", 5432) as tap:`` connect to ``tap.port``; then ``tap.messages()``.

    ``delay_ms`` is the one-way delay of the DelayProxy (0: none); ``max_messages`` caps the record.
    ``with tap.operation("connect_per_query"):`` marks a piece of work so that its messages and round
    trips can be told apart (``operations()``, ``messages(operation=...)``).

    Who does what (three parties, one job each):
    - the proxy's event loop forwards the bytes and, as a chunk passes, only stamps it with the time
      and appends it to a queue (a ``deque``: safe to append on one thread and pop on another);
    - a hand-over thread wakes every ``FLUSH_AFTER_S`` (at once when ``FLUSH_BYTES`` wait) and sends
      what is queued, in one message, to the decoder; a question about the record does the same first;
      if ``MAX_WAITING_BYTES`` wait all the same (a decoder slower than the traffic), the proxy waits
      for the hand-over (back-pressure: the queue cannot grow without bound), but at most
      ``BACK_PRESSURE_TIMEOUT_S``: a decoder that far behind for that long is abandoned, and the bytes
      flow on unrecorded (the record says so);
    - the decoder, in another process (``decoder_process``), decodes and keeps the record until the
      tap asks for it.
    Why: decoding in Python in this process holds the interpreter lock the waiting client needs (about
    10% more per ``SELECT 1``; 3.5% from another process with a core to spare), and a timer on the event
    loop makes each of its waits a timed wait (7–10% more). Measured in benchmarks/RESULTS.md ("Wire tap"). Raw bytes
    wait only in that queue and the pipe (about ``FLUSH_AFTER_S``), as every chunk waits in the proxy's
    own forwarding queue; the decoder keeps none of them.
    """

    def __init__(self, target_host: str, target_port: int, *, delay_ms: float = 0.0,
                 max_messages: int = DEFAULT_MAX_MESSAGES, emulate_handshake: bool = True,
                 listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        super().__init__(target_host, target_port, delay_ms, emulate_handshake=emulate_handshake,
                         listen_host=listen_host, listen_port=listen_port)
        self.max_messages = check_int("WireTap", "max_messages", max_messages, 1, 100_000_000)
        self._queue: deque[Chunk] = deque()  # arrived, not yet handed over: the loop appends, hand-overs pop
        self._bytes_in = 0  # bytes queued so far: written by the loop only
        self._bytes_out = 0  # bytes handed over so far: written under _hand_over_lock only
        self._wake = threading.Event()  # set: hand over now
        self._handed_over = threading.Event()  # set after each hand-over (what back-pressure waits for)
        self._hand_over_thread: threading.Thread | None = None
        self._hand_over_lock = threading.Lock()  # one hand-over at a time, so batches stay in order
        self._decoder: Decoder = InProcessDecoder(self.max_messages)  # until start() starts the process
        # The record, flat (see wire_record): t, connection, direction, name, length, detail per message.
        self._record_lock = threading.RLock()  # a question, and close()'s last one, one at a time
        self._flat: list[Any] = []
        self._kept = 0  # messages in _flat
        self._dropped = 0  # messages decoded after the record was full
        self._operations: list[tuple[str, float, float]] = []
        self._t0 = time.perf_counter()

    def __repr__(self) -> str:
        state = f"port={self.port}, decoding in {self._decoder.where}" if self.port else "stopped"
        return (f"WireTap({self.target_host}:{self.target_port}, delay_ms={self.delay_ms:g}, "
                f"{self._kept} messages, {self._dropped} dropped, {state})")

    @property
    def dropped(self) -> int:
        """Messages decoded after the record was full (counted, not kept)."""
        self._collect()
        return self._dropped

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> WireTap:
        """Start the decoder process and the hand-over thread, then the proxy (``DelayProxy.start``)."""
        if self._thread is not None:
            return self
        self._decoder = self._start_decoder()
        self._wake.clear()
        self._hand_over_thread = threading.Thread(target=self._hand_over_every_while, daemon=True,
                                                  name="WireTap-hand-over")
        self._hand_over_thread.start()
        try:
            super().start()
        except BaseException:
            self._stop_hand_over()
            raise
        return self

    def _start_decoder(self) -> Decoder:
        """The decoder for this run: a process of its own where one can be started."""
        return start_decoder(self.max_messages)

    def close(self) -> None:
        """Stop the proxy, take the whole record from the decoder, stop the decoder. The record stays."""
        if self._thread is None:
            return
        try:
            super().close()  # the connections' teardown chunks are queued by now
        finally:
            self._stop_hand_over()

    stop = close

    def __enter__(self) -> WireTap:
        return self.start()

    def _stop_hand_over(self) -> None:
        """Stop the hand-over thread, take the last of the record, and only then stop the decoder."""
        thread, self._hand_over_thread = self._hand_over_thread, None
        if thread is not None:
            self._wake.set()
            thread.join(STOP_TIMEOUT_S)
            if thread.is_alive():  # stuck sending to a decoder that does not read
                self._decoder.abandon("it stopped reading")
                thread.join(STOP_TIMEOUT_S)
        with self._record_lock:  # a question on another thread waits, then finds the record complete
            self._collect()
            decoder, self._decoder = self._decoder, InProcessDecoder(self.max_messages)
        decoder.stop()

    # ------------------------------------------------------------------ the proxy's hook (event loop)
    def _observer(self, number: int) -> _Connection:
        return _Connection(self, number)

    def _connection_ended(self, number: int) -> None:
        self._arrived(number, None, b"")

    def _arrived(self, number: int, direction: str | None, data: bytes) -> None:
        """The hot path: stamp and queue the chunk; the hand-over thread takes it from there."""
        self._queue.append((time.perf_counter() - self._t0, number, direction, data))
        self._bytes_in += len(data)
        waiting = self._bytes_in - self._bytes_out
        if waiting >= FLUSH_BYTES:
            self._wake.set()
            if waiting >= MAX_WAITING_BYTES:
                self._wait_for_hand_over()

    def _wait_for_hand_over(self) -> None:
        """Back-pressure: the loop (so the traffic) waits for the next hand-over, within a bound."""
        self._handed_over.clear()
        self._wake.set()
        if not self._handed_over.wait(BACK_PRESSURE_TIMEOUT_S):
            self._decoder.abandon(f"it fell {MAX_WAITING_BYTES >> 20} MiB behind the traffic for "
                                  f"{BACK_PRESSURE_TIMEOUT_S:g} s")

    # ------------------------------------------------------------------ hand-over and record
    def _hand_over_every_while(self) -> None:
        """The hand-over thread: every FLUSH_AFTER_S (sooner when woken), until the tap stops."""
        while self._hand_over_thread is threading.current_thread():
            self._wake.wait(FLUSH_AFTER_S)
            self._wake.clear()
            try:
                self._hand_over()
            except Exception as exc:  # a bug here must not stop the hand-overs (nor the bytes)
                self._decoder.abandon(f"a hand-over failed: {type(exc).__name__}")

    def _hand_over(self) -> None:
        """Send every queued chunk to the decoder, in arrival order (any thread)."""
        with self._hand_over_lock:
            queue, chunks = self._queue, []
            while queue:
                chunks.append(queue.popleft())
            try:
                self._decoder.send(chunks)
            finally:  # sent or lost with an abandoned decoder: either way no longer waiting
                self._bytes_out += sum(len(chunk[3]) for chunk in chunks)
                self._handed_over.set()

    def _collect(self) -> None:
        """Everything queued so far, decoded, into the record (within the cap)."""
        with self._record_lock:
            self._hand_over()
            flat, dropped = self._decoder.collect()
            self._dropped += dropped
            count = len(flat) // FIELDS
            room = max(self.max_messages - self._kept, 0)
            if count > room:
                self._dropped += count - room
                flat = flat[:room * FIELDS]
                count = room
            self._flat.extend(flat)
            self._kept += count

    # ------------------------------------------------------------------ operations
    @contextlib.contextmanager
    def operation(self, label: str) -> Iterator[None]:
        """Mark the messages of one piece of work. At the end the tap is given a moment to read what the
        client already sent (a Terminate is sent without waiting), so the operation includes it."""
        start = time.perf_counter() - self._t0
        try:
            yield
        finally:
            self.settle()
            self._operations.append((str(label), start, time.perf_counter() - self._t0))

    def settle(self, seconds: float = SETTLE_S) -> None:
        """Let the tap's event loop read every byte already sent to it (bounded: at most 2 s)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return

        async def idle() -> None:
            for _ in range(4):
                await asyncio.sleep(0)
            await asyncio.sleep(seconds)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(idle(), loop).result(2.0)

    # ------------------------------------------------------------------ results
    def messages(self, operation: str | None = None) -> Any:
        """One row per protocol message: t (s since the tap was made), conn, direction, name, length
        (bytes on the wire), summary (safe). ``operation`` keeps only that operation's messages."""
        import pandas as pd

        data = [(t, conn, frame.direction, frame.name, frame.length, summarize(frame))
                for t, conn, frame in self._rows(operation)]
        return pd.DataFrame(data, columns=MESSAGE_COLUMNS)

    def round_trips(self, conn: int | None = None, operation: str | None = None) -> int:
        """Client-waits-for-server exchanges: on one connection, each run of client messages that the
        server answers (at least one server message after it) is one round trip. A message the client
        does not wait for (Terminate) is none; server messages nobody asked for (a NoticeResponse later)
        add none; pipelined requests sent without waiting count once. The TCP handshake is the kernel's
        and is not on the tap; after "encrypted from here" nothing more is counted."""
        return sum(_round_trips(directions)
                   for number, directions in self._directions(operation).items() if conn in (None, number))

    def round_trips_by_connection(self, operation: str | None = None) -> dict[int, int]:
        """``round_trips`` for each connection seen."""
        return {number: _round_trips(directions) for number, directions in self._directions(operation).items()}

    def operations(self) -> Any:
        """One row per marked operation: its window, connections, messages and round trips."""
        import pandas as pd

        rows, records = [], self._records()  # one snapshot for every operation
        for label, start, end in list(self._operations):
            directions = _directions_between(records, start, end)
            rows.append((label, start, end, len(directions), sum(len(d) for d in directions.values()),
                         sum(_round_trips(d) for d in directions.values())))
        return pd.DataFrame(rows, columns=OPERATION_COLUMNS)

    def clear(self) -> None:
        """Forget the record and the operations (the connections stay as they are)."""
        self._collect()
        with self._record_lock:
            self._flat.clear()
            self._kept = 0
            self._operations.clear()
            self._dropped = 0

    # ------------------------------------------------------------------ helpers
    def _records(self) -> list[tuple[float, int, Frame]]:
        """(t, connection, frame) per kept message, in arrival order (everything queued decoded first)."""
        with self._record_lock:
            self._collect()
            flat = self._flat[:FIELDS * self._kept]
        return [(flat[i], flat[i + 1], Frame(flat[i + 2], flat[i + 3], flat[i + 4], flat[i + 5]))
                for i in range(0, len(flat), FIELDS)]

    def _rows(self, operation: str | None) -> list[tuple[float, int, Frame]]:
        rows = self._records()
        if operation is None:
            return rows
        windows = [(s, e) for label, s, e in self._operations if label == operation]
        if not windows:
            raise KeyError(f"no operation {operation!r}; marked: {sorted({o[0] for o in self._operations})}")
        return [r for r in rows if any(s <= r[0] <= e for s, e in windows)]

    def _directions(self, operation: str | None) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for _, number, frame in self._rows(operation):
            out.setdefault(number, []).append(frame.direction)
        return out



def round_trip_table(messages: Any) -> Any:
    """One row per round trip in ``messages`` (rows of ``WireTap.messages()``): conn, round_trip (1, 2,
    ...), what the client sent and what the server answered, bursts collapsed (``15× ParameterStatus``).
    Client messages nobody answered (Terminate) are a last row with round_trip 0."""
    import pandas as pd

    def collapse(names: list[str]) -> str:
        runs: list[list[Any]] = []
        for name in names:
            if runs and runs[-1][0] == name:
                runs[-1][1] += 1
            else:
                runs.append([name, 1])
        return ", ".join(f"{n}× {name}" if n > 1 else name for name, n in runs)

    rows = []
    for conn, part in messages.groupby("conn", sort=False):
        trip, sent, answer = 0, [], []
        for direction, name in zip(part["direction"], part["name"], strict=True):
            if direction == CLIENT and answer:
                trip += 1
                rows.append(dict(conn=conn, round_trip=trip, client=collapse(sent), server=collapse(answer)))
                sent, answer = [], []
            if direction == CLIENT:
                sent.append(name)
            elif sent:
                answer.append(name)
        if sent and answer:
            rows.append(dict(conn=conn, round_trip=trip + 1, client=collapse(sent), server=collapse(answer)))
        elif sent:
            rows.append(dict(conn=conn, round_trip=0, client=collapse(sent), server="(no reply awaited)"))
    return pd.DataFrame(rows, columns=["conn", "round_trip", "client", "server"])


def _directions_between(records: list[tuple[float, int, Frame]], start: float, end: float) -> dict[int, list[str]]:
    """Each connection's message directions, in order, for the records stamped within [start, end]."""
    out: dict[int, list[str]] = {}
    for t, number, frame in records:
        if start <= t <= end:
            out.setdefault(number, []).append(frame.direction)
    return out


def _round_trips(directions: list[str]) -> int:
    """Client-to-server turns: a server message right after a client message ends one round trip."""
    trips, previous = 0, None
    for direction in directions:
        if direction == SERVER and previous == CLIENT:
            trips += 1
        previous = direction
    return trips

