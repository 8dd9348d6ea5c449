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
import time
from collections.abc import Iterator
from typing import Any

from .proxy import DelayProxy, check_int
from .wire_protocol import CLIENT, SERVER, Conversation, Frame, summarize

MESSAGE_COLUMNS = ["t", "conn", "direction", "name", "length", "summary"]
OPERATION_COLUMNS = ["operation", "start", "end", "conns", "messages", "round_trips"]
DEFAULT_MAX_MESSAGES = 100_000
SETTLE_S = 0.005  # at an operation's end: time for the tap to read what the client has already sent
FLUSH_AFTER_S = 0.02  # a chunk waits at most this long to be decoded...
FLUSH_BYTES = 1 << 20  # ...or until this many bytes wait


class _Connection:
    """One proxied connection as the tap sees it: its decoder and how many directions have ended."""

    __slots__ = ("tap", "number", "conversation", "eof", "from_client", "from_server")

    def __init__(self, tap: WireTap, number: int) -> None:
        self.tap = tap
        self.number = number
        self.conversation = Conversation()
        self.eof = 0
        # What the proxy calls for each chunk: straight into the tap's queue (one call, no wrapper).
        self.from_client = functools.partial(tap._arrived, self, CLIENT)
        self.from_server = functools.partial(tap._arrived, self, SERVER)

    def decode(self, direction: str | None, data: bytes) -> list[Frame]:
        """The frames of one chunk; ``b""`` is the end of a direction, ``direction`` None the teardown."""
        if data:
            return self.conversation.feed(direction or CLIENT, data)
        self.eof = self.eof + 1 if direction is not None else 2
        if self.eof >= 2:
            frames, self.conversation = self.conversation.close(), Conversation()
            return frames
        return []


class WireTap(DelayProxy):
    """``with WireTap("127.0.0.1", 5432) as tap:`` connect to ``tap.port``; then ``tap.messages()``.

    ``delay_ms`` is the one-way delay of the DelayProxy (0: none); ``max_messages`` caps the record.
    ``with tap.operation("connect_per_query"):`` marks a piece of work so that its messages and round
    trips can be told apart (``operations()``, ``messages(operation=...)``).

    Each chunk is stamped when it arrives and decoded a little later, in batches (within
    ``FLUSH_AFTER_S``, or at once when ``FLUSH_BYTES`` wait, or when anything is asked of the tap):
    decoding in Python on the proxy's thread while the client waits for its reply would hold the
    interpreter's lock the client needs, and cost every query far more than the decoding itself.
    Until then the raw chunk is held as the proxy holds every chunk it forwards; then it is dropped.
    """

    def __init__(self, target_host: str, target_port: int, *, delay_ms: float = 0.0,
                 max_messages: int = DEFAULT_MAX_MESSAGES, emulate_handshake: bool = True,
                 listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        super().__init__(target_host, target_port, delay_ms, emulate_handshake=emulate_handshake,
                         listen_host=listen_host, listen_port=listen_port)
        self.max_messages = check_int("WireTap", "max_messages", max_messages, 1, 100_000_000)
        self.dropped = 0  # messages decoded after the record was full
        # The record, flat: t, connection, direction, name, length, detail for each message in turn. Only
        # floats, ints, strings and bytes: nothing in it for the garbage collector to track or scan.
        self._flat: list[Any] = []
        self._kept = 0  # messages in _flat
        self._pending: list[tuple[float, _Connection, str | None, bytes]] = []  # arrived, not yet decoded
        self._pending_bytes = 0
        self._flush_timer: asyncio.TimerHandle | None = None
        self._operations: list[tuple[str, float, float]] = []
        self._live: dict[int, _Connection] = {}
        self._t0 = time.perf_counter()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self.port else "stopped"
        return (f"WireTap({self.target_host}:{self.target_port}, delay_ms={self.delay_ms:g}, "
                f"{self._kept} messages, {self.dropped} dropped, {state})")

    # ------------------------------------------------------------------ the proxy's hooks (event loop)
    def _observer(self, number: int) -> _Connection:
        connection = _Connection(self, number)
        self._live[number] = connection
        return connection

    def _connection_ended(self, number: int) -> None:
        connection = self._live.pop(number, None)
        if connection is not None:
            self._arrived(connection, None, b"")

    def _arrived(self, connection: _Connection, direction: str | None, data: bytes) -> None:
        """The hot path: stamp and queue the chunk; decoding waits for a batch."""
        self._pending.append((time.perf_counter() - self._t0, connection, direction, data))
        self._pending_bytes += len(data)
        if self._pending_bytes >= FLUSH_BYTES:
            self._flush()
        elif self._flush_timer is None and self._loop is not None:
            self._flush_timer = self._loop.call_later(FLUSH_AFTER_S, self._flush)

    def _flush(self) -> None:
        """Decode every queued chunk in arrival order (on the loop, or after it stopped)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        for t, connection, direction, data in pending:
            frames = connection.decode(direction, data)
            if frames:
                self._record_frames(t, connection.number, frames)

    def _flush_now(self) -> None:
        """Decode what is queued before answering a question about the record (any thread)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            async def flush() -> None:
                self._flush()
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(flush(), loop).result(10.0)
                return
        self._flush()

    def _record_frames(self, t: float, number: int, frames: list[Frame]) -> None:
        room = self.max_messages - self._kept
        if room < len(frames):
            self.dropped += len(frames) - max(room, 0)
            frames = frames[:max(room, 0)]
            if not frames:
                return
        self._kept += len(frames)
        extend = self._flat.extend
        for direction, name, length, detail in frames:
            extend((t, number, direction, name, length, detail))

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
            self._flush()

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

        rows = []
        for label, start, end in list(self._operations):
            directions = self._directions_between(start, end)
            rows.append((label, start, end, len(directions), sum(len(d) for d in directions.values()),
                         sum(_round_trips(d) for d in directions.values())))
        return pd.DataFrame(rows, columns=OPERATION_COLUMNS)

    def clear(self) -> None:
        """Forget the record and the operations (the connections stay as they are)."""
        self._flush_now()
        self._flat.clear()
        self._kept = 0
        self._operations.clear()
        self.dropped = 0

    # ------------------------------------------------------------------ helpers
    def _records(self) -> list[tuple[float, int, Frame]]:
        """(t, connection, frame) per kept message, in arrival order (queued chunks decoded first)."""
        self._flush_now()
        flat = self._flat[:6 * self._kept]
        return [(flat[i], flat[i + 1], Frame(flat[i + 2], flat[i + 3], flat[i + 4], flat[i + 5]))
                for i in range(0, len(flat), 6)]

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

    def _directions_between(self, start: float, end: float) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for t, number, frame in self._records():
            if start <= t <= end:
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


def _round_trips(directions: list[str]) -> int:
    """Client-to-server turns: a server message right after a client message ends one round trip."""
    trips, previous = 0, None
    for direction in directions:
        if direction == SERVER and previous == CLIENT:
            trips += 1
        previous = direction
    return trips

