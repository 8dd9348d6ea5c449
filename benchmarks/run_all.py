"""Run every benchmark in this folder, one after the other, and say where the results went.

Usage: `make bench` (or `.venv/bin/python benchmarks/run_all.py`). Each benchmark starts
its own PostgreSQL on 127.0.0.1 where it needs one, and records its numbers in RESULTS.md.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["bench_pool.py", "bench_pgbouncer.py", "bench_wiretap.py", "bench_refusal.py"]


def main(argv: list[str]) -> int:
    failures = []
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)], cwd=HERE.parent).returncode != 0:
            failures.append(name)
    print("== pgfactory-kit bench --quick", flush=True)
    cli = [sys.executable, "-m", "pgfactory_kit.cli", "bench", "--quick", "--out", "bench-results"]
    if subprocess.run(cli, cwd=HERE.parent).returncode != 0:
        failures.append("pgfactory-kit bench")
    print(f"Results: {HERE / 'RESULTS.md'} and bench-results/")
    if failures:
        print("failed: " + ", ".join(failures), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
