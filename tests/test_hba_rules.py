"""No one gets in without a password: the kit's server has scram-sha-256 rules only (issue #18).

The comparison of authentication methods runs on a private, throw-away server; a data directory left
with the old trust/md5 rules is fixed by ``up``; ``provision`` refuses a server that lets a login role in
without a password.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

import psycopg2
import pytest

from pgfactory_kit import ConnectionSettings, LocalServer
from pgfactory_kit.cli import main
from pgfactory_kit.errors import ProvisionError
from pgfactory_kit.measuring import runner as bench
from pgfactory_kit.servers.provision import check, provision

from .conftest import started_server

# What an earlier version of the kit wrote into pg_hba.conf (and the roles it created).
OLD_RULES = """\
# Written by pgfactory-kit. Passwords everywhere (scram-sha-256) except the roles that
# exist only to measure other authentication methods.
local   all       auth_trust                 trust
local   all       auth_md5                   md5
local   all       all                        scram-sha-256
host    all       auth_trust  127.0.0.1/32   trust
host    all       auth_md5    127.0.0.1/32   md5
host    all       all         127.0.0.1/32   scram-sha-256
"""


def fetch(settings: ConnectionSettings, query: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(**settings.connect_kwargs())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def weak_rules(server: LocalServer) -> list[tuple]:
    """The live pg_hba.conf's trust/md5 rules, as the server itself parses them."""
    return fetch(server.admin_settings(), "SELECT line_number, type, user_name, auth_method "
                                          "FROM pg_hba_file_rules WHERE auth_method IN ('trust', 'md5')")


def login_roles(server: LocalServer) -> list[str]:
    return [name for (name,) in fetch(server.admin_settings(),
                                      "SELECT rolname FROM pg_roles WHERE rolcanlogin ORDER BY 1")]


