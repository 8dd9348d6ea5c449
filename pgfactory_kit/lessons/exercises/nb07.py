"""Checker for notebook 07 (network latency): predict connect-per-query's cost for a distant database."""
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
    value = _check_prediction_value(predicted_ms, fixed, trips, rtt_ms, strategy)
    return passed("predict a distant database",
                  f"At {rtt_ms:g} ms RTT, {strategy} would take about {value:.0f} ms per operation: "
                  f"{trips:.1f} round trips × {rtt_ms:g} ms, plus {fixed:.1f} ms of work.")


def check_reading(connect_adds: Any, predicted_ms: Any, mostly: Any, fit: Any, rtt_ms: float = 20.0) -> Verdict:
    """Read the fitted lines: ``connect_adds``, the round trips that connecting adds to an operation
    (connect_per_query's slope minus reused's); ``predicted_ms``, connect_per_query's time at ``rtt_ms``
    (``fixed_ms + round_trips × rtt_ms``); ``mostly``, "network" or "work": what most of that time is."""
    if not_attempted(connect_adds, predicted_ms, mostly):
        return todo("read the fit", "replace the three `...`: connect_per_query's round_trips minus reused's, "
                                    f"the prediction at {rtt_ms:g} ms, and \"network\" or \"work\".")
    fixed, trips = _line(fit, "connect_per_query")
    _, reused_trips = _line(fit, "reused")
    added = trips - reused_trips
    check(isinstance(connect_adds, (int, float)) and math.isfinite(connect_adds), expected="a number of round trips",
          seen=connect_adds, hint="subtract the reused connection's round_trips from connect_per_query's.")
    if abs(float(connect_adds) - added) > 0.05 + 0.02 * abs(added):
        check(abs(float(connect_adds) - trips) > 0.05 + 0.02 * abs(trips), expected=f"about {added:.2f}",
              seen=connect_adds, hint="that is all of connect_per_query's round trips; the query itself is one of "
                                      "them (the reused connection's slope): subtract it to keep what connecting adds.")
        check(False, expected=f"about {added:.2f} round trips (connect_per_query's slope - reused's)",
              seen=connect_adds, hint="read the round_trips column of `fit` for both strategies.")
    _check_prediction_value(predicted_ms, fixed, trips, rtt_ms)
    network = trips * rtt_ms
    right = "network" if network > fixed else "work"
    answer = str(mostly).strip().lower()
    check(answer in ("network", "work"), expected='"network" or "work"', seen=mostly, hint="one of the two words.")
    check(answer == right, expected=f'"{right}"', seen=mostly,
          hint=f"compare the two parts of your prediction: {trips:.1f} round trips × {rtt_ms:g} ms = {network:.0f} ms "
               f"of waiting for the network, against fixed_ms = {fixed:.1f} ms of work.")
    return passed("read the fit", f"Connecting adds {added:.1f} round trips; at {rtt_ms:g} ms that is "
                                  f"{added * rtt_ms:.0f} ms of waiting per operation that no faster CPU removes.")


def _check_prediction_value(predicted_ms: Any, fixed: float, trips: float, rtt_ms: float,
                            strategy: str = "connect_per_query") -> float:
    """The learner's prediction as a float, or ExerciseFailed with the hint for the usual mistake."""
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
    return value
