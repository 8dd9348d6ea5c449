"""No password in any repr, log line, warning, exception text or CLI output.

A server of its own runs with a distinctive lesson password (``PGFACTORY_PASSWORD``), so any
place that leaks it shows up by a plain substring search. (Notebook and report outputs are
checked by the notebook tests.)"""
from __future__ import annotations

import ast
import gc
import logging
import stat
import warnings
from collections.abc import Iterator

import psycopg2
import pytest

from pgfactory_kit import KitConnection, make_factory
from pgfactory_kit.cli import main
from pgfactory_kit.servers.postgres import LocalServer
from pgfactory_kit.settings import ConnectionSettings

from .conftest import ROOT, free_port

SECRET = "Pw-LEAKCHECK-5kq8v"
WRONG = "Pw-WRONGONE-3m9x"


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A LocalServer whose lesson password is SECRET; destroyed afterwards."""
    home = tmp_path_factory.mktemp("secret")
    srv = LocalServer(data_dir=home / "data", port=free_port(), password=SECRET)
    try:
        yield srv
    finally:
        srv.destroy()


@pytest.fixture
def secret_env(secret_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    """The environment a learner would have: PGFACTORY_PASSWORD=SECRET, no other credentials."""
    monkeypatch.setenv("PGFACTORY_HOME", str(secret_server.state_dir.parent))
    monkeypatch.setenv("PGFACTORY_PASSWORD", SECRET)
    for key in ("PGFACTORY_DSN", "DATABASE_URL", "PGFACTORY_ADMIN_DSN", "PGPASSWORD"):
        monkeypatch.delenv(key, raising=False)
    return secret_server


def cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``pgfactory-kit ARGS`` in this process; (exit code, everything written to fd 1 and 2)."""
    code = main(list(args))
    out = capfd.readouterr()
    return code, out.out + out.err


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets or (SECRET, WRONG):
        assert secret not in text, f"a password leaked into: {text[:300]!r}"


def test_cli_output_never_shows_the_lesson_or_admin_password(secret_env, capfd):
    srv = secret_env
    where = ["--data-dir", str(srv.data_dir), "--port", str(srv.port)]
    code, up = cli(capfd, "up", *where)
    assert code == 0, up
    assert f"postgresql://myuser:****@127.0.0.1:{srv.port}/mydatabase" in up
    assert srv.settings().password == SECRET
    admin_password = srv.admin_settings().password
    runs = {"up": (code, up)}
    runs["status"] = cli(capfd, "status", *where)
    runs["env"] = cli(capfd, "env", *where)
    runs["restart"] = cli(capfd, "restart", *where)
    out = srv.state_dir / "creds.csv"
    runs["provision"] = cli(capfd, "provision", "--learners", "1", "--prefix", "leak", "--connection-limit", "2",
                            "--out", str(out), *where)
    runs["provision --check"] = cli(capfd, "provision", "--check", "--prefix", "leak", *where)
    learner_password = ConnectionSettings.from_dsn(out.read_text().splitlines()[1].split(",")[2]).password
    runs["provision --drop"] = cli(capfd, "provision", "--drop", "--prefix", "leak", "--out", str(out), *where)
    runs["provision bad dsn"] = cli(capfd, "provision", "--check", "--dsn",
                                    f"postgresql://admin:{SECRET}@127.0.0.1:{free_port()}/postgres")
    runs["down"] = cli(capfd, "down", *where)
    for name, (code, text) in runs.items():
        assert code in (0, 1), (name, text)
        assert_clean(text, SECRET, admin_password, learner_password)
    assert runs["provision bad dsn"][0] == 1 and "****" in runs["provision bad dsn"][1]
    assert "PGPASSFILE" in runs["env"][1] and "running" in runs["status"][1]


@pytest.mark.parametrize("command", ["up", "down", "status", "env", "restart", "bench", "provision"])
def test_cli_help_never_shows_a_password_from_the_environment(command, monkeypatch, capsys):
    monkeypatch.setenv("PGFACTORY_PASSWORD", SECRET)
    monkeypatch.setenv("PGFACTORY_DSN", f"postgresql://myuser:{SECRET}@127.0.0.1:1/mydatabase")
    monkeypatch.setenv("PGFACTORY_ADMIN_DSN", f"postgresql://admin:{SECRET}@127.0.0.1:1/postgres")
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = capsys.readouterr()
    assert exit_info.value.code == 0 and f"usage: pgfactory-kit {command}" in out.out
    assert_clean(out.out + out.err)


def test_files_the_kit_writes_keep_the_password_out_of_env_files_and_pgpass_private(secret_server):
    srv = secret_server
    srv.start()
    assert_clean((srv.state_dir / "kit.env").read_text())
    pgpass = srv.state_dir / "pgpass"
    assert SECRET in pgpass.read_text() and stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    assert stat.S_IMODE((srv._real_data_dir() / "pgfactory_admin.pass").stat().st_mode) == 0o600


