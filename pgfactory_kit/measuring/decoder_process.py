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

Promises: ``DecoderProcess()`` returns once the child is ready (about 0.2 s: a Python start and an
import) or raises OSError within ``READY_TIMEOUT_S``; ``send`` never raises; if the child cannot start,
``start_decoder`` returns an ``InProcessDecoder`` (same record, decoded on the caller's thread). Once
anything goes wrong with the child — it dies, stops reading, answers garbage, or a Ctrl-C lands in the
middle of a message — it is *abandoned*: killed (our own child, by its handle), so nothing can block on
it, and the record gets one ``(malformed)`` message that says so; the bytes the tap forwards are never
affected. The child ignores Ctrl-C (a notebook's interrupt is for the learner's code), exits when its
input ends (so it cannot outlive the tap's process), imports this same kit (not one that the current
folder may hold), and keeps no raw bytes once a batch is decoded.
"""
from __future__ import annotations

import contextlib
import marshal
import os
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from .wire_protocol import CLIENT, MALFORMED
from .wire_record import Chunk, RecordMaker

# Run by import, not ``-m`` (the package imports this module too, and runpy warns about running a module
# that is already imported), with this kit's folder first on the path (``-c`` puts the current folder
# first, where an old clone could shadow it). argv: the folder, max_messages.
CHILD_CODE = ("import sys; sys.path.insert(0, sys.argv[1]); "
              "from pgfactory_kit.measuring.decoder_process import main; sys.exit(main(int(sys.argv[2])))")
HEADER = struct.Struct(">I")
MAX_MESSAGE_BYTES = 1 << 30  # a larger length can only be a corrupt stream
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class Decoder(Protocol):
    """What the tap needs: hand over chunks, get back the record made since the last time, stop."""

    where: str  # "another process" or "this process": the tap's repr says which

    def send(self, chunks: list[Chunk]) -> None: ...

    def collect(self) -> tuple[list[Any], int]: ...

    def abandon(self, why: str) -> None: ...

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

    def abandon(self, why: str) -> None:
        pass  # nothing here can stall apart from this process itself

    def stop(self) -> None:
        pass


class DecoderProcess:
    """The parent's handle on the child: ``send`` and ``collect`` from any thread."""

    where = "another process"

    def __init__(self, max_messages: int) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        self._process = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, package_root, str(max_messages)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, close_fds=True,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))  # no console window on Windows
        self.pid = self._process.pid
        self._send_lock = threading.Lock()  # one message at a time into the pipe
        self._collect_lock = threading.Lock()  # one question at a time waits for its answer
        self._lost: str | None = None  # why the child was abandoned, once it was
        self._reported = False
        self._last_t = 0.0
        with _watchdog(READY_TIMEOUT_S, self._kill):  # a child that hangs is killed, so the read ends
            try:
                ready = _read_message(self._process.stdout) == ("ready",)
            except Exception:  # garbage before "ready" (a chatty site customisation, say)
                ready = False
        if not ready:
            self._kill()
            code = self._process.wait(STOP_TIMEOUT_S)
            raise OSError(f"the wire tap's decoder process did not start (exit code {code})")

    def send(self, chunks: list[Chunk]) -> None:
        if chunks:
            self._last_t = chunks[-1][0]
            self._write(("chunks", chunks))

    def collect(self) -> tuple[list[Any], int]:
        with self._collect_lock:
            if self._write(("collect",)):
                try:
                    answer = _read_message(self._process.stdout)
                except Exception as exc:
                    self.abandon(f"its answer was unreadable: {type(exc).__name__}")
                    answer = None
                except BaseException:  # Ctrl-C mid-answer: the rest of it would be read as the next one
                    self.abandon("interrupted while it answered")
                    raise
                if answer is not None:
                    flat, dropped = answer
                    return flat, dropped
                self.abandon("its output ended")
            return self._lost_marker(), 0

    def abandon(self, why: str) -> None:
        """Give the child up: say why, then kill it (that unblocks any thread writing to it). Not under
        the send lock: a thread stuck writing holds it; the first reason given is the one kept."""
        self._lost = self._lost or why
        self._kill()

    def stop(self) -> None:
        """Ask the child to exit; whatever blocks, after ``STOP_TIMEOUT_S`` it is killed."""
        with _watchdog(STOP_TIMEOUT_S, self._kill):
            self._write(("stop",))
            for stream in (self._process.stdin, self._process.stdout):
                with contextlib.suppress(OSError, ValueError):
                    if stream is not None:
                        stream.close()
            self._process.wait()

    def _write(self, message: tuple[Any, ...]) -> bool:
        with self._send_lock:
            if self._lost is not None:
                return False
            stdin = self._process.stdin
            try:
                payload = marshal.dumps(message)
                assert stdin is not None
                stdin.write(HEADER.pack(len(payload)))
                stdin.write(payload)
                stdin.flush()
                return True
            except Exception as exc:  # broken pipe, closed by stop(), no memory for the batch...
                self._lost = self._lost or f"it could not be sent to: {type(exc).__name__}"
            except BaseException:  # Ctrl-C mid-message: the child would read the rest as garbage
                self._lost = self._lost or "interrupted while a batch was sent to it"
                self._kill()
                raise
        self._kill()
        return False

    def _kill(self) -> None:
        with contextlib.suppress(OSError):
            self._process.kill()

    def _lost_marker(self) -> list[Any]:
        """Once: one message saying the decoder ended and what that means for the record."""
        if self._reported:
            return []
        self._reported = True
        return [self._last_t, 0, CLIENT, MALFORMED, 0,
                f"the decoder process ended ({self._lost}): its last messages and all later ones are not "
                f"recorded (the bytes were still forwarded)"]


@contextlib.contextmanager
def _watchdog(seconds: float, action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` (on a timer thread) if the block is still running after ``seconds``."""
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _read_message(stream: IO[bytes] | None) -> Any:
    """One message from ``stream``, or None at its end."""
    if stream is None:
        return None
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"a message of {size} bytes: the stream is corrupt")
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return marshal.loads(payload)


def _write_message(stream: IO[bytes], message: Any) -> None:
    payload = marshal.dumps(message)
    stream.write(HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _point_stdout_elsewhere() -> None:
    """File descriptor 1 to standard error, or to the null device where there is none (pythonw)."""
    try:
        os.dup2(sys.stderr.fileno(), 1)
    except (AttributeError, OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)


def main(max_messages: int) -> int:
    """The child: decode what arrives on standard input, answer ``collect`` on standard output."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a notebook interrupts the learner's code only
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    _point_stdout_elsewhere()  # a stray print, even from C, must not corrupt the answers
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
        message = None  # the batch's raw bytes go now, not when the next one comes
