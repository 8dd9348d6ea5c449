"""What `pgfactory_kit` exports is what the README documents as its public API (after httpx's test)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pgfactory_kit

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_names() -> list[str]:
    """The names imported from `pgfactory_kit` in the README's "Public API" code block."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Public API\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has a '## Public API' section"
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert block, "the Public API section shows the import in a python code block"
    names = []
    for node in ast.walk(ast.parse(block.group(1))):
        if isinstance(node, ast.ImportFrom) and node.module == "pgfactory_kit":
            names += [alias.name for alias in node.names]
    return names


def test_all_is_exactly_what_the_readme_documents():
    assert sorted(pgfactory_kit.__all__) == sorted(documented_names())
    assert len(set(pgfactory_kit.__all__)) == len(pgfactory_kit.__all__)


def test_every_exported_name_is_an_attribute_of_the_package_itself():
    for name in pgfactory_kit.__all__:
        member = getattr(pgfactory_kit, name)
        assert member.__module__.startswith("pgfactory_kit."), (name, member.__module__)


def test_the_package_has_no_lazy_module_getattr():
    assert "__getattr__" not in vars(pgfactory_kit)
