"""Benchmark: what recording costs — the WireTap against the plain DelayProxy, side by side in one run.

Run:  .venv/bin/python benchmarks/bench_wiretap.py [--repeats 21] [--queries 400] [--connects 40] [--no-write]

Starts its own LocalServer (temporary folder, free port, removed afterwards) and, in front of it, a
DelayProxy and a WireTap, both with no added delay. Contenders alternate within every repeat (order
reversed every other repeat) so machine drift hits all alike:
1. a ``SELECT 1`` loop on one held connection (autocommit) through each, and straight to the server;
2. a connect loop (connect, close) through each.
The ratio tap/proxy is taken per repeat (paired) and its median reported; target: at most 1.10 for the
``SELECT 1`` loop. Decoding cost per message is timed offline on real recorded bytes (a connect +
SELECT 1 + close), both the bare decoder and the tap's full per-chunk path (decode + record).
Results go to the "Wire tap" section of benchmarks/RESULTS.md (between markers).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
from results_file import RESULTS, replace_block

from pgfactory_kit.measuring.proxy import DelayProxy
from pgfactory_kit.measuring.wire_protocol import Conversation
from pgfactory_kit.measuring.wiretap import WireTap, _Connection
from pgfactory_kit.servers.daemon import free_port
from pgfactory_kit.servers.postgres import LocalServer
from pgfactory_kit.settings import ConnectionSettings

SECTION = "## Wire tap"
TARGET = 1.10


def select_loop(settings: ConnectionSettings) -> tuple[Callable[[int], float], Callable[[], None]]:
    conn = psycopg2.connect(**settings.connect_kwargs())
    conn.autocommit = True
    cur = conn.cursor()

    def run(n: int) -> float:
        start = time.perf_counter_ns()
        for _ in range(n):
            cur.execute("SELECT 1")
            cur.fetchall()
        return (time.perf_counter_ns() - start) / n / 1e3  # µs per query

    return run, conn.close


def connect_loop(settings: ConnectionSettings) -> Callable[[int], float]:
    kwargs = settings.connect_kwargs()

    def run(n: int) -> float:
        start = time.perf_counter_ns()
        for _ in range(n):
            psycopg2.connect(**kwargs).close()
        return (time.perf_counter_ns() - start) / n / 1e6  # ms per connect

    return run


def interleaved(contenders: dict[str, Callable[[int], float]], repeats: int, n: int,
                between: Callable[[], None]) -> dict[str, list[float]]:
    names = list(contenders)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            out[name].append(contenders[name](n))
        between()
    return out


class Recorder(DelayProxy):
    """A DelayProxy that keeps the raw chunks of each connection (for timing the decoder offline)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.chunks: list[tuple[str, bytes]] = []

    def _observer(self, number: int) -> object:
        recorder = self

        class Keep:
            def from_client(self, data: bytes) -> None:
                if data:
                    recorder.chunks.append(("client", data))

            def from_server(self, data: bytes) -> None:
                if data:
                    recorder.chunks.append(("server", data))
        return Keep()


def decoding_cost(settings: ConnectionSettings, rounds: int) -> dict[str, float]:
    """µs per message: the bare decoder, and the tap's per-chunk path (decode + record), on real bytes."""
    with Recorder(settings.host, settings.port, 0.0) as recorder:
        conn = psycopg2.connect(**settings.with_(host=recorder.listen_host, port=recorder.port).connect_kwargs())
        conn.autocommit = True
        with conn.cursor() as cur:
            for _ in range(20):
                cur.execute("SELECT 1")
                cur.fetchall()
        conn.close()
        time.sleep(0.2)
        chunks = list(recorder.chunks)
    per_conversation = sum(len(Conversation().feed(d, b)) for d, b in [(d, b) for d, b in chunks])
    conv_messages = 0
    start = time.perf_counter_ns()
    for _ in range(rounds):
        conv = Conversation()
        for direction, data in chunks:
            conv_messages += len(conv.feed(direction, data))
    bare = (time.perf_counter_ns() - start) / 1e3 / conv_messages
    tap = WireTap(settings.host, settings.port, max_messages=100_000_000)
    start = time.perf_counter_ns()
    for i in range(rounds):
        connection = _Connection(tap, i)
        for direction, data in chunks:
            (connection.from_client if direction == "client" else connection.from_server)(data)
    full = (time.perf_counter_ns() - start) / 1e3 / len(tap._record)
    return {"bare_us": bare, "tap_us": full, "messages": per_conversation, "chunks": len(chunks)}


