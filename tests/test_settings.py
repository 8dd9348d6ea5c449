"""ConnectionSettings: parsing from every source, and the password never shown."""
from __future__ import annotations

from pathlib import Path

import pytest

from pgfactory_kit import ConnectionSettings
from pgfactory_kit.settings import DEFAULT_PORT, pgpass_line, read_pgpass

SECRET = "s3cr3t-Pa55:w0rd"


def test_defaults_are_the_blog_database_on_the_kit_port():
    s = ConnectionSettings()
    assert (s.host, s.port, s.dbname, s.user) == ("127.0.0.1", DEFAULT_PORT, "mydatabase", "myuser")
    assert s.connect_timeout == 10 and s.application_name == "pgfactory_kit"


def test_repr_and_str_never_show_the_password():
    s = ConnectionSettings(password=SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s)
    assert "****" in repr(s)


def test_masked_dsn_hides_the_password_and_dsn_round_trips():
    s = ConnectionSettings(host="db.example", port=6543, dbname="shop", user="ann", password=SECRET)
    assert s.masked_dsn() == "postgresql://ann:****@db.example:6543/shop"
    assert SECRET not in s.masked_dsn()
    assert ConnectionSettings.from_dsn(s.dsn()) == s


def test_from_url_dsn_reads_every_part():
    s = ConnectionSettings.from_dsn(
        "postgresql://ann:p%40ss@db.example:6543/shop?sslmode=require&connect_timeout=3&application_name=x")
    assert (s.host, s.port, s.dbname, s.user, s.password) == ("db.example", 6543, "shop", "ann", "p@ss")
    assert (s.sslmode, s.connect_timeout, s.application_name) == ("require", 3, "x")


def test_from_keyvalue_dsn_handles_quotes_and_escapes():
    s = ConnectionSettings.from_dsn(r"host=h port=5 dbname='my db' user=u password='it\'s secret'")
    assert (s.host, s.port, s.dbname, s.user, s.password) == ("h", 5, "my db", "u", "it's secret")


@pytest.mark.parametrize("dsn, expected", [
    ("", "empty DSN"),
    ("postgresql://u:" + SECRET + "@h:notaport/db", "port"),
    ("mysql://u:" + SECRET + "@h/db", "unsupported DSN scheme"),
    ("host=h password=" + SECRET + " oops", "no '=value'"),
    ("host=h colour=blue password=" + SECRET, "unknown parameter 'colour'"),
    ("host=h password='" + SECRET, "not closed"),
    ("postgresql://u:" + SECRET + "@h/db?colour=blue", "unknown DSN parameter 'colour'"),
])
def test_malformed_dsn_raises_valueerror_that_says_why_without_the_password(dsn, expected):
    with pytest.raises(ValueError) as info:
        ConnectionSettings.from_dsn(dsn)
    assert expected in str(info.value)
    assert SECRET not in str(info.value)


def test_from_env_prefers_pgfactory_dsn_then_database_url(clean_env):
    env = dict(clean_env, PGFACTORY_DSN="postgresql://a:x@h1:1/d1", DATABASE_URL="postgresql://b:y@h2:2/d2")
    assert ConnectionSettings.from_env(env).host == "h1"
    del env["PGFACTORY_DSN"]
    assert ConnectionSettings.from_env(env).host == "h2"


def test_from_env_reads_libpq_variables(clean_env):
    env = dict(clean_env, PGHOST="h", PGPORT="7", PGDATABASE="d", PGUSER="u", PGPASSWORD=SECRET,
               PGSSLMODE="disable")
    s = ConnectionSettings.from_env(env)
    assert (s.host, s.port, s.dbname, s.user, s.password, s.sslmode) == ("h", 7, "d", "u", SECRET, "disable")


def test_from_env_reads_the_kit_env_file_and_its_pgpass(clean_env, tmp_path: Path):
    state = tmp_path / ".pgfactory"
    state.mkdir()
    target = ConnectionSettings(port=15999, password=SECRET)
    (state / "pgpass").write_text(pgpass_line(target) + "\n")
    (state / "kit.env").write_text(
        f"PGHOST=127.0.0.1\nPGPORT=15999\nPGDATABASE=mydatabase\nPGUSER=myuser\nPGPASSFILE={state / 'pgpass'}\n")
    assert ConnectionSettings.from_env(clean_env) == target


def test_from_env_falls_back_to_docker_compose_dotenv(clean_env, tmp_path: Path):
    (tmp_path / ".env").write_text("POSTGRES_USER=u\nPOSTGRES_PASSWORD=pw\nPOSTGRES_DB=d\nPOSTGRES_PORT=15555\n")
    s = ConnectionSettings.from_env(clean_env)
    assert (s.host, s.port, s.dbname, s.user, s.password) == ("127.0.0.1", 15555, "d", "u", "pw")


def test_invalid_env_dsn_names_the_variable_not_the_password(clean_env):
    env = dict(clean_env, DATABASE_URL=f"postgresql://u:{SECRET}@h:xx/d")
    with pytest.raises(ValueError, match="DATABASE_URL") as info:
        ConnectionSettings.from_env(env)
    assert SECRET not in str(info.value)


def test_pgpass_escapes_colons_and_backslashes(tmp_path: Path):
    s = ConnectionSettings(password="a:b\\c")
    (tmp_path / "pgpass").write_text(pgpass_line(s) + "\n")
    assert read_pgpass(tmp_path / "pgpass", s) == "a:b\\c"


def test_connect_kwargs_carry_what_psycopg2_needs():
    kwargs = ConnectionSettings(password="pw", sslmode="require").connect_kwargs()
    assert kwargs["password"] == "pw" and kwargs["sslmode"] == "require" and kwargs["connect_timeout"] == 10


def test_bad_port_is_a_clear_valueerror():
    with pytest.raises(ValueError, match="port must be"):
        ConnectionSettings(port="abc")  # type: ignore[arg-type]
