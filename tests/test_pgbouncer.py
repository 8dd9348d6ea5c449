"""LocalPgBouncer: a real PgBouncer, started by the kit in front of the test server.

Skipped (with the reason) when no pgbouncer binary is installed, except the tests of that very case.
Speed is not asserted here: benchmarks/bench_pgbouncer.py measures connect-per-query through
PgBouncer against direct connections and records the ratio in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg2
import pytest

from pgfactory_kit.cli import main
from pgfactory_kit.servers import pgbouncer as pgb
from pgfactory_kit.servers.daemon import pid_alive, port_free
from pgfactory_kit.servers.pgbouncer import LocalPgBouncer, PgBouncerMissingError, find_pgbouncer, scram_verifier
from pgfactory_kit.servers.postgres import LocalServer

from .conftest import free_port

needs_pgbouncer = pytest.mark.skipif(
    find_pgbouncer() is None,
    reason="PgBouncer is not installed (apt-get install pgbouncer, or conda install -c conda-forge pgbouncer)")
CLIENTS = 20
POOL_SIZE = 4


@pytest.fixture(scope="module")
def bouncer(server: LocalServer):
    """A PgBouncer in front of the session's server, on a free port, with a small pool."""
    if find_pgbouncer() is None:
        pytest.skip("PgBouncer is not installed")
    LocalPgBouncer(server).stop()  # one left by an earlier test for the same session server
    bouncer = LocalPgBouncer(server, port=free_port(), pool_size=POOL_SIZE)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.destroy()


def connect(settings, **extra):
    return psycopg2.connect(**settings.connect_kwargs(), **extra)


def scram_required() -> dict:
    """libpq >= 16 can insist on SCRAM: the connection fails if the server asks for anything else."""
    return {"require_auth": "scram-sha-256"} if psycopg2.__libpq_version__ >= 160000 else {}


@needs_pgbouncer
def test_queries_go_through_pgbouncer_with_scram(bouncer, server):
    conn = connect(bouncer.settings(), **scram_required())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT current_user, current_database(), count(*) FROM mytable")
            user, db, rows = cur.fetchone()
            cur.execute("SELECT client_addr::text, client_port FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            _, client_port = cur.fetchone()
    finally:
        conn.close()
    assert (user, db) == ("myuser", "mydatabase") and rows >= 5
    # The backend's client is PgBouncer's server connection, not us.
    ports = {row["local_port"] for row in bouncer.show("servers")}
    assert client_port in ports
    assert bouncer.settings().port == bouncer.port != server.port


@needs_pgbouncer
def test_pgbouncer_rejects_a_wrong_password(bouncer):
    with pytest.raises(psycopg2.OperationalError, match="(?i)authentication failed"):
        connect(bouncer.settings().with_(password="not-the-password"))


@needs_pgbouncer
def test_superusers_cannot_log_in_through_pgbouncer(bouncer, server):
    with pytest.raises(psycopg2.OperationalError):
        connect(server.admin_settings().with_(port=bouncer.port))


@needs_pgbouncer
def test_many_clients_share_few_server_connections(bouncer, admin_conn):
    """20 clients, connected at the same time, each running a transaction, get at most POOL_SIZE
    server backends (SHOW POOLS / SHOW SERVERS on PgBouncer, pg_stat_activity on the server)."""
    tag = f"pgb_many_{os.getpid()}"
    settings = bouncer.settings().with_(application_name=tag)
    barrier = threading.Barrier(CLIENTS + 1, timeout=30)
    backend_pids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        conn = None
        try:
            conn = connect(settings)
            with conn, conn.cursor() as cur:  # one transaction
                cur.execute("SELECT pg_backend_pid(), pg_sleep(0.05)")
                pid = cur.fetchone()[0]
            with lock:
                backend_pids.append(pid)
            barrier.wait()  # everyone is connected and done: the main thread looks now
            barrier.wait()  # ... and lets us go
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            barrier.abort()
        finally:
            if conn is not None:
                conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
        pools = [p for p in bouncer.show("pools") if p["database"] == "mydatabase" and p["user"] == "myuser"]
        servers = [s for s in bouncer.show("servers") if s["database"] == "mydatabase"]
        clients = [c for c in bouncer.show("clients") if c["application_name"] == tag]
        server_ports = [s["local_port"] for s in servers]
        with admin_conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'myuser' AND client_port = ANY(%s)",
                        (server_ports,))
            backends_from_pgbouncer = cur.fetchone()[0]
    finally:
        if not barrier.broken:
            barrier.wait()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    assert len(backend_pids) == CLIENTS
    assert len(clients) == CLIENTS, "all clients were connected to PgBouncer at once"
    assert pools and pools[0]["pool_mode"] == "transaction"
    # cl_active/cl_waiting (and cl_idle in newer releases): every client PgBouncer holds for this pool
    assert sum(v for k, v in pools[0].items() if k.startswith("cl_") and "cancel" not in k) >= CLIENTS
    assert 1 <= len(servers) <= POOL_SIZE
    assert len(set(backend_pids)) <= POOL_SIZE < CLIENTS
    assert backends_from_pgbouncer == len(servers), "the server sees only PgBouncer's few connections"


