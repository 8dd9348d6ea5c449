"""The measurement runner: time connect-per-query against reused and pooled connections, honestly.

Protocol (see docs/measurements.md): each operation is timed with ``time.perf_counter_ns``; each
strategy first runs warm-up operations (kept, marked ``phase='warmup'``, left out of summaries);
the timed operations run in blocks, strategies taking turns (round-robin, the order rotating every
block) so machine drift hits all alike; garbage collection runs between blocks, never inside one.
The server's own counter (``pg_stat_database.sessions``) says how many sessions each strategy opened.
"""
from __future__ import annotations

import contextlib
import gc
import json
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import psycopg2

from .. import checks
from ..errors import explain_connect_error
from ..servers.throwaway import comparison_server
from ..settings import ConnectionSettings
from .choices import AUTH_METHODS, LIMITS, MAX_RTT_MS, PRIVATE_AUTH, TRANSPORTS, WORKLOADS
from .machine import machine_summary, observed_transport, server_version, summary_line
from .stats import GROUP_COLUMNS, fit_rtt_model, strategy_rank, summarize
from .strategies import (
    DEFAULT_STRATEGIES,
    STRATEGIES,
    Strategy,
    StrategyUnavailable,
    Workload,
    make_strategy,
    make_workload,
)

if TYPE_CHECKING:
    from ..servers.postgres import LocalServer

__all__ = ["BenchResult", "Scenario", "Progress", "run_benchmark", "run_scenario", "run_scenarios",
           "thread_scenarios", "rtt_scenarios", "thread_sweep", "rtt_sweep", "summarize", "fit_rtt_model",
           "connect_breakdown", "combine", "STRATEGIES", "DEFAULT_STRATEGIES", "TRANSPORTS", "AUTH_METHODS"]

RESULT_COLUMNS = ["strategy", "scenario", "workload", "thread", "repeat", "phase", "block", "op", "start_ns", "ns",
                  "backend_pid", "threads", "rtt_ms", "auth", "transport"]
DEFAULT_TIME_LIMIT_S = 900.0
SETTLE_TIMEOUT_S = 0.5
# With the kit's server the bench works in a database of its own (same table), so the server's
# session counter for it counts the bench's connections and nobody else's.
BENCH_DATABASE = "pgfactory_bench"


@dataclass
class BenchResult:
    """What a run measured: ``results`` (one row per operation), ``sessions`` (what the server saw per
    strategy), ``machine`` (what it ran on) and ``notes`` (strategies skipped and why, early stops)."""

    results: pd.DataFrame
    sessions: pd.DataFrame
    machine: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def summary(self, baseline: str = "reused", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
        """Median, p95, p99 (ms), ops/s and the ratio to ``baseline`` with its bootstrap 95% interval."""
        return summarize(self.results, baseline=baseline, n_boot=n_boot, seed=seed)

    def fit(self) -> pd.DataFrame:
        """``fit_rtt_model(self.results)``: fixed cost and round trips per operation, per strategy."""
        return fit_rtt_model(self.results)

    @property
    def machine_line(self) -> str:
        """One line describing the machine, for titles and printouts."""
        return summary_line(self.machine)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write results.csv, summary.csv, sessions.csv and machine.json into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / name for name in ("results.csv", "summary.csv", "sessions.csv", "machine.json")}
        self.results.to_csv(paths["results.csv"], index=False)
        self.summary().to_csv(paths["summary.csv"], index=False)
        self.sessions.to_csv(paths["sessions.csv"], index=False)
        machine = dict(self.machine, notes=self.notes)
        paths["machine.json"].write_text(json.dumps(machine, indent=2, default=str) + "\n", encoding="utf-8")
        return paths


