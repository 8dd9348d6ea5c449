"""DelayProxy: a TCP proxy on 127.0.0.1 that adds network delay, so a laptop can show what a database
20 ms away does to connect-per-query (several round trips per connect) against reuse (one per query).

Promises: every byte is delayed by ``delay_ms`` in each direction (a round trip grows by twice that);
bytes leave in the order they arrived (one FIFO queue per direction, each item stamped with the time
it may leave); ``close()`` cancels every task, closes every socket and joins the thread.
With ``emulate_handshake`` (default) a new connection's first bytes to the server also wait for the
TCP handshake a real network would need (one more round trip), which a local proxy otherwise hides.

A delayed chunk leaves a little *after* its time: the event loop wakes up to about 1 ms late (epoll
counts whole milliseconds), more on a busy machine (a mean of 1.7 ms measured under load). With
``delay_ms=0`` nothing waits, so nothing is late: fit a line of time against added delay over delayed
levels only, or that step tilts it (a connect makes about 12 delayed hops: up to a round trip too many).
"""
from __future__ import annotations

import asyncio
import math
import threading
from typing import Any, Protocol

CHUNK = 65536
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
MAX_DELAY_MS = 60_000.0  # a minute each way: beyond any network a lesson models


class Observer(Protocol):
    """What a subclass may attach to each connection (the WireTap): told every chunk in arrival order, on
    the proxy's event loop, as it is queued for forwarding, and ``b""`` when that direction ends. It must
    be quick (the bytes wait for it) and should not raise (errors are ignored)."""

    def from_client(self, data: bytes) -> None: ...

    def from_server(self, data: bytes) -> None: ...


def check_int(owner: str, name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, or a TypeError/ValueError naming ``owner``'s parameter."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{owner}: {name} must be between {low} and {high}, got {value!r}")
    return value


def check_delay(owner: str, value: Any) -> float:
    """``delay_ms`` as a float in ``[0, MAX_DELAY_MS]``, or an error that names it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: delay_ms must be a number of milliseconds, got {value!r}")
    if not math.isfinite(value) or not 0 <= value <= MAX_DELAY_MS:
        raise ValueError(f"{owner}: delay_ms must be between 0 and {MAX_DELAY_MS:g} ms (one way), got {value!r}")
    return float(value)


def check_host(owner: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{owner}: {name} must be a host name or address (a non-empty string), got {value!r}")
    return value


class DelayProxy:
    """``with DelayProxy("127.0.0.1", 5432, delay_ms=10) as proxy:`` connect to ``proxy.port`` instead."""

    def __init__(self, target_host: str, target_port: int, delay_ms: float, *, emulate_handshake: bool = True,
                 listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        owner = type(self).__name__
        self.target_host = check_host(owner, "target_host", target_host)
        self.target_port = check_int(owner, "target_port", target_port, 1, 65535)
        self.delay_ms = check_delay(owner, delay_ms)
        if not isinstance(emulate_handshake, bool):
            raise TypeError(f"{owner}: emulate_handshake must be True or False, got {emulate_handshake!r}")
        self.emulate_handshake = emulate_handshake
        self.listen_host = check_host(owner, "listen_host", listen_host)
        self._listen_port = check_int(owner, "listen_port", listen_port, 0, 65535)
        self.port: int | None = None
        self.connections = 0  # client connections accepted so far
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        state = f"port={self.port}" if self.port else "stopped"
        return (f"DelayProxy({self.target_host}:{self.target_port}, delay_ms={self.delay_ms:g}, {state})")

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to connect to; only valid while started."""
        if self.port is None:
            raise RuntimeError("the proxy is not running: call start() or use it as a context manager")
        return self.listen_host, self.port

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> DelayProxy:
        """Start listening in a background thread; returns once the port is bound."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name=f"DelayProxy-{self.delay_ms:g}ms", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"DelayProxy did not start within {START_TIMEOUT_S:.0f} s")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT_S)
            self._thread = None
            raise RuntimeError(f"DelayProxy could not listen on {self.listen_host}:{self._listen_port}: "
                               f"{self._error}") from self._error
        return self

    def close(self) -> None:
        """Stop accepting, cancel every pump, close every socket, join the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if thread is None or loop is None:
            return
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                future.result(STOP_TIMEOUT_S)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)
        self._thread = None
        self.port = None

    stop = close

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the event loop's side
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, self.listen_host, self._listen_port))
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def _track(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        # asyncio reports a connection callback that ends in CancelledError as an error ("Exception in
        # callback"), so a close() that cancels a live connection would print a traceback: end quietly.
        try:
            await self._serve_client(client_reader, client_writer)
        except asyncio.CancelledError:
            pass

    def _observer(self, number: int) -> Observer | None:
        """The observer for connection ``number`` (1, 2, ...): none for a plain DelayProxy."""
        return None

    def _connection_ended(self, number: int) -> None:
        """Connection ``number`` is torn down (both sockets closed)."""

    async def _serve_client(self, client_reader: asyncio.StreamReader,
                            client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        self._writers.add(client_writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.close()
            self._writers.discard(client_writer)
            return
        self._writers.add(server_writer)
        delay = self.delay_ms / 1000.0
        # A real client cannot send before the TCP handshake (one round trip) is over.
        first_send = accepted + 3 * delay if self.emulate_handshake else 0.0
        observer = self._observer(number)
        pumps = [self._track(self._pump(client_reader, server_writer, delay, first_send,
                                        observer.from_client if observer else None)),
                 self._track(self._pump(server_reader, client_writer, delay, 0.0,
                                        observer.from_server if observer else None))]
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in (client_writer, server_writer):
                writer.close()
                self._writers.discard(writer)
            if observer is not None:
                self._connection_ended(number)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                    not_before: float, observe: Any = None) -> None:
        """Copy reader -> writer, each chunk leaving ``delay`` s after it arrived, in arrival order;
        ``observe`` (if any) sees each chunk, unchanged, as it is queued."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read_side() -> None:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except (ConnectionError, OSError):
                    data = b""
                await queue.put((max(loop.time() + delay, not_before), data))
                if observe is not None:
                    try:
                        observe(data)
                    except Exception:  # an observer's fault must never stop the bytes
                        pass
                if not data:
                    return

        reading = self._track(read_side())
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof() and not writer.is_closing():
                        try:
                            writer.write_eof()
                        except (ConnectionError, OSError):
                            pass
                    return
                writer.write(data)
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    return
        finally:
            reading.cancel()
