"""The outside check: Wireshark's pgsql dissector (tshark) decodes a loopback capture of the same traffic
the WireTap recorded, and the two message lists agree message by message (names and lengths).

Skipped where tshark is absent or may not capture (``.ci/run`` installs it; CI runs as root).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import psycopg2
import pytest

from pgfactory_kit.measuring.wiretap import WireTap

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (Debian package: tshark)")
WAIT_S = 30.0

# tshark's pgsql.type text -> the PostgreSQL docs' message name (Authentication by pgsql.authtype).
TSHARK_NAMES = {
    "SSL request": "SSLRequest", "Startup message": "StartupMessage", "Cancel request": "CancelRequest",
    "GSS encrypt request": "GSSENCRequest", "SASLInitialResponse message": "SASLInitialResponse",
    "SASLResponse message": "SASLResponse", "Password message": "PasswordMessage", "Simple query": "Query",
    "Parse": "Parse", "Bind": "Bind", "Execute": "Execute", "Describe": "Describe", "Sync": "Sync",
    "Flush": "Flush", "Close": "Close", "Termination": "Terminate", "Parameter status": "ParameterStatus",
    "Backend key data": "BackendKeyData", "Ready for query": "ReadyForQuery", "Row description": "RowDescription",
    "Data row": "DataRow", "Command completion": "CommandComplete", "Error": "ErrorResponse",
    "Notice": "NoticeResponse", "Empty query": "EmptyQueryResponse", "Parse completion": "ParseComplete",
    "Bind completion": "BindComplete", "Close completion": "CloseComplete", "No data": "NoData",
    "Parameter description": "ParameterDescription", "Notification": "NotificationResponse",
}
AUTH_NAMES = {"0": "AuthenticationOk", "3": "AuthenticationCleartextPassword", "5": "AuthenticationMD5Password",
              "10": "AuthenticationSASL", "11": "AuthenticationSASLContinue", "12": "AuthenticationSASLFinal"}
UNTYPED = {"SSLRequest", "StartupMessage", "CancelRequest", "GSSENCRequest"}


class LiveCapture:
    """tshark decoding loopback traffic to ``port`` live, one line per packet (bounded waits)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [TSHARK, "-i", "lo", "-f", f"tcp port {port}", "-l", "-n", "-d", f"tcp.port=={port},pgsql",
             "-T", "fields", "-E", "separator=\t", "-e", "tcp.srcport", "-e", "tcp.len", "-e", "tcp.payload",
             "-e", "pgsql.type", "-e", "pgsql.length", "-e", "pgsql.authtype"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_until_live(self) -> bool:
        """Probe the port with bare TCP connections until tshark reports a packet."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5):
                pass
            time.sleep(0.3)
            if self.lines:
                return True
        return False

    def wait_for(self, text: str) -> bool:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not any(text in line for line in self.lines):
            time.sleep(0.05)
        return any(text in line for line in self.lines)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=WAIT_S)
        self._reader.join(WAIT_S)
        return err or ""


@pytest.fixture
def capture(settings) -> Iterator[LiveCapture]:
    live = LiveCapture(settings.port)
    try:
        if not live.wait_until_live():
            err = live.stop()
            pytest.skip(f"tshark could not capture on the loopback interface here: {err.strip()[-300:]}")
        yield live
    finally:
        if live.proc.poll() is None:
            live.stop()


def tshark_messages(lines: list[str], server_port: int) -> list[tuple[str, str, int]]:
    """(direction, docs name, length field) per pgsql message; the server's one-byte SSL answer too."""
    out = []
    for line in lines:
        fields = (line.split("\t") + [""] * 6)[:6]
        src, tcp_len, payload, types, lengths, auths = fields
        direction = "server" if src == str(server_port) else "client"
        if not types:
            if direction == "server" and tcp_len == "1" and payload in ("4e", "53"):
                out.append((direction, "SSLResponse", 1))
            continue
        auth_codes = iter(auths.split(",")) if auths else iter(())
        for kind, length in zip(types.split(","), lengths.split(","), strict=True):
            if kind == "Authentication request":
                name = AUTH_NAMES.get(next(auth_codes, ""), "Authentication?")
            else:
                name = TSHARK_NAMES.get(kind, f"tshark:{kind}")
            out.append((direction, name, int(length)))
    return out


def test_tshark_decodes_the_same_messages_the_tap_recorded(settings, capture: LiveCapture) -> None:
    with WireTap(settings.host, settings.port) as tap:
        kwargs = settings.with_(host=tap.listen_host, port=tap.port, sslmode="prefer").connect_kwargs()
        conn = psycopg2.connect(**kwargs)
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
            cur.execute("INSERT INTO mytable (name) VALUES (%s)", ("pgfactory-tshark",))
        conn.commit()
        conn.close()
        tap.settle()
        assert capture.wait_for("Termination"), "tshark never saw the Terminate message"
        recorded = tap.messages()
    capture.stop()
    cleanup = psycopg2.connect(**settings.connect_kwargs())
    with cleanup, cleanup.cursor() as cur:
        cur.execute("DELETE FROM mytable WHERE name = %s", ("pgfactory-tshark",))
    cleanup.close()

    ours = [(d, n, length - (0 if n in UNTYPED or n == "SSLResponse" else 1))
            for d, n, length in zip(recorded["direction"], recorded["name"], recorded["length"], strict=True)]
    theirs = tshark_messages(capture.lines, settings.port)
    assert ours == theirs
    names = [n for _, n, _ in ours]
    assert names[:3] == ["SSLRequest", "SSLResponse", "StartupMessage"]
    assert [s for s in recorded[recorded["name"] == "Query"]["summary"]] == [
        "BEGIN", "SELECT 1", "INSERT INTO mytable (name) VALUES ('pgfactory-tshark')", "COMMIT"]