# ------------------------------------------------------------------------------------- targets
def resolve_target(settings: ConnectionSettings | None, server: LocalServer | None, auth: str | None,
                   transport: str) -> tuple[ConnectionSettings, ConnectionSettings, str, str]:
    """``(settings to measure, owner settings for monitoring/clean-up, auth label, transport label)``.

    With a ``server`` (LocalServer) any auth method and transport can be chosen; with plain settings
    they are whatever those settings and the server's pg_hba.conf make them.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; choose one of {', '.join(TRANSPORTS)}")
    if server is not None:
        method = auth or "scram-sha-256"
        if method not in AUTH_METHODS:
            raise ValueError(f"unknown auth method {method!r}; choose one of {', '.join(AUTH_METHODS)}")
        ensure_bench_database(server)
        owner = server.settings().with_(dbname=BENCH_DATABASE)
        target = owner if method == "scram-sha-256" else server.auth_settings(method).with_(dbname=BENCH_DATABASE)
        if transport == "unix":
            target = target.with_(host=server.socket_settings().host)
        elif transport == "tls":
            if not server.supports_ssl:
                raise ValueError("TLS was asked for, but this server's binaries are built without SSL (the pip "
                                 "ones are). What to do: use transport='tcp' or 'unix', or a server with SSL, "
                                 "e.g. LocalServer(bin_dir='/usr/lib/postgresql/15/bin').")
            target = target.with_(sslmode="require")
        return target, owner, method, target.transport
    target = settings if settings is not None else ConnectionSettings.from_env()
    if transport == "tls" and target.transport != "TLS":
        target = target.with_(sslmode="require")
    if transport == "unix" and target.transport != "unix socket":
        raise ValueError("transport='unix' needs settings whose host is a socket directory, or server=...")
    return target, target, auth or "as the server's pg_hba.conf decides", target.transport


def ensure_bench_database(server: LocalServer) -> str:
    """Create (once) the database ``pgfactory_bench`` on the kit's server, with the lesson's ``mytable``
    readable and writable by the roles of every auth method. Returns its name."""
    from psycopg2 import errors, sql

    admin = psycopg2.connect(**server.admin_settings().connect_kwargs())
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DATABASE,))
            if cur.fetchone() is None:
                owner = server.settings().user
                with contextlib.suppress(errors.DuplicateDatabase, errors.UniqueViolation):
                    cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(BENCH_DATABASE),
                                                                               sql.Identifier(owner)))
    finally:
        admin.close()
    server.seed_lesson_table(BENCH_DATABASE)
    return BENCH_DATABASE


class _Monitor:
    """A side connection (never timed) that reads the server's session counter."""

    def __init__(self, owner: ConnectionSettings) -> None:
        self.owner = owner
        try:
            self.conn = psycopg2.connect(
                **owner.with_(application_name="pgfactory_kit_bench_monitor").connect_kwargs())
        except psycopg2.OperationalError as exc:
            raise explain_connect_error(exc, owner) from None
        self.conn.autocommit = True
        self.version = server_version(self.conn)

    def sessions(self) -> int:
        """``pg_stat_database.sessions`` for this database, read until two reads agree (bounded)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        last = self._read()
        while time.monotonic() < deadline:
            time.sleep(0.002)
            value = self._read()
            if value == last:
                return value
            last = value
        return last

    def _read(self) -> int:
        with self.conn.cursor() as cur:
            cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def delete_marker(self, marker: str) -> int:
        """Delete the rows the INSERT workload added (they carry ``marker`` as their name); if the
        server cannot be reached, warn with the marker instead of hiding the run's own error."""
        try:
            conn = self.conn if not self.conn.closed else psycopg2.connect(**self.owner.connect_kwargs())
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("DELETE FROM mytable WHERE name = %s", (marker,))
                return cur.rowcount
        except psycopg2.Error as exc:
            warnings.warn(f"could not delete the bench's rows (name = {marker!r}) from mytable: "
                          f"{str(exc).strip().splitlines()[0]}", RuntimeWarning, stacklevel=2)
            return -1

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------------------------- running
@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Collect the young generation now (cheap), then keep the collector out of the timed section.
    A full collection, which can take tens of ms in a big process, runs once per repeat instead."""
    was_enabled = gc.isenabled()
    gc.collect(0)
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _pid_of(conn: Any) -> int:
    info = getattr(conn, "info", None)
    pid = getattr(info, "backend_pid", None)
    return int(pid) if pid else -1


def _time_ops(strategy: Strategy, workload: Workload, n_ops: int, origin: int, deadline: float,
              barrier: threading.Barrier | None, settle: int = 0) -> list[tuple[int, int, int, bool]]:
    """Run ``settle`` + ``n_ops`` operations; each row is (start_ns since ``origin``, duration_ns,
    backend_pid, timed). The first ``settle`` rows are marked untimed (``timed=False``)."""
    rows: list[tuple[int, int, int, bool]] = []
    if barrier is not None:
        barrier.wait(timeout=SETTLE_TIMEOUT_S * 10)
    clock = time.perf_counter_ns
    for i in range(settle + n_ops):
        if time.monotonic() > deadline:
            break
        t0 = clock()
        with strategy.connection() as conn:
            workload.run(conn)
            pid = _pid_of(conn)
        t1 = clock()
        rows.append((t0 - origin, t1 - t0, pid, i >= settle))
    return rows


class _Runner:
    """Runs the blocks of one benchmark and collects rows and session counts."""

    def __init__(self, workload: Workload, threads: int, monitor: _Monitor, deadline: float, labels: dict[str, Any]):
        self.workload = workload
        self.threads = threads
        self.monitor = monitor
        self.deadline = deadline
        self.labels = labels
        self.rows: list[dict[str, Any]] = []
        self.sessions: dict[str, int] = {}
        self.op_counters: dict[tuple[str, int, int], int] = {}
        self.origin = time.perf_counter_ns()
        self.executor = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None

    @contextlib.contextmanager
    def counting(self, name: str) -> Iterator[None]:
        """Add the server's session-counter change during this block to strategy ``name``
        (not read again when the block failed: the failure is what the caller must see)."""
        before = self.monitor.sessions()
        yield
        self.sessions[name] = self.sessions.get(name, 0) + self.monitor.sessions() - before

    def block(self, strategy: Strategy, n_ops: int, repeat: int, phase: str, block: int, settle: int = 0) -> None:
        """One strategy's burst of ``n_ops`` operations over ``threads`` threads, gc paused. Each thread
        first runs ``settle`` operations recorded as warm-up: they wake the strategy's connections and
        backends, which went cold while the other strategies had their turn."""
        if n_ops <= 0:
            return
        shares = [n_ops // self.threads + (1 if i < n_ops % self.threads else 0) for i in range(self.threads)]
        with self.counting(strategy.name), _gc_paused():
            if self.executor is None:
                per_thread = [_time_ops(strategy, self.workload, n_ops, self.origin, self.deadline, None, settle)]
            else:
                active = [s for s in shares if s > 0]
                barrier = threading.Barrier(len(active))
                futures = [self.executor.submit(_time_ops, strategy, self.workload, s, self.origin, self.deadline,
                                                barrier, settle) for s in active]
                per_thread = [f.result() for f in futures]
        for thread, rows in enumerate(per_thread):
            key = (strategy.name, repeat, thread)
            op = self.op_counters.get(key, 0)
            for start_ns, ns, pid, timed in rows:
                self.rows.append(dict(self.labels, strategy=strategy.name, thread=thread, repeat=repeat,
                                      phase=phase if timed else "warmup", block=block, op=op, start_ns=start_ns,
                                      ns=ns, backend_pid=pid))
                op += 1
            self.op_counters[key] = op

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)


def _block_sizes(operations: int, blocks: int) -> list[int]:
    n = max(1, min(blocks, operations))
    return [operations // n + (1 if i < operations % n else 0) for i in range(n)]


class Progress(Protocol):
    """Where a run reports its blocks: a ``tqdm`` bar fits, and so does anything with these two methods."""

    def update(self, n: int = 1) -> object: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> object: ...


@dataclass(frozen=True)
class Scenario:
    """What one run measures, apart from where (``settings`` or ``server``) and how progress is shown.

    ``operations`` timed operations per strategy and repeat, split over ``threads`` threads, after
    ``warmup`` untimed ones; ``rtt_ms`` added round-trip time (a DelayProxy); ``auth`` and ``transport``
    choose how to connect (any with the kit's server); each timed block starts with ``block_warmup``
    untimed operations per thread; the strategies' order within a block is drawn from ``seed``;
    ``label`` names the run in the ``scenario`` column (default: its workload, transport, auth, RTT, threads).
    """

    strategies: Sequence[str] = DEFAULT_STRATEGIES
    workload: str = "select1"
    operations: int = 200
    warmup: int = 20
    repeats: int = 3
    threads: int = 1
    pool_size: int = 4
    rtt_ms: float = 0.0
    auth: str | None = None
    transport: str = "tcp"
    blocks: int = 10
    block_warmup: int = 1
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    seed: int = 0
    label: str | None = None

    def __post_init__(self) -> None:
        """Each field checked on its own, named in the message (TypeError: wrong kind, ValueError: range)."""
        for name, low, high in LIMITS:
            object.__setattr__(self, name, checks.whole_number(name, getattr(self, name), minimum=low, maximum=high))
        object.__setattr__(self, "strategies", checks.names("strategies", self.strategies, STRATEGIES))
        checks.one_of("workload", self.workload, WORKLOADS)
        checks.one_of("auth", self.auth, AUTH_METHODS, allow_none=True)
        checks.one_of("transport", self.transport, TRANSPORTS)
        object.__setattr__(self, "rtt_ms", checks.real_number("rtt_ms", self.rtt_ms, minimum=0.0,
                                                              maximum=MAX_RTT_MS, unit="ms"))
        object.__setattr__(self, "time_limit_s", checks.real_number("time_limit_s", self.time_limit_s,
                                                                    above=0.0, unit="s"))
        checks.text("label", self.label, allow_none=True)
        if self.rtt_ms and self.transport == "unix":
            raise ValueError("added RTT needs a TCP transport (the delay proxy speaks TCP); use transport='tcp'")

    def with_(self, **changes: Any) -> Scenario:
        """A copy with ``changes`` applied (and checked again)."""
        return replace(self, **changes)

    @property
    def steps(self) -> int:
        """How many blocks the run reports to its progress: warm-up and timed blocks of every strategy."""
        return self.repeats * len(dict.fromkeys(self.strategies)) * (len(_block_sizes(self.operations,
                                                                                     self.blocks)) + 1)


@contextlib.contextmanager
def _progress(progress: bool | Progress | None, total: int, desc: str) -> Iterator[Progress | None]:
    """True: a tqdm bar of ``total`` blocks, closed afterwards; False or None: no bar; else the caller's bar."""
    if progress is True:
        with warnings.catch_warnings():
            # In a notebook without ipywidgets tqdm falls back to text bars, and says so: noise for a learner.
            warnings.filterwarnings("ignore", message="IProgress not found")
            from tqdm.auto import tqdm
        with tqdm(total=total, desc=desc, unit="block", leave=False) as bar:
            yield bar
    elif progress is False or progress is None:
        yield None
    else:
        yield progress


def run_benchmark(settings: ConnectionSettings | None = None, *, server: LocalServer | None = None,
                  progress: bool | Progress = True, scenario: str | None = None, **fields: Any) -> BenchResult:
    """Time one ``Scenario(label=scenario, **fields)`` (see ``Scenario`` for the fields and defaults).

    ``settings`` (default ``ConnectionSettings.from_env()``) or ``server`` (a LocalServer, which also
    allows ``auth`` = scram-sha-256/md5/trust and ``transport`` = tcp/unix/tls) say where. ``progress``:
    True for a bar of its own, False for none, or a ``Progress`` (a tqdm bar) that counts blocks.
    Unavailable strategies are skipped with a note.
    """
    return run_scenario(Scenario(label=scenario, **fields), settings, server=server, progress=progress)


def run_scenario(plan: Scenario, settings: ConnectionSettings | None = None, *, server: LocalServer | None = None,
                 progress: bool | Progress | None = None) -> BenchResult:
    """Time ``plan`` against ``settings`` or ``server`` (see ``run_benchmark``); progress counts blocks.
    md5 and trust are measured on a private server (``comparison_server``): the kit's own has neither."""
    _check_target(settings, server)
    if _needs_comparison_server(server, [plan]):
        with comparison_server(server) as private:
            result = run_scenario(plan, settings, server=private, progress=progress)
        result.notes.insert(0, _private_note(plan.auth, private))
        return result
    target, owner, auth_label, transport_label = resolve_target(settings, server, plan.auth, plan.transport)
    marker = f"pgfactory-bench-{uuid.uuid4().hex[:12]}"
    work = make_workload(plan.workload, marker)
    labels = dict(scenario=plan.label or f"{plan.workload}, {transport_label}, {auth_label}, "
                                         f"+{plan.rtt_ms:g} ms RTT, {plan.threads} "
                                         f"thread{'s' if plan.threads > 1 else ''}",
                  workload=plan.workload, threads=plan.threads, rtt_ms=float(plan.rtt_ms), auth=auth_label,
                  transport=transport_label)
    notes: list[str] = []
    if server is None:
        notes.append(f"sessions: the server's counter for database {owner.dbname!r} counts every client of it "
                     "during the run, not only the bench (pass server=LocalServer() for a database of its own)")
    with contextlib.ExitStack() as stack:
        route = None
        direct = target  # where the server is, before any DelayProxy: its transport is what gets recorded
        if plan.rtt_ms:
            from .proxy import DelayProxy

            def route(where: ConnectionSettings) -> ConnectionSettings:
                """``where``, reached through a DelayProxy adding ``rtt_ms`` of round-trip time."""
                proxy = stack.enter_context(DelayProxy(where.host, where.port, plan.rtt_ms / 2))
                return where.with_(host=proxy.listen_host, port=proxy.port)
            target = route(target)
        monitor = _Monitor(owner)
        stack.callback(monitor.close)
        if plan.workload == "insert":
            stack.callback(monitor.delete_marker, marker)
        runner = _Runner(work, plan.threads, monitor, time.monotonic() + plan.time_limit_s, labels)
        stack.callback(runner.close)
        names = list(dict.fromkeys(plan.strategies))
        order_rng = np.random.default_rng(plan.seed)
        sizes = _block_sizes(plan.operations, plan.blocks)
        bar = stack.enter_context(_progress(progress, plan.steps, f"bench {plan.workload}"))
        if bar is not None:
            bar.set_postfix_str(labels["scenario"])
        for repeat in range(plan.repeats):
            gc.collect()
            opened = _open_strategies(names, target, work, plan.pool_size, server, route, runner, notes)
            names = [s.name for s in opened]
            with contextlib.ExitStack() as closing:
                for strategy in opened:
                    closing.callback(_close_strategy, strategy, runner)
                for strategy in opened:
                    runner.block(strategy, plan.warmup, repeat, "warmup", -1)
                    if bar is not None:
                        bar.update(1)
                for b, size in enumerate(sizes):
                    # A fresh random order each block: no strategy always follows the same one.
                    for index in order_rng.permutation(len(opened)):
                        runner.block(opened[index], size, repeat, "measure", b, settle=plan.block_warmup)
                        if bar is not None:
                            bar.update(1)
            if time.monotonic() > runner.deadline:
                notes.append(f"stopped early: the run went past time_limit_s={plan.time_limit_s:g} s")
                break
        results = pd.DataFrame(runner.rows, columns=RESULT_COLUMNS)
        sessions = _sessions_table(results, runner.sessions, labels)
        # Asked of the server after the timed runs (so its session counts stay the strategies' own).
        transport = observed_transport(direct.connect_kwargs())
        machine = machine_summary(postgresql=monitor.version, auth=auth_label, transport=transport,
                                  rtt_ms=float(plan.rtt_ms), target=target.masked_dsn() if not plan.rtt_ms else
                                  f"{owner.masked_dsn()} via DelayProxy", workload=plan.workload,
                                  threads=plan.threads, pool_size=plan.pool_size, operations=plan.operations,
                                  warmup=plan.warmup, repeats=plan.repeats, strategies=names)
    if not names:
        raise RuntimeError("no strategy could run: " + "; ".join(notes))
    return BenchResult(results=results, sessions=sessions, machine=machine, notes=notes)


def _open_strategies(names: Sequence[str], target: ConnectionSettings, work: Workload, pool_size: int,
                     server: LocalServer | None, route: Callable[[ConnectionSettings], ConnectionSettings] | None,
                     runner: _Runner, notes: list[str]) -> list[Strategy]:
    opened: list[Strategy] = []
    for name in names:
        tagged = target.with_(application_name=f"pgfactory_kit_bench_{name}")
        strategy = make_strategy(name, tagged, work, pool_size, server, route)
        try:
            with runner.counting(name):
                strategy.open()
        except StrategyUnavailable as exc:
            if str(exc) not in notes:
                notes.append(str(exc))
            continue
        opened.append(strategy)
    return opened


def _close_strategy(strategy: Strategy, runner: _Runner) -> None:
    """Close ``strategy``, counting what the server saw; it is closed even when the server is gone."""
    try:
        with runner.counting(strategy.name):
            strategy.close()
    except psycopg2.Error:
        with contextlib.suppress(Exception):
            strategy.close()


def _sessions_table(results: pd.DataFrame, counted: dict[str, int], labels: dict[str, Any]) -> pd.DataFrame:
    """Per strategy: operations run, sessions the server counted, distinct backend PIDs seen."""
    rows = []
    for name, count in counted.items():
        part = results[results["strategy"] == name]
        pids = part.loc[part["backend_pid"] > 0, "backend_pid"].nunique()
        ops = len(part)
        rows.append(dict({k: labels[k] for k in GROUP_COLUMNS}, strategy=name, repeats=part["repeat"].nunique(),
                         operations=ops, sessions_opened=count, backend_pids=pids,
                         sessions_per_op=count / ops if ops else float("nan")))
    rows.sort(key=lambda row: strategy_rank(row["strategy"]))
    return pd.DataFrame(rows, columns=["strategy", *GROUP_COLUMNS, "repeats", "operations", "sessions_opened",
                                       "backend_pids", "sessions_per_op"])


# ------------------------------------------------------------------------------------- sweeps
def combine(parts: Sequence[BenchResult], **machine_changes: Any) -> BenchResult:
    """One BenchResult from several runs (results and sessions stacked, notes merged)."""
    if not parts:
        raise ValueError("nothing to combine")
    machine = dict(parts[0].machine, **machine_changes)
    notes = list(dict.fromkeys(n for p in parts for n in p.notes))
    return BenchResult(results=pd.concat([p.results for p in parts], ignore_index=True),
                       sessions=pd.concat([p.sessions for p in parts], ignore_index=True),
                       machine=machine, notes=notes)


def thread_scenarios(base: Scenario, threads: Sequence[int]) -> list[Scenario]:
    """``base`` once per thread count, each labelled with its count."""
    return [base.with_(threads=n, label=f"{n} thread{'s' if n > 1 else ''}") for n in threads]


def rtt_scenarios(base: Scenario, rtt_ms: Sequence[float]) -> list[Scenario]:
    """``base`` once per added round-trip time, each labelled with it."""
    return [base.with_(rtt_ms=r, label=f"+{r:g} ms RTT") for r in rtt_ms]


def run_scenarios(plans: Sequence[Scenario], settings: ConnectionSettings | None = None, *,
                  server: LocalServer | None = None, progress: bool | Progress = True,
                  **machine_changes: Any) -> BenchResult:
    """Every plan in turn, combined; ``progress`` (True: one bar of its own) counts all their blocks."""
    if _needs_comparison_server(server, plans):
        with comparison_server(server) as private:
            result = run_scenarios(plans, settings, server=private, progress=progress, **machine_changes)
        result.notes.insert(0, _private_note(", ".join(sorted({str(p.auth) for p in plans})), private))
        return result
    with _progress(progress, sum(p.steps for p in plans), "bench") as bar:
        parts = [run_scenario(p, settings, server=server, progress=bar) for p in plans]
    return combine(parts, **machine_changes)


def _check_target(settings: Any, server: Any) -> None:
    """TypeError unless ``settings`` is ConnectionSettings or None (a DSN string is a common slip)."""
    if settings is not None and not isinstance(settings, ConnectionSettings):
        raise TypeError(f"settings must be a ConnectionSettings or None, got {type(settings).__name__}; for a "
                        "DSN write settings=ConnectionSettings.from_dsn(dsn)")
    if server is not None and not callable(getattr(server, "admin_settings", None)):
        raise TypeError(f"server must be a LocalServer or None, got {type(server).__name__}")


def _needs_comparison_server(server: LocalServer | None, plans: Sequence[Scenario]) -> bool:
    """Whether some plan asks for md5/trust from a server that (rightly) accepts only scram-sha-256."""
    if server is None or getattr(server, "compare_auth", False):
        return False
    return any(p.auth in PRIVATE_AUTH for p in plans)


def _private_note(auth: str | None, private: LocalServer) -> str:
    return (f"auth {auth}: measured on a private, throw-away server (same binaries, port {private.port}), "
            "removed afterwards: the kit's own server accepts scram-sha-256 only")


def thread_sweep(settings: ConnectionSettings | None = None, *, threads: Sequence[int] = (1, 2, 4, 8),
                 server: LocalServer | None = None, progress: bool | Progress = True, **fields: Any) -> BenchResult:
    """``run_benchmark`` once per thread count; the scenario column names the thread count."""
    return run_scenarios(thread_scenarios(Scenario(**fields), threads), settings, server=server, progress=progress,
                         threads=list(threads))


def rtt_sweep(settings: ConnectionSettings | None = None, *, rtt_ms: Sequence[float] = (0, 5, 10, 20),
              operations: int = 40, warmup: int = 5, repeats: int = 2, server: LocalServer | None = None,
              progress: bool | Progress = True, **fields: Any) -> BenchResult:
    """``run_benchmark`` once per added round-trip time (through a DelayProxy); fit with ``fit_rtt_model``."""
    base = Scenario(operations=operations, warmup=warmup, repeats=repeats, **fields)
    return run_scenarios(rtt_scenarios(base, rtt_ms), settings, server=server, progress=progress,
                         added_rtt_ms=[float(r) for r in rtt_ms])


def connect_breakdown(server: LocalServer, **kwargs: Any) -> pd.DataFrame:
    """Where the milliseconds of a new connection go; see ``breakdown.connect_breakdown``."""
    from .breakdown import connect_breakdown as _breakdown
    return _breakdown(server, **kwargs)
