"""Checker for notebook 06 (network latency): predict connect-per-query's cost for a distant database."""
from __future__ import annotations

import math
from typing import Any

from . import Verdict, check, not_attempted, passed, todo


def _line(fit: Any, strategy: str) -> tuple[float, float]:
    part = fit[fit["strategy"] == strategy]
    if part.empty:
        raise ValueError(f"the fit has no line for {strategy!r}; pass the table from bench.fit_rtt_model")
    return float(part["fixed_ms"].iloc[0]), float(part["round_trips"].iloc[0])


def check_prediction(predicted_ms: Any, fit: Any, rtt_ms: float = 20.0,
                     strategy: str = "connect_per_query") -> Verdict:
    """``predicted_ms``: the fitted model's time per operation of ``strategy`` at ``rtt_ms`` of
    round-trip time, i.e. ``fixed_ms + round_trips × rtt_ms`` from ``fit``."""
    if not_attempted(predicted_ms):
        return todo("predict a distant database", f"replace `...` with fixed_ms + round_trips × {rtt_ms:g} for "
                                                  f"{strategy}, read from the `fit` table.")
    fixed, trips = _line(fit, strategy)
    expected = fixed + trips * rtt_ms
    check(isinstance(predicted_ms, (int, float)) and math.isfinite(predicted_ms),
          expected="a number of milliseconds", seen=predicted_ms,
          hint="multiply the round_trips column by the RTT and add fixed_ms.")
    value = float(predicted_ms)
    tolerance = 0.02 * abs(expected) + 0.05
    if abs(value - expected) > tolerance:
        if abs(value - (fixed + trips * rtt_ms / 2)) <= tolerance:
            check(False, expected=f"about {expected:.1f} ms", seen=value,
                  hint=f"you used half the RTT: the slope counts ROUND trips, so multiply by {rtt_ms:g} ms, "
                       "not by the one-way delay.")
        if abs(value - trips * rtt_ms) <= tolerance:
            check(False, expected=f"about {expected:.1f} ms", seen=value,
                  hint="add fixed_ms: the work that does not depend on the network (CPU, authentication) stays.")
        if abs(value - expected / 1000) <= tolerance / 1000 + 1e-6:
            check(False, expected=f"about {expected:.1f} ms", seen=value,
                  hint="that looks like seconds; the table is in milliseconds.")
        check(False, expected=f"about {expected:.1f} ms = fixed_ms + round_trips × {rtt_ms:g}", seen=value,
              hint=f"use the row of {strategy!r} in `fit`.")
    return passed("predict a distant database",
                  f"At {rtt_ms:g} ms RTT, {strategy} would take about {value:.0f} ms per operation: "
                  f"{trips:.1f} round trips × {rtt_ms:g} ms, plus {fixed:.1f} ms of work.")
