"""Running the lesson notebooks headless, and the expected outputs nbval compares.

Notebooks are committed without outputs. A cell whose output is the same everywhere starts with
``# NBVAL_CHECK_OUTPUT`` and keeps the text it must print in its metadata
(``metadata["expected_output"]``); ``with_expected_outputs`` puts that text back as the cell's
reference output in a copy, so ``pytest --nbval-lax`` compares it. To (re)record the expected
text after editing such a cell::

    PGFACTORY_QUICK=1 python -m pgfactory_kit.lessons.notebooks record notebooks/01_blog_factory.ipynb
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nbformat

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
EXPECTED_KEY = "expected_output"
KERNEL_NAME = "python3"


def is_checked(cell: nbformat.NotebookNode) -> bool:
    """True for a code cell whose output nbval compares."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK_MARK)


def strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as it is committed: no outputs, no execution counts (changed in place)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def with_expected_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy in which every checked cell has its expected text as reference output, for nbval."""
    out = copy.deepcopy(nb)
    count = 0
    for cell in out.cells:
        if cell.cell_type != "code":
            continue
        count += 1
        if is_checked(cell):
            text = cell.metadata.get(EXPECTED_KEY)
            if text is None:
                raise ValueError(f"a {CHECK_MARK} cell has no metadata[{EXPECTED_KEY!r}]: record it with "
                                 "`python -m pgfactory_kit.lessons.notebooks record NOTEBOOK`")
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)] if text else []
            cell.execution_count = count
    return out


def stdout_of(cell: nbformat.NotebookNode) -> str:
    """Everything a code cell printed to stdout."""
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def errors_of(nb: nbformat.NotebookNode) -> list[str]:
    """The error outputs of an executed notebook, as 'ename: evalue' lines."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                found.append(f"{output.get('ename')}: {output.get('evalue')}")
    return found


@dataclass
class Execution:
    """One notebook run headless: the executed notebook, how long it took, and the error if any."""

    path: Path
    notebook: nbformat.NotebookNode
    seconds: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def execute(path: Path, env: Mapping[str, str] | None = None, *, timeout: float = 600,
            cell_timeout: float = 300) -> Execution:
    """Run ``path`` top to bottom in a fresh ``python3`` kernel started in the notebook's folder,
    with ``env`` as its environment. Stops at the first failing cell (the error is returned, not raised)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    from .kernels import kernel_manager_class

    client = NotebookClient(nb, timeout=cell_timeout, kernel_name=KERNEL_NAME, allow_errors=False,
                            kernel_manager_class=kernel_manager_class(),  # IPC: no "TCP without encryption" warning
                            resources={"metadata": {"path": str(Path(path).parent)}})
    started = time.monotonic()
    error: str | None = None
    try:
        client.execute(env=dict(env if env is not None else os.environ))
    except CellExecutionError as exc:
        error = _first_line_of_error(str(exc))
    except (CellTimeoutError, DeadKernelError, TimeoutError, RuntimeError) as exc:
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    seconds = time.monotonic() - started
    if error is None and seconds > timeout:
        error = f"took {seconds:.0f}s, more than the {timeout:.0f}s allowed"
    return Execution(Path(path), nb, seconds, error)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line_of_error(text: str) -> str:
    lines = [line for line in _ANSI.sub("", text).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line or "assert" in line.lower():
            return line.strip()[:300]
    return (lines[-1] if lines else "cell failed")[:300]


def record_expected(path: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Execute ``path`` and store each checked cell's stdout as its expected output; the notebook
    is written back without outputs. Returns the recorded texts."""
    run = execute(path, env)
    if not run.ok:
        raise RuntimeError(f"{path} failed, nothing recorded: {run.error}")
    original = nbformat.read(path, as_version=4)
    recorded = []
    for cell, executed in zip(original.cells, run.notebook.cells, strict=True):
        if is_checked(cell):
            cell.metadata[EXPECTED_KEY] = stdout_of(executed)
            recorded.append(cell.metadata[EXPECTED_KEY])
    nbformat.write(strip_outputs(original), path)
    return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgfactory_kit.lessons.notebooks",
                                     description="Record the expected output of # NBVAL_CHECK_OUTPUT cells.")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="execute notebooks and store their checked cells' output")
    rec.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    env = dict(os.environ)
    for path in args.notebooks:
        texts = record_expected(path, env)
        print(f"{path}: recorded {len(texts)} checked cell(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
