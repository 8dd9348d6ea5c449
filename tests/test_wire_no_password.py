"""A distinctive password never shows up in what the wire tap keeps or shows: the record (even its
internal bytes), the messages table, a repr, a log line, standard output/error, or the diagram."""
from __future__ import annotations

import io
import logging
import socket
import struct
import threading
from collections.abc import Iterator

import matplotlib
import psycopg2
import pytest
from psycopg2 import sql

from pgfactory_kit.measuring.plots import sequence_diagram
from pgfactory_kit.measuring.wiretap import WireTap

matplotlib.use("Agg")

SECRET = "Wiretap-Zebra-7f3e91-Secret"
NEW_SECRET = "Wiretap-Okapi-c0ffee-Secret"
ROLE = "wiretap_secret_role"
IO_TIMEOUT_S = 20


def everything_the_tap_shows(tap: WireTap) -> str:
    messages = tap.messages()
    fig = sequence_diagram({"conversation": messages})
    svg = io.StringIO()
    fig.savefig(svg, format="svg")
    shown = [repr(tap), str(tap), messages.to_string(), messages.to_csv(), repr(tap._records()), repr(tap.operations()),
             svg.getvalue()]
    shown += [frame.detail.decode("latin-1") for _, _, frame in tap._records() if isinstance(frame.detail, bytes)]
    return "\n".join(shown)


def assert_secret_absent(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in (secret, secret.lower(), secret.encode().hex(), secret[: len(secret) // 2 + 2]):
            assert form not in text, f"{form!r} leaked"


class CleartextServer:
    """A fake server that asks for a cleartext password, reads the reply, then refuses the login."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(IO_TIMEOUT_S)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(IO_TIMEOUT_S)
            length = struct.unpack("!I", conn.recv(4))[0]
            conn.recv(length - 4)  # the StartupMessage
            conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
            self.received = conn.recv(4096)
            error = b"SFATAL\x00C28P01\x00Mpassword authentication failed (test)\x00\x00"
            conn.sendall(b"E" + struct.pack("!I", len(error) + 4) + error)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(IO_TIMEOUT_S)


def drop_role(cur) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,))
    if cur.fetchone():
        cur.execute(sql.SQL("REVOKE CONNECT ON DATABASE mydatabase FROM {}").format(sql.Identifier(ROLE)))
        cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(ROLE)))


@pytest.fixture
def secret_role(admin_conn) -> Iterator[str]:
    with admin_conn.cursor() as cur:
        drop_role(cur)
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(ROLE)), (SECRET,))
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE mydatabase TO {}").format(sql.Identifier(ROLE)))
    try:
        yield ROLE
    finally:
        with admin_conn.cursor() as cur:
            drop_role(cur)


def test_a_cleartext_password_reaches_the_server_but_not_the_record(caplog, capfd) -> None:
    caplog.set_level(logging.DEBUG)
    fake = CleartextServer()
    try:
        with WireTap("127.0.0.1", fake.port) as tap:
            with pytest.raises(psycopg2.OperationalError):
                psycopg2.connect(host=tap.listen_host, port=tap.port, user="someone", dbname="db",
                                 password=SECRET, sslmode="disable", connect_timeout=IO_TIMEOUT_S)
            tap.settle(0.05)
            shown = everything_the_tap_shows(tap)
            names = list(tap.messages()["name"])
    finally:
        fake.close()
    assert SECRET.encode() in fake.received  # the bytes went through unchanged...
    assert names[:4] == ["StartupMessage", "AuthenticationCleartextPassword", "PasswordMessage", "ErrorResponse"]
    out, err = capfd.readouterr()
    assert_secret_absent(shown + caplog.text + out + err, SECRET)  # ...and were never kept or shown


def test_scram_login_and_a_password_change_leave_no_trace_of_either_password(settings, secret_role, caplog,
                                                                                capfd) -> None:
    caplog.set_level(logging.DEBUG)
    with WireTap(settings.host, settings.port) as tap:
        through = settings.with_(host=tap.listen_host, port=tap.port, user=secret_role, password=SECRET)
        conn = psycopg2.connect(**through.connect_kwargs())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"ALTER ROLE {secret_role} PASSWORD '{NEW_SECRET}'")
                cur.execute(sql.SQL("ALTER ROLE {} WITH ENCRYPTED PASSWORD %s").format(sql.Identifier(secret_role)),
                            (NEW_SECRET,))
        finally:
            conn.close()
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(**through.with_(password=SECRET).connect_kwargs())  # now the wrong password
        tap.settle()
        shown = everything_the_tap_shows(tap)
        queries = list(tap.messages().query("name == 'Query'")["summary"])
    assert queries == [f"ALTER ROLE {secret_role} PASSWORD '***'", f'ALTER ROLE "{secret_role}" WITH ENCRYPTED '
                                                                      "PASSWORD '***'"]
    out, err = capfd.readouterr()
    assert_secret_absent(shown + caplog.text + out + err, SECRET, NEW_SECRET)
