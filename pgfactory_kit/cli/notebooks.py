"""``pgfactory-kit notebooks DIR``: copy the lessons (and solutions/) into a folder."""
from __future__ import annotations

import argparse

from ..lessons.copy_lessons import copy_notebooks
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=options.folder_to_create, help="where to put the notebooks (created if missing)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite notebooks already there (default: keep them, they may hold your work)")


def run(args: argparse.Namespace) -> int:
    try:
        result = copy_notebooks(args.folder, overwrite=args.force)
    except (FileNotFoundError, OSError) as exc:
        print(f"pgfactory-kit notebooks: {exc}")
        return 1
    print(f"Copied {len(result.copied)} file(s) to {result.folder}"
          + (f"; kept {len(result.kept)} already there (--force overwrites)" if result.kept else "") + ".")
    print(f"Next: `pgfactory-kit up`, then `jupyter lab {result.folder}` and open 00_setup.ipynb.")
    return 0
