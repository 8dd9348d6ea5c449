"""Workshop provisioning: learners are isolated from each other, limited, and the runs are idempotent."""
from __future__ import annotations

import csv
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from pgfactory_kit import make_factory
from pgfactory_kit.cli import main
from pgfactory_kit.errors import ProvisionError
from pgfactory_kit.servers.provision import Budget, check, drop, password_matches, provision, scram_verifier
from pgfactory_kit.settings import ConnectionSettings

from .conftest import ROOT

PREFIX = "pvtest"
LIMIT = 3


def connect(settings: ConnectionSettings):
    conn = psycopg2.connect(**settings.connect_kwargs())
    conn.autocommit = True
    return conn


def fetch(settings: ConnectionSettings, query, params=None) -> list[tuple]:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def credentials(path: Path) -> dict[str, ConnectionSettings]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["learner"]: ConnectionSettings.from_dsn(row["dsn"]) for row in csv.DictReader(handle)}


def snapshot(admin: ConnectionSettings, prefix: str) -> list[tuple]:
    """Roles (with their stored verifiers and limits), databases and their ACLs for a prefix."""
    return fetch(admin, "SELECT r.rolname, r.rolpassword, r.rolconnlimit, d.datname, d.datacl::text "
                        "FROM pg_authid r LEFT JOIN pg_database d ON d.datname = r.rolname "
                        "WHERE r.rolname ~ %s ORDER BY 1", (f"^{prefix}[0-9]+$",))


@pytest.fixture(scope="module")
def room(server, tmp_path_factory):
    """Three learners with CONNECTION LIMIT 3, dropped afterwards."""
    out = tmp_path_factory.mktemp("room") / "creds.csv"
    admin = server.admin_settings()
    result = provision(admin, 3, PREFIX, connection_limit=LIMIT, out=out)
    try:
        yield result, admin, credentials(out)
    finally:
        drop(admin, PREFIX, out=out)


def test_each_learner_gets_a_role_a_limited_login_and_their_own_seeded_database(room):
    result, admin, creds = room
    assert [learner.name for learner in result.learners] == ["pvtest1", "pvtest2", "pvtest3"]
    assert {learner.status for learner in result.learners} == {"created"}
    for name, settings in creds.items():
        assert settings.user == name and settings.dbname == name and settings.password
        assert fetch(settings, "SELECT current_user, current_database(), count(*) FROM mytable") == [(name, name, 5)]
        owner, = fetch(settings, "SELECT tableowner FROM pg_tables WHERE tablename = 'mytable'")[0]
        assert owner == name
    flags = fetch(admin, "SELECT bool_or(rolsuper or rolcreatedb or rolcreaterole or rolbypassrls), "
                         "array_agg(DISTINCT rolconnlimit) FROM pg_roles WHERE rolname ~ '^pvtest[0-9]+$'")
    assert flags == [(False, [LIMIT])]


def test_credentials_file_is_owner_only_and_passwords_are_distinct(room):
    result, _admin, creds = room
    mode = stat.S_IMODE(result.credentials_file.stat().st_mode)
    assert mode == 0o600
    assert len({s.password for s in creds.values()}) == 3
    assert all(len(s.password) >= 20 for s in creds.values())


def test_the_server_stores_only_a_scram_verifier_made_by_the_kit(room):
    _result, admin, creds = room
    stored = dict(fetch(admin, "SELECT rolname, rolpassword FROM pg_authid WHERE rolname ~ '^pvtest[0-9]+$'"))
    for name, settings in creds.items():
        assert stored[name].startswith("SCRAM-SHA-256$4096:") and settings.password not in stored[name]
        assert password_matches(settings.password, stored[name])
        assert not password_matches(settings.password + "x", stored[name])


def test_a_learner_cannot_connect_to_another_learners_database(room):
    _result, _admin, creds = room
    intruder = creds["pvtest1"].with_(dbname="pvtest2")
    with pytest.raises(psycopg2.OperationalError) as info:
        make_factory(intruder)()
    text = str(info.value)
    assert "permission denied for database" in text and "CONNECT" in text
    assert "Connect to your own database" in text and creds["pvtest1"].password not in text


