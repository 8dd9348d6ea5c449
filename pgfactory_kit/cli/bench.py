"""``pgfactory-kit bench``: measure, summarise, plot and save, in one command.

Writes into ``--out`` (default ``bench-results/``): results.csv, summary.csv, sessions.csv,
machine.json, rtt_fit.csv, breakdown.csv and one PNG per figure; prints the summary table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2

from ..measuring import choices
from ..measuring.strategies import STRATEGIES
from ..settings import ConnectionSettings
from . import options

if TYPE_CHECKING:
    import pandas as pd

    from ..servers.postgres import LocalServer

# numpy, pandas and matplotlib (runner, plots) are imported when a run starts, not to parse options:
# a refused command line costs no import time.

# Time limits (s) bound each run even on a busy machine; a run that hits one stops early and says so.
QUICK = dict(operations=100, warmup=10, repeats=2, threads=[1, 2, 4], rtt_ms=[0.0, 5.0, 10.0],
             sweep_operations=60, rtt_operations=15, breakdown_samples=20, main_limit_s=15.0, sweep_limit_s=5.0,
             breakdown_limit_s=6.0)
FULL = dict(operations=300, warmup=30, repeats=3, threads=[1, 2, 4, 8], rtt_ms=[0.0, 5.0, 10.0, 20.0],
            sweep_operations=200, rtt_operations=40, breakdown_samples=40, main_limit_s=600.0,
            sweep_limit_s=300.0, breakdown_limit_s=120.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench subcommand's options."""
    parser.add_argument("--quick", action="store_true",
                        help="a short run (under a minute on 2 cores) that still gives a stable ratio")
    parser.add_argument("--out", type=options.folder_to_create, default=Path("bench-results"),
                        help="folder for the CSV, JSON and PNG files (default: bench-results/)")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES),
                        help="strategies to compare (default: all; unavailable ones are skipped with a note)")
    parser.add_argument("--workload", choices=("select1", "select_all", "insert"), default="select1",
                        help="what each operation does (default: select1)")
    parser.add_argument("--operations", type=_whole("operations", "e.g. --operations 100"), default=None,
                        help="timed operations per strategy and repeat (default: 100 quick, 300 full)")
    parser.add_argument("--repeats", type=_whole("repeats", "e.g. --repeats 3"), default=None,
                        help="repeats (default: 2 quick, 3 full)")
    parser.add_argument("--warmup", type=_whole("warmup", "e.g. --warmup 10 (0 for none)"), default=None,
                        help="untimed warm-up operations per strategy (default: 10 quick, 30 full)")
    parser.add_argument("--threads", type=_whole("threads", "give thread counts, e.g. --threads 1 2 4"), nargs="+",
                        default=None,
                        help="thread counts for the thread sweep (default: 1 2 4 quick, 1 2 4 8 full; one value "
                             "skips the sweep)")
    parser.add_argument("--rtt-ms", type=options.real(0.0, choices.MAX_RTT_MS, "give round-trip times in "
                                                      "milliseconds, e.g. --rtt-ms 0 5 10"), nargs="+", default=None,
                        help="added round-trip times in ms for the network sweep (default: 0 5 10 quick, "
                             "0 5 10 20 full; 0 alone skips it)")
    parser.add_argument("--pool-size", type=_whole("pool_size", "e.g. --pool-size 4"), default=4,
                        help="max_size of the pools (default: 4)")
    parser.add_argument("--auth", choices=choices.AUTH_METHODS, default=None,
                        help="authentication method of the main run (kit's server only; default scram-sha-256)")
    parser.add_argument("--transport", choices=choices.TRANSPORTS, default="tcp",
                        help="transport of the main run (kit's server only for unix/tls; default tcp)")
    parser.add_argument("--dsn", type=options.dsn, default=None,
                        help="measure this server instead of the kit's own (no auth/transport choice, no "
                             "connect-cost breakdown); PGFACTORY_DSN works too")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the connect-cost breakdown")
    parser.add_argument("--data-dir", type=options.folder_to_create, default=None,
                        help="the kit's server to measure (default: .pgfactory/data in the project)")
    parser.add_argument("--port", type=options.PORT, default=None,
                        help="its port (default: $PGFACTORY_PORT or 15432)")
    parser.add_argument("--bin-dir", type=options.bin_folder, default=None,
                        help="PostgreSQL binaries for that server, e.g. ones built with SSL to measure TLS "
                             "(/usr/lib/postgresql/15/bin; use a separate --data-dir)")


