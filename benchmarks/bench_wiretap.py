"""Benchmark: what recording costs — the WireTap against the plain DelayProxy, side by side in one run.

Run:  .venv/bin/python benchmarks/bench_wiretap.py [--repeats 15] [--queries 3000] [--connects 40] [--no-write]

Starts its own LocalServer (temporary folder, free port, removed afterwards) and, in front of it, a
DelayProxy, a WireTap (decoding in its own process, as shipped) and, for comparison, a WireTap that
decodes in this process on its hand-over thread (the tap's fallback where no second process can
start) and one that hands over from a timer on the event loop instead of a thread, all with no added
delay. Contenders alternate within every repeat (order reversed every other repeat) so machine drift
hits all alike:
1. a ``SELECT 1`` loop on one held connection (autocommit) through each, and straight to the server;
2. on Linux, the same loops for the proxy and both decoding taps with this process and the server
   pinned to one CPU and the decoder process to another: the decoder with a core of its own, as on a
   machine with cores to spare (a 2-core VM shares its two among client, proxy, server and decoder);
3. a connect loop (connect, close) through the proxy and the tap.
The ratio tap/proxy is taken per repeat (paired) and its median reported; target: at most 1.10 for the
``SELECT 1`` loop. After each tap's block the bench waits until the decoder has caught up (a question),
so no decoding spills into the next contender's block; the decoding of the block's last hand-over
interval (20 ms of its ~0.4 s) is therefore not timed. Short blocks would hide more of it, and warm-up
after switching contenders dominates them: 400-query blocks gave ratios 0.06 higher or lower.
CPU per query is read from the proxy thread's clock and the decoder process's clock. Decoding cost
per message is timed offline on real recorded bytes (a connect + SELECT 1s + close): the bare
decoder, the record maker, the proxy thread's stamp-and-queue and its hand-over.
Results go to the "Wire tap" section of benchmarks/RESULTS.md (between markers).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import marshal
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg2
from results_file import RESULTS, machine_and_server, replace_block

from pgfactory_kit.measuring.decoder_process import Decoder, DecoderProcess, InProcessDecoder
from pgfactory_kit.measuring.proxy import DelayProxy
from pgfactory_kit.measuring.wire_protocol import Conversation, decode
from pgfactory_kit.measuring.wire_record import RecordMaker
from pgfactory_kit.measuring.wiretap import FLUSH_AFTER_S, WireTap, _Connection
from pgfactory_kit.servers.daemon import free_port
from pgfactory_kit.servers.postgres import LocalServer
from pgfactory_kit.settings import ConnectionSettings

SECTION = "## Wire tap"
CONTENDERS = ("proxy", "tap", "inline", "timer", "direct")
TARGET = 1.10


class InProcessTap(WireTap):
    """The tap decoding in this process (its fallback): what the decoder process saves."""

    def _start_decoder(self) -> Decoder:
        return InProcessDecoder(self.max_messages)


class LoopTimerTap(WireTap):
    """The tap handing over from a timer on the proxy's event loop instead of its hand-over thread."""

    _timer: object = None

    def _hand_over_every_while(self) -> None:
        return  # no hand-over thread: the loop's timer does it

    def _arrived(self, number: int, direction: str | None, data: bytes) -> None:
        super()._arrived(number, direction, data)
        if self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(FLUSH_AFTER_S, self._timed_hand_over)

    def _timed_hand_over(self) -> None:
        self._timer = None
        self._hand_over()


def server_processes(settings: ConnectionSettings) -> list[psutil.Process]:
    """The bench's own PostgreSQL: its postmaster (a backend's parent) and every process under it."""
    conn = psycopg2.connect(**settings.connect_kwargs())
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        postmaster = psutil.Process(cur.fetchone()[0]).parent()
    conn.close()
    assert postmaster is not None
    return [postmaster, *postmaster.children(recursive=True)]


