"""How long `pgfactory-kit` takes to refuse a bad command line, as a user runs it (a new process).

Issue #17 asks that a bad option be refused within a second, before any work. The tests check that
nothing is started or written (in-process); this measures the wall time of the real console command,
so the cost of imports shows: each case runs ``--repeats`` times in a fresh interpreter, next to a bare
interpreter start and the import of the CLI module for scale. No server is needed or started.

Usage: .venv/bin/python benchmarks/bench_refusal.py [--repeats 5] [--no-write]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import replace_block

CASES = [
    ["up", "--port", "70000"],
    ["bench", "--rtt-ms", "0", "-5"],
    ["bench", "--threads", "0"],
    ["bench", "--pool-size", "0"],
    ["bench", "--operations", "0"],
    ["provision", "--learners", "0"],
    ["report", "--timeout", "0"],
    ["status", "--data-dir", "no-such-folder"],
]
BOUND_S = 30.0  # per process: a hung command fails the benchmark instead of hanging it


def wall_times(argv: list[str], repeats: int, env: dict[str, str], cwd: str, expect: int | None) -> list[float]:
    """Seconds per run of ``argv`` (a fresh process each time); checks its exit status."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=BOUND_S)
        times.append(time.perf_counter() - started)
        if expect is not None and done.returncode != expect:
            raise SystemExit(f"{argv}: exit {done.returncode}, expected {expect}: {done.stderr[-500:]}")
    return times


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pgfactory-refusal-") as project:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
        env["PGFACTORY_HOME"] = project
        python = sys.executable
        baselines = [("python -c pass (interpreter start)", [python, "-c", "pass"], 0),
                     ("python -c 'import pgfactory_kit.cli.main'", [python, "-c", "import pgfactory_kit.cli.main"], 0)]
        for label, command, expect in baselines:
            rows.append((label, wall_times(command, args.repeats, env, project, expect)))
        for case in CASES:
            rows.append(("pgfactory-kit " + " ".join(case),
                         wall_times([python, "-m", "pgfactory_kit.cli", *case], args.repeats, env, project, 2)))
        left = sorted(p.name for p in Path(project).iterdir())
    if left:
        raise SystemExit(f"a refused command left files in the project: {left}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [f"`.venv/bin/python benchmarks/bench_refusal.py --repeats {args.repeats}` — {os.cpu_count()} CPUs, "
             f"load average {load} while measuring; every refused command exited 2 and left the project empty.",
             "", "| command | median s | max s |", "|---|---:|---:|"]
    lines += [f"| `{label}` | {statistics.median(t):.2f} | {max(t):.2f} |" for label, t in rows]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        replace_block("refusal", "## Refusing bad input (pgfactory-kit, issue #17)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