def test_a_learner_cannot_read_or_change_another_learners_data_or_the_lesson_table(room):
    _result, admin, creds = room
    # pvtest2 grants nothing, so even a role that could reach the database sees nothing of it;
    # prove it from inside pvtest2's database with the superuser switching to pvtest1.
    conn = connect(admin.with_(dbname="pvtest2"))
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier("pvtest1")))
            for statement in ("SELECT * FROM mytable", "INSERT INTO mytable (name) VALUES ('intruder')",
                              "UPDATE mytable SET name = 'x'", "DELETE FROM mytable"):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(statement)
            cur.execute("RESET ROLE")
    finally:
        conn.close()
    # The lesson database is reachable (PUBLIC may connect) but its table is not the learner's.
    conn = connect(creds["pvtest1"].with_(dbname="mydatabase"))
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT * FROM mytable")
    finally:
        conn.close()


@pytest.mark.parametrize("dbname", ["postgres", "mydatabase"])
def test_a_learner_cannot_create_objects_in_shared_databases(room, dbname):
    _result, admin, creds = room
    conn = connect(creds["pvtest1"].with_(dbname=dbname))
    try:
        with conn.cursor() as cur:
            for statement in ("CREATE TABLE public.mine (x int)", "CREATE SCHEMA mine",
                              "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'"):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(statement)
    finally:
        conn.close()
    privileges = fetch(admin, "SELECT has_database_privilege('pvtest1', %s, 'CREATE')", (dbname,))
    assert privileges == [(False,)]


def test_a_learners_database_grants_connect_create_and_temp_to_nobody_else(room):
    _result, admin, _creds = room
    rows = fetch(admin, "SELECT has_database_privilege(r, 'pvtest1', p) FROM unnest(%s) AS r, "
                        "unnest(ARRAY['CONNECT', 'CREATE', 'TEMPORARY']) AS p", (["pvtest2", "pvtest3", "myuser"],))
    assert rows and not any(allowed for (allowed,) in rows)
    own = fetch(admin, "SELECT has_database_privilege('pvtest1', 'pvtest1', 'CREATE')")
    assert own == [(True,)]


def test_a_learner_cannot_exceed_the_connection_limit_and_is_told_why(room):
    _result, _admin, creds = room
    learner = creds["pvtest3"]
    held = [make_factory(learner)() for _ in range(LIMIT)]
    try:
        with pytest.raises(psycopg2.OperationalError) as info:
            make_factory(learner)()
        text = str(info.value)
        assert "too many connections for role" in text and "CONNECTION LIMIT" in text
        assert "pool" in text and learner.password not in text
    finally:
        for conn in held:
            conn.close()


def test_rerunning_provision_changes_nothing(room, server):
    result, admin, creds = room
    before = snapshot(admin, PREFIX)
    file_before = result.credentials_file.read_bytes()
    again = provision(admin, 3, PREFIX, connection_limit=LIMIT, out=result.credentials_file)
    assert [learner.status for learner in again.learners] == ["exists"] * 3
    assert snapshot(admin, PREFIX) == before
    assert result.credentials_file.read_bytes() == file_before
    assert credentials(result.credentials_file) == creds


def test_rerunning_provision_leaves_the_learners_data_alone(server, tmp_path):
    admin = server.admin_settings()
    out = tmp_path / "creds.csv"
    try:
        provision(admin, 1, "pvkeep", connection_limit=2, out=out)
        learner = credentials(out)["pvkeep1"]
        fetch(learner, "DELETE FROM mytable")
        provision(admin, 1, "pvkeep", connection_limit=2, out=out)
        assert fetch(learner, "SELECT count(*) FROM mytable") == [(0,)]  # not re-seeded
        fetch(learner, "DROP TABLE mytable")
        provision(admin, 1, "pvkeep", connection_limit=2, out=out)
        assert fetch(learner, "SELECT count(*) FROM mytable") == [(5,)]  # a missing table is restored
    finally:
        drop(admin, "pvkeep", out=out)


def test_check_reports_what_exists(room):
    _result, admin, _creds = room
    report = check(admin, PREFIX)
    assert [(s.name, s.connection_limit, s.database_exists, s.table_rows) for s in report.learners] == [
        (f"pvtest{i}", LIMIT, True, 5) for i in (1, 2, 3)]


def test_drop_ends_sessions_and_removes_roles_databases_and_the_file(server, tmp_path):
    admin = server.admin_settings()
    out = tmp_path / "creds.csv"
    provision(admin, 2, "pvdrop", connection_limit=2, out=out)
    session = connect(credentials(out)["pvdrop1"])
    try:
        assert drop(admin, "pvdrop", out=out) == ["pvdrop1", "pvdrop2"]
        with pytest.raises(psycopg2.Error):
            session.cursor().execute("SELECT 1")
    finally:
        session.close()
    assert snapshot(admin, "pvdrop") == []
    assert fetch(admin, "SELECT count(*) FROM pg_database WHERE datname LIKE 'pvdrop%%'") == [(0,)]
    assert not out.exists()
    assert drop(admin, "pvdrop", out=out) == []  # idempotent


