"""Checker for notebook 04 (measuring connect vs reuse): what does one new connection cost?"""
from __future__ import annotations

import math
from typing import Any

from . import Verdict, check, not_attempted, passed, todo


def _median_ms(summary: Any, strategy: str, workload: str) -> float:
    part = summary[(summary["strategy"] == strategy) & (summary["workload"] == workload)]
    if len(part) != 1:
        raise ValueError(f"the summary has no single row for {strategy!r} / {workload!r}: pass the summary "
                         "of the SELECT 1 run (headline.summary())")
    return float(part["median_ms"].iloc[0])


def check_connect_overhead(connect_overhead_ms: Any, summary: Any, workload: str = "select1") -> Verdict:
    """``connect_overhead_ms``: median time per operation of connect_per_query minus that of reused,
    in milliseconds, read from ``summary`` (the SELECT 1 run)."""
    if not_attempted(connect_overhead_ms):
        return todo("connect overhead", "replace `...` with the median of connect_per_query minus the median "
                                        "of reused, in milliseconds, taken from the summary table.")
    expected = _median_ms(summary, "connect_per_query", workload) - _median_ms(summary, "reused", workload)
    check(isinstance(connect_overhead_ms, (int, float)) and math.isfinite(connect_overhead_ms),
          expected="a number of milliseconds", seen=connect_overhead_ms,
          hint="take two values from the `median_ms` column and subtract them; the result is a float.")
    value = float(connect_overhead_ms)
    close = abs(value - expected) <= 0.02 * abs(expected) + 0.01
    if not close:
        for factor, unit in ((1e-3, "seconds"), (1e6, "nanoseconds"), (1e3, "microseconds")):
            if abs(value - expected * factor) <= 0.02 * abs(expected * factor):
                check(False, expected=f"about {expected:.3f} ms", seen=value,
                      hint=f"that looks like {unit}: the summary's `median_ms` is already in milliseconds.")
        check(abs(value + expected) > 0.02 * abs(expected), expected=f"about {expected:.3f} ms", seen=value,
              hint="the sign is flipped: connect_per_query minus reused, not the other way round.")
        if abs(value - _median_ms(summary, "connect_per_query", workload)) <= 0.02 * abs(expected):
            check(False, expected=f"about {expected:.3f} ms", seen=value,
                  hint="that is connect_per_query's whole median; subtract the reused connection's median "
                       "(the query itself) to keep only what connecting adds.")
        check(False, expected=f"about {expected:.3f} ms (connect_per_query median - reused median)", seen=value,
              hint="use the `median_ms` column of the SELECT 1 summary (`headline_summary`), rows "
                   "'connect_per_query' and 'reused'.")
    reused = _median_ms(summary, "reused", workload)
    return passed("connect overhead", f"Connecting adds {value:.2f} ms to every operation: the time of "
                                      f"about {value / reused:.0f} SELECT 1 on a reused connection.")