@contextlib.contextmanager
def decoder_on_a_core_of_its_own(settings: ConnectionSettings, tap: WireTap) -> Iterator[bool]:
    """Linux: this process and the bench's server on CPU 0, the tap's decoder process on CPU 1 (what a
    machine with a spare core gives it); yields False where that cannot be done. Undone afterwards."""
    decoder = getattr(tap, "_decoder", None)
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2 or not isinstance(decoder, DecoderProcess):
        yield False
        return
    everything = os.sched_getaffinity(0)
    ours = [thread.id for thread in psutil.Process().threads()]
    theirs = [process.pid for process in server_processes(settings)]  # single-threaded processes
    first, second = sorted(everything)[:2]
    try:
        for tid in (*ours, *theirs):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, {first})
        os.sched_setaffinity(decoder.pid, {second})
        yield True
    finally:
        for tid in (*ours, *theirs, decoder.pid):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, everything)


def thread_cpu_ns(proxy: DelayProxy | None) -> int:
    """CPU time used so far by ``proxy``'s event-loop thread (0 without a proxy)."""
    thread = getattr(proxy, "_thread", None)
    if thread is None or thread.ident is None:
        return 0
    return time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))


def decoder_cpu_ns(proxy: DelayProxy | None) -> int:
    """CPU time used so far by a tap's decoder process (0 when it decodes in this process)."""
    decoder = getattr(proxy, "_decoder", None)
    if not isinstance(decoder, DecoderProcess):
        return 0
    times = psutil.Process(decoder.pid).cpu_times()
    return int((times.user + times.system) * 1e9)


def select_loop(settings: ConnectionSettings, proxy: DelayProxy | None, cpu: list[float],
                decoder_cpu: list[int]) -> tuple[Callable[[int], float], Callable[[], None]]:
    """A timed SELECT 1 loop on one held connection; appends the proxy thread's CPU µs/query to ``cpu``
    and the decoder process's CPU ns and the block's queries to ``decoder_cpu`` (its clock counts in
    ticks of 10 ms: too coarse for one block, summed over the run)."""
    conn = psycopg2.connect(**settings.connect_kwargs())
    conn.autocommit = True
    cur = conn.cursor()

    def run(n: int) -> float:
        cpu_start, decoder_start = thread_cpu_ns(proxy), decoder_cpu_ns(proxy)
        start = time.perf_counter_ns()
        for _ in range(n):
            cur.execute("SELECT 1")
            cur.fetchall()
        wall = (time.perf_counter_ns() - start) / n / 1e3  # µs per query
        if isinstance(proxy, WireTap):
            proxy.clear()  # the decoding of this block's chunks is the tap's cost too: wait for all of it
        cpu.append((thread_cpu_ns(proxy) - cpu_start) / n / 1e3)
        decoder_cpu.extend((decoder_cpu_ns(proxy) - decoder_start, n))
        return wall

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
        print(f"\r  repeat {r + 1}/{repeats}", end="", flush=True)
    print(flush=True)
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
    """CPU µs per message on real bytes (thread CPU time: other load on the machine does not count): the
    bare decoder; the record maker (decode + record: the decoder process's work); the proxy thread's
    hot path (stamp and queue each chunk) and its hand-over (marshal the batch for the pipe)."""
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
    per_conversation = len(decode(chunks))
    messages = per_conversation * rounds

    start = time.thread_time_ns()
    for _ in range(rounds):
        conv = Conversation()
        for direction, data in chunks:
            conv.feed(direction, data)
    bare = (time.thread_time_ns() - start) / 1e3 / messages

    tap = WireTap(settings.host, settings.port, max_messages=100_000_000)  # not started: no timer, no loop
    start = time.thread_time_ns()
    for i in range(rounds):
        connection = _Connection(tap, i)
        for direction, data in chunks:
            (connection.from_client if direction == "client" else connection.from_server)(data)
        tap._connection_ended(i)
    queued = time.thread_time_ns()
    assert tap._bytes_out == 0, "use fewer --decode-rounds: the replay reached the tap's back-pressure bound"
    batch = list(tap._queue)
    marshal.dumps(("chunks", batch))
    handed = time.thread_time_ns()

    maker = RecordMaker(100_000_000)
    start_record = time.thread_time_ns()
    maker.feed(batch)
    recorded = time.thread_time_ns()
    kept = len(maker.collect()[0]) // 6
    return {"bare_us": bare, "hot_us": (queued - start) / 1e3 / kept, "handover_us": (handed - queued) / 1e3 / kept,
            "record_us": (recorded - start_record) / 1e3 / kept, "messages": per_conversation,
            "chunks": len(chunks)}


