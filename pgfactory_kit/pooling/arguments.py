"""The wrappers' constructor checks: bad arguments are refused before anything is opened.

Each message names the parameter as the caller wrote it, what was given, and what to pass instead.
"""
from __future__ import annotations

import math
from typing import Any


def check_factory(factory: Any) -> None:
    """``factory`` must be callable with no arguments (the blog's ``create_connection`` is)."""
    if not callable(factory):
        raise TypeError(f"factory must be a zero-argument callable returning a psycopg2 connection, "
                        f"not {type(factory).__name__}")


def check_pool_arguments(factory: Any, min_size: Any, max_size: Any, timeout: Any, max_lifetime: Any,
                         max_idle: Any, check_after: Any, reset: Any) -> None:
    """Refuse bad arguments before anything is opened, naming the parameter and what to pass instead."""
    check_factory(factory)
    if reset is not None and not callable(reset):
        raise TypeError(f"reset must be a callable taking a connection, or None; got {type(reset).__name__}")
    for label, value in (("min_size", min_size), ("max_size", max_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{label} must be a whole number, got {value!r} ({type(value).__name__})")
    if max_size < 1:
        raise ValueError(f"max_size must be 1 or more, got {max_size}")
    if not 0 <= min_size <= max_size:
        raise ValueError(f"min_size must be between 0 and max_size ({max_size}), got {min_size}")
    for label, value in (("timeout", timeout), ("check_after", check_after), ("max_lifetime", max_lifetime),
                         ("max_idle", max_idle)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{label} must be a number of seconds, got {value!r} ({type(value).__name__})")
        if math.isnan(value) or value < 0:
            raise ValueError(f"{label} must be 0 seconds or more, got {value}")
    for label, value in (("max_lifetime", max_lifetime), ("max_idle", max_idle)):
        if value == 0:
            raise ValueError(f"{label} must be more than 0 seconds, got 0: every connection would be closed "
                             f"right after its first use. What to do: pass a number of seconds, or "
                             f"float('inf') never to retire connections for this reason.")
