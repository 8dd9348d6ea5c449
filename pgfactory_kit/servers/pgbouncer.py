"""LocalPgBouncer: a PgBouncer in front of the kit's own server, for the pooling lessons.

It listens on 127.0.0.1 on its own port (default 16432, ``PGFACTORY_PGBOUNCER_PORT``), asks clients
for a password with scram-sha-256, pools in ``transaction`` mode, and keeps its config, auth file,
log and pid file in ``<server state dir>/pgbouncer``. The auth file holds the SCRAM verifiers that
the server stores in ``pg_authid`` (never a plain password), so PgBouncer can log in to the server
on the client's behalf. Superusers are left out: they connect to the server directly.

PgBouncer refuses to run as root; as root the kit runs it as the ``pgfactory`` system user, exactly
as it runs the server (see ``service_user``).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg2

from ..errors import PgBouncerError, PgBouncerMissingError
from ..settings import DEFAULT_PGBOUNCER_PORT, DEFAULT_USER, ConnectionSettings
from .daemon import (
    configured_port,
    file_lock,
    free_port,
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
from .postgres import LocalServer
from .scram import scram_verifier
from .service_user import RunAs, current_runas

PORT_ENV = "PGFACTORY_PGBOUNCER_PORT"
BINARY_ENV = "PGFACTORY_PGBOUNCER"
CONSOLE_DB = "pgbouncer"
CONSOLE_USER = "pgfactory_console"  # a PgBouncer-only user for the admin console; no server role
DIR_NAME = "pgbouncer"
INI_FILE = "pgbouncer.ini"
AUTH_FILE = "userlist.txt"
LOG_FILE = "pgbouncer.log"
PID_FILE = "pgbouncer.pid"
CONSOLE_PASSWORD_FILE = "console.pass"  # read by the kit only (root/the user), never by PgBouncer
# The admin console's SHOW commands the kit reads; a fixed map, so no SQL is ever built from input.
CONSOLE_SHOW_COMMANDS = {name: f"SHOW {name.upper()}" for name in (
    "pools", "servers", "clients", "stats", "databases", "users", "config", "lists", "mem", "version")}
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
# Where distributions put the binary; /usr/sbin is not on a normal user's PATH (Debian's package).
SYSTEM_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin")
INSTALL_ADVICE = ("install PgBouncer: `sudo apt-get install pgbouncer` (Debian/Ubuntu) or "
                  "`conda install -c conda-forge pgbouncer` (conda), or set PGFACTORY_PGBOUNCER to the binary")


def find_pgbouncer() -> str | None:
    """The pgbouncer binary: ``PGFACTORY_PGBOUNCER``, then PATH, then the running Python's own bin
    folder (a conda env that is not activated), then the system folders (``/usr/sbin``…); or None."""
    override = os.environ.get(BINARY_ENV)
    if override:
        return override if os.access(override, os.X_OK) else None
    found = shutil.which("pgbouncer")
    if found:
        return found
    extra = [str(Path(sys.executable).parent), *SYSTEM_DIRS]
    return shutil.which("pgbouncer", path=os.pathsep.join(extra))


@dataclass(frozen=True)
class PgBouncerStatus:
    """What ``LocalPgBouncer.status()`` found; ``str()`` is the description ``status`` prints."""

    installed: bool
    running: bool
    pid: int | None
    host: str
    port: int
    server_port: int
    binary: str | None
    version: str | None
    config_dir: Path

    def __str__(self) -> str:
        if not self.installed:
            return f"pgbouncer: not installed ({INSTALL_ADVICE})"
        if not self.running:
            return (f"pgbouncer: stopped (`pgfactory-kit up --pgbouncer` starts it on "
                    f"{self.host}:{self.port})")
        return "\n".join([
            f"pgbouncer: running (pid {self.pid})",
            f"address:  {self.host}:{self.port} -> server {self.host}:{self.server_port}",
            "pooling:  transaction mode, scram-sha-256 for clients",
            f"version:  {self.version or 'unknown'}",
            f"config:   {self.config_dir}",
        ])


class LocalPgBouncer:
    """A PgBouncer for ``server`` on 127.0.0.1:``port`` (transaction pooling, scram-sha-256)."""

    def __init__(self, server: LocalServer, port: int | None = None, *, pool_size: int = 5,
                 max_client_conn: int = 200) -> None:
        self.server = server
        self.host = "127.0.0.1"
        self.dir = server.state_dir / DIR_NAME
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        # An explicit port is kept; otherwise the one a running PgBouncer already uses, else the default.
        self._port_explicit = port is not None or bool(os.environ.get(PORT_ENV))
        if port is not None:
            self.port = int(port)
        elif os.environ.get(PORT_ENV):
            self.port = int(os.environ[PORT_ENV])
        else:
            self.port = self._configured_port() or DEFAULT_PGBOUNCER_PORT

    def __repr__(self) -> str:
        return f"LocalPgBouncer(port={self.port}, server={self.server!r})"

    # ------------------------------------------------------------------ public API
    def start(self) -> ConnectionSettings:
        """Start PgBouncer (idempotent: a running one re-reads its config) and return the lesson's
        settings through it. Raises PgBouncerMissingError when PgBouncer is not installed."""
        binary = find_pgbouncer()
        if binary is None:
            raise PgBouncerMissingError(
                "PgBouncer is not installed: no `pgbouncer` on PATH, next to this Python, or in "
                f"{', '.join(SYSTEM_DIRS)}. What to do: {INSTALL_ADVICE}.")
        with self._lock():
            runas = current_runas()
            if runas.is_other_user and not runas.can_reach(Path(binary), "-x"):
                raise PgBouncerError(
                    f"PgBouncer refuses to run as root, so the kit runs it as {runas.name!r}, who cannot "
                    f"execute {binary}. What to do: install it system-wide (`apt-get install pgbouncer`) "
                    "or run the kit as a normal user.")
            real = self._prepare_dir(runas)
            self._write_auth_file(real, runas)
            pid = self._running_pid(real)
            if pid is not None:
                running_port = self._configured_port()
                if running_port is not None and running_port != self.port:
                    raise PgBouncerError(
                        f"PgBouncer already runs for this server on port {running_port}, not {self.port} "
                        "(it cannot move while running). What to do: use port "
                        f"{running_port}, or stop it first (`pgfactory-kit down`, or LocalPgBouncer.stop()).")
                self._write_ini(real, runas)
                os.kill(pid, signal.SIGHUP)  # re-read the config and the auth file
                return self.settings()
            if not self._port_explicit and not port_free(self.host, self.port):
                self.port = free_port(self.host)
            self._check_port_free()
            self._write_ini(real, runas)
            with contextlib.suppress(FileNotFoundError):
                (real / PID_FILE).unlink()
            self._launch(binary, real, runas)
        return self.settings()

    def stop(self) -> None:
        """Stop PgBouncer if it runs (safe shutdown, then immediate, then kill). Idempotent."""
        with self._lock():
            real = self._real_dir()
            pid = self._running_pid(real)
            if pid is None:
                return
            for sig, wait_s in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGTERM, STOP_TIMEOUT_S),
                                (signal.SIGKILL, STOP_TIMEOUT_S)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if wait_until(lambda: not pid_alive(pid), wait_s):
                    break
            with contextlib.suppress(FileNotFoundError):
                (real / PID_FILE).unlink()

    def destroy(self) -> None:
        """Stop PgBouncer and delete its folder (config, auth file, log), relocated copy included."""
        self.stop()
        remove_folder(self.dir)

    def status(self) -> PgBouncerStatus:
        """Whether PgBouncer is installed and runs, where, and which version."""
        binary = find_pgbouncer()
        pid = self._running_pid(self._real_dir())
        version = None
        if binary is not None:
            out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
            version = (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else None
        return PgBouncerStatus(installed=binary is not None, running=pid is not None, pid=pid, host=self.host,
                               port=self.port, server_port=self.server.port, binary=binary, version=version,
                               config_dir=self.dir)

    def describe(self) -> str:
        """A few lines for ``pgfactory-kit status``: installed? running? where?"""
        return str(self.status())

    def settings(self) -> ConnectionSettings:
        """The blog's credentials, through PgBouncer (TCP, scram-sha-256)."""
        return self.server.settings().with_(host=self.host, port=self.port)

    def console_settings(self) -> ConnectionSettings:
        """The admin console (database ``pgbouncer``): SHOW POOLS, SHOW SERVERS, … (autocommit only)."""
        password = (self._real_dir() / CONSOLE_PASSWORD_FILE).read_text().strip()
        return ConnectionSettings(host=self.host, port=self.port, dbname=CONSOLE_DB, user=CONSOLE_USER,
                                  password=password, application_name="pgfactory_kit_console")

    def show(self, what: str) -> list[dict[str, Any]]:
        """Rows of ``SHOW <what>`` on the admin console (``pools``, ``servers``, ``clients``, ``stats``…)."""
        command = CONSOLE_SHOW_COMMANDS.get(what.lower())
        if command is None:
            raise ValueError(f"SHOW {what!r}: expected one of {', '.join(sorted(CONSOLE_SHOW_COMMANDS))}")
        conn = psycopg2.connect(**self.console_settings().connect_kwargs())
        try:
            conn.autocommit = True  # the console knows no BEGIN
            with conn.cursor() as cur:
                cur.execute(command)
                names = [col.name for col in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()

    @property
    def log_file(self) -> Path:
        return self._real_dir() / LOG_FILE

    # ------------------------------------------------------------------ steps
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with file_lock(self.server.state_dir / f".{DIR_NAME}.lock"):
            yield

    def _real_dir(self) -> Path:
        return real_dir(self.dir)

    def _prepare_dir(self, runas: RunAs) -> Path:
        """Create the config folder, owned by whoever runs PgBouncer. When that user cannot reach the
        project (root's home, pytest's temp dirs), the folder lives where it can, behind a symlink:
        inside the server's relocated cluster (so ``LocalServer.destroy()`` removes it too), else under
        /var/lib/pgfactory-kit."""
        if self.dir.is_symlink():
            real = self.dir.resolve()
        elif runas.is_other_user and not runas.can_reach(self.server.state_dir, "-x"):
            cluster = self.server.data_dir.resolve()
            if self.server.data_dir.is_symlink() and runas.can_reach(cluster, "-w"):
                real = cluster / self.dir.name
            else:
                real = relocation_target(DIR_NAME, self.dir)
            if self.dir.exists():
                shutil.rmtree(self.dir)
            self.dir.symlink_to(real, target_is_directory=True)
        else:
            real = self.dir
        try:
            real.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PgBouncerError(f"cannot create {real} ({exc.strerror}). What to do: fix the permissions "
                                 f"of {self.server.state_dir}.") from None
        runas.chown(real)
        os.chmod(real, 0o700)
        return real

    def _write_auth_file(self, real: Path, runas: RunAs) -> None:
        """The login roles' SCRAM verifiers from pg_authid, plus the console user's (made here)."""
        try:
            conn = psycopg2.connect(**self.server.admin_settings().connect_kwargs())
        except (OSError, psycopg2.OperationalError) as exc:
            raise PgBouncerError(
                f"PgBouncer needs the kit's server, which did not answer on {self.server.host}:"
                f"{self.server.port} ({type(exc).__name__}). What to do: start it first "
                "(`pgfactory-kit up --pgbouncer` does both).") from None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolcanlogin AND NOT rolsuper "
                            "AND rolpassword LIKE 'SCRAM-SHA-256$%%' ORDER BY rolname")
                entries = cur.fetchall()
        finally:
            conn.close()
        secret_file = real / CONSOLE_PASSWORD_FILE
        if not secret_file.exists():
            write_private(secret_file, secrets.token_urlsafe(24) + "\n")
        console_password = secret_file.read_text().strip()
        entries.append((CONSOLE_USER, scram_verifier(console_password)))
        lines = [f'"{_quote(name)}" "{_quote(secret)}"' for name, secret in entries]
        write_private(real / AUTH_FILE, "\n".join(lines) + "\n")
        runas.chown(real / AUTH_FILE)

    def _write_ini(self, real: Path, runas: RunAs) -> None:
        text = "\n".join([
            "; Written by pgfactory-kit on every start; change LocalPgBouncer instead.",
            "[databases]",
            f"* = host={self.server.host} port={self.server.port}",
            "",
            "[pgbouncer]",
            f"listen_addr = {self.host}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = scram-sha-256",
            f"auth_file = {real / AUTH_FILE}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "min_pool_size = 0",
            f"max_client_conn = {self.max_client_conn}",
            f"admin_users = {CONSOLE_USER}",
            f"stats_users = {DEFAULT_USER}",
            "ignore_startup_parameters = extra_float_digits",
            f"logfile = {real / LOG_FILE}",
            f"pidfile = {real / PID_FILE}",
            "",
        ])
        (real / INI_FILE).write_text(text)
        runas.chown(real / INI_FILE)

    def _launch(self, binary: str, real: Path, runas: RunAs) -> None:
        result = run_captured([binary, "-d", "-q", str(real / INI_FILE)], runas)  # the daemon inherits the files
        output = result.stdout + result.stderr
        ready = result.returncode == 0 and wait_until(
            lambda: self._running_pid(real) is not None and not port_free(self.host, self.port), START_TIMEOUT_S)
        if not ready:
            raise PgBouncerError(
                f"PgBouncer did not come up on {self.host}:{self.port} (exit code {result.returncode}).\n"
                f"{tail(output)}\nLast lines of {real / LOG_FILE}:\n{tail(read_text(real / LOG_FILE))}\n"
                "What to do: read the lines above; `pgfactory-kit down` then `pgfactory-kit up --pgbouncer` retries.")

    def _running_pid(self, real: Path) -> int | None:
        """The pid from the pid file when that process is alive and runs this config."""
        pid = live_pid(real / PID_FILE)
        if pid is None:
            return None
        try:
            cmdline = psutil.Process(pid).cmdline()
        except (psutil.AccessDenied, psutil.ZombieProcess):
            return pid
        except psutil.NoSuchProcess:
            return None
        return pid if str(real / INI_FILE) in cmdline else None

    def _configured_port(self) -> int | None:
        """The port in the config of a PgBouncer that already runs for this server."""
        real = self._real_dir()
        if self._running_pid(real) is None:
            return None
        return configured_port(real / INI_FILE, "listen_port")

    def _check_port_free(self) -> None:
        if not port_free(self.host, self.port):
            raise PgBouncerError(
                f"port {self.port} on {self.host} is already in use by another program, so PgBouncer cannot "
                f"listen there. What to do: stop that program, or choose another port with "
                f"{PORT_ENV}=N or LocalPgBouncer(server, port=N).")


def _quote(value: str) -> str:
    return value.replace('"', '""')
