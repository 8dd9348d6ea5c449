"""Checker for notebook 05 (concurrency and pool sizing): size each process's pool so that every
process gets all its connections from a server with few slots."""
from __future__ import annotations

from typing import Any

from . import check, not_attempted, passed, todo


def largest_pool(limits: dict[str, int], processes: int, keep_free: int = 0) -> int:
    """The largest ``max_size`` such that ``processes`` pools fit in the slots open to applications."""
    return (limits["available_to_apps"] - keep_free) // processes


def check_pool_size(max_size: Any, limits: dict[str, int], processes: int, keep_free: int = 0) -> bool:
    """``max_size``: the largest pool size per process such that ``processes`` processes, each with a
    full pool, stay within the server's ``available_to_apps`` slots minus ``keep_free``."""
    if not_attempted(max_size):
        return todo("pool size per process", "replace `...` with the largest max_size that lets every process "
                                              "hold a full pool at once (use `limits` and `PROCESSES`).")
    available = limits["available_to_apps"] - keep_free
    expected = largest_pool(limits, processes, keep_free)
    check(isinstance(max_size, int) and not isinstance(max_size, bool), expected="a whole number of connections",
          seen=max_size, hint="a pool holds whole connections: use integer division `//`.")
    check(max_size >= 1, expected="at least 1 connection per pool", seen=max_size,
          hint="a pool of zero connections serves nobody.")
    if max_size > expected:
        total = max_size * processes
        hint = (f"{processes} processes × {max_size} = {total} connections, but only {available} slots are open "
                f"to ordinary roles")
        if max_size * processes <= limits["max_connections"] - keep_free:
            hint += (f" (max_connections={limits['max_connections']} includes "
                     f"{limits['superuser_reserved_connections']} slots reserved for superusers)")
        check(False, expected=f"max_size × {processes} <= {available}", seen=max_size, hint=hint + ".")
    check(max_size == expected, expected=f"the largest size that fits: {expected}", seen=max_size,
          hint=f"{processes} × {max_size + 1} = {processes * (max_size + 1)} still fits in {available} slots; "
               "a bigger pool is free headroom for bursts.")
    return passed("pool size per process", f"{processes} × {max_size} = {processes * max_size} connections "
                                           f"<= {available} slots open to applications.")