def machine(settings: ConnectionSettings) -> str:
    conn = psycopg2.connect(**settings.connect_kwargs())
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
    conn.close()
    return (f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
            f"PostgreSQL {version} (a private LocalServer) over TCP 127.0.0.1, scram-sha-256, sslmode=prefer; "
            f"psycopg2 {psycopg2.__version__.split()[0]}; load average at the end {os.getloadavg()[0]:.1f}")


def ratio_stats(tap: list[float], proxy: list[float]) -> tuple[float, float, float]:
    ratios = sorted(t / p for t, p in zip(tap, proxy, strict=True))
    q = statistics.quantiles(ratios, n=10) if len(ratios) >= 2 else [ratios[0]] * 9
    return statistics.median(ratios), q[0], q[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--queries", type=int, default=400, help="SELECT 1s per contender per repeat")
    parser.add_argument("--connects", type=int, default=40, help="connects per contender per repeat")
    parser.add_argument("--decode-rounds", type=int, default=300, help="replays of the recorded conversation")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    for name in ("repeats", "queries", "connects", "decode_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")

    with tempfile.TemporaryDirectory(prefix="bench-wiretap-") as tmp:
        server = LocalServer(data_dir=Path(tmp) / "data", port=free_port())
        try:
            direct = server.start()
            print(f"server {direct.masked_dsn()}", flush=True)
            with DelayProxy(direct.host, direct.port, 0.0) as proxy, \
                    WireTap(direct.host, direct.port, max_messages=100_000_000) as tap:
                via_proxy = direct.with_(host=proxy.listen_host, port=proxy.port)
                via_tap = direct.with_(host=tap.listen_host, port=tap.port)
                closers = []
                selects = {}
                for name, where in (("proxy", via_proxy), ("tap", via_tap), ("direct", direct)):
                    selects[name], close = select_loop(where)
                    closers.append(close)
                for run in selects.values():
                    run(max(10, args.queries // 10))  # warm-up, dropped
                select_times = interleaved(selects, args.repeats, args.queries, tap.clear)
                for close in closers:
                    close()
                connects = {"proxy": connect_loop(via_proxy), "tap": connect_loop(via_tap)}
                for run in connects.values():
                    run(3)
                connect_times = interleaved(connects, args.repeats, args.connects, tap.clear)
                dropped = tap.dropped
            cost = decoding_cost(direct, args.decode_rounds)
            info = machine(direct)
        finally:
            server.destroy()

    med = {k: statistics.median(v) for k, v in select_times.items()}
    cmed = {k: statistics.median(v) for k, v in connect_times.items()}
    s_ratio, s_lo, s_hi = ratio_stats(select_times["tap"], select_times["proxy"])
    c_ratio, c_lo, c_hi = ratio_stats(connect_times["tap"], connect_times["proxy"])
    verdict = "met" if s_ratio <= TARGET else "MISSED"
    table = (
        "| loop | plain DelayProxy (median) | WireTap (median) | tap / proxy (median of paired repeats, p10–p90) "
        "| target | |\n|---|---|---|---|---|---|\n"
        f"| SELECT 1 on a held connection (µs/query; straight to the server {med['direct']:.1f}) | "
        f"{med['proxy']:.1f} | {med['tap']:.1f} | {s_ratio:.3f}x ({s_lo:.3f}–{s_hi:.3f}) | <= {TARGET:.2f}x | "
        f"{verdict} |\n"
        f"| connect + close (ms/connect) | {cmed['proxy']:.2f} | {cmed['tap']:.2f} | {c_ratio:.3f}x "
        f"({c_lo:.3f}–{c_hi:.3f}) | measured | |")
    notes = (f"Decoding cost per message, offline on real bytes (a connect + 20 SELECT 1 + close: {cost['messages']} "
             f"messages in {cost['chunks']} chunks, replayed {args.decode_rounds} times): decoder alone "
             f"{cost['bare_us']:.2f} µs/message; the tap's whole per-chunk path (decode + record) "
             f"{cost['tap_us']:.2f} µs/message (summaries are made later, by messages()). "
             f"Messages dropped by the cap during the run: {dropped}.\n\n"
             "Per-repeat SELECT 1 µs/query: " + "; ".join(f"{k}: {', '.join(f'{v:.1f}' for v in vals)}"
                                                        for k, vals in select_times.items()) + ".")
    print(table)
    print(notes)
    if not args.no_write:
        command = ".venv/bin/python benchmarks/bench_wiretap.py " + " ".join(sys.argv[1:] if argv is None else argv)
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        replace_block("bench_wiretap", SECTION,
                      f"Command: `{command.strip()}` — {when}; medians of {args.repeats} interleaved repeats "
                      f"({args.queries} SELECT 1s, {args.connects} connects per contender per repeat).\n"
                      f"Machine: {info}.\n\n{table}\n\n{notes}")
        print(f"updated the Wire tap section of {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
