"""The bench's statistics on synthetic data whose answers are known (no database needed)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pgfactory_kit.measuring.stats import bootstrap_ratio_ci, fit_rtt_model, median, percentile, summarize, throughput


def test_percentile_and_median_match_hand_computed_values() -> None:
    values = np.arange(1, 101)  # 1..100
    assert median(values) == 50.5
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100
    assert percentile(values, 95) == pytest.approx(95.05)  # linear between the 95th and 96th values
    assert median([3, 1, 2]) == 2


def test_percentile_of_nothing_is_an_error_not_nan() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)


def test_bootstrap_interval_covers_the_true_ratio_in_most_seeds() -> None:
    true_ratio = 5.0
    covered = 0
    trials = 40
    for seed in range(trials):
        rng = np.random.default_rng(1000 + seed)
        base = rng.lognormal(mean=0.0, sigma=0.5, size=150)  # true median 1.0
        slow = rng.lognormal(mean=np.log(true_ratio), sigma=0.5, size=150)  # true median 5.0
        ratio, low, high = bootstrap_ratio_ci(slow, base, n_boot=500, seed=seed)
        assert low <= ratio <= high
        covered += low <= true_ratio <= high
    # A 95% interval should miss rarely; 80% leaves room for chance in 40 trials.
    assert covered >= 0.8 * trials, f"the interval covered the truth in only {covered}/{trials} trials"


def test_bootstrap_is_reproducible_with_a_seed_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.lognormal(1, 0.4, 60), rng.lognormal(0, 0.4, 60)
    assert bootstrap_ratio_ci(a, b, seed=3) == bootstrap_ratio_ci(a, b, seed=3)
    big_a, big_b = rng.lognormal(1, 0.4, 2000), rng.lognormal(0, 0.4, 2000)
    _, lo_small, hi_small = bootstrap_ratio_ci(a, b, n_boot=400)
    _, lo_big, hi_big = bootstrap_ratio_ci(big_a, big_b, n_boot=400)
    assert hi_big - lo_big < hi_small - lo_small


def _rows(strategy: str, values_ms: list[float], phase: str = "measure", rtt: float = 0.0) -> list[dict]:
    rows, start = [], 0
    for i, ms in enumerate(values_ms):
        ns = int(ms * 1e6)
        rows.append(dict(strategy=strategy, scenario="s", workload="select1", thread=0, repeat=0, phase=phase,
                         block=0 if phase == "measure" else -1, op=i, start_ns=start, ns=ns, backend_pid=1,
                         threads=1, rtt_ms=rtt, auth="trust", transport="TCP"))
        start += ns
    return rows


def test_summarize_excludes_warmups_and_gives_the_known_ratio() -> None:
    frame = pd.DataFrame(_rows("reused", [1.0] * 20) + _rows("reused", [500.0] * 5, phase="warmup")
                         + _rows("connect_per_query", [10.0] * 20))
    summary = summarize(frame, n_boot=200).set_index("strategy")
    assert summary.loc["reused", "n"] == 20  # warm-ups left out
    assert summary.loc["reused", "median_ms"] == pytest.approx(1.0)
    assert summary.loc["connect_per_query", "ratio"] == pytest.approx(10.0)
    assert summary.loc["connect_per_query", "ratio_low"] == pytest.approx(10.0)
    assert summary.loc["reused", "ops_per_s"] == pytest.approx(1000.0)  # 20 ops back to back, 1 ms each


def test_summarize_without_the_baseline_gives_nan_ratios_not_an_error() -> None:
    summary = summarize(pd.DataFrame(_rows("pool", [2.0, 3.0, 4.0])), n_boot=50)
    assert summary["median_ms"].iloc[0] == pytest.approx(3.0)
    assert np.isnan(summary["ratio"].iloc[0])


def test_throughput_counts_concurrent_threads_together() -> None:
    # Two threads each run 10 ops of 1 ms over the same 10 ms: 20 ops in 10 ms = 2000 ops/s.
    rows = _rows("pool", [1.0] * 10) + [dict(r, thread=1) for r in _rows("pool", [1.0] * 10)]
    assert throughput(pd.DataFrame(rows)) == pytest.approx(2000.0)


def test_rtt_fit_recovers_fixed_cost_and_round_trips() -> None:
    rows = []
    for rtt in (0.0, 5.0, 10.0, 20.0):
        rows += _rows("connect_per_query", [4.0 + 6 * rtt] * 5, rtt=rtt)
        rows += _rows("reused", [0.05 + 1 * rtt] * 5, rtt=rtt)
    fit = fit_rtt_model(pd.DataFrame(rows)).set_index("strategy")
    assert fit.loc["connect_per_query", "round_trips"] == pytest.approx(6.0)
    assert fit.loc["connect_per_query", "fixed_ms"] == pytest.approx(4.0)
    assert fit.loc["reused", "round_trips"] == pytest.approx(1.0)
    assert fit.loc["reused", "r2"] == pytest.approx(1.0)
