"""argparse types for the ``pgfactory-kit`` options: each value is checked while the command line is parsed.

A bad value makes argparse print ``argument --rtt-ms: must be 0 or more, got -5; …`` and exit with
status 2 before the command does anything. The rules are the Python API's (``pgfactory_kit.checks``).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from .. import checks
from ..settings import ConnectionSettings

MAX_PORT = 65535


def _refuse(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def whole(minimum: int, maximum: int, hint: str) -> Callable[[str], int]:
    """A whole number in ``minimum..maximum``; the message quotes the value as typed."""
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise _refuse(f"must be a whole number, got {raw!r}; {hint}") from None
        if not minimum <= value <= maximum:
            rule = f"{minimum} or more" if maximum >= 10**9 else f"between {minimum} and {maximum}"
            raise _refuse(f"must be {rule}, got {raw.strip()}; {hint}")
        return value
    parse.__name__ = "whole number"
    return parse


def real(minimum: float, maximum: float, hint: str, above: bool = False) -> Callable[[str], float]:
    """A finite number in ``[minimum, maximum]`` (``(minimum, maximum]`` when ``above``)."""
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise _refuse(f"must be a number, got {raw!r}; {hint}") from None
        if not math.isfinite(value):
            raise _refuse(f"must be a finite number, got {raw.strip()}; {hint}")
        low_ok = value > minimum if above else value >= minimum
        if not low_ok or value > maximum:
            rule = f"more than {minimum:g}" if above else f"{minimum:g} or more"
            raise _refuse(f"must be {rule} (at most {maximum:g}), got {raw.strip()}; {hint}")
        return value
    parse.__name__ = "number"
    return parse


PORT = whole(1, MAX_PORT, "give a TCP port, e.g. --port 15432")


def folder_to_create(raw: str) -> Path:
    """A folder that exists and is writable, or can be created."""
    return _path(raw, lambda name, p: checks.creatable_dir(name, p))


def existing_folder(raw: str) -> Path:
    """A folder that exists (a server's data directory, the notebooks)."""
    return _path(raw, lambda name, p: checks.existing_dir(
        name, p, hint="give a folder that exists (for the kit's server: the --data-dir that `pgfactory-kit up` "
                      "used), or leave the option out"))


def file_to_write(raw: str) -> Path:
    """A file that can be written (its folder exists or can be created)."""
    return _path(raw, lambda name, p: checks.writable_file(name, p))


def bin_folder(raw: str) -> Path:
    """A folder with the PostgreSQL server binaries postgres and initdb."""
    path = _path(raw, lambda name, p: checks.existing_dir(name, p))
    missing = [exe for exe in ("postgres", "initdb") if not (path.expanduser() / exe).is_file()]
    if missing:
        raise _refuse(f"{raw} has no {' or '.join(missing)}; give the folder holding postgres, initdb and "
                      "pg_ctl (e.g. /usr/lib/postgresql/15/bin), or leave --bin-dir out")
    return path


def _path(raw: str, check: Callable[[str, Path], Path]) -> Path:
    if not raw.strip() or "\x00" in raw:
        raise _refuse(f"must be a path, got {raw!r}")
    try:
        return check("", Path(raw))
    except ValueError as exc:
        raise _refuse(str(exc).strip()) from None


def dsn(raw: str) -> str:
    """A DSN that parses (checked here; the password is never echoed)."""
    try:
        ConnectionSettings.from_dsn(raw)
    except (TypeError, ValueError) as exc:
        raise _refuse(f"is not a usable DSN: {exc}") from None
    return raw


def non_empty(what: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not raw.strip() or "\x00" in raw:
            raise _refuse(f"must not be empty; give {what}")
        return raw.strip()
    parse.__name__ = "text"
    return parse
