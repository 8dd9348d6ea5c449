"""LocalServer: the kit's own PostgreSQL — idempotent start, stop, restart, crash recovery, errors."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg2
import pytest

from pgfactory_kit.errors import BinariesMissingError, PortInUseError
from pgfactory_kit.servers.postgres import LocalServer

from .conftest import ROOT, free_port, started_server


def query(settings, sql: str, params=None):
    conn = psycopg2.connect(**settings.connect_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture
def own_server(tmp_path):
    """A server just for this test, destroyed afterwards."""
    srv = LocalServer(data_dir=tmp_path / "data", port=free_port())
    try:
        yield srv
    finally:
        srv.destroy()


def test_listens_on_loopback_tcp_with_scram_sha_256(server, admin_conn):
    with admin_conn.cursor() as cur:
        cur.execute("SHOW listen_addresses")
        assert cur.fetchone()[0] == "127.0.0.1"
        cur.execute("SHOW password_encryption")
        assert cur.fetchone()[0] == "scram-sha-256"
        cur.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid WHERE rolname = 'myuser'")
        assert cur.fetchone()[0] is True
        cur.execute("SELECT client_addr::text FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        assert cur.fetchone()[0].startswith("127.0.0.1")


def test_pg_hba_asks_every_role_for_a_scram_password(server):
    hba = (server._real_data_dir() / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert rules == [["local", "all", "all", "scram-sha-256"], ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"]]
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(**server.settings().with_(password="wrong").connect_kwargs())


def test_lesson_objects_exist_and_are_seeded(settings):
    assert query(settings, "SELECT count(*) FROM mytable")[0][0] >= 5
    cols = query(settings, "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                           "WHERE table_name = 'mytable' ORDER BY ordinal_position")
    assert cols == [("id", "integer", "NO"), ("name", "text", "NO")]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """A server made for comparing authentication methods (what the measurements start privately)."""
    with started_server(tmp_path_factory, "cmp", compare_auth=True) as srv:
        yield srv


@pytest.mark.parametrize("method", ["scram-sha-256", "md5", "trust"])
def test_auth_method_roles_log_in_with_their_method_on_a_comparison_server(comparison, method):
    assert query(comparison.auth_settings(method), "SELECT count(*) >= 0 FROM mytable") == [(True,)]


def test_the_default_server_has_no_md5_or_trust_login(server):
    for method in ("md5", "trust"):
        with pytest.raises(ValueError, match="scram-sha-256 only"):
            server.auth_settings(method)


def test_unix_socket_transport_works(server):
    assert query(server.socket_settings(), "SELECT inet_server_addr() IS NULL") == [(True,)]


def test_start_twice_is_idempotent_and_keeps_the_same_postmaster(server):
    pid = server.status().pid
    server.start()
    assert server.status().pid == pid


def test_stop_then_start_and_restart(own_server):
    own_server.start()
    assert own_server.status().running
    own_server.stop()
    assert not own_server.status().running
    own_server.stop()  # idempotent
    settings = own_server.start()
    assert query(settings, "SELECT 1") == [(1,)]
    first = own_server.status().pid
    own_server.restart()
    assert own_server.status().pid != first and own_server.status().running


def test_kill_9_of_the_postmaster_then_start_recovers(own_server):
    settings = own_server.start()
    held = psycopg2.connect(**settings.connect_kwargs())  # leaves an orphaned backend behind
    psutil.Process(own_server.status().pid).kill()  # kill -9 (TerminateProcess on Windows)
    deadline = time.monotonic() + 10
    while own_server.status().running and time.monotonic() < deadline:
        time.sleep(0.05)
    own_server.start()
    assert query(settings, "SELECT count(*) FROM mytable")[0][0] >= 5
    held.close()


def test_port_in_use_gives_a_clear_error(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        srv = LocalServer(data_dir=tmp_path / "data", port=port)
        try:
            with pytest.raises(PortInUseError) as info:
                srv.start()
            assert f"port {port}" in str(info.value) and "--port" in str(info.value)
        finally:
            srv.destroy()


def test_missing_binaries_error_says_how_to_install(tmp_path):
    with pytest.raises(BinariesMissingError, match="pip install"):
        LocalServer(data_dir=tmp_path / "data", port=free_port(), bin_dir=tmp_path).start()


def test_cli_up_status_env_down(tmp_path):
    port = str(free_port())
    data = str(tmp_path / "data")
    env = dict(os.environ, PGFACTORY_HOME=str(tmp_path))
    run = lambda *a: subprocess.run([sys.executable, "-m", "pgfactory_kit.cli", *a, "--data-dir", data,  # noqa: E731
                                     "--port", port], capture_output=True, text=True, env=env, timeout=120)
    try:
        up = run("up")
        assert up.returncode == 0, up.stderr
        assert f"postgresql://myuser:****@127.0.0.1:{port}/mydatabase" in up.stdout
        assert "mypassword" not in up.stdout + up.stderr
        status = run("status")
        assert status.returncode == 0 and "running" in status.stdout
        env_out = run("env")
        assert f"export PGPORT={port}" in env_out.stdout and "mypassword" not in env_out.stdout
        assert "PGPASSFILE" in env_out.stdout
        down = run("down")
        assert down.returncode == 0
        assert run("status").returncode == 3
    finally:
        LocalServer(data_dir=data, port=int(port)).destroy()


@pytest.mark.parametrize("command", ["up", "down", "status", "env", "restart"])
def test_cli_help_for_each_command(command):
    out = subprocess.run([sys.executable, "-m", "pgfactory_kit.cli", command, "--help"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and "usage: pgfactory-kit " + command in out.stdout


def test_without_a_port_argument_status_finds_the_port_it_was_started_on(server, monkeypatch):
    monkeypatch.delenv("PGFACTORY_PORT", raising=False)
    again = LocalServer(data_dir=server.data_dir)
    assert again.port == server.port
    assert again.status().running


def test_start_again_keeps_stored_password_verifiers(comparison):
    """A running PgBouncer holds copies of the verifiers: repeated starts must not re-salt them."""
    def verifiers():
        return query(comparison.admin_settings(), "SELECT rolname, rolpassword FROM pg_authid "
                     "WHERE rolname = ANY(%s) ORDER BY 1", (["myuser", "auth_scram", "auth_md5"],))
    before = verifiers()
    comparison.start()
    assert verifiers() == before
    assert dict(before)["auth_md5"].startswith("md5")


def _normal_user_python() -> str | None:
    """A system Python of the same version a normal user may run, or None."""
    import shutil as _shutil
    candidate = _shutil.which("python3", path="/usr/bin:/bin")
    if candidate is None:
        return None
    out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                         text=True, check=False).stdout.strip()
    return candidate if out == str(tuple(sys.version_info[:2])) else None


@pytest.fixture
def nobody_home():
    """A folder `nobody` owns and can reach (pytest's tmp_path is root's, mode 0700)."""
    import shutil as _shutil
    import tempfile as _tempfile
    home = Path(_tempfile.mkdtemp(prefix="pgfactory-nobody-", dir="/tmp"))
    os.chown(home, 65534, 65534)
    try:
        yield home
    finally:
        _shutil.rmtree(home, ignore_errors=True)


def test_works_as_a_normal_user(nobody_home):
    """As root the kit runs PostgreSQL as a service user; as anyone else it runs it as that user.
    Run the kit as `nobody` to cover the second path too."""
    import site
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("already a normal user: the whole suite covers this path")
    python = _normal_user_python()
    if python is None:
        pytest.skip("no system python3 of this version for a normal user")
    site_packages = site.getsitepackages()[0]
    as_nobody = {"user": 65534, "group": 65534, "extra_groups": [], "cwd": "/"}
    source = ROOT / "pgfactory_kit" / "servers" / "postgres.py"
    probe = subprocess.run(["test", "-r", str(source), "-a", "-r", site_packages], check=False, **as_nobody)
    if probe.returncode != 0:
        pytest.skip("the project or its packages are not readable by `nobody` here")
    home = nobody_home
    script = (
        "import os, psycopg2\n"
        "from pgfactory_kit.servers.postgres import LocalServer\n"
        f"s = LocalServer(data_dir={str(home / 'data')!r}, port={free_port()})\n"
        "settings = s.start()\n"
        "conn = psycopg2.connect(**settings.connect_kwargs())\n"
        "cur = conn.cursor(); cur.execute('SELECT current_user, count(*) > 0 FROM mytable')\n"
        "print(os.geteuid(), cur.fetchone(), s.status().running, os.stat(s.data_dir).st_uid == os.geteuid())\n"
        "conn.close(); s.destroy()\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": f"{ROOT}:{site_packages}", "LC_ALL": "C"}
    result = subprocess.run([python, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                            check=False, **as_nobody)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "65534 ('myuser', True) True True"
    assert not (home / "data").exists()
