"""``pgfactory-kit report``: run every lesson notebook headless and write an HTML report (the work is
``lessons/report.py``'s; this module parses the options and prints the outcome)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import paths
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The report subcommand's options."""
    parser.add_argument("--out", type=options.folder_to_create, default=Path("report"),
                        help="output folder (default: report/)")
    parser.add_argument("--quick", action="store_true",
                        help="small, fast versions of the lessons (sets PGFACTORY_QUICK=1), as CI runs them")
    parser.add_argument("--notebooks", type=options.existing_folder, default=None,
                        help="folder with the lesson notebooks (default: notebooks/ in the project)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only notebooks whose file name contains TEXT (repeatable), e.g. --only 01")
    parser.add_argument("--timeout", type=options.real(1.0, 86_400.0, "seconds per cell, e.g. --timeout 900"),
                        default=900.0,
                        help="seconds one cell may run before the notebook is stopped (default 900)")


def run(args: argparse.Namespace) -> int:
    """Write the report into ``args.out``; the exit code is 0 only if every notebook ran cleanly."""
    from ..lessons.report import LESSON_GLOB, build_report, find_notebooks  # nbformat: slow to import

    folder = args.notebooks or paths.project_root() / "notebooks"
    notebooks = find_notebooks(folder, args.only)
    if not notebooks:
        print(f"pgfactory-kit report: no notebooks matching {LESSON_GLOB} in {folder}"
              + (f" containing {args.only}" if args.only else ""), file=sys.stderr)
        return 2
    results = build_report(notebooks, args.out, quick=args.quick, cell_timeout=args.timeout)
    failed = [r for r in results if r.error]
    print(f"Report: {args.out.resolve() / 'index.html'} — {len(results) - len(failed)} of {len(results)} "
          "notebooks ran cleanly" + (f"; failed: {', '.join(r.notebook.name for r in failed)}" if failed else ""))
    return 1 if failed else 0
