"""The wire tap's decoder in a process of its own, so that decoding never competes with the client.

Why a process: the tap's proxy runs on a thread of the learner's Python process. Decoding there, even
in batches, holds the interpreter lock that the client needs to send its next query, and made each
``SELECT 1`` through the tap about a fifth slower (benchmarks/RESULTS.md, "Wire tap"). A second
process has its own interpreter (and, usually, its own CPU core).

How they talk: the child's standard input and output, one message each way at a time, each message a
4-byte length then a ``marshal``-ed tuple (the record is only floats, ints, strings and bytes):

    child -> tap   ("ready",)                 once, when it can take chunks
    tap -> child   ("chunks", [chunk, ...])   decode these (no answer)
    tap -> child   ("collect",)               answer with (flat record, dropped) since the last collect
    tap -> child   ("stop",) or end of input  exit

Promises: ``DecoderProcess()`` returns once the child is ready (about 0.3 s: a Python start and an
import) or raises OSError; ``send`` never blocks the caller for long (the child reads continuously) and
never raises; if the child cannot start, ``start_decoder`` returns an ``InProcessDecoder`` (same
record, decoded on the caller's thread); if the child dies, its last undecoded messages are lost and the record says so
with one ``(malformed)`` message; the bytes the tap forwards are never affected. The child ignores
Ctrl-C (a notebook's interrupt is for the learner's code), exits when its input ends (so it cannot
outlive the tap's process), and is stopped by ``stop()``, by its PID only.
"""
from __future__ import annotations

import marshal
import os
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any, Protocol

from .wire_protocol import CLIENT, MALFORMED
from .wire_record import Chunk, RecordMaker

# Run by import, not ``-m``: the package imports this module too, and runpy warns about running a module
# that is already imported.
CHILD_CODE = "import sys; from pgfactory_kit.measuring.decoder_process import main; sys.exit(main(sys.argv))"
HEADER = struct.Struct(">I")
STOP_TIMEOUT_S = 5.0


class Decoder(Protocol):
    """What the tap needs: hand over chunks, get back the record made since the last time, stop."""

    where: str  # "another process" or "this process": the tap's repr says which

    def send(self, chunks: list[Chunk]) -> None: ...

    def collect(self) -> tuple[list[Any], int]: ...

    def stop(self) -> None: ...


def start_decoder(max_messages: int) -> Decoder:
    """A ``DecoderProcess`` if a child Python can be started here, else an ``InProcessDecoder``."""
    try:
        return DecoderProcess(max_messages)
    except OSError:  # no usable interpreter to start (an embedded Python): decode here, more slowly
        return InProcessDecoder(max_messages)


class InProcessDecoder:
    """The same record, made on the caller's thread (the fallback; also what the benchmark compares)."""

    where = "this process"

    def __init__(self, max_messages: int) -> None:
        self._maker = RecordMaker(max_messages)
        self._lock = threading.Lock()

    def send(self, chunks: list[Chunk]) -> None:
        with self._lock:
            self._maker.feed(chunks)

    def collect(self) -> tuple[list[Any], int]:
        with self._lock:
            return self._maker.collect()

    def stop(self) -> None:
        pass


class DecoderProcess:
    """The parent's handle on the child: ``send`` from any thread, ``collect`` from any thread."""

    where = "another process"

    def __init__(self, max_messages: int) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # so the child imports this same kit
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root,
                                                                        os.environ.get("PYTHONPATH")])))
        self._process = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, str(max_messages)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, close_fds=True,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))  # no console window on Windows
        self.pid = self._process.pid
        if _read_message(self._process.stdout) != ("ready",):
            self._process.kill()  # our own child, by its handle
            code = self._process.wait(STOP_TIMEOUT_S)
            raise OSError(f"the wire tap's decoder process did not start (exit code {code})")
        self._send_lock = threading.Lock()  # one message at a time into the pipe
        self._collect_lock = threading.Lock()  # one question at a time waits for its answer
        self._lost: str | None = None  # why the child is gone, once it is
        self._reported = False
        self._last_t = 0.0

    def send(self, chunks: list[Chunk]) -> None:
        if chunks:
            self._last_t = chunks[-1][0]
            self._write(("chunks", chunks))

    def collect(self) -> tuple[list[Any], int]:
        with self._collect_lock:
            if self._write(("collect",)):
                answer = _read_message(self._process.stdout)
                if answer is not None:
                    flat, dropped = answer
                    return flat, dropped
                self._gone("its output ended")
            return self._lost_marker(), 0

    def stop(self) -> None:
        """Ask the child to exit; after ``STOP_TIMEOUT_S``, kill it (our own child, by its PID)."""
        self._write(("stop",))
        for stream in (self._process.stdin, self._process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self._process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(STOP_TIMEOUT_S)

    def _write(self, message: tuple[Any, ...]) -> bool:
        payload = marshal.dumps(message)
        with self._send_lock:
            if self._lost is not None:
                return False
            try:
                stdin = self._process.stdin
                assert stdin is not None
                stdin.write(HEADER.pack(len(payload)))
                stdin.write(payload)
                stdin.flush()
                return True
            except (OSError, ValueError):  # broken pipe, or closed by stop()
                self._lost = "it stopped reading"
                return False

    def _gone(self, why: str) -> None:
        with self._send_lock:
            self._lost = self._lost or why

    def _lost_marker(self) -> list[Any]:
        """Once: one message saying the decoder ended and what that means for the record."""
        if self._reported:
            return []
        self._reported = True
        code = self._process.poll()
        ended = f"exit code {code}" if code is not None else self._lost
        return [self._last_t, 0, CLIENT, MALFORMED, 0,
                f"the decoder process ended ({ended}): its last messages and all later ones are not recorded "
                f"(the bytes were still forwarded)"]


def _read_message(stream: IO[bytes] | None) -> Any:
    """One message from ``stream``, or None at its end."""
    if stream is None:
        return None
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return marshal.loads(payload)


def _write_message(stream: IO[bytes], message: Any) -> None:
    payload = marshal.dumps(message)
    stream.write(HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def main(argv: list[str]) -> int:
    """The child: decode what arrives on standard input, answer ``collect`` on standard output."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a notebook interrupts the learner's code only
    max_messages = int(argv[1])
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    maker = RecordMaker(max_messages)
    _write_message(answers, ("ready",))
    while True:
        message = _read_message(requests)
        if message is None or message[0] == "stop":
            return 0
        if message[0] == "chunks":
            maker.feed(message[1])
        elif message[0] == "collect":
            _write_message(answers, maker.collect())

