"""What the kit's daemons (PostgreSQL, PgBouncer) share: a lock per daemon across processes, the
symlinked folder a service user can reach, pid files, ports, private files and running their commands.

``postgres.py`` and ``pgbouncer.py`` differ in what they run; how they look after it is here, once.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from ..errors import ServerError
from .service_user import RELOCATION_ROOT, RunAs, relocated_path

LOCALHOST = "127.0.0.1"
LOCK_TIMEOUT_S = 300  # a start or stop that another process holds for longer than this is stuck


# ------------------------------------------------------------------ processes
def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (another user's process counts as alive)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def read_pid(pid_file: Path) -> int | None:
    """The pid a pid (or socket lock) file starts with, or None when it is missing or unreadable."""
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def live_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` when that process is alive, else None."""
    pid = read_pid(pid_file)
    return pid if pid is not None and pid_alive(pid) else None


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` every 50 ms for at most ``timeout_s``; return its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def run_captured(cmd: list[str], runas: RunAs) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as ``runas`` and return its exit code, stdout and stderr. Files, not pipes: a daemon
    that the command starts inherits them and would keep a pipe open forever."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        result = subprocess.run(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                env=runas.env(), check=False, **runas.popen_kwargs())
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, result.returncode, out.read(), err.read())


# ------------------------------------------------------------------ files and folders
def file_lock(lock_path: Path) -> contextlib.AbstractContextManager[None]:
    """Open (creating) ``lock_path`` now, so an unwritable folder raises ``OSError`` here, and return a
    context manager that holds an exclusive lock on it: one start or stop of a daemon at a time."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    open(lock_path, "a+").close()
    return _held(FileLock(str(lock_path), timeout=LOCK_TIMEOUT_S))


@contextlib.contextmanager
def _held(lock: FileLock) -> Iterator[None]:
    """filelock: flock on POSIX, msvcrt's locking on Windows; waits at most LOCK_TIMEOUT_S."""
    try:
        lock.acquire()
    except Timeout:
        raise ServerError(f"another pgfactory-kit process has held {lock.lock_file} for {LOCK_TIMEOUT_S}s while "
                          "starting or stopping a server. What to do: wait for it, or end it, then retry.") from None
    try:
        yield
    finally:
        lock.release()


def real_dir(folder: Path) -> Path:
    """Where ``folder``'s files are: the symlink's target when it was relocated, else itself."""
    return folder.resolve() if folder.is_symlink() else folder


def relocation_target(kind: str, folder: Path) -> Path:
    """A place under ``/var/lib/pgfactory-kit`` for ``folder`` (whose project the service user cannot
    reach), its parents created and opened (0755) so that the service user can walk down to it."""
    real = relocated_path(kind, folder)
    real.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(RELOCATION_ROOT, 0o755)
    os.chmod(real.parent, 0o755)
    return real


def remove_folder(folder: Path) -> None:
    """Delete ``folder``, its relocated copy and the symlink to it, if any."""
    real = real_dir(folder)
    if folder.is_symlink():
        folder.unlink()
    shutil.rmtree(real, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600 from the first byte on)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def read_text(path: Path) -> str:
    """The file's text, or '' when it cannot be read (for error messages only)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.strip().splitlines()[-lines:])


def configured_port(config: Path, key: str,
                    fix: str = "delete that line (the kit writes it again on the next start)") -> int | None:
    """The port in a ``key = value`` config file (``port`` for PostgreSQL, ``listen_port`` for
    PgBouncer), or None when the file or the line is missing. A value that is no port (left by an older
    version) is a ServerError naming the file, the line and ``fix``."""
    try:
        text = config.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.split("#", 1)[0].partition("=")
        if name.strip() != key:
            continue
        value = value.strip()
        if value.isdigit() and 1 <= int(value) <= 65535:
            return int(value)
        raise ServerError(f"{config} says `{key} = {value}` (an older pgfactory-kit may have written it), but a "
                          f"port is a whole number between 1 and 65535. What to do: {fix}.")
    return None


# ------------------------------------------------------------------ ports
def port_free(host: str, port: int) -> bool:
    """Whether nothing accepts connections on ``host:port`` (asked with a connect, 1 s at most)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) != 0


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
