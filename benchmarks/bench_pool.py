"""Benchmark: pgfactory_kit.ConnectionPool side by side with psycopg2's and psycopg_pool's pools.

Run:  .venv/bin/python benchmarks/bench_pool.py [--repeats 5] [--rounds 300] [--no-write] [--kit-server]

A private temporary LocalServer is started (and destroyed) unless --kit-server is given.

Each scenario measures its contenders interleaved (alternating within every repeat, so machine
drift hits all alike); ratios are medians of paired measurements (kit / baseline measured side by
side in the same round, so load from other processes cancels out). Results go to the "Pool"
section of benchmarks/RESULTS.md.
1. checkout + return, no query: ours vs psycopg2.pool.ThreadedConnectionPool (target <= 1.0x);
2. ``with pool.connection()`` + SELECT 1 vs a held connection doing SELECT 1 + commit, all on one
   shared connection: ours no worse than ThreadedConnectionPool's ratio in the same rotation; the
   floor is a bare ``with`` wrapper with none of a pool's promises;
3. 16 threads on 4 connections, SELECT 1 each: ours vs psycopg_pool (target >= 1.5x throughput, no
   errors), and psycopg2's ThreadedConnectionPool, whose "connection pool exhausted" errors are counted;
4. 64 and 256 threads on 8 connections: ours vs psycopg_pool, throughput, errors and fairness
   (p99 / median of the time each request waited for its connection).
"""
from __future__ import annotations

import argparse
import datetime as dt
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.pool
from results_file import RESULTS, machine_and_server, replace_block

from pgfactory_kit import ConnectionPool, make_factory
from pgfactory_kit.servers.postgres import LocalServer

SECTION = "## Pool"
THREADS, CONNS = 16, 4


def timed(fn: Callable[[], None], n: int) -> float:
    """Microseconds per call of ``fn`` over ``n`` calls."""
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