def test_drop_leaves_roles_the_kit_did_not_create(server, tmp_path):
    admin = server.admin_settings()
    conn = connect(admin)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE ROLE pvforeign1 LOGIN")
        assert drop(admin, "pvforeign", out=tmp_path / "c.csv") == []
        with pytest.raises(ProvisionError, match="not created by pgfactory-kit"):
            provision(admin, 1, "pvforeign", out=tmp_path / "c.csv")
        assert fetch(admin, "SELECT count(*) FROM pg_roles WHERE rolname = 'pvforeign1'") == [(1,)]
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP ROLE IF EXISTS pvforeign1")
        conn.close()


def test_reset_passwords_changes_them_and_keeps_everything_else(server, tmp_path):
    admin = server.admin_settings()
    out = tmp_path / "creds.csv"
    try:
        provision(admin, 1, "pvreset", connection_limit=2, out=out)
        old = credentials(out)["pvreset1"]
        result = provision(admin, 1, "pvreset", connection_limit=2, out=out, reset_passwords=True)
        new = credentials(out)["pvreset1"]
        assert result.learners[0].status == "password reset" and new.password != old.password
        assert fetch(new, "SELECT count(*) FROM mytable") == [(5,)]
        with pytest.raises(psycopg2.OperationalError):
            make_factory(old)()
    finally:
        drop(admin, "pvreset", out=out)


def test_lost_credentials_file_is_reported_not_invented(server, tmp_path):
    admin = server.admin_settings()
    out = tmp_path / "creds.csv"
    try:
        provision(admin, 1, "pvlost", connection_limit=2, out=out)
        out.unlink()
        result = provision(admin, 1, "pvlost", connection_limit=2, out=out)
        assert result.learners[0].status == "exists, password unknown"
        assert any("--reset-passwords" in w for w in result.warnings)
        assert credentials(out)["pvlost1"].password is None
    finally:
        drop(admin, "pvlost", out=out)


def test_default_limit_is_a_fair_share_of_max_connections():
    budget = Budget(max_connections=100, reserved=3, headroom=5, other_learners=0)
    assert budget.available == 92
    assert budget.default_limit(3) == 15      # capped at the recommended limit
    assert budget.default_limit(10) == 9      # 92 // 10
    with pytest.raises(ProvisionError, match="do not fit") as info:
        budget.default_limit(60)               # 92 // 60 = 1 < 2
    assert "max_connections" in str(info.value) and "fewer learners" in str(info.value)


