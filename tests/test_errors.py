"""Every error a user can reach says what happened, what the kit tried and what to do next,
arrives within a bound (these are "fails within" limits, not speed targets), and never shows
the password."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import psycopg2
import pytest

from pgfactory_kit import make_factory
from pgfactory_kit.cli import main
from pgfactory_kit.errors import BinariesMissingError, KitConnectError, PortInUseError, explain_connect_error
from pgfactory_kit.servers.postgres import LocalServer
from pgfactory_kit.settings import ConnectionSettings

from .conftest import free_port

SECRET = "Pw-DISTINCT-7q3z!"


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail if the block takes longer than ``seconds`` (a generous bound, not a speed target)."""
    start = time.monotonic()
    yield
    elapsed = time.monotonic() - start
    assert elapsed < seconds, f"took {elapsed:.1f} s, expected the error within {seconds} s"


def connect_error(settings: ConnectionSettings, bound: float = 10.0) -> str:
    """The message of the error the kit's factory raises for these settings, checked for the three parts."""
    with within(bound), pytest.raises(KitConnectError) as info:
        make_factory(settings)()
    text = str(info.value)
    assert isinstance(info.value, psycopg2.OperationalError)  # callers can keep catching psycopg2's class
    assert text.startswith(f"could not connect to {settings.masked_dsn()}")  # what happened, where
    assert "What the kit tried: " in text and "What to do: " in text
    assert SECRET not in text and SECRET not in repr(info.value)
    return text


@pytest.fixture
def bad(settings: ConnectionSettings) -> ConnectionSettings:
    """The test server's settings with a distinctive (wrong) password."""
    return settings.with_(password=SECRET)


def test_wrong_password_says_the_password_or_role_was_rejected(bad):
    text = connect_error(bad)
    assert 'password authentication failed for user "myuser"' in text
    assert "as role 'myuser' with a password, database 'mydatabase'" in text
    assert "PGPASSWORD" in text and "kit.env" in text


def test_unknown_role_says_the_role_may_not_exist(bad):
    text = connect_error(bad.with_(user="nosuchrole"))
    # Over scram-sha-256 the server does not reveal whether the role exists; the advice covers both.
    assert "nosuchrole" in text and "or that role does not exist" in text


def test_a_server_that_names_the_missing_role_gets_role_advice():
    settings = ConnectionSettings(user="ghost", password=SECRET)
    raw = psycopg2.OperationalError(f'connection to server failed: FATAL:  role "ghost" does not exist ({SECRET})')
    text = str(explain_connect_error(raw, settings))
    assert "role 'ghost' does not exist on this server" in text and SECRET not in text


def test_unknown_database_names_it_and_says_how_to_pick_another(settings):
    text = connect_error(settings.with_(dbname="no_such_db", password=settings.password))
    assert 'database "no_such_db" does not exist' in text and "PGDATABASE" in text


def test_closed_port_fails_fast_with_connection_refused(settings):
    port = free_port()
    text = connect_error(settings.with_(port=port, password=SECRET), bound=5.0)
    assert "Connection refused" in text and f"nothing is listening on 127.0.0.1:{port}" in text
    assert "pgfactory-kit up" in text and f"TCP to 127.0.0.1:{port}" in text


