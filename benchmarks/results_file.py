"""Write one benchmark's measured block into benchmarks/RESULTS.md, leaving every other section alone;
and the start of every block's "Machine:" line (``machine_and_server``).

Each benchmark owns a section (``## Pool``) and, inside it, a block between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` markers that it replaces on every run; prose around the block is kept."""
from __future__ import annotations

import contextlib
import os
import platform
import re
from pathlib import Path
from typing import Any

import psycopg2

from pgfactory_kit.measuring.machine import server_version

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine_and_server(settings: Any) -> tuple[str, str]:
    """("<platform>, <n> CPUs, Python <version>", the PostgreSQL version at ``settings``)."""
    with contextlib.closing(psycopg2.connect(**settings.connect_kwargs())) as conn:
        version = server_version(conn)
    return f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}", version


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of benchmark ``name``'s measured block."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_block(name: str, section: str, body: str, results: Path = RESULTS) -> None:
    """Put ``body`` between ``name``'s markers under heading ``section`` (created at the end if missing)."""
    start, end = markers(name)
    measured = f"{start}\n{body}\n{end}"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: measured, text, flags=re.S)
    elif section in text:
        text = text.replace(section + "\n", section + "\n\n" + measured + "\n", 1)
    else:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{measured}\n"
    results.write_text(text)