def test_too_many_connections_for_the_server_are_refused_with_the_arithmetic(server, tmp_path):
    admin = server.admin_settings()
    with pytest.raises(ProvisionError) as info:
        provision(admin, 10, "pvbig", connection_limit=50, out=tmp_path / "c.csv")
    text = str(info.value)
    assert "10 learners x CONNECTION LIMIT 50 = 500" in text and "max_connections 120" in text
    assert "--connection-limit" in text
    assert fetch(admin, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pvbig%%'") == [(0,)]


@pytest.mark.parametrize("prefix", ["Learner", "1abc", "a-b", "x; DROP ROLE postgres", ""])
def test_unsafe_prefixes_are_refused(server, prefix, tmp_path):
    with pytest.raises(ProvisionError, match="--prefix"):
        provision(server.admin_settings(), 1, prefix, out=tmp_path / "c.csv")


def test_scram_verifier_is_byte_for_byte_what_postgresql_computes(admin_conn):
    """A verifier PostgreSQL made from a plaintext is reproduced by the kit from the same salt."""
    with admin_conn.cursor() as cur:
        cur.execute("CREATE ROLE pvscram NOLOGIN PASSWORD %s", ("s3cret-\u00e9t\u00e9",))
        try:
            cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'pvscram'")
            stored = cur.fetchone()[0]
        finally:
            cur.execute("DROP ROLE pvscram")
    assert password_matches("s3cret-\u00e9t\u00e9", stored)
    assert not password_matches("s3cret", stored)
    assert scram_verifier("x", salt=b"0123456789abcdef").startswith("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def cli(capfd: pytest.CaptureFixture[str], *args: str) -> Run:
    """``pgfactory-kit ARGS`` in this process (the same ``main`` the console script calls); a command line
    refused while parsing gives argparse's exit status."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out = capfd.readouterr()
    return Run(code, out.out, out.err)


def test_cli_provision_check_drop_never_prints_a_password(server, tmp_path, monkeypatch, capfd):
    out = tmp_path / "creds.csv"
    monkeypatch.setenv("PGFACTORY_HOME", str(tmp_path))
    monkeypatch.delenv("PGFACTORY_ADMIN_DSN", raising=False)
    base = ["provision", "--prefix", "pvcli", "--out", str(out), "--data-dir", str(server.data_dir),
            "--port", str(server.port)]
    admin_password = server.admin_settings().password
    try:
        created = cli(capfd, *base, "--learners", "2", "--connection-limit", "2")
        assert created.returncode == 0, created.stderr
        secrets_ = [s.password for s in credentials(out).values()] + [admin_password]
        assert str(out) in created.stdout and "pvcli1" in created.stdout and "created" in created.stdout
        again = cli(capfd, *base, "--learners", "2", "--connection-limit", "2")
        assert again.returncode == 0 and again.stdout.count("exists") == 2
        checked = cli(capfd, *base, "--check")
        assert checked.returncode == 0 and "pvcli2" in checked.stdout
        refused = cli(capfd, *base, "--learners", "2", "--connection-limit", "500")
        assert refused.returncode == 1 and "max_connections" in refused.stderr
        missing = cli(capfd, *base)
        assert missing.returncode == 2 and "--learners N" in missing.stderr  # refused before connecting
        dropped = cli(capfd, *base, "--drop")
        assert dropped.returncode == 0 and "pvcli1, pvcli2" in dropped.stdout
        for result in (created, again, checked, refused, missing, dropped):
            for secret in secrets_:
                assert secret not in result.stdout + result.stderr
    finally:
        drop(server.admin_settings(), "pvcli", out=out)


def test_cli_is_wired_into_the_pgfactory_kit_command():
    result = subprocess.run([sys.executable, "-m", "pgfactory_kit.cli", "provision", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and "--learners N" in result.stdout and "--drop" in result.stdout


def test_cli_without_a_kit_server_says_to_run_up_or_pass_a_dsn(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("PGFACTORY_HOME", str(tmp_path))
    monkeypatch.delenv("PGFACTORY_ADMIN_DSN", raising=False)
    (tmp_path / "nothing").mkdir()  # a folder with no server in it
    result = cli(capfd, "provision", "--check", "--data-dir", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert "pgfactory-kit up" in result.stderr and "--dsn" in result.stderr


def test_an_admin_that_is_not_a_superuser_is_told_what_is_needed(server, admin_conn, tmp_path):
    password = "Pw-NOTSUPER-4r7t"
    with admin_conn.cursor() as cur:
        cur.execute("CREATE ROLE pvnotsuper LOGIN CREATEROLE CREATEDB PASSWORD %s", (password,))
    try:
        weak = server.admin_settings().with_(user="pvnotsuper", password=password)
        for action in (lambda: provision(weak, 1, "pvweak", out=tmp_path / "c.csv"),
                       lambda: drop(weak, "pvweak"), lambda: check(weak, "pvweak")):
            with pytest.raises(ProvisionError) as info:
                action()
            assert "is not a superuser" in str(info.value) and "--dsn" in str(info.value)
            assert password not in str(info.value)
        assert fetch(server.admin_settings(), "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pvweak%%'") == [(0,)]
    finally:
        with admin_conn.cursor() as cur:
            cur.execute("DROP ROLE pvnotsuper")


def test_rerun_with_fewer_learners_keeps_the_others_and_host_goes_into_the_dsns(server, tmp_path):
    admin = server.admin_settings()
    out = tmp_path / "creds.csv"
    try:
        provision(admin, 2, "pvfew", connection_limit=2, out=out, host="workshop.example")
        first = credentials(out)
        result = provision(admin, 1, "pvfew", connection_limit=2, out=out, host="workshop.example")
        assert [learner.name for learner in result.learners] == ["pvfew1"]
        assert any("pvfew2" in w and "--drop" in w for w in result.warnings)
        assert credentials(out) == first  # pvfew2's line, password included, is still there
        assert {s.host for s in first.values()} == {"workshop.example"}
        assert {s.port for s in first.values()} == {server.port}
    finally:
        drop(admin, "pvfew", out=out)
