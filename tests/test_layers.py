"""The package's imports point only downward (the layout of issue #16, drawn in ``pgfactory_kit/__init__``):

    lessons  ->  measuring  ->  pooling, servers  ->  settings, factory, errors, paths

``cli`` and the package's ``__init__`` (the public API) may import from any layer. ``pooling`` and
``servers`` are side by side: neither imports the other. Imports inside functions and under
``TYPE_CHECKING`` count too, so a layer cannot reach up by importing late.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pgfactory_kit"
BOTTOM = {"settings", "factory", "errors", "paths"}
RANK = {"bottom": 0, "pooling": 1, "servers": 1, "measuring": 2, "lessons": 3}
ANYTHING_GOES = {"cli", "__init__"}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def known_modules(root: Path = PACKAGE) -> set[str]:
    return {module_name(p, root) for p in root.rglob("*.py")}


def imported_modules(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every pgfactory_kit module ``path`` imports, anywhere in the file, resolved to a module name."""
    here = module_name(path, root)
    package = here if is_package(path) else here.rpartition(".")[0]
    modules = known_modules(root)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == root.name}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return found


def layer(module: str) -> str:
    """A layer's subpackage name, ``__init__`` for the package itself, else ``bottom`` (every top-level
    module, BOTTOM's and any new one such as a checks module, is held to the bottom layer's rule)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1] if parts[1] in RANK or parts[1] in ANYTHING_GOES else "bottom"


def violations(root: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        here = module_name(path, root)
        mine = layer(here)
        if mine in ANYTHING_GOES:
            continue
        for target in sorted(imported_modules(path, root)):
            theirs = layer(target)
            if theirs == mine:
                continue
            if theirs in ANYTHING_GOES or RANK.get(theirs, 99) >= RANK[mine]:
                bad.append(f"{here} ({mine}) imports {target} ({theirs})")
    return bad


def test_imports_point_only_downward():
    assert violations() == []


def test_the_check_sees_the_imports_it_judges():
    """Not vacuous: the known downward edges are found, relative and late imports included."""
    assert "pgfactory_kit.errors" in imported_modules(PACKAGE / "pooling" / "pool.py")
    assert "pgfactory_kit.pooling.fork" in imported_modules(PACKAGE / "pooling" / "pool.py")
    assert "pgfactory_kit.paths" in imported_modules(PACKAGE / "servers" / "postgres.py")
    assert "pgfactory_kit.servers.postgres" in imported_modules(PACKAGE / "lessons" / "lesson.py")
    assert {layer(f"pgfactory_kit.{name}") for name in BOTTOM} == {"bottom"}


@pytest.mark.parametrize("source, culprit", [
    ("from ..servers.postgres import LocalServer\n", "pgfactory_kit.servers.postgres"),
    ("def late():\n    from ..measuring import runner\n", "pgfactory_kit.measuring.runner"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..lessons.lesson import show\n",
     "pgfactory_kit.lessons.lesson"),
    ("import pgfactory_kit.cli\n", "pgfactory_kit.cli"),
    ("from .. import LocalServer\n", "pgfactory_kit"),
])
def test_an_upward_import_from_pooling_is_reported(tmp_path, source, culprit):
    root = tmp_path / "pgfactory_kit"
    for sub in ("", "pooling", "servers", "measuring", "lessons", "cli"):
        (root / sub).mkdir(exist_ok=True)
        (root / sub / "__init__.py").write_text("")
    for name in ("servers/postgres.py", "measuring/runner.py", "lessons/lesson.py", "errors.py"):
        (root / name).write_text("")
    (root / "pooling" / "pool.py").write_text("from ..errors import X\n" + source)
    found = violations(root)
    assert found == [f"pgfactory_kit.pooling.pool (pooling) imports {culprit} ({layer(culprit)})"]


def test_importing_the_lessons_loads_neither_pandas_nor_matplotlib():
    """Every notebook's first cell and each exercise checker import ``pgfactory_kit.lessons``; the heavy
    libraries load only when a helper that draws or tabulates is called (docs/layout.md)."""
    import subprocess
    import sys

    probe = ("import sys, pgfactory_kit.lessons, pgfactory_kit.lessons.exercises; "
             "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            cwd=PACKAGE.parent, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