@needs_pgbouncer
def test_start_again_is_idempotent_and_keeps_the_same_process(bouncer):
    before = bouncer.status()
    assert bouncer.start() == bouncer.settings()
    after = bouncer.status()
    assert before.running and after.running and before.pid == after.pid


@needs_pgbouncer
def test_a_second_instance_finds_the_running_one_and_refuses_to_move_it(bouncer, server, monkeypatch):
    monkeypatch.delenv(pgb.PORT_ENV, raising=False)
    again = LocalPgBouncer(server)  # no port given: the one that runs
    assert again.port == bouncer.port and again.status().pid == bouncer.status().pid
    with pytest.raises(pgb.PgBouncerError, match=f"already runs for this server on port {bouncer.port}"):
        LocalPgBouncer(server, port=free_port()).start()
    assert bouncer.status().running


@needs_pgbouncer
def test_files_live_under_the_servers_state_dir(bouncer, server):
    assert bouncer.dir == server.state_dir / "pgbouncer"
    real = bouncer.dir.resolve()
    if bouncer.dir.is_symlink():  # relocated for the service user: inside the cluster, so destroy() takes it
        assert server.data_dir.is_symlink() and real.parent == server.data_dir.resolve()
    for name in ("pgbouncer.ini", "userlist.txt", "pgbouncer.log", "pgbouncer.pid"):
        assert (real / name).is_file(), name
    ini = (real / "pgbouncer.ini").read_text()
    assert "auth_type = scram-sha-256" in ini and "pool_mode = transaction" in ini
    assert f"listen_addr = 127.0.0.1\nlisten_port = {bouncer.port}" in ini
    assert oct((real / "userlist.txt").stat().st_mode & 0o777) == "0o600"


@needs_pgbouncer
def test_auth_file_holds_scram_verifiers_never_a_password(bouncer, server):
    userlist = (bouncer.dir.resolve() / "userlist.txt").read_text()
    assert server.password not in userlist
    entries = dict(line.split(" ", 1) for line in userlist.splitlines())
    assert entries['"myuser"'].startswith('"SCRAM-SHA-256$')
    assert '"pgfactory_admin"' not in entries, "superusers stay out of PgBouncer"


