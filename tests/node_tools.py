"""The Node tools some tests use (tests/node/package.json): installed into tests/node/node_modules by
.ci/run, or here on first use with the machine's npm; a test skips, saying why, where there is no Node."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
INSTALL_TIMEOUT_S = 300


def node_tools() -> Path:
    """``tests/node`` with its ``node_modules`` installed (``npm ci``, from the committed lock file)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs Node.js and npm (.ci/run installs them)")
    marker = NODE_DIR / "node_modules" / ".package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < (NODE_DIR / "package-lock.json").stat().st_mtime:
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                                capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
        if result.returncode != 0:
            pytest.fail(f"npm ci in {NODE_DIR} failed:\n{result.stderr[-2000:]}")
    return NODE_DIR


def node_bin(name: str) -> Path:
    """An installed tool's command, e.g. ``configurable-http-proxy``."""
    return node_tools() / "node_modules" / ".bin" / name
