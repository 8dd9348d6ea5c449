"""Helpers for the measurement notebooks (04 connect vs reuse, 05 concurrency, 06 network latency).

The measuring itself is ``bench``'s; this module holds what the notebooks need around it:
showing figures and saving results for the report, relabelling pool-size sweeps, and the
``max_connections`` demonstrations, which only ever run against a small server of their own.

Promises: nothing here prints or returns a password; every loop is bounded in count and time;
every process, thread, connection and server a helper starts is ended by it (or by the
``destroy()``/``stop()`` the notebook calls, with an ``atexit`` safety net).
"""
from __future__ import annotations

import atexit
import io
import multiprocessing
import queue as queue_module
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from ..servers.daemon import free_port
from ..servers.postgres import LocalServer
from ..settings import ConnectionSettings
from .lesson import kit_server, save_csv, save_figure

# The bench's progress bars fall back to text when ipywidgets is absent; the warning saying so is noise here.
warnings.filterwarnings("ignore", message="IProgress not found")

SUMMARY_COLUMNS = ["workload", "strategy", "n", "median_ms", "p95_ms", "ops_per_s", "ratio", "ratio_low",
                   "ratio_high"]


# ---------------------------------------------------------------------------- the server and results
def measurement_server(settings: ConnectionSettings):
    """The kit's ``LocalServer`` behind ``settings`` with the password from ``settings`` (so that the
    bench can log in as the roles that compare auth methods), or None when the server is not the kit's."""
    server = kit_server(settings)
    if server is not None and settings.password:
        server.password = settings.password  # the roles that compare auth methods share this password
    return server


def show_figure(fig: Any, name: str) -> None:
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


def save_result(result: Any, name: str) -> list[Path]:
    """Save a ``BenchResult``'s results, summary and sessions as ``<name>_*.csv`` in the report folder
    (only when the report runs; otherwise nothing is written). Returns the files written."""
    written = [save_csv(result.results, f"{name}_results"), save_csv(result.summary(), f"{name}_summary"),
               save_csv(result.sessions, f"{name}_sessions")]
    return [p for p in written if p is not None]


def compact(summary: Any, columns: Sequence[str] = SUMMARY_COLUMNS) -> Any:
    """The columns a learner reads in a summary, rounded: workload, strategy, medians, p95, ratio and its interval."""
    keep = [c for c in columns if c in summary.columns]
    table = summary[keep].copy()
    for column in table.columns:
        if column.endswith("_ms"):
            table[column] = table[column].round(3)
        elif column.startswith("ratio") or column == "ops_per_s":
            table[column] = table[column].round(1)
    return table.reset_index(drop=True)


def row(summary: Any, strategy: str, workload: str | None = None) -> Any:
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
                    **kwargs: Any):
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


