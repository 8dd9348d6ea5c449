"""Benchmark: how close to a held connection can any `with` wrapper get? (context for scenario 2)

Run:  .venv/bin/python benchmarks/bench_with_floor.py [--repeats 5] [--ops 6000] [--pin] [--no-write]

Scenario 2 of bench_pool.py asks `with pool.connection()` + SELECT 1 to be within 5% of a held
connection doing SELECT 1 + commit. This measures, side by side on one shared connection (ops
rotate one by one and each is timed, as in scenario 2):
- a *bare* wrapper: a `with` object that hands out the one connection from a list and commits on
  exit, with none of a pool's promises (no waiting, checks, expiry, stats, thread safety):
  the cost of the `with` statement itself;
- the kit's ConnectionPool, lending that same connection (its factory returns it);
- psycopg2's ThreadedConnectionPool, lending that same connection.
Each is reported as the median of per-op ratios to the held connection, per repeat.
``--pin`` (Linux, 2+ CPUs) runs the server's processes on the last CPU and this client on the first,
to see whether the server evicting the client's caches explains the cost of Python after a round trip.
Results go to the "Pool" section of benchmarks/RESULTS.md (block "bench_with_floor").
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2.extensions
import psycopg2.pool
from bench_pool import free_port, held_select_op, machine, paired, psycopg2_pool_select_op, rotate_timed, with_select_op
from results_file import RESULTS, replace_block

from pgfactory_kit import ConnectionPool, make_factory
from pgfactory_kit.servers.postgres import LocalServer

_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
Contenders = tuple[dict[str, Callable[[], None]], Callable[[], None]]  # timed ops ("held" first), closer


class BareLend:
    """The least a `with` wrapper can do: take the connection, commit an open transaction, put it back."""

    __slots__ = ("spare", "conn")

    def __init__(self, spare: list) -> None:
        self.spare = spare

    def __enter__(self):
        self.conn = self.spare.pop()
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.conn
        if exc_type is None and conn.get_transaction_status() != _IDLE:
            conn.commit()
        self.spare.append(conn)


def contenders(settings) -> Contenders:
    """The timed operations, all on one connection, and a function that closes everything."""
    held = make_factory(settings)()
    kit = ConnectionPool(lambda: held, min_size=1, max_size=1)
    tcp = psycopg2.pool.ThreadedConnectionPool(1, 1, **settings.connect_kwargs())
    tcp._pool.pop().close()  # private, benchmark only: psycopg2's pool lends out the same connection
    tcp._pool.append(held)  # (with minconn 1, or it would close the connection on every return)
    spare = [held]

    def close() -> None:
        kit.close()
        held.close()

    ops = {"held": held_select_op(held), "bare with": with_select_op(lambda: BareLend(spare)),
           "kit pool": with_select_op(kit.connection), "ThreadedConnectionPool": psycopg2_pool_select_op(tcp)}
    return ops, close


def pin_apart(server: LocalServer) -> str:
    """Put the server's processes (and so its future backends) on the last CPU and this process on the first."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
    postmaster = server.status().pid
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == postmaster]
    for pid in [postmaster, *children]:
        os.sched_setaffinity(pid, {cpus[-1]})
    os.sched_setaffinity(0, {cpus[0]})
    return f"server's {1 + len(children)} processes pinned to CPU {cpus[-1]}, client to CPU {cpus[0]}"


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def ratios_to_held(make_contenders: Callable[[Any], Contenders], repeats: int, ops: int, prefix: str,
                   on_start: Callable[[LocalServer], None] | None = None,
                   ) -> tuple[dict[str, list[float]], list[float], str]:
    """On a private server: per repeat, every contender's median per-op ratio to "held" (rotating one by
    one), the held connection's median µs/op, and the machine line. Prints each repeat as it ends."""
    scratch = tempfile.TemporaryDirectory(prefix=prefix)
    server = LocalServer(data_dir=Path(scratch.name) / "data", port=free_port())
    settings = server.start()
    print(f"server: {settings.masked_dsn()}", flush=True)
    ratios: dict[str, list[float]] = {}
    held_us: list[float] = []
    try:
        if on_start is not None:
            on_start(server)
        ops_by_name, close = make_contenders(settings)
        rotate_timed(ops_by_name, 300)  # warm-up, dropped
        for repeat in range(repeats):
            out = rotate_timed(ops_by_name, ops)
            held_us.append(statistics.median(out["held"]))
            for name in list(ops_by_name)[1:]:
                ratios.setdefault(name, []).append(paired(out[name], out["held"]))
            print(f"repeat {repeat + 1}/{repeats}: held {held_us[-1]:.1f} µs; "
                  + ", ".join(f"{name} {values[-1]:.3f}x" for name, values in ratios.items()), flush=True)
        close()
        machine_text = machine(settings)
    finally:
        server.destroy()
        scratch.cleanup()
    return ratios, held_us, machine_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ops", type=int, default=6000, help="timed operations per contender per repeat")
    parser.add_argument("--pin", action="store_true", help="client and server on different CPUs (Linux)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    pinning = "client and server not pinned"

    def pin(server: LocalServer) -> None:
        nonlocal pinning
        if args.pin:
            pinning = pin_apart(server)
        print(pinning, flush=True)

    ratios, held_us, machine_text = ratios_to_held(contenders, args.repeats, args.ops, "bench_with_floor_", pin)

    rows = "\n".join(f"| {name} | {statistics.median(values):.3f}x | {min(values):.3f}–{max(values):.3f}x |"
                     for name, values in ratios.items())
    table = ("| `with` block + SELECT 1, vs a held connection doing SELECT 1 + commit | median of repeats "
             "| range over repeats |\n|---|---|---|\n" + rows)
    print(table)
    if not args.no_write:
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        command = ".venv/bin/python benchmarks/bench_with_floor.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        body = (f"Command: `{command.strip()}` — {when}. {args.repeats} repeats of {args.ops} per-op timings "
                f"per contender, rotating one by one on one shared connection; each repeat's figure is the "
                f"median of per-op ratios to the held connection (held: median "
                f"{statistics.median(held_us):.1f} µs/op); {pinning}.\nMachine: {machine_text}.\n\n{table}")
        replace_block("bench_with_floor", "## Pool", body)
        print(f"updated the Pool section of {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
