"""Statistics for the bench: percentiles, throughput and a bootstrap interval for a ratio of medians.

Promises: warm-up rows never enter a summary; every number says its unit in its column name;
the bootstrap is seeded, so the same results give the same interval.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Columns that describe one configuration of a run; a summary has one row per strategy within each.
GROUP_COLUMNS = ["scenario", "workload", "threads", "rtt_ms", "auth", "transport"]
MAX_BOOT_CELLS = 4_000_000  # resampled values held in memory at once


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("percentile of an empty sample is undefined")
    return float(np.percentile(arr, q, method="linear"))


def median(values: Sequence[float] | np.ndarray) -> float:
    """The median (50th percentile)."""
    return percentile(values, 50)


def _boot_medians(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_boot`` resamples (with replacement) of ``values``, in memory-bounded chunks."""
    n = values.size
    chunk = max(1, MAX_BOOT_CELLS // max(n, 1))
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = np.median(values[idx], axis=1)
    return out


def bootstrap_ratio_ci(numerator: Sequence[float] | np.ndarray, denominator: Sequence[float] | np.ndarray, *,
                       n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(ratio, low, high)``: median(numerator) / median(denominator) and its percentile-bootstrap interval.

    Each sample is resampled independently (the two strategies ran as separate operations).
    """
    a = np.asarray(numerator, dtype=float)
    b = np.asarray(denominator, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap needs at least one value in each sample")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    ratio = float(np.median(a) / np.median(b))
    rng = np.random.default_rng(seed)
    ratios = _boot_medians(a, n_boot, rng) / _boot_medians(b, n_boot, rng)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return ratio, float(low), float(high)


def throughput(rows: pd.DataFrame) -> float:
    """Operations per second over the timed blocks: operations / wall time the blocks took.

    A block is one strategy's burst of operations (all its threads); its wall time runs from the
    first start to the last end, so with several threads this is the combined throughput.
    """
    if rows.empty:
        return float("nan")
    ends = rows["start_ns"] + rows["ns"]
    spans = (ends.groupby([rows["repeat"], rows["block"]]).max()
             - rows["start_ns"].groupby([rows["repeat"], rows["block"]]).min())
    total_ns = float(spans.sum())
    return len(rows) / (total_ns / 1e9) if total_ns > 0 else float("nan")


def summarize(results: pd.DataFrame, baseline: str = "reused", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per strategy within each configuration (scenario, workload, threads, RTT, auth, transport).

    Columns: ``n``, ``median_ms``, ``p95_ms``, ``p99_ms``, ``mean_ms``, ``ops_per_s`` and
    ``ratio`` = median / the baseline's median, with ``ratio_low``/``ratio_high`` its bootstrap
    95% interval (NaN when the baseline did not run in that configuration). Warm-ups are excluded.
    """
    measured = results[results["phase"] == "measure"] if "phase" in results else results
    if measured.empty:
        raise ValueError("no measured operations to summarize (only warm-ups, or an empty run)")
    group_cols = [c for c in GROUP_COLUMNS if c in measured.columns]
    rows = []
    for key, group in measured.groupby(group_cols, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        base = group.loc[group["strategy"] == baseline, "ns"].to_numpy(dtype=float) / 1e6
        for strategy, part in group.groupby("strategy", sort=False):
            ms = part["ns"].to_numpy(dtype=float) / 1e6
            row = dict(zip(group_cols, key, strict=True))
            row.update(strategy=strategy, n=len(ms), median_ms=median(ms), p95_ms=percentile(ms, 95),
                       p99_ms=percentile(ms, 99), mean_ms=float(ms.mean()), ops_per_s=throughput(part))
            if base.size:
                row["ratio"], row["ratio_low"], row["ratio_high"] = bootstrap_ratio_ci(
                    ms, base, n_boot=n_boot, seed=seed)
            else:
                row["ratio"] = row["ratio_low"] = row["ratio_high"] = float("nan")
            rows.append(row)
    columns = ["strategy", *group_cols, "n", "median_ms", "p95_ms", "p99_ms", "mean_ms", "ops_per_s",
               "ratio", "ratio_low", "ratio_high"]
    summary = pd.DataFrame(rows)[columns]
    summary = summary.iloc[order_rows(summary)].reset_index(drop=True)
    summary.attrs["baseline"] = baseline
    return summary


# The order strategies are shown in: the blog's pattern first, then the forms of reuse.
STRATEGY_ORDER = ("connect_per_query", "pgbouncer", "reused", "pool", "psycopg2_pool", "psycopg_pool")


def strategy_rank(name: str) -> int:
    """Position of a strategy in tables and figures (unknown names go last)."""
    return STRATEGY_ORDER.index(name) if name in STRATEGY_ORDER else len(STRATEGY_ORDER)


def order_rows(frame: pd.DataFrame) -> list[int]:
    """Row positions that keep each configuration's rows together, strategies in ``STRATEGY_ORDER``."""
    first_seen = {key: i for i, key in reversed(list(enumerate(frame.get("scenario", pd.Series([""] * len(frame))))))}
    keys = [(first_seen.get(sc, 0), strategy_rank(st), i) for i, (sc, st) in
            enumerate(zip(frame.get("scenario", pd.Series([""] * len(frame))), frame["strategy"], strict=True))]
    return [k[2] for k in sorted(keys)]


def fit_rtt_model(results: pd.DataFrame) -> pd.DataFrame:
    """Per strategy (and workload, threads): a straight line through the median operation time at
    each added RTT. ``fixed_ms`` is the cost with no added network delay; ``round_trips`` is the
    slope in units of RTT, i.e. how many network round trips one operation waits for."""
    measured = results[results["phase"] == "measure"] if "phase" in results else results
    keys = [c for c in ("strategy", "workload", "threads") if c in measured.columns]
    rows = []
    for key, group in measured.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        med = group.groupby("rtt_ms")["ns"].median() / 1e6
        x = med.index.to_numpy(dtype=float)
        y = med.to_numpy(dtype=float)
        row = dict(zip(keys, key, strict=True), rtt_levels=len(x))
        if len(x) >= 2 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            pred = intercept + slope * x
            ss_res = float(((y - pred) ** 2).sum())
            ss_tot = float(((y - y.mean()) ** 2).sum())
            row.update(fixed_ms=float(intercept), round_trips=float(slope),
                       r2=1 - ss_res / ss_tot if ss_tot > 0 else float("nan"))
        else:
            row.update(fixed_ms=float(y[0]) if len(y) else float("nan"), round_trips=float("nan"),
                       r2=float("nan"))
        rows.append(row)
    fit = pd.DataFrame(rows, columns=[*keys, "fixed_ms", "round_trips", "r2", "rtt_levels"])
    return fit.iloc[sorted(range(len(fit)), key=lambda i: strategy_rank(fit["strategy"].iloc[i]))].reset_index(
        drop=True) if len(fit) else fit