def test_reprs_and_descriptions_never_show_the_password(secret_server):
    srv = secret_server
    settings = srv.start()
    assert settings.password == SECRET
    texts = [repr(settings), str(settings), settings.masked_dsn(), repr(srv), str(srv.status()),
             repr(srv.admin_settings())]
    factory = make_factory(settings, connection_factory=KitConnection)
    texts += [repr(factory), factory.__doc__ or "", repr(factory.settings)]  # type: ignore[attr-defined]
    conn = factory()
    try:
        texts += [repr(conn), conn.dsn, str(conn.get_dsn_parameters())]
    finally:
        conn.close()
    from pgfactory_kit.pooling.pool import ConnectionPool
    from pgfactory_kit.pooling.reuse import ReusedConnection
    reused = ReusedConnection(factory)
    reused.get()
    texts += [repr(reused), repr(reused.get())]
    reused.close()
    with ConnectionPool(factory, min_size=1, max_size=2, name="leak-pool") as pool:
        with pool.connection() as pooled:
            texts += [repr(pool), str(pool.stats()), repr(pooled), pooled.dsn]
    texts.append(repr(pool))
    try:
        from pgfactory_kit.servers.pgbouncer import LocalPgBouncer
        texts.append(repr(LocalPgBouncer(srv)))
    except ImportError:
        pass
    for text in texts:
        assert_clean(text)


def test_logs_warnings_and_errors_never_show_the_password(secret_server, caplog):
    srv = secret_server
    settings = srv.start()
    from pgfactory_kit.pooling.pool import ConnectionPool
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # A factory with a wrong password: the kit's own, and the blog's raw psycopg2.connect.
        for factory in (make_factory(settings.with_(password=WRONG)),
                        lambda: psycopg2.connect(**settings.with_(password=WRONG).connect_kwargs())):
            with ConnectionPool(factory, min_size=0, max_size=1, timeout=1.0, name="leak-bad") as pool:
                with pytest.raises(psycopg2.OperationalError) as info:
                    pool.getconn()
                errors.append(str(info.value))
        # A good pool whose connections break, are returned broken, and are dropped unreturned.
        with ConnectionPool(make_factory(settings), min_size=1, max_size=2, check_after=0.0,
                            name="leak-good") as pool:
            conn = pool.getconn()
            conn.close()
            pool.putconn(conn)
            with pool.connection() as conn:
                pid = conn.get_backend_pid()
            admin = psycopg2.connect(**srv.admin_settings().connect_kwargs())
            try:
                admin.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
            finally:
                admin.close()
            with pool.connection() as conn:
                conn.cursor().execute("SELECT 1")
            pool.getconn()  # dropped without putconn: the pool reclaims it with a warning
            gc.collect()
            with pool.connection() as conn:
                conn.cursor().execute("SELECT 1")
    assert caplog.records, "the pool logged nothing: this test no longer exercises its log lines"
    assert_clean(caplog.text)
    for record in caplog.records:
        assert_clean(record.getMessage())
    for warning in caught:
        assert_clean(str(warning.message))
    for text in errors:
        assert "password authentication failed" in text
        assert_clean(text)


# ----------------------------------------------------------------------------- static check
SINKS = {"print", "debug", "info", "warning", "warn", "error", "exception", "critical", "log", "write"}
SECRET_ATTRIBUTES = {"password"}
SECRET_METHODS = {"dsn", "connect_kwargs"}
SCRUBBERS = {"scrub", "password_matches", "scram_verifier"}


def secret_exposures(source: str, where: str) -> list[str]:
    """``file:line`` of every print/log/warn/raise/write whose arguments reach a password
    (``x.password``, ``x.dsn()``, ``x.connect_kwargs()``) other than through ``scrub(...)``."""
    tree = ast.parse(source)
    found: list[str] = []

    def reaches_secret(node: ast.AST) -> bool:
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in SCRUBBERS:
                return False
            if isinstance(node.func, ast.Attribute) and name in SECRET_METHODS:
                return True
        if isinstance(node, ast.Attribute) and node.attr in SECRET_ATTRIBUTES:
            return True
        return any(reaches_secret(child) for child in ast.iter_child_nodes(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in SINKS and any(reaches_secret(a) for a in [*node.args, *(k.value for k in node.keywords)]):
                found.append(f"{where}:{node.lineno}: {name}() gets a password")
        elif isinstance(node, ast.Raise) and node.exc is not None and reaches_secret(node.exc):
            found.append(f"{where}:{node.lineno}: an exception message gets a password")
    return found


@pytest.mark.parametrize("snippet", [
    'print(settings.dsn())',
    'logger.info("connecting to %s", settings.dsn())',
    'log.debug(f"kwargs {settings.connect_kwargs()}")',
    'raise ValueError(f"bad password {s.password!r}")',
    'warnings.warn("using " + s.password)',
    'sys.stderr.write(str(kwargs) + cfg.password)',
])
def test_static_check_flags_a_password_sent_to_output(snippet):
    found = secret_exposures(snippet, "<snippet>")
    assert len(found) == 1 and found[0].startswith("<snippet>:1: ")


@pytest.mark.parametrize("snippet", [
    'print(settings.masked_dsn())',
    'logger.info("pool %r", self.name)',
    'raise KitConnectError(scrub(str(exc), settings.password))',
    'conn = psycopg2.connect(**settings.connect_kwargs())',
    'handle.write(pgpass_line(settings))',
])
def test_static_check_accepts_masked_and_scrubbed_output(snippet):
    assert secret_exposures(snippet, "<snippet>") == []


def test_no_module_prints_logs_or_raises_a_password():
    found: list[str] = []
    for path in sorted((ROOT / "pgfactory_kit").rglob("*.py")):
        found += secret_exposures(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "\n".join(found)


def test_the_kit_does_not_configure_logging_handlers_or_levels():
    """A library leaves logging set-up to the application: no basicConfig, no handlers of its own."""
    offenders = []
    for path in sorted((ROOT / "pgfactory_kit").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for needle in ("logging.basicConfig", "addHandler(", "logging.FileHandler"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, offenders