def pool_sizes_figure(summary: Any, machine: dict[str, Any] | None = None):
    """Two panels against client threads: throughput (ops/s) and p95 time, one line per pool size,
    the reference strategies dashed. Returns a matplotlib Figure."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from ..measuring import plots
    from ..measuring.machine import summary_line

    fig = Figure(figsize=(12, 5), layout="constrained")
    axes = fig.subplots(1, 2)
    fig.suptitle("Pool size against client threads (SELECT 1)", fontsize=13, fontweight="bold")
    if machine:
        fig.supxlabel(summary_line(machine), fontsize=8.5, color="#555555")
    strategies = list(dict.fromkeys(summary["strategy"]))
    pools = sorted((s for s in strategies if s.startswith("pool, max_size=")), key=lambda s: int(s.split("=")[1]))
    strategies = pools + [s for s in strategies if s not in pools]
    shades = colormaps["Blues"]
    for ax, column, ylabel in ((axes[0], "ops_per_s", "operations per second, all threads (log scale)"),
                               (axes[1], "p95_ms", "95th percentile time per operation (ms, log scale)")):
        for strategy in strategies:
            part = summary[summary["strategy"] == strategy].sort_values("threads")
            if strategy in pools:
                shade = 0.35 + 0.6 * pools.index(strategy) / max(1, len(pools) - 1)
                style = dict(color=shades(shade), marker="o", linestyle="-")
            else:
                style = dict(color=plots.color(strategy), marker="s", linestyle="--")
            ax.plot(part["threads"], part[column], label=plots.label(strategy), **style)
        threads = sorted(summary["threads"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(threads, [str(t) for t in threads])
        ax.set_yscale("log")
        ax.set_xlabel("client threads running operations at the same time")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.4, which="both")
    axes[0].set_title("throughput (higher is better)")
    axes[1].set_title("slow operations (lower is better)")
    axes[1].legend(fontsize=9)
    return fig


# ---------------------------------------------------------------------------- a small server of our own

class SmallServer(LocalServer):
    """A LocalServer in a temporary folder of its own: ``destroy()`` also removes that folder
    (the env file, pgpass and lock files the server writes next to its data)."""

    def destroy(self) -> None:
        super().destroy()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def start_small_server(max_connections: int = 8, password: str | None = None) -> SmallServer:
    """A fresh server in a temporary folder on a free port with a low ``max_connections``, for running
    out of connections safely (never the shared server). ``destroy()`` stops it and removes the folder;
    an ``atexit`` hook does so anyway if the kernel exits first. Starting takes a second or two."""
    folder = Path(tempfile.mkdtemp(prefix="pgfactory-small-"))
    server = SmallServer(data_dir=folder / "data", port=free_port(), max_connections=max_connections,
                         password=password)
    try:
        server.start()
    except BaseException:
        server.destroy()
        raise
    atexit.register(server.destroy)
    return server


def connection_limits(server: Any) -> dict[str, int]:
    """``max_connections``, the slots reserved for superusers (and for ``pg_use_reserved_connections``),
    and what is left for ordinary roles such as ``myuser``, read from the server itself."""
    conn = psycopg2.connect(**server.admin_settings().connect_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name, setting::int FROM pg_settings WHERE name = ANY(%s)",
                        (["max_connections", "superuser_reserved_connections", "reserved_connections"],))
            values = dict(cur.fetchall())
    finally:
        conn.close()
    values.setdefault("reserved_connections", 0)
    values["available_to_apps"] = (values["max_connections"] - values["superuser_reserved_connections"]
                                   - values["reserved_connections"])
    return values


def first_line(exc: BaseException) -> str:
    """The server's own words: the first line of an error, without the connection prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split("FATAL:", 1)[-1].strip()


@dataclass
class Exhaustion:
    """What ``open_until_refused`` did: the connections it holds, and the refusal it met."""

    held: list[Any] = field(default_factory=list)
    refused_at: int | None = None  # attempt number (1-based) that was refused, or None
    error: str | None = None

    def close(self) -> None:
        """Close every held connection (idempotent)."""
        while self.held:
            try:
                self.held.pop().close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def open_until_refused(settings: ConnectionSettings, max_tries: int = 50, timeout_s: float = 30.0) -> Exhaustion:
    """Open connections one after another, keeping them all, until the server refuses one
    (at most ``max_tries`` attempts and ``timeout_s`` seconds). Close them with ``.close()``."""
    found = Exhaustion()
    deadline = time.monotonic() + timeout_s
    kwargs = settings.with_(connect_timeout=5, application_name="pgfactory_kit_exhaust").connect_kwargs()
    for attempt in range(1, max_tries + 1):
        if time.monotonic() > deadline:
            break
        try:
            found.held.append(psycopg2.connect(**kwargs))
        except psycopg2.OperationalError as exc:
            found.refused_at, found.error = attempt, first_line(exc)
            break
    return found


# ---------------------------------------------------------------------------- many clients at once
def many_clients(settings: ConnectionSettings, clients: int, hold_s: float = 0.3, timeout_s: float = 30.0):
    """``clients`` threads connect at once, each running ``SELECT pg_backend_pid(), pg_sleep(hold_s)``
    (so their sessions overlap) then closing. One row per client: ok, server backend PID, error.
    Bounded: each connect has a 5 s timeout, the whole run ``timeout_s``."""
    import pandas as pd

    kwargs = settings.with_(connect_timeout=5, application_name="pgfactory_kit_client").connect_kwargs()
    rows: list[dict[str, Any]] = [dict(client=i, ok=False, backend_pid=None, error="did not finish in time")
                                  for i in range(clients)]
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        try:
            start.wait(timeout=timeout_s)
            conn = psycopg2.connect(**kwargs)
        except threading.BrokenBarrierError:
            rows[i].update(error="never started")
            return
        except psycopg2.OperationalError as exc:
            rows[i].update(error=first_line(exc))
            return
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid(), pg_sleep(%s)", (hold_s,))
                rows[i].update(ok=True, backend_pid=int(cur.fetchone()[0]), error=None)
        except psycopg2.Error as exc:
            rows[i].update(error=first_line(exc))
        finally:
            conn.close()

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    table = pd.DataFrame(rows, columns=["client", "ok", "backend_pid", "error"])
    table["backend_pid"] = table["backend_pid"].astype("Int64")
    return table


