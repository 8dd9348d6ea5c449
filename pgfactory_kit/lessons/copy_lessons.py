"""Copy the lessons out of an installed kit: what `pgfactory-kit notebooks DIR` does for a pip or hub user,
who has no git clone. A learner's own edits are never overwritten unless asked (``overwrite=True``)."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths


@dataclass
class CopyResult:
    """Which files were written and which were kept because the learner already has them."""

    folder: Path
    copied: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def lesson_files(source: Path | None = None) -> list[Path]:
    """The notebooks, solutions/ and the lesson plan (README.md), relative to ``source``."""
    source = source or paths.NOTEBOOKS_DIR
    files = [p for p in source.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    if (source / "README.md").is_file():
        files.append(source / "README.md")
    return sorted(p.relative_to(source) for p in files)


def copy_notebooks(folder: str | os.PathLike[str], *, overwrite: bool = False,
                   source: Path | None = None) -> CopyResult:
    """Copy every lesson file into ``folder`` (created if missing), keeping files already there."""
    source = source or paths.NOTEBOOKS_DIR
    if not source.is_dir():
        raise FileNotFoundError(f"the kit's notebooks are not in {source}: reinstall the kit "
                                "(`pip install --force-reinstall pgfactory-kit`) or use a git clone's notebooks/")
    result = CopyResult(Path(folder).expanduser().absolute())
    for relative in lesson_files(source):
        target = result.folder / relative
        if target.exists() and not overwrite:
            result.kept.append(relative)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target)
        result.copied.append(relative)
    return result