def _whole(field: str, hint: str) -> Any:
    """An argparse type for one of Scenario's whole-number fields, with the Scenario's own limits."""
    low, high = {name: (lo, hi) for name, lo, hi in choices.LIMITS}[field]
    return options.whole(low, high, hint)


def validate(args: argparse.Namespace) -> str | None:
    """Options that cannot go together (checked before any server, proxy or progress bar starts)."""
    if args.dsn is not None:
        kit_only = [flag for flag, value in (("--data-dir", args.data_dir), ("--port", args.port),
                                             ("--bin-dir", args.bin_dir)) if value is not None]
        if kit_only:
            return (f"--dsn measures that server; {', '.join(kit_only)} choose the kit's own. Give one or the "
                    "other.")
        if args.auth is not None:
            return "--auth needs the kit's own server (it logs in as a role per method): leave out --dsn or --auth"
        if args.transport == "unix":
            return "--transport unix needs the kit's own server (its socket folder): leave out --dsn, or use tcp"
    return None


def _target(args: argparse.Namespace) -> tuple[ConnectionSettings | None, LocalServer | None]:
    """(settings, server): the DSN if given, else the kit's LocalServer, started if needed."""
    dsn = args.dsn or os.environ.get("PGFACTORY_DSN") or os.environ.get("DATABASE_URL")
    if dsn:
        return ConnectionSettings.from_dsn(dsn), None
    from ..measuring import runner as bench
    from ..servers.compose import docker_instead_of
    from ..servers.postgres import LocalServer
    server = LocalServer(data_dir=args.data_dir, port=args.port, bin_dir=args.bin_dir)
    docker = docker_instead_of(server, (args.data_dir, args.port, args.bin_dir))
    if docker is not None:
        print(f"Measuring the Docker database from .env at {docker.masked_dsn()}")
        return docker, None
    # start() also re-applies the lesson's roles; skip it when the server already runs.
    settings = server.settings() if server.status().running else server.start()
    print(f"Measuring the kit's PostgreSQL at {settings.host}:{settings.port} (in the bench's own database "
          f"{bench.BENCH_DATABASE!r}, so the server's session counts are the bench's alone)")
    return None, server


def _write_figures(out: Path, figures: dict[str, Any]) -> list[Path]:
    written = []
    for name, fig in figures.items():
        path = out / f"{name}.png"
        fig.savefig(path, dpi=120)
        written.append(path)
    return written


def _print_summary(summary: pd.DataFrame, sessions: pd.DataFrame) -> None:
    table = summary[["strategy", "n", "median_ms", "p95_ms", "p99_ms", "ops_per_s", "ratio"]].copy()
    table["95% CI"] = [f"{lo:.1f}–{hi:.1f}" for lo, hi in zip(summary["ratio_low"], summary["ratio_high"],
                                                                 strict=True)]
    counted = sessions.groupby("strategy", sort=False)[["operations", "sessions_opened"]].sum()
    table["server sessions"] = [f"{int(counted.loc[s, 'sessions_opened'])} / {int(counted.loc[s, 'operations'])} ops"
                                if s in counted.index else "" for s in table["strategy"]]
    table = table.rename(columns={"ratio": "× reused"})
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}" if v < 10 else f"{v:,.1f}"))


