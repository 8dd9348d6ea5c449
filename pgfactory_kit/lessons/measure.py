"""Helpers for the measurement notebooks (05 connect vs reuse, 06 concurrency, 07 network latency).

The measuring itself is ``measuring.runner``'s (the notebooks call it ``bench``); this module holds what
the notebooks need around it: the server to measure, showing figures and saving results for the report,
compact summaries, pool-size sweeps, and timing a connection through the delay proxy. The
``max_connections`` demonstrations are in ``limits.py``, the RTT predictions in ``measuring.stats``.

Promises: nothing here prints or returns a password; every loop is bounded in count and time.
"""
from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2

from ..settings import ConnectionSettings
from .lesson import kit_server, save_csv, save_figure

if TYPE_CHECKING:  # pandas, matplotlib and the bench load when a helper needs them, not at import
    import pandas as pd
    from matplotlib.figure import Figure

    from ..measuring.runner import BenchResult
    from ..servers.postgres import LocalServer

SUMMARY_COLUMNS = ["workload", "strategy", "n", "median_ms", "p95_ms", "ops_per_s", "ratio", "ratio_low",
                   "ratio_high"]


# ---------------------------------------------------------------------------- the server and results
def measurement_server(settings: ConnectionSettings) -> LocalServer | None:
    """The kit's ``LocalServer`` behind ``settings`` with the password from ``settings`` (so that the
    bench can log in as the roles that compare auth methods), or None when the server is not the kit's."""
    server = kit_server(settings)
    if server is not None and settings.password:
        server.password = settings.password  # the roles that compare auth methods share this password
    return server


def show_figure(fig: Figure, name: str) -> None:
    """Show a matplotlib Figure as a PNG in the notebook (whatever the plotting backend) and save it
    into the report folder as ``<name>.png`` when the report runs."""
    save_figure(fig, name)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    try:
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover - IPython ships with the kit
        return
    display(Image(data=buffer.getvalue(), format="png"))


def save_result(result: BenchResult, name: str) -> list[Path]:
    """Save a ``BenchResult``'s results, summary and sessions as ``<name>_*.csv`` in the report folder
    (only when the report runs; otherwise nothing is written). Returns the files written."""
    written = [save_csv(result.results, f"{name}_results"), save_csv(result.summary(), f"{name}_summary"),
               save_csv(result.sessions, f"{name}_sessions")]
    return [p for p in written if p is not None]


def compact(summary: pd.DataFrame, columns: Sequence[str] = SUMMARY_COLUMNS) -> pd.DataFrame:
    """The columns a learner reads in a summary, rounded: workload, strategy, medians, p95, ratio and its interval."""
    keep = [c for c in columns if c in summary.columns]
    table = summary[keep].copy()
    for column in table.columns:
        if column.endswith("_ms"):
            table[column] = table[column].round(3)
        elif column.startswith("ratio") or column == "ops_per_s":
            table[column] = table[column].round(1)
    return table.reset_index(drop=True)


def row(summary: pd.DataFrame, strategy: str, workload: str | None = None) -> pd.Series:
    """The one summary row of ``strategy`` (and ``workload``); raises KeyError naming what exists."""
    part = summary[summary["strategy"] == strategy]
    if workload is not None:
        part = part[part["workload"] == workload]
    if len(part) != 1:
        raise KeyError(f"expected one summary row for strategy={strategy!r} workload={workload!r}, found "
                       f"{len(part)}; strategies present: {sorted(set(summary['strategy']))}")
    return part.iloc[0]


# ---------------------------------------------------------------------------- pool sizes against threads
def pool_label(size: int) -> str:
    return f"pool, max_size={size}"


def pool_size_sweep(settings: ConnectionSettings | None = None, *, pool_sizes: Sequence[int] = (1, 2, 4, 8),
                    threads: Sequence[int] = (1, 2, 4, 8), reference: Sequence[str] = ("connect_per_query",),
                    **kwargs: Any) -> BenchResult:
    """``bench.thread_sweep`` once per pool size (strategy renamed ``"pool, max_size=N"``), plus one sweep
    of the ``reference`` strategies; all combined into one ``BenchResult``."""
    from ..measuring import runner as bench

    parts = []
    for size in pool_sizes:
        part = bench.thread_sweep(settings, threads=threads, strategies=("pool",), pool_size=size, **kwargs)
        for frame in (part.results, part.sessions):
            frame.loc[frame["strategy"] == "pool", "strategy"] = pool_label(size)
        parts.append(part)
    if reference:
        parts.append(bench.thread_sweep(settings, threads=threads, strategies=tuple(reference), **kwargs))
    return bench.combine(parts, pool_sizes=list(pool_sizes))


def pool_sizes_figure(summary: pd.DataFrame, machine: dict[str, Any] | None = None) -> Figure:
    """``plots.pool_sizes``: throughput and p95 against client threads, one line per pool size."""
    from ..measuring import plots

    return plots.pool_sizes(summary, machine)


# ---------------------------------------------------------------------------- small wrappers the notebooks call
def run_workloads(workloads: Sequence[str] = ("select_all", "insert"), **kwargs: Any) -> BenchResult:
    """``bench.run_benchmark`` once per workload (same strategies and sizes), combined into one result."""
    from ..measuring import runner as bench

    return bench.combine([bench.run_benchmark(workload=w, **kwargs) for w in workloads])


def time_connect_and_query(settings: ConnectionSettings, samples: int = 5, timeout_s: float = 30.0,
                           settle_s: float = 0.3) -> pd.DataFrame:
    """Time ``samples`` new connections and, on each, one ``SELECT 1`` (milliseconds), one row per
    sample. Bounded by ``samples`` and ``timeout_s``; waits ``settle_s`` after the last close."""
    import pandas as pd

    kwargs = settings.with_(connect_timeout=10, application_name="pgfactory_kit_ping").connect_kwargs()
    rows = []
    deadline = time.monotonic() + timeout_s
    for i in range(samples):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter_ns()
        conn = psycopg2.connect(**kwargs)
        t1 = time.perf_counter_ns()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
            t2 = time.perf_counter_ns()
        finally:
            conn.close()
        rows.append(dict(sample=i, connect_ms=round((t1 - t0) / 1e6, 2), query_ms=round((t2 - t1) / 1e6, 2)))
    # Let a proxy in between finish forwarding the last goodbye before the caller closes it.
    time.sleep(settle_s)
    return pd.DataFrame(rows, columns=["sample", "connect_ms", "query_ms"])
