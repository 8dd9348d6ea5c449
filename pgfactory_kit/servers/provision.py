"""Workshop provisioning: one login role and one database per learner on a shared server.

Each learner ``<prefix><i>`` gets a generated password, a ``CONNECTION LIMIT``, and a database of
the same name that they own, seeded with the lesson's table and closed to everyone else
(``REVOKE ALL ... FROM PUBLIC``). Promises:
- idempotent: rerunning changes nothing; existing roles keep their passwords (``reset_passwords``
  generates new ones); ``drop`` removes only roles the kit created (marked by a role comment);
- the plaintext password never reaches the server (a SCRAM verifier is sent) nor any output: it is
  only in the credentials file, written atomically with mode 0600;
- the learners' connection limits fit the server's ``max_connections`` (see docs/workshops.md).
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from .. import checks, paths
from ..errors import ProvisionError
from ..factory import make_factory
from ..settings import ConnectionSettings
from .hba import weak_rules
from .scram import password_matches, scram_verifier  # noqa: F401  (re-exported for callers)
from .seed import has_mytable, seed_mytable

MARKER = "pgfactory-kit learner"
DEFAULT_PREFIX = "learner"
ADMIN_HEADROOM = 5        # connections kept free for the instructor and monitoring
RECOMMENDED_LIMIT = 15    # a pool's default max_size (10) plus the direct connections the lessons open
MIN_LIMIT = 2             # below this a learner cannot even compare two connections
MAX_LEARNERS = 500
MAX_CONNECTION_LIMIT = 10_000
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


# ----------------------------------------------------------------------------- values
@dataclass(frozen=True)
class Budget:
    """How many connections learners may hold: max_connections minus what must stay free."""

    max_connections: int
    reserved: int           # superuser_reserved_connections + reserved_connections
    headroom: int           # kept for the instructor
    other_learners: int     # CONNECTION LIMITs of the kit's learners with another prefix

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved - self.headroom - self.other_learners

    def arithmetic(self) -> str:
        """The sum, in words, for messages and docs."""
        return (f"max_connections {self.max_connections} - reserved {self.reserved} - instructor headroom "
                f"{self.headroom} - other learners' limits {self.other_learners} = {self.available}")

    def default_limit(self, learners: int) -> int:
        """The largest fair share, capped at RECOMMENDED_LIMIT; ProvisionError when below MIN_LIMIT."""
        share = min(RECOMMENDED_LIMIT, self.available // learners)
        if share < MIN_LIMIT:
            raise ProvisionError(
                f"{learners} learners do not fit: {self.arithmetic()} connections, "
                f"{self.available // learners} each, and each learner needs at least {MIN_LIMIT}. What to do: "
                f"provision fewer learners, or raise max_connections to "
                f"{self.max_connections - self.available + learners * RECOMMENDED_LIMIT} for the recommended "
                f"{RECOMMENDED_LIMIT} each (at least {self.max_connections - self.available + learners * MIN_LIMIT}) "
                "(ALTER SYSTEM SET max_connections = ...; restart; LocalServer(max_connections=...)).")
        return share

    def check(self, learners: int, limit: int) -> None:
        """ProvisionError unless ``learners x limit`` fits in the budget."""
        if limit < 1:
            raise ProvisionError(f"--connection-limit must be at least 1, got {limit}")
        if learners * limit > self.available:
            raise ProvisionError(
                f"{learners} learners x CONNECTION LIMIT {limit} = {learners * limit} connections, but only "
                f"{self.available} fit ({self.arithmetic()}). What to do: use --connection-limit "
                f"{max(self.available // learners, 0)} or less, provision fewer learners, or raise "
                "max_connections on the server.")


@dataclass
class Learner:
    """One learner's account; ``password`` is None when it exists but is not known to the kit."""

    name: str
    status: str                      # created | exists | password reset | exists, password unknown
    connection_limit: int
    password: str | None = field(default=None, repr=False)

    @property
    def dbname(self) -> str:
        return self.name

    def settings(self, host: str, port: int, sslmode: str | None = None) -> ConnectionSettings:
        """Where this learner connects (the admin connection's server, their own database)."""
        return ConnectionSettings(host=host, port=port, dbname=self.dbname, user=self.name,
                                  password=self.password, sslmode=sslmode, application_name=self.name)