def run(args: argparse.Namespace) -> int:
    """Run the measurements, write every file into ``args.out``, print the summary.
    A server that cannot be reached gives a message saying what to do (exit code 1), not a traceback."""
    try:
        return _run(args)
    except psycopg2.OperationalError as exc:
        if "What to do" in str(exc):  # already explained (could not connect)
            print(f"pgfactory-kit bench: {exc}", file=sys.stderr)
        else:
            print(f"pgfactory-kit bench: the database connection failed during the run: "
                  f"{str(exc).strip().splitlines()[0]}\nWhat to do: check `pgfactory-kit status` (was the server "
                  "restarted or stopped meanwhile?) and run the bench again.", file=sys.stderr)
        return 1
    except psycopg2.Error as exc:
        print(f"pgfactory-kit bench: the run stopped on a database error: {str(exc).strip().splitlines()[0]}\n"
              "What to do: check `pgfactory-kit status` and run the bench again.", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm.auto import tqdm

    from ..measuring import plots
    from ..measuring import runner as bench

    preset = QUICK if args.quick else FULL
    operations = args.operations if args.operations is not None else preset["operations"]
    warmup = args.warmup if args.warmup is not None else preset["warmup"]
    repeats = args.repeats if args.repeats is not None else preset["repeats"]
    threads = sorted(set(args.threads or preset["threads"]))
    rtts = sorted(set(args.rtt_ms if args.rtt_ms is not None else preset["rtt_ms"]))
    base = bench.Scenario(strategies=args.strategies, workload=args.workload, pool_size=args.pool_size)
    main_plan = base.with_(operations=operations, warmup=warmup, repeats=repeats, threads=threads[0],
                           auth=args.auth, transport=args.transport, time_limit_s=preset["main_limit_s"])
    # A smaller --operations also shrinks the sweeps, so a tiny run stays tiny.
    sweep = base.with_(operations=min(preset["sweep_operations"], operations), warmup=warmup, repeats=1,
                       time_limit_s=preset["sweep_limit_s"])
    thread_plans = bench.thread_scenarios(sweep, threads) if len(threads) > 1 else []
    rtt_plans = (bench.rtt_scenarios(sweep.with_(operations=min(preset["rtt_operations"], operations),
                                                 warmup=min(3, warmup)), rtts) if any(rtts) else [])
    settings, server = _target(args)
    do_breakdown = server is not None and not args.no_breakdown
    steps = sum(plan.steps for plan in [main_plan, *thread_plans, *rtt_plans]) + int(do_breakdown)
    started = time.monotonic()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    runs: list[bench.BenchResult] = []
    figures: dict[str, Any] = {}
    with tqdm(total=steps, desc="pgfactory-kit bench", unit="block") as bar:
        main = bench.run_scenario(main_plan, settings, server=server, progress=bar)
        runs.append(main)
        machine = main.machine
        summary = main.summary()
        figures["latency_distribution"] = plots.latency_distribution(main.results, machine)
        figures["speedup"] = plots.speedup(summary, machine)
        figures["sessions_opened"] = plots.sessions_opened(main.sessions, machine)
        if thread_plans:
            thread_result = bench.run_scenarios(thread_plans, settings, server=server, progress=bar, threads=threads)
            runs.append(thread_result)
            sweep_summary = thread_result.summary()
            figures["throughput_vs_threads"] = plots.throughput_vs_threads(sweep_summary, machine)
            figures["p95_vs_threads"] = plots.p95_vs_threads(sweep_summary, machine)
        fit = None
        if rtt_plans:
            rtt_result = bench.run_scenarios(rtt_plans, settings, server=server, progress=bar, added_rtt_ms=rtts)
            runs.append(rtt_result)
            fit = rtt_result.fit()
            fit.to_csv(out / "rtt_fit.csv", index=False)
            figures["cost_vs_rtt"] = plots.cost_vs_rtt(rtt_result.results, fit, rtt_result.machine)
        breakdown = None
        if do_breakdown:
            bar.set_postfix_str("connect-cost breakdown")
            breakdown = bench.connect_breakdown(server, samples=preset["breakdown_samples"],
                                                time_limit_s=preset["breakdown_limit_s"])
            breakdown.to_csv(out / "breakdown.csv", index=False)
            figures["connect_breakdown"] = plots.connect_breakdown(breakdown, machine)
            bar.update(1)
    everything = bench.combine(runs)
    everything.results.to_csv(out / "results.csv", index=False)
    pd.concat([summary] + [r.summary() for r in runs[1:]], ignore_index=True).to_csv(out / "summary.csv",
                                                                                    index=False)
    everything.sessions.to_csv(out / "sessions.csv", index=False)
    record = dict(machine, notes=everything.notes, threads_swept=threads if len(threads) > 1 else [],
                  rtt_ms_swept=rtts if any(rtts) else [], quick=bool(args.quick),
                  elapsed_s=round(time.monotonic() - started, 1))
    if breakdown is not None:
        record["connect_breakdown_medians_ms"] = breakdown.attrs.get("medians", {})
    (out / "machine.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    pngs = _write_figures(out, figures)

    print(f"\n{main.machine_line} · {args.workload} · {operations} ops × {repeats} repeats per strategy")
    _print_summary(summary, main.sessions)
    if fit is not None:
        print("\nRound trips per operation (slope of time vs added RTT):")
        for _, row in fit.iterrows():
            print(f"  {row['strategy']:<18} {row['fixed_ms']:8.3f} ms + {row['round_trips']:4.1f} × RTT")
    for note in everything.notes:
        print(f"note: {note}")
    if breakdown is not None:
        for note in breakdown.attrs.get("notes", []):
            print(f"note: {note}")
    print(f"\nWrote {len(pngs)} figures and the CSV/JSON files to {out}/ in {record['elapsed_s']:.0f} s")
    return 0