def interleaved(contenders: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run every contender once per repeat, alternating the order; collect each one's results."""
    names = list(contenders)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            out[name].append(contenders[name]())
    return out


def scenario_checkout(settings, rounds: int, n: int) -> dict:
    kit = ConnectionPool(make_factory(settings), min_size=1, max_size=4)
    tcp = psycopg2.pool.ThreadedConnectionPool(1, 4, **settings.connect_kwargs())

    def kit_cycle() -> None:
        kit.putconn(kit.getconn())

    def tcp_cycle() -> None:
        tcp.putconn(tcp.getconn())

    for fn in (kit_cycle, tcp_cycle):
        timed(fn, n)  # warm-up, dropped
    res = interleaved({"kit": lambda: timed(kit_cycle, n), "tcp": lambda: timed(tcp_cycle, n)}, rounds)
    kit.close()
    tcp.closeall()
    return res


def held_select_op(held: psycopg2.extensions.connection) -> Callable[[], None]:
    """SELECT 1 + commit on a connection the caller holds (scenario 2's baseline)."""
    def op() -> None:
        with held.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        held.commit()
    return op


def with_select_op(make_block: Callable[[], Any]) -> Callable[[], None]:
    """SELECT 1 inside ``with make_block() as conn`` (the block commits)."""
    def op() -> None:
        with make_block() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    return op


def psycopg2_pool_select_op(tcp: psycopg2.pool.ThreadedConnectionPool) -> Callable[[], None]:
    """SELECT 1 + commit on a connection borrowed from psycopg2's pool and given back."""
    def op() -> None:
        conn = tcp.getconn()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
            conn.commit()
        finally:
            tcp.putconn(conn)
    return op


def rotate_timed(ops: dict[str, Callable[[], None]], n: int) -> dict[str, list[float]]:
    """Per-op µs of every contender over ``n`` rounds, one op each per round; the starting contender
    rotates, so drift and noise from other processes hit all alike."""
    names = list(ops)
    out: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t0 = clock()
            ops[name]()
            out[name].append((clock() - t0) / 1000)
    return out


class BareLend:
    """The least a `with` wrapper can do: take the connection, commit an open transaction, put it back.

    No waiting, no checks, no expiry, no counters, not thread-safe: the floor for scenario 2."""

    __slots__ = ("spare", "conn")

    def __init__(self, spare: list) -> None:
        self.spare = spare

    def __enter__(self):
        self.conn = self.spare.pop()
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.conn
        if exc_type is None and conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            conn.commit()
        self.spare.append(conn)


class OneLockLend:
    """The least a one-lock pool must do per block, written inline with no method calls: take the
    record under the lock (count the request, mark it lent), commit, then claim it under the lock
    (look it up, check it is this lend) and push it back. No checks, no expiry, no waiters: the
    floor of the design itself, between the bare wrapper and the kit's pool."""

    __slots__ = ("book", "conn")

    def __init__(self, book: dict) -> None:
        self.book = book

    def __enter__(self):
        book = self.book
        with book["lock"]:
            book["requests"] += 1
            rec = book["idle"].pop()
            rec["state"] = "lent"
        self.conn = rec["conn"]
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        conn, book = self.conn, self.book
        if exc_type is None and conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            conn.commit()
        with book["lock"]:
            rec = book["records"].get(id(conn))
            if rec is None or rec["state"] != "lent" or rec["conn"] is not conn:
                raise ValueError("not lent")
            rec["state"], rec["last_used"] = "idle", time.monotonic()
            book["idle"].append(rec)


def scenario_select(settings, rounds: int, n: int) -> dict:
    """The pools' cost on a real query, isolated: every side uses the *same* connection.

    The kit's pool gets it from its factory, psycopg2's ThreadedConnectionPool is handed it, the
    bare wrapper pops it from a list and the "held" side uses it directly, so server, backend and
    socket are identical and only the wrappers' work differs. Ops rotate one by one and each is
    timed; medians of the per-op times are compared.
    """
    held = make_factory(settings)()
    kit = ConnectionPool(lambda: held, min_size=1, max_size=1)
    tcp = psycopg2.pool.ThreadedConnectionPool(1, 1, **settings.connect_kwargs())
    tcp._pool.pop().close()  # private, benchmark only: psycopg2's pool lends out the same connection
    tcp._pool.append(held)  # (with minconn 1, or it would close the connection on every return)
    spare = [held]
    rec = {"conn": held, "state": "idle", "last_used": 0.0}
    book = {"lock": threading.Lock(), "idle": [rec], "records": {id(held): rec}, "requests": 0}
    ops = {"kit": with_select_op(kit.connection), "held": held_select_op(held), "tcp": psycopg2_pool_select_op(tcp),
           "bare": with_select_op(lambda: BareLend(spare)), "one-lock": with_select_op(lambda: OneLockLend(book))}
    for fn in ops.values():
        timed(fn, 200)  # warm-up, dropped
    out = rotate_timed(ops, rounds * n)
    kit.close()
    held.close()
    return out


def run_threads(worker: Callable[[], tuple[int, int]], threads: int = THREADS) -> tuple[float, int]:
    """Start ``threads`` workers together; return (operations per second, errors)."""
    results: list[tuple[int, int]] = []
    barrier = threading.Barrier(threads + 1)

    def body() -> None:
        barrier.wait()
        results.append(worker())

    started = [threading.Thread(target=body) for _ in range(threads)]
    for t in started:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in started:
        t.join(timeout=300)
    elapsed = time.perf_counter() - start
    ops = sum(r[0] for r in results)
    return ops / elapsed, sum(r[1] for r in results)


def scenario_threads(settings, repeats: int, per_thread: int) -> tuple[dict, dict]:
    import psycopg_pool  # the `compare` extra

    kit = ConnectionPool(make_factory(settings), min_size=CONNS, max_size=CONNS)
    ppool = psycopg_pool.ConnectionPool(settings.masked_dsn().replace("****", settings.password or ""),
                                        min_size=CONNS, max_size=CONNS, open=True)
    ppool.wait(30)
    tcp = psycopg2.pool.ThreadedConnectionPool(CONNS, CONNS, **settings.connect_kwargs())
    errors: dict[str, list[int]] = {"kit": [], "psycopg_pool": [], "psycopg2_tcp": []}

    def kit_worker() -> tuple[int, int]:
        done = errs = 0
        for _ in range(per_thread):
            try:
                with kit.connection() as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchone()
                done += 1
            except psycopg2.Error:
                errs += 1
        return done, errs

    def ppool_worker() -> tuple[int, int]:
        done = errs = 0
        for _ in range(per_thread):
            try:
                with ppool.connection() as conn:
                    conn.execute("SELECT 1").fetchone()
                done += 1
            except Exception:  # noqa: BLE001 - counted
                errs += 1
        return done, errs

    def tcp_worker() -> tuple[int, int]:
        done = errs = 0
        for _ in range(per_thread):
            try:
                conn = tcp.getconn()
            except psycopg2.pool.PoolError:  # "connection pool exhausted": psycopg2's pool never waits
                errs += 1
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchone()
                conn.commit()
                done += 1
            finally:
                tcp.putconn(conn)
        return done, errs

    def measure(name: str, worker: Callable[[], tuple[int, int]]) -> Callable[[], float]:
        def run() -> float:
            rate, errs = run_threads(worker)
            errors[name].append(errs)
            return rate
        return run

    run_threads(kit_worker)
    run_threads(ppool_worker)  # warm-ups, dropped
    res = interleaved({"kit": measure("kit", kit_worker), "psycopg_pool": measure("psycopg_pool", ppool_worker),
                       "psycopg2_tcp": measure("psycopg2_tcp", tcp_worker)}, repeats)
    kit.close()
    ppool.close()
    tcp.closeall()
    return res, errors


SCALE_THREADS, SCALE_CONNS = (64, 256), 8


def scenario_scale(settings, repeats: int, per_thread: int) -> dict[int, dict[str, dict[str, list[float]]]]:
    """Many threads on 8 connections: throughput, errors and fairness of the wait for a connection.

    Each request's wait is the time from asking for a connection to holding it; fairness is the
    p99 of those waits over their median in each repeat (1 would be perfectly even; a pool that
    lets newcomers overtake shows a long tail)."""
    import psycopg_pool  # the `compare` extra

    kit = ConnectionPool(make_factory(settings), min_size=SCALE_CONNS, max_size=SCALE_CONNS, timeout=120)
    ppool = psycopg_pool.ConnectionPool(settings.masked_dsn().replace("****", settings.password or ""),
                                        min_size=SCALE_CONNS, max_size=SCALE_CONNS, timeout=120, open=True)
    ppool.wait(30)
    clock = time.perf_counter

    def worker(lend: Callable[[], Any], run_query: Callable[[Any], None], waits: list[float]):
        def work() -> tuple[int, int]:
            done = errs = 0
            mine: list[float] = []
            for _ in range(per_thread):
                try:
                    asked = clock()
                    with lend() as conn:
                        mine.append(clock() - asked)
                        run_query(conn)
                    done += 1
                except Exception:  # noqa: BLE001 - counted
                    errs += 1
            waits.extend(mine)  # list.extend from many threads: fine for a benchmark's tally
            return done, errs
        return work

    def kit_query(conn) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    def ppool_query(conn) -> None:
        conn.execute("SELECT 1").fetchone()

    out: dict[int, dict[str, dict[str, list[float]]]] = {}
    for threads in SCALE_THREADS:
        out[threads] = {name: {"rate": [], "errors": [], "fairness": []} for name in ("kit", "psycopg_pool")}

        def measure(name: str, lend, run_query, threads=threads) -> Callable[[], float]:
            def run() -> float:
                waits: list[float] = []
                rate, errs = run_threads(worker(lend, run_query, waits), threads)
                deciles = statistics.quantiles(waits, n=100)
                out[threads][name]["errors"].append(errs)
                out[threads][name]["fairness"].append(deciles[98] / max(statistics.median(waits), 1e-9))
                return rate
            return run

        rates = interleaved({"kit": measure("kit", kit.connection, kit_query),
                             "psycopg_pool": measure("psycopg_pool", ppool.connection, ppool_query)}, repeats)
        for name, values in rates.items():
            out[threads][name]["rate"] = values
        print(f"scenario 4: {threads} threads done", flush=True)
    kit.close()
    ppool.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine(settings) -> str:
    this_machine, version = machine_and_server(settings)
    versions = [f"psycopg2 {psycopg2.__version__.split()[0]}"]
    try:
        import psycopg
        import psycopg_pool
        versions += [f"psycopg {psycopg.__version__}", f"psycopg_pool {psycopg_pool.__version__}"]
    except ImportError:
        versions.append("psycopg_pool not installed")
    return (f"{this_machine}; "
            f"PostgreSQL {version} (a private LocalServer) over TCP {settings.host}:{settings.port}, scram-sha-256, "
            f"no added RTT; {', '.join(versions)}")


def med(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats of scenario 3")
    parser.add_argument("--rounds", type=int, default=300,
                        help="interleaved rounds of scenarios 1 and 2 (short rounds: drift hits both alike)")
    parser.add_argument("--cycles", type=int, default=1000, help="checkouts per round in scenario 1")
    parser.add_argument("--queries", type=int, default=20, help="queries per round in scenario 2")
    parser.add_argument("--per-thread", type=int, default=300, help="queries per thread in scenario 3")
    parser.add_argument("--scale-repeats", type=int, default=3, help="interleaved repeats of scenario 4")
    parser.add_argument("--scale-per-thread", type=int, default=40, help="queries per thread in scenario 4")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--kit-server", action="store_true",
                        help="use the kit's default server instead of a private temporary LocalServer")
    args = parser.parse_args(argv)

    if args.kit_server:
        server, scratch = LocalServer(), None
    else:  # a private server: nobody else's restarts or terminations land in the measurement
        scratch = tempfile.TemporaryDirectory(prefix="bench_pool_")
        server = LocalServer(data_dir=Path(scratch.name) / "data", port=free_port())
    settings = server.start()
    print(f"server: {settings.masked_dsn()}", flush=True)
    try:
        one = scenario_checkout(settings, args.rounds, args.cycles)
        two = scenario_select(settings, args.rounds, args.queries)
        three, errors = scenario_threads(settings, args.repeats, args.per_thread)
        four = scenario_scale(settings, args.scale_repeats, args.scale_per_thread)
        machine_text = machine(settings)
    finally:
        if scratch is not None:
            server.destroy()
            scratch.cleanup()

    r1 = paired(one["kit"], one["tcp"])
    r2, r2_tcp, r2_bare, r2_lock = (paired(two[name], two["held"]) for name in ("kit", "tcp", "bare", "one-lock"))
    r3 = paired(three["kit"], three["psycopg_pool"])
    rows = [
        ("1. checkout+return, no query (µs/op)", f"kit {med(one['kit']):.2f}",
         f"ThreadedConnectionPool {med(one['tcp']):.2f}", f"{r1:.2f}x time", "<= 1.00x",
         "met" if r1 <= 1.0 else "MISSED"),
        ("2. with pool.connection() + SELECT 1, vs a held connection (µs/op)",
         f"kit {med(two['kit']):.1f} ({r2:.3f}x held)",
         f"ThreadedConnectionPool {med(two['tcp']):.1f} ({r2_tcp:.3f}x held)",
         f"kit {r2:.3f}x vs ThreadedConnectionPool {r2_tcp:.3f}x (bare `with` floor {r2_bare:.3f}x, "
         f"one-lock floor {r2_lock:.3f}x)",
         "kit <= ThreadedConnectionPool", "met" if r2 <= r2_tcp else "MISSED"),
        (f"3. {THREADS} threads on {CONNS} connections (ops/s)", f"kit {med(three['kit']):.0f}",
         f"psycopg_pool {med(three['psycopg_pool']):.0f}", f"{r3:.2f}x throughput", ">= 1.50x, 0 errors",
         "met" if r3 >= 1.5 and sum(errors["kit"]) == 0 else "MISSED"),
    ]
    for threads, res in four.items():
        kit4, pp4 = res["kit"], res["psycopg_pool"]
        r4 = paired(kit4["rate"], pp4["rate"])
        rows.append((f"4. {threads} threads on {SCALE_CONNS} connections (ops/s; fairness = p99/median wait)",
                     f"kit {med(kit4['rate']):.0f}, errors {sum(kit4['errors']):.0f}, "
                     f"fairness {med(kit4['fairness']):.1f}",
                     f"psycopg_pool {med(pp4['rate']):.0f}, errors {sum(pp4['errors']):.0f}, "
                     f"fairness {med(pp4['fairness']):.1f}",
                     f"{r4:.2f}x throughput", "0 errors (measured, no ratio target)",
                     "met" if sum(kit4["errors"]) == 0 else "MISSED"))
    tcp_errs = sum(errors["psycopg2_tcp"])
    tcp_ops = args.per_thread * THREADS * args.repeats
    header = ("| scenario | ours (median) | baseline (median) | ratio (median of pairs) | target | |\n"
              "|---|---|---|---|---|---|\n")
    table = header + "\n".join("| " + " | ".join(row) + " |" for row in rows)
    notes = (f"Scenario 3 errors: kit {sum(errors['kit'])}, psycopg_pool {sum(errors['psycopg_pool'])}; "
             f"psycopg2 ThreadedConnectionPool raised \"connection pool exhausted\" {tcp_errs} times out of "
             f"{tcp_ops} requests ({100 * tcp_errs / tcp_ops:.0f}%), throughput of the requests it did serve "
             f"{med(three['psycopg2_tcp']):.0f} ops/s.\n\n"
             f"Spread (p10–p90 of rounds, kit / baseline): 1: {spread(one['kit'])} / {spread(one['tcp'])} µs; "
             f"2: {spread(two['kit'])} / {spread(two['held'])} µs. Scenario 3 per repeat: "
             f"{fmt(three['kit'], 0)} / {fmt(three['psycopg_pool'], 0)} ops/s.")
    notes += (f" Scenario 2 held connection {med(two['held']):.1f} µs/op, bare `with` {med(two['bare']):.1f} µs/op."
              " Scenario 4 per repeat (ops/s, kit / psycopg_pool): " + "; ".join(
                  f"{t} threads: {fmt(r['kit']['rate'], 0)} / {fmt(r['psycopg_pool']['rate'], 0)}"
                  for t, r in four.items()) + ".")
    print(table)
    print(notes)
    if not args.no_write:
        command = ".venv/bin/python benchmarks/bench_pool.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_section(table, notes, command.strip(), machine_text, args)
        print(f"updated the Pool section of {RESULTS}")
    return 0


def paired(ours: list[float], baseline: list[float]) -> float:
    """Median of per-round ratios: each pair was measured back to back, so drift cancels."""
    return statistics.median(a / b for a, b in zip(ours, baseline, strict=True))


def spread(values: list[float]) -> str:
    deciles = statistics.quantiles(values, n=10)
    return f"{deciles[0]:.2f}–{deciles[-1]:.2f}"


def fmt(values: list[float], digits: int = 2) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def write_section(table: str, notes: str, command: str, machine_text: str, args: argparse.Namespace) -> None:
    """Replace the measured part of the Pool section (kept between markers); keep everything else."""
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"Command: `{command}` — {when}. Scenarios 1–2: medians of "
            f"{args.rounds} interleaved rounds ({args.cycles} checkouts each) / of {args.rounds * args.queries} "
            f"per-op timings rotating one by one (same backend for all sides); "
            f"scenario 3: medians of {args.repeats} interleaved repeats ({args.per_thread} queries per "
            f"thread); scenario 4: {args.scale_repeats} interleaved repeats ({args.scale_per_thread} queries per "
            f"thread).\nMachine: {machine_text}.\n\n{table}\n\n{notes}")
    replace_block("bench_pool", SECTION, body)


if __name__ == "__main__":
    sys.exit(main())