@dataclass
class ProvisionResult:
    """What ``provision`` did: the learners, the credentials file, the budget and any warnings."""

    learners: list[Learner]
    credentials_file: Path
    budget: Budget
    warnings: list[str]


@dataclass(frozen=True)
class LearnerStatus:
    """What ``check`` found for one learner role."""

    name: str
    connection_limit: int
    database_exists: bool
    sessions: int
    table_rows: int | None


@dataclass
class CheckReport:
    """The learners of one prefix, the budget, and kit databases left without their role."""

    prefix: str
    learners: list[LearnerStatus]
    budget: Budget
    warnings: list[str]


# ----------------------------------------------------------------------------- helpers
def learner_names(prefix: str, learners: int) -> list[str]:
    """``prefix1`` … ``prefixN``, after checking the prefix and the count."""
    check_prefix(prefix)
    if not 1 <= learners <= MAX_LEARNERS:
        raise ProvisionError(f"--learners must be between 1 and {MAX_LEARNERS}, got {learners}")
    return [f"{prefix}{i}" for i in range(1, learners + 1)]


def check_arguments(admin_settings: ConnectionSettings, *, learners: int, prefix: str,
                    connection_limit: int | None, out: str | os.PathLike[str] | None, host: str | None,
                    reset_passwords: bool) -> None:
    """``provision``'s arguments, each checked and named before anything connects or writes."""
    if not isinstance(admin_settings, ConnectionSettings):
        raise TypeError(f"admin_settings must be a ConnectionSettings, got {type(admin_settings).__name__}; for "
                        "a DSN write ConnectionSettings.from_dsn(dsn)")
    checks.whole_number("learners", learners, minimum=1, maximum=MAX_LEARNERS)
    check_prefix(prefix)
    if connection_limit is not None:
        checks.whole_number("connection_limit", connection_limit, minimum=1, maximum=MAX_CONNECTION_LIMIT)
    path = checks.path("out", out, allow_none=True)
    if path is not None:
        checks.writable_file("out", path)
    checks.text("host", host, allow_none=True)
    if not isinstance(reset_passwords, bool):
        raise TypeError(f"reset_passwords must be True or False, got {reset_passwords!r}")


def check_prefix(prefix: str) -> None:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string such as 'learner', got {prefix!r}")
    if not _PREFIX_RE.match(prefix):
        raise ProvisionError(f"--prefix {prefix!r} is not usable: use lower-case letters, digits and _, "
                             "starting with a letter, at most 41 characters (e.g. --prefix learner)")


def marker(prefix: str) -> str:
    return f"{MARKER} (prefix {prefix})"


def generate_password() -> str:
    """24 URL-safe characters from ``secrets`` (safe in a DSN without quoting)."""
    return secrets.token_urlsafe(18)


def default_credentials_file(prefix: str) -> Path:
    """``<project>/.pgfactory/<prefix>-credentials.csv`` (ignored by git)."""
    return paths.state_dir() / f"{prefix}-credentials.csv"


def read_credentials(path: Path) -> dict[str, str]:
    """learner -> password from a credentials file written earlier (empty when absent)."""
    if not path.is_file():
        return {}
    found: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
        try:
            password = ConnectionSettings.from_dsn(row.get("dsn") or "").password
        except ValueError:
            continue
        if row.get("learner") and password:
            found[row["learner"]] = password
    return found