def machine(settings: ConnectionSettings) -> str:
    this_machine, version = machine_and_server(settings)
    return (f"{this_machine}; "
            f"PostgreSQL {version} (a private LocalServer) over TCP 127.0.0.1, scram-sha-256, sslmode=prefer; "
            f"psycopg2 {psycopg2.__version__.split()[0]}; load average at the end {os.getloadavg()[0]:.1f}")


def pinned_row(times: dict[str, list[float]]) -> str:
    """The table row for the run with the decoder on a core of its own ('' where it was not run)."""
    if not times:
        return ""
    tap, lo, hi = ratio_stats(times["tap"], times["proxy"])
    inline, ilo, ihi = ratio_stats(times["inline"], times["proxy"])
    return (f"| SELECT 1, the decoder on a core of its own (this process and the server pinned to one CPU, the "
            f"decoder to the other) | {statistics.median(times['proxy']):.1f} | {statistics.median(times['tap']):.1f}"
            f" | {tap:.3f}x ({lo:.3f}–{hi:.3f}); decoding in this process instead: {inline:.3f}x "
            f"({ilo:.3f}–{ihi:.3f}) | <= {TARGET:.2f}x | {'met' if tap <= TARGET else 'MISSED'} |\n")


def ratio_stats(tap: list[float], proxy: list[float]) -> tuple[float, float, float]:
    ratios = sorted(t / p for t, p in zip(tap, proxy, strict=True))
    q = statistics.quantiles(ratios, n=10) if len(ratios) >= 2 else [ratios[0]] * 9
    return statistics.median(ratios), q[0], q[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--queries", type=int, default=3000,
                        help="SELECT 1s per contender per repeat: a block must last many hand-over intervals "
                             "(20 ms), since the decoding of its last one is waited for outside the timing")
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
                    WireTap(direct.host, direct.port, max_messages=100_000_000) as tap, \
                    InProcessTap(direct.host, direct.port, max_messages=100_000_000) as inline, \
                    LoopTimerTap(direct.host, direct.port, max_messages=100_000_000) as timer:
                via_proxy = direct.with_(host=proxy.listen_host, port=proxy.port)
                via_tap = direct.with_(host=tap.listen_host, port=tap.port)
                via_inline = direct.with_(host=inline.listen_host, port=inline.port)
                via_timer = direct.with_(host=timer.listen_host, port=timer.port)
                closers = []
                selects = {}
                cpu: dict[str, list[float]] = {name: [] for name in CONTENDERS}
                decoder_cpu: dict[str, list[int]] = {name: [] for name in CONTENDERS}
                fronts = (("proxy", via_proxy, proxy), ("tap", via_tap, tap), ("inline", via_inline, inline),
                          ("timer", via_timer, timer), ("direct", direct, None))
                for name, where, front in fronts:
                    selects[name], close = select_loop(where, front, cpu[name], decoder_cpu[name])
                    closers.append(close)
                for run in selects.values():
                    run(max(10, args.queries // 10))  # warm-up, dropped
                for values in (*cpu.values(), *decoder_cpu.values()):
                    values.clear()

                def forget() -> None:
                    for each in (tap, inline, timer):
                        each.clear()

                print(f"SELECT 1 loops: {args.repeats} repeats x {len(selects)} contenders", flush=True)
                select_times = interleaved(selects, args.repeats, args.queries, forget)
                pinned_times: dict[str, list[float]] = {}
                with decoder_on_a_core_of_its_own(direct, tap) as pinned:
                    if pinned:
                        print(f"SELECT 1 loops, the decoder on a core of its own: {args.repeats} repeats x 3 "
                              "contenders", flush=True)
                        pinned_times = interleaved({name: selects[name] for name in ("proxy", "tap", "inline")},
                                                   args.repeats, args.queries, forget)
                for close in closers:
                    close()
                connects = {"proxy": connect_loop(via_proxy), "tap": connect_loop(via_tap)}
                for run in connects.values():
                    run(3)
                print(f"connect loops: {args.repeats} repeats x {len(connects)} contenders", flush=True)
                connect_times = interleaved(connects, args.repeats, args.connects, forget)
                dropped = tap.dropped + inline.dropped + timer.dropped
            cost = decoding_cost(direct, args.decode_rounds)
            info = machine(direct)
        finally:
            server.destroy()

    med = {k: statistics.median(v) for k, v in select_times.items()}
    cmed = {k: statistics.median(v) for k, v in connect_times.items()}
    s_ratio, s_lo, s_hi = ratio_stats(select_times["tap"], select_times["proxy"])
    fast = {k: sorted(v)[len(v) // 10] for k, v in select_times.items()}  # p10: the least disturbed blocks
    cpu_med = {k: statistics.median(v) for k, v in cpu.items() if v}
    dec_per_query = {k: sum(v[0::2]) / max(sum(v[1::2]), 1) / 1e3 for k, v in decoder_cpu.items()}
    c_ratio, c_lo, c_hi = ratio_stats(connect_times["tap"], connect_times["proxy"])
    i_ratio, i_lo, i_hi = ratio_stats(select_times["inline"], select_times["proxy"])
    t_ratio, t_lo, t_hi = ratio_stats(select_times["timer"], select_times["proxy"])
    verdict = "met" if s_ratio <= TARGET else "MISSED"
    table = (
        "| loop | plain DelayProxy (median) | WireTap (median) | tap / proxy (median of paired repeats, p10–p90) "
        "| target | |\n|---|---|---|---|---|---|\n"
        f"| SELECT 1 on a held connection (µs/query; straight to the server {med['direct']:.1f}) | "
        f"{med['proxy']:.1f} | {med['tap']:.1f} | {s_ratio:.3f}x ({s_lo:.3f}–{s_hi:.3f}) | <= {TARGET:.2f}x | "
        f"{verdict} |\n"
        f"| SELECT 1, the least disturbed blocks (p10 of blocks, µs/query) | {fast['proxy']:.1f} | "
        f"{fast['tap']:.1f} | {fast['tap'] / fast['proxy']:.3f}x | | |\n"
        f"| SELECT 1: CPU of the proxy's thread (µs/query, thread CPU clock) | {cpu_med['proxy']:.1f} | "
        f"{cpu_med['tap']:.1f} | {cpu_med['tap'] - cpu_med['proxy']:+.1f} µs/query | | |\n"
        f"| SELECT 1: CPU of the decoder process (µs/query, its CPU clock over the run) | | "
        f"{dec_per_query['tap']:.1f} | "
        f"(on another core, while the client waits for the server) | | |\n"
        f"| SELECT 1, for comparison: a tap decoding in this process, on its hand-over thread (the fallback) | "
        f"{med['proxy']:.1f} | {med['inline']:.1f} | {i_ratio:.3f}x ({i_lo:.3f}–{i_hi:.3f}); proxy thread CPU "
        f"{cpu_med['inline'] - cpu_med['proxy']:+.1f} µs/query | | |\n"
        f"| SELECT 1, for comparison: a tap handing over from a timer on the event loop (no hand-over thread) | "
        f"{med['proxy']:.1f} | {med['timer']:.1f} | {t_ratio:.3f}x ({t_lo:.3f}–{t_hi:.3f}); proxy thread CPU "
        f"{cpu_med['timer'] - cpu_med['proxy']:+.1f} µs/query | | |\n"
        + pinned_row(pinned_times) +
        f"| connect + close (ms/connect) | {cmed['proxy']:.2f} | {cmed['tap']:.2f} | {c_ratio:.3f}x "
        f"({c_lo:.3f}–{c_hi:.3f}) | measured | |")
    notes = (f"Cost per message, offline on real bytes (a connect + 20 SELECT 1 + close: {cost['messages']} "
             f"messages in {cost['chunks']} chunks, replayed {args.decode_rounds} times; thread CPU time): decoder "
             f"alone {cost['bare_us']:.2f} µs/message; decode + record (the decoder process's work) "
             f"{cost['record_us']:.2f} µs/message; stamp + queue each chunk (the proxy's thread, while the "
             f"client waits) {cost['hot_us']:.2f} µs/message; marshal the batch for the pipe (the hand-over "
             f"thread) {cost['handover_us']:.2f} µs/message; summaries are made only by messages(). "
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