@needs_pgbouncer
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root needs the service user")
def test_as_root_pgbouncer_runs_as_the_service_user(bouncer):
    status = Path(f"/proc/{bouncer.status().pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert uid != 0
    import pwd
    assert pwd.getpwuid(uid).pw_name == pgb.current_runas().name


@needs_pgbouncer
def test_describe_and_repr_never_show_the_password(bouncer, server):
    text = bouncer.describe() + repr(bouncer) + repr(bouncer.settings()) + bouncer.settings().masked_dsn()
    assert server.password not in text
    assert "running" in bouncer.describe() and str(bouncer.port) in bouncer.describe()


@needs_pgbouncer
def test_port_taken_by_another_program_is_a_clear_error(server):
    import socket
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        other = LocalPgBouncer(server, port=port)
        other.dir = server.state_dir / "pgbouncer-squatted"  # keep the module's PgBouncer out of it
        try:
            with pytest.raises(pgb.PgBouncerError, match=f"port {port}.*already in use.*PGFACTORY_PGBOUNCER_PORT"):
                other.start()
        finally:
            other.destroy()


@needs_pgbouncer
def test_stop_ends_the_process_and_destroy_removes_every_file(server):
    other = LocalPgBouncer(server, port=free_port())
    other.dir = server.state_dir / "pgbouncer-destroyed"
    other.start()
    pid, real = other.status().pid, other.dir.resolve()
    other.stop()
    assert not pid_alive(pid) and port_free("127.0.0.1", other.port)
    assert "stopped" in other.describe()
    other.stop()  # idempotent
    other.destroy()
    assert not other.dir.exists() and not other.dir.is_symlink() and not real.exists()


def test_missing_pgbouncer_says_what_to_install(monkeypatch, tmp_path, server):
    monkeypatch.delenv(pgb.BINARY_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pgb, "SYSTEM_DIRS", (str(tmp_path),))
    monkeypatch.setattr(pgb.sys, "executable", str(tmp_path / "python"))
    assert find_pgbouncer() is None
    bouncer = LocalPgBouncer(server, port=free_port())
    with pytest.raises(PgBouncerMissingError, match="apt-get install pgbouncer") as info:
        bouncer.start()
    assert "conda install -c conda-forge pgbouncer" in str(info.value)
    assert "not installed" in bouncer.describe()


def test_find_pgbouncer_looks_in_usr_sbin_even_when_it_is_not_on_path(monkeypatch, tmp_path):
    """Debian installs /usr/sbin/pgbouncer; a normal user's PATH often lacks /usr/sbin."""
    fake_sbin = tmp_path / "sbin"
    fake_sbin.mkdir()
    binary = fake_sbin / "pgbouncer"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.delenv(pgb.BINARY_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(pgb.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(pgb, "SYSTEM_DIRS", (str(fake_sbin),))
    assert find_pgbouncer() == str(binary)


def test_scram_verifier_matches_postgresql(admin_conn):
    """The console user's verifier is computed by the kit: it must be what PostgreSQL would store."""
    with admin_conn.cursor() as cur:
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'myuser'")
        stored = cur.fetchone()[0]
    iterations, salt_b64 = stored.split("$")[1].split(":")
    import base64
    ours = scram_verifier("mypassword", salt=base64.b64decode(salt_b64), iterations=int(iterations))
    assert ours == stored


@needs_pgbouncer
def test_cli_up_pgbouncer_status_and_down(tmp_path, monkeypatch, capsys):
    """`pgfactory-kit up --pgbouncer` starts both, `status` shows both, `down` stops both."""
    monkeypatch.setenv("PGFACTORY_HOME", str(tmp_path))
    monkeypatch.setenv(pgb.PORT_ENV, str(free_port()))
    data_dir = tmp_path / ".pgfactory" / "data"
    args = ["--data-dir", str(data_dir), "--port", str(free_port())]
    try:
        assert main(["up", *args, "--pgbouncer"]) == 0
        out = capsys.readouterr().out
        assert "PgBouncer is up" in out and "transaction pooling" in out
        assert main(["status", *args]) == 0
        out = capsys.readouterr().out
        assert "server:   running" in out and "pgbouncer: running" in out
        assert main(["down", *args]) == 0
        out = capsys.readouterr().out
        assert "PgBouncer stopped." in out and "PostgreSQL stopped." in out
        assert main(["status", *args]) == 3
        assert "pgbouncer: stopped" in capsys.readouterr().out
    finally:
        server = LocalServer(data_dir=data_dir, port=int(args[-1]))
        LocalPgBouncer(server).destroy()
        server.destroy()


def test_session_settings_through_pgbouncer_get_an_explained_error(bouncer):
    """PgBouncer rejects libpq `options`; the kit says why and what to do instead."""
    from pgfactory_kit import make_factory

    with pytest.raises(psycopg2.OperationalError) as info:
        make_factory(bouncer.settings(), session={"statement_timeout": "5s"})()
    assert "SET LOCAL" in str(info.value)