def write_credentials(path: Path, rows: list[tuple[str, str, str]]) -> bool:
    """Write ``learner,database,dsn`` rows atomically with mode 0600; False when nothing changed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["learner", "database", "dsn"])
    writer.writerows(rows)
    text = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_text(encoding="utf-8") == text and (path.stat().st_mode & 0o777) == 0o600:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # created 0600
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def _connect(settings: ConnectionSettings) -> psycopg2.extensions.connection:
    return make_factory(settings, autocommit=True)()


class _Admin:
    """The instructor's autocommit connection, with the queries provisioning needs."""

    def __init__(self, settings: ConnectionSettings) -> None:
        if not isinstance(settings, ConnectionSettings):
            raise TypeError(f"admin_settings must be a ConnectionSettings, got {type(settings).__name__}; for a "
                            "DSN write ConnectionSettings.from_dsn(dsn)")
        self.settings = settings
        self.conn = _connect(settings)

    def close(self) -> None:
        self.conn.close()

    def rows(self, query: sql.Composable | str, params: tuple = ()) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def require_privileges(self) -> None:
        (superuser, createrole, createdb), = self.rows(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        if not superuser:
            raise ProvisionError(
                f"role {self.settings.user!r} is not a superuser, so it cannot create the learners' roles and "
                "databases and seed them as their owners. What to do: pass --dsn with a superuser (the kit's "
                "own server: leave --dsn out and the kit uses its admin role)."
                + ("" if createrole and createdb else " (It lacks CREATEROLE/CREATEDB too.)"))

    def refuse_password_free_rules(self) -> None:
        """ProvisionError when the live pg_hba.conf lets a login role in with trust or md5: on a shared
        server every user with a shell reaches it, and learners' accounts must need their password."""
        with self.conn.cursor() as cur:
            hba_file, rules = weak_rules(cur)
        if rules:
            raise ProvisionError(
                f"this server's pg_hba.conf ({hba_file}) lets login roles in without a scram-sha-256 password: "
                + "; ".join(str(rule) for rule in rules) + ". On a shared server anyone with a shell could log "
                "in that way, so provisioning stops here. What to do: for the kit's own server run "
                "`pgfactory-kit up` (it rewrites pg_hba.conf with scram-sha-256 rules only); elsewhere change "
                "those lines' method to scram-sha-256 (give the roles passwords first), run "
                "SELECT pg_reload_conf(); and rerun provision.")

    def budget(self, prefix: str) -> Budget:
        (max_conn, su_reserved, reserved), = self.rows(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int, "
            "coalesce(current_setting('reserved_connections', true), '0')::int")
        (others,), = self.rows(
            "SELECT coalesce(sum(greatest(rolconnlimit, 0)), 0)::int FROM pg_roles "
            "WHERE shobj_description(oid, 'pg_authid') LIKE %s AND shobj_description(oid, 'pg_authid') <> %s",
            (MARKER + " (prefix %", marker(prefix)))
        return Budget(max_conn, su_reserved + reserved, ADMIN_HEADROOM, others)

    def kit_roles(self, prefix: str) -> dict[str, tuple[int, str | None]]:
        """name -> (connection limit, stored verifier or None) for this prefix's learners, by number."""
        found = self.rows(
            "SELECT rolname, rolconnlimit, rolpassword FROM pg_authid "
            "WHERE rolname ~ %s AND shobj_description(oid, 'pg_authid') = %s "
            "ORDER BY length(rolname), rolname", (f"^{prefix}[0-9]+$", marker(prefix)))
        return {name: (limit, verifier) for name, limit, verifier in found}

    def role_exists(self, name: str) -> bool:
        return bool(self.rows("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)))

    def database_owner(self, name: str) -> str | None:
        found = self.rows("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,))
        return found[0][0] if found else None

    def public_can_create_in_public_schema(self) -> bool:
        return bool(self.rows(
            "SELECT 1 FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a "
            "WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE'"))


# ----------------------------------------------------------------------------- provision
def provision(admin_settings: ConnectionSettings, learners: int, prefix: str = DEFAULT_PREFIX, *,
              connection_limit: int | None = None, out: str | os.PathLike[str] | None = None,
              host: str | None = None, reset_passwords: bool = False,
              progress: Callable[[str], None] | None = None) -> ProvisionResult:
    """Create (or confirm) ``learners`` roles and databases; write the credentials file.

    Existing learners keep their password (read back from ``out``) unless ``reset_passwords``.
    Raises ProvisionError when the limits do not fit ``max_connections`` or a name is taken; TypeError /
    ValueError naming the argument, before connecting, for a value of the wrong kind or out of range."""
    check_arguments(admin_settings, learners=learners, prefix=prefix, connection_limit=connection_limit,
                    out=out, host=host, reset_passwords=reset_passwords)
    names = learner_names(prefix, learners)
    out_path = Path(out) if out is not None else default_credentials_file(prefix)
    known = read_credentials(out_path)
    warnings: list[str] = []
    admin = _Admin(admin_settings)
    try:
        admin.require_privileges()
        admin.refuse_password_free_rules()
        budget = admin.budget(prefix)
        limit = budget.default_limit(learners) if connection_limit is None else connection_limit
        budget.check(learners, limit)
        if limit < RECOMMENDED_LIMIT:
            warnings.append(f"CONNECTION LIMIT {limit} is below the {RECOMMENDED_LIMIT} the lessons assume: "
                            f"learners should keep pools at max_size={max(limit - 2, 1)} or less.")
        if admin.public_can_create_in_public_schema():
            warnings.append(f"PUBLIC may create objects in schema public of database {admin_settings.dbname!r} "
                            "(a server older than PostgreSQL 15?): learners could create tables there. "
                            "Fix: REVOKE CREATE ON SCHEMA public FROM PUBLIC in each shared database.")
        existing = admin.kit_roles(prefix)
        done = []
        for name in names:
            learner = _ensure_learner(admin, name, prefix, limit, existing.get(name), known.get(name),
                                      reset_passwords)
            _ensure_database(admin, name)
            _seed(admin_settings, name)
            done.append(learner)
            if progress is not None:
                progress(f"{name}: {learner.status}")
        extra = [name for name in admin.kit_roles(prefix) if name not in names]
    finally:
        admin.close()
    if extra:
        warnings.append(f"{len(extra)} more learner(s) of prefix {prefix!r} exist ({', '.join(extra)}); "
                        "left as they are (`pgfactory-kit provision --drop` removes all).")
    if any(learner.password is None for learner in done):
        warnings.append(f"some learners exist but their password is not in {out_path}: their DSN there has "
                        "no password. Rerun with --reset-passwords to give them new ones.")
    target_host = host or admin_settings.host
    extra_learners = [Learner(name, "exists", -1, known.get(name)) for name in extra]
    rows = [(learner.name, learner.dbname,
             learner.settings(target_host, admin_settings.port, admin_settings.sslmode).dsn())
            for learner in done + extra_learners]
    write_credentials(out_path, rows)
    return ProvisionResult(done, out_path, budget, warnings)


def _ensure_learner(admin: _Admin, name: str, prefix: str, limit: int, existing: tuple[int, str | None] | None,
                    known_password: str | None, reset_password: bool) -> Learner:
    role = sql.Identifier(name)
    if existing is None:
        if admin.role_exists(name):
            raise ProvisionError(
                f"role {name!r} already exists on this server and was not created by pgfactory-kit, so the kit "
                "leaves it alone. What to do: choose another --prefix.")
        password = generate_password()
        admin.rows(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                           "CONNECTION LIMIT {} PASSWORD %s").format(role, sql.Literal(limit)),
                   (scram_verifier(password),))
        admin.rows(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(marker(prefix))))
        return Learner(name, "created", limit, password)
    current_limit, verifier = existing
    status = "exists"
    if current_limit != limit:
        admin.rows(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(role, sql.Literal(limit)))
        status = f"exists, limit {current_limit} -> {limit}"
    password = known_password if known_password and password_matches(known_password, verifier) else None
    if reset_password:
        password = generate_password()
        admin.rows(sql.SQL("ALTER ROLE {} PASSWORD %s").format(role), (scram_verifier(password),))
        status = "password reset"
    elif password is None:
        status = "exists, password unknown"
    return Learner(name, status, limit, password)


def _ensure_database(admin: _Admin, name: str) -> None:
    owner = admin.database_owner(name)
    if owner is None:
        admin.rows(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name)))
    elif owner != name:
        raise ProvisionError(f"database {name!r} already exists, owned by {owner!r}, not by learner {name!r}; "
                             "the kit leaves it alone. What to do: choose another --prefix.")
    # Only the owner (and superusers) may connect, create schemas or temporary tables.
    admin.rows(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))


