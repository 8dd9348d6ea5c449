"""DelayProxy: really adds delay, keeps bytes intact and in order, closes cleanly."""
from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

from pgfactory_kit.measuring.proxy import DelayProxy

IO_TIMEOUT_S = 20


class EchoServer:
    """A TCP echo server on 127.0.0.1 (one thread per client), for checking the proxy's bytes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT_S)
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._accepter.join(5)
        self.sock.close()
        for t in self._threads:
            t.join(5)


def _roundtrip(port: int, payload: bytes) -> bytes:
    """Send ``payload`` in pieces through the proxy, half-close, read everything back."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as sock:
        for start in range(0, len(payload), 7919):  # odd-sized writes: many chunks to keep in order
            sock.sendall(payload[start:start + 7919])
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while True:
            data = sock.recv(65536)
            if not data:
                return bytes(received)
            received += data


def test_bytes_pass_intact_and_in_order_both_ways_under_concurrent_connections(echo: EchoServer) -> None:
    payloads = [os.urandom(size) for size in (1, 100, 65536, 300_000, 1_000_000, 12_345, 7, 250_000)]
    with DelayProxy("127.0.0.1", echo.port, delay_ms=1) as proxy:
        with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
            echoed = list(pool.map(lambda p: _roundtrip(proxy.port, p), payloads))
        assert proxy.connections == len(payloads)
    for sent, got in zip(payloads, echoed, strict=True):
        assert got == sent, f"{len(sent)} bytes sent, {len(got)} came back different"


def test_a_round_trip_takes_at_least_twice_the_one_way_delay(echo: EchoServer) -> None:
    with DelayProxy("127.0.0.1", echo.port, delay_ms=20, emulate_handshake=False) as proxy:
        with socket.create_connection(proxy.address, timeout=IO_TIMEOUT_S) as sock:
            for _ in range(3):
                t0 = time.perf_counter()
                sock.sendall(b"ping")
                assert sock.recv(16) == b"ping"
                assert time.perf_counter() - t0 >= 0.040


def test_select_1_through_a_20ms_proxy_takes_at_least_40ms(server) -> None:
    with DelayProxy(server.host, server.port, delay_ms=20) as proxy:
        settings = server.settings().with_(host="127.0.0.1", port=proxy.port)
        t0 = time.perf_counter()
        conn = psycopg2.connect(**settings.connect_kwargs())
        connect_s = time.perf_counter() - t0
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                t0 = time.perf_counter()
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
                assert time.perf_counter() - t0 >= 0.040
        finally:
            conn.close()
    # Handshake + SSL request + startup + SCRAM exchange: several round trips of 40 ms each.
    assert connect_s >= 4 * 0.040


def test_close_cancels_open_connections_and_frees_the_port(echo: EchoServer) -> None:
    proxy = DelayProxy("127.0.0.1", echo.port, delay_ms=5).start()
    port = proxy.port
    client = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
    client.sendall(b"hello")
    assert client.recv(16) == b"hello"
    thread = proxy._thread
    proxy.close()
    assert thread is not None and not thread.is_alive()
    assert client.recv(16) == b""  # the proxy closed its side
    client.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    proxy.close()  # idempotent


def test_a_target_that_refuses_closes_the_client_instead_of_hanging() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with DelayProxy("127.0.0.1", dead_port, delay_ms=0) as proxy:
        with socket.create_connection(proxy.address, timeout=IO_TIMEOUT_S) as sock:
            assert sock.recv(16) == b""


def test_negative_delay_is_rejected() -> None:
    with pytest.raises(ValueError, match="delay_ms"):
        DelayProxy("127.0.0.1", 5432, delay_ms=-1)


def test_close_with_a_live_connection_reports_no_asyncio_error(echo: EchoServer, caplog) -> None:
    """asyncio logs a connection callback that ends cancelled as an error; close() must not cause one."""
    caplog.set_level("DEBUG", logger="asyncio")
    proxy = DelayProxy("127.0.0.1", echo.port, delay_ms=2).start()
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT_S)
    client.sendall(b"ping")
    assert client.recv(16) == b"ping"
    proxy.close()
    client.close()
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelname == "ERROR"]
