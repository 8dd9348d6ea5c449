"""Where the kit keeps its state: the project root, ``.pgfactory/`` and the env file ``up`` writes."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

STATE_DIR_NAME = ".pgfactory"
ENV_FILE_NAME = "kit.env"
PGPASS_FILE_NAME = "pgpass"
# What a wheel carries as copies of the repository's sources (setup.py copies them at build time).
PACKAGE_DATA_DIR = Path(__file__).resolve().parent / "_data"
_REPO = Path(__file__).resolve().parent.parent


def _packaged_or_repo(name: str, repo_path: Path) -> Path:
    """The wheel's copy when installed from one, else the repository's source (a git clone, editable)."""
    packaged = PACKAGE_DATA_DIR / name
    return packaged if packaged.is_dir() else repo_path


# The schema and seed of the lessons' table ``mytable``: the repo's data/initdb, also docker-compose's.
SQL_DIR = _packaged_or_repo("initdb", _REPO / "data" / "initdb")
# The lessons (and solutions/): what `pgfactory-kit notebooks DIR` copies.
NOTEBOOKS_DIR = _packaged_or_repo("notebooks", _REPO / "notebooks")


def project_root(environ: Mapping[str, str] | None = None) -> Path:
    """``PGFACTORY_HOME`` if set, else the nearest directory (from the cwd up) holding the kit's
    ``pyproject.toml`` or a ``.pgfactory/`` folder, else the cwd."""
    env = os.environ if environ is None else environ
    if env.get("PGFACTORY_HOME"):
        return Path(env["PGFACTORY_HOME"]).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / STATE_DIR_NAME).is_dir():
            return folder
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "pgfactory-kit"' in pyproject.read_text(encoding="utf-8"):
            return folder
    return cwd


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``<project>/.pgfactory``: data, logs, the env file and the pgpass file."""
    return project_root(environ) / STATE_DIR_NAME


def kit_env_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The env file written by ``pgfactory-kit up`` (``PGFACTORY_ENV_FILE`` overrides)."""
    env = os.environ if environ is None else environ
    if env.get("PGFACTORY_ENV_FILE"):
        return Path(env["PGFACTORY_ENV_FILE"])
    return state_dir(env) / ENV_FILE_NAME


def find_upwards(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """``name`` in the project root, else in the cwd, or None (no wider search: a stray ``.env``
    higher up must not redirect the kit)."""
    for folder in (project_root(environ), Path.cwd().resolve()):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None
