"""Build-time step only (metadata is in pyproject.toml): the wheel carries copies of the repository's one
source of the seed SQL (data/initdb, which docker-compose mounts too) and of the notebooks, as
``pgfactory_kit/_data/``. tests/test_wheel.py checks that the copies are byte for byte the sources."""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (source in the repository, folder under pgfactory_kit/_data/ in the wheel, files to take)
PACKAGE_DATA = [(ROOT / "data" / "initdb", "initdb", "*.sql"),
                (ROOT / "notebooks", "notebooks", "**/*.ipynb"),
                (ROOT / "notebooks", "notebooks", "README.md")]


class BuildPyWithLessons(build_py):
    """``build_py`` plus the copies into the build tree (never into the source tree)."""

    def run(self) -> None:
        super().run()
        for source, name, pattern in PACKAGE_DATA:
            target = Path(self.build_lib) / "pgfactory_kit" / "_data" / name
            for path in sorted(source.glob(pattern)):
                if ".ipynb_checkpoints" in path.parts:
                    continue
                destination = target / path.relative_to(source)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)


setup(cmdclass={"build_py": BuildPyWithLessons})