@pytest.fixture
def no_password_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """libpq must find no password anywhere: no PGPASSWORD, a pgpass file that does not exist."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))


def passwordless_login_fails(server: LocalServer, role: str) -> bool:
    """Whether ``role`` is refused without a password over TCP and over the Unix socket."""
    for host in (server.host, server.socket_settings().host):
        settings = ConnectionSettings(host=host, port=server.port, dbname="postgres", user=role,
                                      connect_timeout=5)
        try:
            psycopg2.connect(**settings.connect_kwargs()).close()
        except psycopg2.OperationalError as exc:
            assert "password" in str(exc), str(exc)
            continue
        return False
    return True


def rewrite_with_old_rules(server: LocalServer) -> None:
    """Make ``server`` look like one an earlier version set up: the old rules, live, and its roles."""
    admin = server.admin_settings()
    fetch(admin, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auth_trust') "
                 "THEN CREATE ROLE auth_trust LOGIN; END IF; END $$")
    fetch(admin, "ALTER ROLE auth_trust LOGIN PASSWORD NULL")
    (server._real_data_dir() / "pg_hba.conf").write_text(OLD_RULES)
    reload_and_wait(admin)


def reload_and_wait(admin: ConnectionSettings) -> None:
    """pg_reload_conf(), then wait (bounded) until new sessions run with the reloaded configuration."""
    (before,), = fetch(admin, "SELECT pg_conf_load_time()")
    fetch(admin, "SELECT pg_reload_conf()")
    for _ in range(100):
        (now,), = fetch(admin, "SELECT pg_conf_load_time()")
        if now > before:
            return
        time.sleep(0.05)
    raise AssertionError("the server did not reload its configuration")


# ----------------------------------------------------------------------------- the default server
def test_default_server_live_pg_hba_has_no_trust_or_md5_rule(server) -> None:
    assert weak_rules(server) == []
    methods = {method for (method,) in fetch(server.admin_settings(),
                                             "SELECT DISTINCT auth_method FROM pg_hba_file_rules")}
    assert methods == {"scram-sha-256"}
    types = {kind for (kind,) in fetch(server.admin_settings(), "SELECT DISTINCT type FROM pg_hba_file_rules")}
    assert types == {"local", "host"}


def test_default_server_refuses_every_role_without_a_password_over_tcp_and_socket(server,
                                                                                   no_password_source) -> None:
    roles = login_roles(server)
    assert "myuser" in roles
    refused = {role: passwordless_login_fails(server, role) for role in roles + ["auth_trust", "auth_md5"]}
    assert all(refused.values()), refused


# ----------------------------------------------------------------------------- the private comparison
def test_breakdown_measures_trust_md5_and_scram_on_a_private_server_it_removes(server) -> None:
    table = bench.connect_breakdown(server, samples=2)
    assert {"trust (no password)", "md5", "scram-sha-256"} <= set(table["login"])
    medians = table.attrs["medians"]
    assert all(medians[key] > 0 for key in ("trust", "md5", "scram", "unix_trust", "unix_scram"))
    private = table.attrs["private_server"]
    assert private["port"] != server.port
    assert not Path(private["data_dir"]).exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", private["port"])) != 0, "the private server still listens"
    assert weak_rules(server) == []


def test_bench_with_trust_auth_measures_a_private_server_and_leaves_the_default_one_alone(server) -> None:
    result = bench.run_benchmark(server=server, strategies=("reused",), auth="trust", operations=3, warmup=1,
                                 repeats=1, blocks=1, progress=False)
    assert set(result.results["auth"]) == {"trust"}
    assert any("private" in note for note in result.notes)
    assert str(server.port) not in result.machine["target"]
    assert weak_rules(server) == []


# ----------------------------------------------------------------------------- upgrade and refusal
def test_up_brings_a_server_with_the_old_rules_to_scram_only_and_says_so_once(tmp_path_factory, capsys,
                                                                            no_password_source) -> None:
    with started_server(tmp_path_factory, "oldhba") as srv:
        rewrite_with_old_rules(srv)
        assert not passwordless_login_fails(srv, "auth_trust"), "the old rules should let auth_trust in"
        args = ["--data-dir", str(srv.data_dir), "--port", str(srv.port)]
        assert main(["up", *args]) == 0          # the server is running: up must reload its rules
        lines = [line for line in capsys.readouterr().out.splitlines() if "pg_hba.conf" in line]
        assert len(lines) == 1 and "trust" in lines[0] and "scram-sha-256" in lines[0], lines
        assert weak_rules(srv) == []
        assert passwordless_login_fails(srv, "auth_trust")
        assert "auth_trust" not in login_roles(srv)  # the old comparison role cannot log in at all now
        assert main(["up", *args]) == 0          # already upgraded: nothing to say
        assert "pg_hba.conf" not in capsys.readouterr().out
        assert main(["down", *args]) == 0        # a stopped server with the old rules
        (srv._real_data_dir() / "pg_hba.conf").write_text(OLD_RULES)
        assert main(["up", *args]) == 0
        assert sum("pg_hba.conf" in line for line in capsys.readouterr().out.splitlines()) == 1
        assert weak_rules(srv) == []
        assert passwordless_login_fails(srv, "auth_trust")


def test_provision_refuses_a_server_that_lets_a_login_role_in_without_a_password(tmp_path_factory,
                                                                                 tmp_path) -> None:
    with started_server(tmp_path_factory, "weakhba") as srv:
        rewrite_with_old_rules(srv)
        out = tmp_path / "creds.csv"
        with pytest.raises(ProvisionError) as info:
            provision(srv.admin_settings(), 1, "weak", out=out)
        message = str(info.value)
        assert "auth_trust" in message and "trust" in message and "pg_hba.conf" in message
        assert "pgfactory-kit up" in message and "scram-sha-256" in message  # how to fix it
        assert not out.exists()
        assert check(srv.admin_settings(), "weak").learners == []  # nothing was created