@contextlib.contextmanager
def listener(reply: bytes | None) -> Iterator[int]:
    """A TCP listener on 127.0.0.1: ``reply=None`` accepts and never answers; else sends ``reply``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            accepted.append(conn)
            if reply is not None:
                with contextlib.suppress(OSError):
                    conn.recv(1024)
                    conn.sendall(reply)
                    conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        sock.close()


def test_silent_server_respects_connect_timeout(settings):
    with listener(reply=None) as port:
        text = connect_error(settings.with_(port=port, password=SECRET, connect_timeout=2), bound=10.0)
    assert "timeout expired" in text and "connect_timeout=2" in text
    assert "did not answer within connect_timeout=2s" in text


def test_something_that_is_not_postgresql_on_the_port_is_named(settings):
    with listener(reply=b"HTTP/1.0 400 Bad Request\r\n\r\n") as port:
        text = connect_error(settings.with_(port=port, password=SECRET, connect_timeout=2), bound=10.0)
    assert "not PostgreSQL" in text and f"127.0.0.1:{port}" in text


def test_malformed_dsn_on_the_command_line_is_explained_without_the_password(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("PGFACTORY_HOME", str(tmp_path))
    dsn = f"postgresql://admin:{SECRET}@127.0.0.1:notaport/postgres"
    with within(10), pytest.raises(SystemExit) as refused:  # refused while parsing (issue #17)
        main(["provision", "--check", "--dsn", dsn])
    out = capfd.readouterr()
    assert refused.value.code == 2
    assert "--dsn" in out.err and "malformed DSN URL" in out.err
    assert "postgresql://user:password@host:port/dbname" in out.err
    assert SECRET not in out.out + out.err


def test_port_taken_says_which_port_and_how_to_pick_another(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        srv = LocalServer(data_dir=tmp_path / "data", port=port, password=SECRET)
        try:
            with within(120), pytest.raises(PortInUseError) as info:
                srv.start()
        finally:
            srv.destroy()
    text = str(info.value)
    assert f"port {port} on 127.0.0.1 is already in use" in text
    assert f"the kit tried 127.0.0.1:{port}" in text and "--port" in text and "PGFACTORY_PORT" in text
    assert SECRET not in text


def test_missing_binaries_say_what_was_tried_and_how_to_install(tmp_path):
    with within(10), pytest.raises(BinariesMissingError) as info:
        LocalServer(data_dir=tmp_path / "data", port=free_port(), bin_dir=tmp_path, password=SECRET).start()
    text = str(info.value)
    assert "PostgreSQL server binaries not found" in text and f"Tried: {tmp_path}" in text
    assert "pip install" in text and "PGFACTORY_BIN_DIR" in text and SECRET not in text


def test_pool_exhausted_names_the_pool_its_size_and_the_wait(settings):
    pool_module = pytest.importorskip("pgfactory_kit.pooling.pool")
    factory = make_factory(settings)
    with pool_module.ConnectionPool(factory, min_size=1, max_size=2, timeout=30.0, name="errors-test") as pool:
        held = [pool.getconn(), pool.getconn()]
        try:
            with within(10), pytest.raises(pool_module.PoolTimeout) as info:
                pool.getconn(timeout=1.0)
        finally:
            for conn in held:
                pool.putconn(conn)
    text = str(info.value)
    assert isinstance(info.value, psycopg2.OperationalError)
    assert "'errors-test'" in text and "max_size 2" in text and "timeout 1.0 s" in text
    assert "What to do" in text and "max_size" in text and settings.password not in text


def test_pool_closed_says_it_is_closed_and_what_to_do(settings):
    pool_module = pytest.importorskip("pgfactory_kit.pooling.pool")
    pool = pool_module.ConnectionPool(make_factory(settings.with_(password=settings.password)),
                                      min_size=1, max_size=2, name="closed-test")
    pool.close()
    with within(10), pytest.raises(pool_module.PoolClosed) as info:
        pool.getconn()
    text = str(info.value)
    assert isinstance(info.value, psycopg2.OperationalError)
    assert "'closed-test'" in text and "closed" in text and "What to do" in text


def test_pool_whose_factory_cannot_connect_explains_why_without_the_password(bad):
    pool_module = pytest.importorskip("pgfactory_kit.pooling.pool")
    with within(20), pytest.raises(psycopg2.OperationalError) as info:
        pool_module.ConnectionPool(make_factory(bad), min_size=1, max_size=2, timeout=2.0, name="badpw")
    text = str(info.value)
    assert "password authentication failed" in text and "What to do" in text and SECRET not in text


def test_a_very_short_password_does_not_garble_the_explanation(settings):
    text = connect_error(settings.with_(port=free_port(), password="e"), bound=5.0)
    assert "Connection refused" in text and "nothing is listening" in text


def test_missing_unix_socket_says_start_the_server_or_use_tcp(settings, tmp_path):
    text = connect_error(settings.with_(host=str(tmp_path / "no-socket-here"), password=SECRET), bound=5.0)
    assert "No such file or directory" in text and "the Unix socket in" in text
    assert "pgfactory-kit up" in text and "host=127.0.0.1" in text


def test_a_full_server_says_max_connections_and_how_to_use_fewer(tmp_path):
    """A room that exhausts max_connections: the next learner is told why, not just 'FATAL'."""
    srv = LocalServer(data_dir=tmp_path / "data", port=free_port(), password=SECRET, max_connections=5)
    held = []
    try:
        settings = srv.start()  # 5 - 3 superuser-reserved = 2 slots for the lesson role
        held = [make_factory(settings)() for _ in range(2)]
        text = connect_error(settings, bound=10.0)
        assert "remaining connection slots are reserved" in text
        assert "max_connections" in text and "max_size" in text and "PgBouncer" in text
    finally:
        for conn in held:
            conn.close()
        srv.destroy()