# ---------------------------------------------------------------------------- many processes, each with a pool
def _pool_process(settings: ConnectionSettings, index: int, max_size: int, hold_s: float, timeout_s: float,
                  barrier: Any, results: Any) -> None:
    """One application process: a ConnectionPool of ``max_size``, and ``max_size`` threads that each
    hold a connection for ``hold_s`` seconds at the same time. Reports one dict on ``results``."""
    from ..factory import make_factory
    from ..pooling.pool import ConnectionPool

    report: dict[str, Any] = dict(process=index, pool_max_size=max_size, connections_got=0, refused=0,
                                  error=None)
    lock = threading.Lock()
    pool = ConnectionPool(make_factory(settings.with_(connect_timeout=5, application_name=f"app-process-{index}")),
                          min_size=0, max_size=max_size, timeout=min(timeout_s, 5.0), name=f"process-{index}")

    def borrower() -> None:
        try:
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(%s)", (hold_s,))
            with lock:
                report["connections_got"] += 1
        except psycopg2.OperationalError as exc:
            with lock:
                report["refused"] += 1
                report["error"] = report["error"] or first_line(exc)

    try:
        try:
            barrier.wait(timeout=timeout_s)
        except threading.BrokenBarrierError:
            pass  # start anyway: the parent bounds the run
        threads = [threading.Thread(target=borrower, daemon=True) for _ in range(max_size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout_s)
    finally:
        pool.close()
        results.put(report)


def processes_with_pools(settings: ConnectionSettings, processes: int, max_size: int, hold_s: float = 1.0,
                         timeout_s: float = 30.0):
    """Start ``processes`` separate Python processes (as a web server's workers would be), each with its
    own ConnectionPool(max_size) whose connections are all in use at the same moment. One row per process:
    connections it got, connections the server refused, the first error. Bounded by ``timeout_s``;
    a process still running then is terminated."""
    import pandas as pd

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker, like gunicorn's workers
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    workers = [ctx.Process(target=_pool_process, args=(settings, i, max_size, hold_s, timeout_s, barrier, results),
                           daemon=True) for i in range(processes)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + timeout_s + 10
    rows = []
    while len(rows) < processes and time.monotonic() < deadline:
        try:
            rows.append(results.get(timeout=0.2))
        except queue_module.Empty:
            if not any(worker.is_alive() for worker in workers):
                break  # every process has exited; nothing more will arrive
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.terminate()
            worker.join(5)
    for i in set(range(processes)) - {r["process"] for r in rows}:
        rows.append(dict(process=i, pool_max_size=max_size, connections_got=0, refused=0,
                         error="the process did not report in time"))
    columns = ["process", "pool_max_size", "connections_got", "refused", "error"]
    return pd.DataFrame(rows, columns=columns).sort_values("process").reset_index(drop=True)


# ---------------------------------------------------------------------------- network latency
def predict_ms(fit: Any, strategy: str, rtt_ms: float) -> float:
    """The fitted model's time per operation for ``strategy`` at ``rtt_ms`` of round-trip time:
    ``fixed_ms + round_trips × rtt_ms``."""
    part = fit[fit["strategy"] == strategy]
    if part.empty:
        raise KeyError(f"no fitted line for {strategy!r}; fitted: {sorted(set(fit['strategy']))}")
    return float(part["fixed_ms"].iloc[0] + part["round_trips"].iloc[0] * rtt_ms)


def cloud_table(fit: Any, rtt_ms: Sequence[float] = (0.1, 1, 20, 80), requests: int = 1000) -> Any:
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


# ---------------------------------------------------------------------------- small wrappers the notebooks call
def run_workloads(workloads: Sequence[str] = ("select_all", "insert"), **kwargs: Any):
    """``bench.run_benchmark`` once per workload (same strategies and sizes), combined into one result."""
    from ..measuring import runner as bench

    return bench.combine([bench.run_benchmark(workload=w, **kwargs) for w in workloads])


def outcomes(clients: Any) -> Any:
    """How many clients of ``many_clients`` succeeded, and how many met each error."""
    import pandas as pd

    labels = clients["error"].where(~clients["ok"], "ok: connected, queried, closed").fillna("unknown")
    counts = labels.value_counts()
    return pd.DataFrame({"outcome": counts.index, "clients": counts.to_numpy()})


def time_connect_and_query(settings: ConnectionSettings, samples: int = 5, timeout_s: float = 30.0,
                           settle_s: float = 0.3) -> Any:
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
