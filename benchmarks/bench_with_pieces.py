"""Benchmark: what each piece of a pool's bookkeeping costs right after a real round trip.

Run:  .venv/bin/python benchmarks/bench_with_pieces.py [--repeats 3] [--ops 5000] [--no-write]

The bare `with` wrapper of bench_with_floor.py, and copies of it that each add one thing a pool
does per block: a lock acquire + release around checkout and around return, two clock reads, a
claim in a set (add on checkout, remove on return), one extra Python call on return. All run
`SELECT 1` in the block on one shared connection, rotating one by one with a held connection
doing SELECT 1 + commit; each figure is the median of per-op ratios to the held connection.
The difference to the bare wrapper is the piece's cost, in points of scenario 2's ratio.
Results go to the "Pool" section of benchmarks/RESULTS.md (block "bench_with_pieces").
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import threading
from time import monotonic

from bench_pool import held_select_op, with_select_op
from bench_with_floor import BareLend, Contenders, ratios_to_held
from results_file import RESULTS, replace_block

from pgfactory_kit import make_factory


class WithLock(BareLend):
    """Bare, plus a lock acquire + release around the checkout and around the return."""

    __slots__ = ()
    lock = threading.Lock()

    def __enter__(self):
        with self.lock:
            self.conn = self.spare.pop()
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.conn
        if exc_type is None and conn.get_transaction_status():
            conn.commit()
        with self.lock:
            self.spare.append(conn)


class WithClocks(BareLend):
    """Bare, plus a clock read on checkout and one on return."""

    __slots__ = ()

    def __enter__(self):
        self.conn = self.spare.pop()
        if monotonic() < 0:
            raise AssertionError("clock went backwards")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.conn
        if exc_type is None and conn.get_transaction_status():
            conn.commit()
        if monotonic() < 0:
            raise AssertionError("clock went backwards")
        self.spare.append(conn)


LENT: set = set()


class WithSetClaim(BareLend):
    """Bare, plus a claim: added to a set on checkout, removed on return."""

    __slots__ = ()

    def __enter__(self):
        self.conn = self.spare.pop()
        LENT.add(self.conn)
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.conn
        if exc_type is None and conn.get_transaction_status():
            conn.commit()
        LENT.remove(conn)
        self.spare.append(conn)


def push_back(spare: list, conn) -> None:
    spare.append(conn)


class WithCall(BareLend):
    """Bare, plus one Python function call on return."""

    __slots__ = ()

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.conn
        if exc_type is None and conn.get_transaction_status():
            conn.commit()
        push_back(self.spare, conn)


PIECES: dict[str, type] = {"bare with": BareLend, "+ lock pairs": WithLock, "+ 2 clock reads": WithClocks,
                           "+ set claim": WithSetClaim, "+ 1 call": WithCall}


def contenders(settings) -> Contenders:
    held = make_factory(settings)()
    spare = [held]
    ops = {"held": held_select_op(held)}
    for name, cls in PIECES.items():
        ops[name] = with_select_op(lambda cls=cls: cls(spare))
    return ops, held.close


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ops", type=int, default=5000, help="timed operations per contender per repeat")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    ratios, _, machine_text = ratios_to_held(contenders, args.repeats, args.ops, "bench_with_pieces_")

    bare = statistics.median(ratios["bare with"])
    rows = []
    for name, values in ratios.items():
        ratio = statistics.median(values)
        cost = "—" if name == "bare with" else f"{100 * (ratio - bare):+.1f}"
        rows.append(f"| {name} | {ratio:.3f}x | {cost} |")
    table = ("| wrapper around SELECT 1 (vs a held connection) | median of repeats | points over the bare "
             "wrapper |\n|---|---|---|\n" + "\n".join(rows))
    print(table)
    if not args.no_write:
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        command = ".venv/bin/python benchmarks/bench_with_pieces.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        body = (f"Command: `{command.strip()}` — {when}. {args.repeats} repeats of {args.ops} per-op timings "
                f"per contender, rotating one by one on one shared connection.\nMachine: {machine_text}.\n\n{table}")
        replace_block("bench_with_pieces", "## Pool", body)
        print(f"updated the Pool section of {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
