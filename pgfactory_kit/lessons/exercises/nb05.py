"""Checker for notebook 05 (measuring connect vs reuse): what does one new connection cost?"""
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
    value = _checked_overhead(connect_overhead_ms, summary, workload)
    reused = _median_ms(summary, "reused", workload)
    return passed("connect overhead", f"Connecting adds {value:.2f} ms to every operation: the time of "
                                      f"about {value / reused:.0f} SELECT 1 on a reused connection.")


def _checked_overhead(connect_overhead_ms: Any, summary: Any, workload: str) -> float:
    """The learner's connect overhead as a float, or ExerciseFailed saying what went wrong."""
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
    return value


def check_reading(connect_overhead_ms: Any, predicted_ms: Any, ratio_gets: Any, summary: Any,
                  slow_query_ms: float = 5.0, workload: str = "select1") -> Verdict:
    """Read the SELECT 1 result and use it: ``connect_overhead_ms`` (what connecting adds, as in
    ``check_connect_overhead``); ``predicted_ms``, the time per operation of connect-per-query for a
    query that takes ``slow_query_ms`` on a reused connection (the connect cost *adds*); and
    ``ratio_gets``, "smaller" or "bigger": what happens to connect-per-query's ratio to reuse when the
    query itself gets slower."""
    if not_attempted(connect_overhead_ms, predicted_ms, ratio_gets):
        return todo("read the result", "replace the three `...`: the connect overhead in ms, your prediction "
                                       f"for a {slow_query_ms:g} ms query on a new connection each time, and "
                                       "\"smaller\" or \"bigger\".")
    overhead = _checked_overhead(connect_overhead_ms, summary, workload)
    check(isinstance(predicted_ms, (int, float)) and math.isfinite(predicted_ms),
          expected="a number of milliseconds", seen=predicted_ms, hint="add two numbers of milliseconds.")
    expected = slow_query_ms + overhead
    value = float(predicted_ms)
    if abs(value - expected) > 0.05 * expected:
        cpq = _median_ms(summary, "connect_per_query", workload)
        reused = _median_ms(summary, "reused", workload)
        if abs(value - slow_query_ms * cpq / reused) <= 0.05 * slow_query_ms * cpq / reused:
            check(False, expected=f"about {expected:.2f} ms", seen=value,
                  hint="that multiplies the query by the SELECT 1 ratio, as if connecting got slower with the "
                       "query. It does not: a new connection costs the same whatever runs on it, so it adds.")
        check(False, expected=f"about {expected:.2f} ms ({slow_query_ms:g} ms of query + what connecting adds)",
              seen=value, hint="the query's own time plus the connect overhead you computed.")
    answer = str(ratio_gets).strip().lower()
    check(answer in ("smaller", "bigger"), expected='"smaller" or "bigger"', seen=ratio_gets,
          hint='answer with one of the two words.')
    check(answer == "smaller", expected='"smaller"', seen=ratio_gets,
          hint=f"compare your prediction's ratio, {expected:.1f} / {slow_query_ms:g} = "
               f"{expected / slow_query_ms:.1f}x, with SELECT 1's; the blog's INSERT above shows the same: "
               "(query + connect) / query shrinks as the query grows.")
    ratio = _ratio(summary, workload)
    return passed("read the result", f"Connecting adds {overhead:.2f} ms whatever the query; for a "
                                     f"{slow_query_ms:g} ms query that is {expected / slow_query_ms:.1f}x, not the "
                                     f"{ratio:.0f}x of SELECT 1.")


def _ratio(summary: Any, workload: str) -> float:
    return _median_ms(summary, "connect_per_query", workload) / _median_ms(summary, "reused", workload)
