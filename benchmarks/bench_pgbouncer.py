"""Benchmark: connect-per-query straight to PostgreSQL against connect-per-query through PgBouncer.

Run:  .venv/bin/python benchmarks/bench_pgbouncer.py [--repeats 7] [--connects 100] [--no-write]

Starts its own LocalServer and LocalPgBouncer (temporary folder, free ports, removed afterwards), then
measures one operation = connect, SELECT 1, end the transaction, close; three contenders alternate
within every repeat (in alternating order) so machine drift hits all alike:
1. direct: the blog's pattern against the server (a new backend process and a SCRAM exchange each time);
2. pgbouncer: the same through PgBouncer, committing before close (the server connection is reused);
3. pgbouncer, no commit: the blog's code exactly (close inside the open transaction): PgBouncer must
   throw that server connection away, so every operation costs a new backend again.
The table shows medians over repeats and the ratio to direct; results go to the "PgBouncer" section of
benchmarks/RESULTS.md (between markers, so other sections are left alone).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
from results_file import RESULTS, machine_and_server, replace_block

from pgfactory_kit.servers.daemon import free_port
from pgfactory_kit.servers.pgbouncer import LocalPgBouncer, find_pgbouncer
from pgfactory_kit.servers.postgres import LocalServer
from pgfactory_kit.settings import ConnectionSettings

SECTION = "## PgBouncer"


def connect_per_query(settings: ConnectionSettings, commit: bool) -> Callable[[], None]:
    kwargs = settings.connect_kwargs()

    def op() -> None:
        conn = psycopg2.connect(**kwargs)
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
        cur.close()
        if commit:
            conn.commit()
        conn.close()
    return op


def timed(op: Callable[[], None], n: int) -> float:
    """Milliseconds per operation over ``n`` operations."""
    start = time.perf_counter_ns()
    for _ in range(n):
        op()
    return (time.perf_counter_ns() - start) / n / 1e6


def interleaved(contenders: dict[str, Callable[[], None]], repeats: int, n: int) -> dict[str, list[float]]:
    names = list(contenders)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            out[name].append(timed(contenders[name], n))
    return out


def backends_started(admin: ConnectionSettings) -> int:
    """Sessions the server has started for mydatabase so far (pg_stat_database.sessions)."""
    conn = psycopg2.connect(**admin.connect_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = 'mydatabase'")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def machine(settings: ConnectionSettings, bouncer: LocalPgBouncer) -> str:
    this_machine, version = machine_and_server(settings)
    return (f"{this_machine}; "
            f"PostgreSQL {version} (LocalServer), {bouncer.status().version} (LocalPgBouncer, transaction "
            f"pooling, pool size {bouncer.pool_size}); TCP on 127.0.0.1, scram-sha-256 everywhere, no added RTT; "
            f"psycopg2 {psycopg2.__version__.split()[0]} (libpq {psycopg2.__libpq_version__}); "
            f"load average at the end {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--connects", type=int, default=100, help="operations per contender per repeat")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if find_pgbouncer() is None:
        print("PgBouncer is not installed: apt-get install pgbouncer (or conda install -c conda-forge "
              "pgbouncer), then run this again.", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-pgbouncer-") as tmp:
        server = LocalServer(data_dir=Path(tmp) / "data", port=free_port())
        bouncer = LocalPgBouncer(server, port=free_port())
        try:
            direct = server.start()
            pooled = bouncer.start()
            print(f"server {direct.masked_dsn()}, pgbouncer {pooled.masked_dsn()}", flush=True)
            contenders = {
                "direct": connect_per_query(direct, commit=True),
                "pgbouncer": connect_per_query(pooled, commit=True),
                "pgbouncer_no_commit": connect_per_query(pooled, commit=False),
            }
            for op in contenders.values():
                timed(op, max(5, args.connects // 10))  # warm-up, dropped
            admin = server.admin_settings("postgres")
            sessions: dict[str, int] = {}
            for name, op in contenders.items():  # backends each pattern costs, counted by the server
                before = backends_started(admin)
                timed(op, 20)
                sessions[name] = backends_started(admin) - before
            results = interleaved(contenders, args.repeats, args.connects)
            info = machine(direct, bouncer)
        finally:
            bouncer.destroy()
            server.destroy()

    med = {name: statistics.median(values) for name, values in results.items()}
    rows = [
        ("direct to PostgreSQL (commit, close)", med["direct"], 1.0, sessions["direct"]),
        ("through PgBouncer (commit, close)", med["pgbouncer"], med["direct"] / med["pgbouncer"],
         sessions["pgbouncer"]),
        ("through PgBouncer, close without commit (the blog's code)", med["pgbouncer_no_commit"],
         med["direct"] / med["pgbouncer_no_commit"], sessions["pgbouncer_no_commit"]),
    ]
    table = ("| connect + SELECT 1 + close | ms/op (median) | speed-up vs direct | new server backends per 20 ops |\n"
             "|---|---|---|---|\n" + "\n".join(f"| {label} | {ms:.3f} | {ratio:.2f}x | {backends} |"
                                               for label, ms, ratio, backends in rows))
    notes = ("Per-repeat ms/op: "
             + "; ".join(f"{name}: {', '.join(f'{v:.3f}' for v in values)}" for name, values in results.items())
             + ".")
    print(table)
    print(notes)
    if not args.no_write:
        command = "python benchmarks/bench_pgbouncer.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_section(table, notes, command.strip(), info, args.repeats, args.connects)
        print(f"updated the PgBouncer section of {RESULTS}")
    return 0


def write_section(table: str, notes: str, command: str, machine_text: str, repeats: int, connects: int) -> None:
    """Replace the measured part of the PgBouncer section (between markers); keep everything else."""
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    replace_block("bench_pgbouncer", SECTION,
                  f"Command: `{command}` — {when}; medians of {repeats} interleaved repeats of {connects} "
                  f"operations per contender.\nMachine: {machine_text}.\n\n{table}\n\n{notes}")


if __name__ == "__main__":
    sys.exit(main())
