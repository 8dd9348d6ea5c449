"""RecordMaker: turns the stamped chunks of many proxied connections into the wire tap's record.

A *chunk* is ``(t, connection, direction, data)``: when it arrived (seconds), the connection's number,
``"client"`` or ``"server"``, and the bytes as they passed. ``data == b""`` means that direction ended;
``direction is None`` means the connection was torn down. Chunks must come in arrival order.

The *record* is flat: six values per message in turn — t, connection, direction, name, length,
detail (see ``wire_protocol.Frame``). Only floats, ints, strings and bytes: it crosses a pipe with
``marshal`` as it is, and the garbage collector has nothing in it to scan.

Promises: the same messages, in the same order, as feeding each connection's bytes to its own
``wire_protocol.Conversation``; at most ``max_messages`` messages held between two ``collect()`` calls
(later ones counted as dropped, not kept); no raw bytes kept after ``feed`` returns.
"""
from __future__ import annotations

from typing import Any

from .wire_protocol import CLIENT, Conversation, Frame

Chunk = tuple[float, int, "str | None", bytes]
FIELDS = 6  # values per message in the flat record


class RecordMaker:
    """Decodes chunks as they are fed; ``collect()`` hands over (and forgets) what was decoded since."""

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self._conversations: dict[int, Conversation] = {}
        self._ended: dict[int, int] = {}  # connection -> directions that have ended (2: closed)
        self._flat: list[Any] = []
        self._kept = 0
        self._dropped = 0

    def feed(self, chunks: list[Chunk]) -> None:
        """Decode ``chunks`` (arrival order) into the record."""
        for t, number, direction, data in chunks:
            frames = self._decode(number, direction, data)
            if frames:
                self._keep(t, number, frames)

    def collect(self) -> tuple[list[Any], int]:
        """(the flat record since the last collect, how many messages were dropped since), then forget both."""
        out = (self._flat, self._dropped)
        self._flat, self._kept, self._dropped = [], 0, 0
        return out

    def _decode(self, number: int, direction: str | None, data: bytes) -> list[Frame]:
        conversation = self._conversations.get(number)
        if conversation is None:
            conversation = self._conversations[number] = Conversation()
            self._ended[number] = 0
        if data:
            return conversation.feed(direction or CLIENT, data)
        ended = self._ended[number] + 1 if direction is not None else 2
        if ended < 2:
            self._ended[number] = ended
            return []
        del self._conversations[number], self._ended[number]
        return conversation.close()  # a message cut in the middle, if any

    def _keep(self, t: float, number: int, frames: list[Frame]) -> None:
        room = self.max_messages - self._kept
        if room < len(frames):
            self._dropped += len(frames) - max(room, 0)
            frames = frames[:max(room, 0)]
        self._kept += len(frames)
        extend = self._flat.extend
        for direction, name, length, detail in frames:
            extend((t, number, direction, name, length, detail))
