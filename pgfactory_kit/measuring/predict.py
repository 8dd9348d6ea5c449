"""What the fitted RTT model predicts (``stats.fit_rtt_model``: fixed cost + round trips x RTT): the time
per operation at a given round-trip time, and a table of typical distances. pandas loads only for the table."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def predict_ms(fit: pd.DataFrame, strategy: str, rtt_ms: float) -> float:
    """The fitted model's time per operation for ``strategy`` at ``rtt_ms`` of round-trip time:
    ``fixed_ms + round_trips × rtt_ms``."""
    part = fit[fit["strategy"] == strategy]
    if part.empty:
        raise KeyError(f"no fitted line for {strategy!r}; fitted: {sorted(set(fit['strategy']))}")
    return float(part["fixed_ms"].iloc[0] + part["round_trips"].iloc[0] * rtt_ms)


def cloud_table(fit: pd.DataFrame, rtt_ms: Sequence[float] = (0.1, 1, 20, 80), requests: int = 1000) -> pd.DataFrame:
    """Predicted time per operation and per ``requests`` requests, per strategy, at typical round-trip
    times: same machine (~0.1 ms), same data centre (~1 ms), a cloud database in the next region
    (~20 ms), across an ocean (~80 ms)."""
    import pandas as pd

    rows = []
    for strategy in fit["strategy"]:
        for rtt in rtt_ms:
            ms = predict_ms(fit, strategy, rtt)
            rows.append(dict(strategy=strategy, rtt_ms=rtt, ms_per_operation=round(ms, 2),
                             **{f"seconds_per_{requests}_requests": round(ms * requests / 1000, 1)}))
    return pd.DataFrame(rows)
