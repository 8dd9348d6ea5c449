"""Checker for notebook 06 (concurrency and pool sizing): size each process's pool so that every
process gets all its connections from a server with few slots."""
from __future__ import annotations

import numbers
from typing import Any

from . import Verdict, check, not_attempted, passed, todo


def largest_pool(limits: dict[str, int], processes: int, keep_free: int = 0) -> int:
    """The largest ``max_size`` such that ``processes`` pools fit in the slots open to applications."""
    return (limits["available_to_apps"] - keep_free) // processes


def check_pool_size(max_size: Any, limits: dict[str, int], processes: int, keep_free: int = 0) -> Verdict:
    """``max_size``: the largest pool size per process such that ``processes`` processes, each with a
    full pool, stay within the server's ``available_to_apps`` slots minus ``keep_free``."""
    if not_attempted(max_size):
        return todo("pool size per process", f"replace `...` with the largest max_size that lets {processes} "
                                              f"processes hold a full pool at once, keeping {keep_free} slot(s) "
                                              "free; compute it from `limits`.")
    available = limits["available_to_apps"] - keep_free
    expected = largest_pool(limits, processes, keep_free)
    check(isinstance(max_size, numbers.Integral) and not isinstance(max_size, bool),
          expected="a whole number of connections", seen=max_size,
          hint="a pool holds whole connections: use integer division `//`.")
    check(max_size >= 1, expected="at least 1 connection per pool", seen=max_size,
          hint="a pool of zero connections serves nobody.")
    if max_size > expected:
        total = max_size * processes
        room = f"{limits['available_to_apps']} slots open to ordinary roles"
        if keep_free:
            room += f", minus {keep_free} kept free = {available}"
        hint = f"{processes} processes × {max_size} = {total} connections, but there are only {room}"
        if max_size * processes <= limits["max_connections"] - keep_free:
            hint += (f" (max_connections={limits['max_connections']} includes "
                     f"{limits['superuser_reserved_connections']} slots reserved for superusers)")
        check(False, expected=f"max_size × {processes} <= {available}", seen=max_size, hint=hint + ".")
    check(max_size == expected, expected=f"the largest size that fits: {expected}", seen=max_size,
          hint=f"{processes} × {max_size + 1} = {processes * (max_size + 1)} still fits in {available} slots; "
               "a bigger pool is free headroom for bursts.")
    kept = f", minus the {keep_free} kept free" if keep_free else ""
    return passed("pool size per process", f"{processes} × {max_size} = {processes * max_size} connections "
                                           f"<= {available} slots (those open to applications{kept}).")