def _seed(admin_settings: ConnectionSettings, name: str) -> None:
    """Run data/initdb/*.sql in the learner's database as the learner (objects owned by them) —
    only while the lesson's table is missing, so a rerun never touches a learner's data."""
    conn = _connect(admin_settings.with_(dbname=name))
    try:
        with conn.cursor() as cur:
            if not has_mytable(cur):
                seed_mytable(cur, owner=name)
    finally:
        conn.close()


# ----------------------------------------------------------------------------- drop / check
def drop(admin_settings: ConnectionSettings, prefix: str = DEFAULT_PREFIX, *,
         out: str | os.PathLike[str] | None = None, wait_s: float = 10.0,
         progress: Callable[[str], None] | None = None) -> list[str]:
    """End the sessions of this prefix's learners, drop their databases and roles and the
    credentials file. Touches only roles the kit marked. Returns the names dropped."""
    check_prefix(prefix)
    admin = _Admin(admin_settings)
    try:
        admin.require_privileges()
        names = list(admin.kit_roles(prefix))
        if names:
            _terminate(admin, names, wait_s)
        for name in names:
            if admin.database_owner(name) == name:
                admin.rows(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.rows(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            admin.rows(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            if progress is not None:
                progress(f"{name}: dropped")
    finally:
        admin.close()
    out_path = Path(out) if out is not None else default_credentials_file(prefix)
    if out_path.is_file():
        out_path.unlink()
    return names


def _terminate(admin: _Admin, names: list[str], wait_s: float) -> None:
    """pg_terminate_backend every session of these roles, then wait (bounded) until they are gone."""
    deadline = time.monotonic() + wait_s
    for _ in range(1000):
        left = admin.rows("SELECT pid FROM pg_stat_activity WHERE usename = ANY(%s) OR datname = ANY(%s)",
                          (names, names))
        if not left:
            return
        if time.monotonic() > deadline:
            raise ProvisionError(f"{len(left)} session(s) of the learners did not end within {wait_s:.0f}s; "
                                 "retry `pgfactory-kit provision --drop`.")
        admin.rows("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                   ([pid for (pid,) in left],))
        time.sleep(0.05)


def check(admin_settings: ConnectionSettings, prefix: str = DEFAULT_PREFIX) -> CheckReport:
    """What exists for this prefix: each learner's limit, database, sessions and table rows."""
    check_prefix(prefix)
    admin = _Admin(admin_settings)
    try:
        admin.require_privileges()
        budget = admin.budget(prefix)
        statuses = []
        for name, (limit, _verifier) in admin.kit_roles(prefix).items():
            has_db = admin.database_owner(name) == name
            (sessions,), = admin.rows("SELECT count(*)::int FROM pg_stat_activity WHERE usename = %s", (name,))
            statuses.append(LearnerStatus(name, limit, has_db, sessions,
                                          _table_rows(admin_settings, name) if has_db else None))
        orphans = [name for (name,) in admin.rows(
            "SELECT datname FROM pg_database WHERE datname ~ %s AND NOT EXISTS "
            "(SELECT 1 FROM pg_roles WHERE rolname = datname)", (f"^{prefix}[0-9]+$",))]
    finally:
        admin.close()
    warnings = [f"database {name!r} has no role of the same name (left from an interrupted drop?)"
                for name in orphans]
    return CheckReport(prefix, statuses, budget, warnings)


def _table_rows(admin_settings: ConnectionSettings, name: str) -> int | None:
    conn = _connect(admin_settings.with_(dbname=name))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('public.mytable') IS NOT NULL")
            if not cur.fetchone()[0]:
                return None
            cur.execute("SELECT count(*) FROM public.mytable")
            return int(cur.fetchone()[0])
    finally:
        conn.close()
