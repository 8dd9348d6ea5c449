"""Checks for the values people pass in: one place that says what is wrong, naming the parameter.

Each check returns the value (converted where that is safe: ``"5432"`` -> ``5432``) or raises
``TypeError`` (wrong kind of value) / ``ValueError`` (right kind, out of range) with a message of the form
``<name> must be <rule>, got <value>`` plus what to do. The CLI's argparse types (``cli/options.py``) use
the same rules, so the command line and the Python API refuse the same values in the same words.
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def _tail(hint: str) -> str:
    return f"; {hint}" if hint else ""


def _range_rule(minimum: float | None, maximum: float | None, unit: str = "") -> str:
    unit = f" {unit}" if unit else ""
    if minimum is not None and maximum is not None:
        return f"between {minimum:g} and {maximum:g}{unit}"
    if minimum is not None:
        return f"{minimum:g}{unit} or more"
    if maximum is not None:
        return f"{maximum:g}{unit} or less"
    return "a number"


def whole_number(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None,
                 hint: str = "", allow_text: bool = False) -> int:
    """``value`` as an int within ``[minimum, maximum]``. Strings of digits only when ``allow_text``
    (values read from a DSN or an environment variable); never a bool or a float with a fraction."""
    kinds = (numbers.Integral, str) if allow_text else (numbers.Integral,)  # numpy's ints are Integral too
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}){_tail(hint)}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {value!r}{_tail(hint)}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {_range_rule(minimum, maximum)}, got {value}{_tail(hint)}")
    return int(value)


def real_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                above: float | None = None, unit: str = "", hint: str = "") -> float:
    """``value`` as a finite float within ``[minimum, maximum]`` (and ``> above`` when given)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}){_tail(hint)}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}{_tail(hint)}")
    if above is not None and number <= above:
        raise ValueError(f"{name} must be more than {above:g}{' ' + unit if unit else ''}, got {value!r}"
                         f"{_tail(hint)}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {_range_rule(minimum, maximum, unit)}, got {value!r}{_tail(hint)}")
    return number


def one_of(name: str, value: Any, choices: Iterable[str], *, allow_none: bool = False) -> str | None:
    """``value`` if it is one of ``choices`` (or None when ``allow_none``)."""
    options = list(choices)
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


def names(name: str, values: Any, choices: Sequence[str]) -> tuple[str, ...]:
    """A non-empty sequence of names from ``choices`` (a lone string is refused: it is not a list)."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list of names from {', '.join(choices)}, got {values!r} "
                        f"(write {name}=({values!r},) for one)" if isinstance(values, str) else
                        f"{name} must be a list of names from {', '.join(choices)}, got {values!r}")
    found = tuple(values)
    if not found:
        raise ValueError(f"{name} must name at least one of {', '.join(choices)}, got none")
    unknown = [v for v in found if v not in choices]
    if unknown:
        raise ValueError(f"{name}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}")
    return found


def text(name: str, value: Any, *, allow_none: bool = False, hint: str = "") -> str | None:
    """A non-empty string without NUL characters (or None when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r} ({type(value).__name__}){_tail(hint)}")
    if not value.strip() or "\x00" in value:
        raise ValueError(f"{name} must be a non-empty string without NUL characters, got {value!r}{_tail(hint)}")
    return value


def path(name: str, value: Any, *, allow_none: bool = False) -> Path | None:
    """A ``str`` / ``os.PathLike`` as a Path (existence is checked where it is used)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {value!r} ({type(value).__name__})")
    if not str(value).strip() or "\x00" in str(value):
        raise ValueError(f"{name} must be a non-empty path, got {str(value)!r}")
    return Path(value)


def creatable_dir(name: str, value: Path) -> Path:
    """``value`` if it is a writable directory or can be created as one; ValueError saying why not."""
    folder = value.expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{name} {value} is a file, not a folder; choose a folder (it is created if missing)")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{name} {value} cannot be created: {probe} is a file; choose another folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "it is" if probe == folder else f"{probe} is"
        raise ValueError(f"{name} {value} is not usable: {where} not writable by this user; choose a "
                         "folder you can write to")
    return value


def existing_dir(name: str, value: Path, hint: str = "") -> Path:
    """``value`` if it is an existing directory."""
    folder = value.expanduser()
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ValueError(f"{name} {value} {state}{_tail(hint)}")
    return value


def writable_file(name: str, value: Path) -> Path:
    """``value`` if it can be written as a file (its folder exists or can be created)."""
    target = value.expanduser().absolute()
    if target.is_dir():
        raise ValueError(f"{name} {value} is a folder; give a file name, e.g. {value}/credentials.csv")
    creatable_dir(name, target.parent)
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"{name} {value} is not writable by this user; choose another file")
    return value
