"""The benchmark scripts run end to end (tiny sizes, their own servers) and print their tables.

Only that they work is checked here; what they measure is recorded in benchmarks/RESULTS.md by
running them at full size. No timing is asserted.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def run_benchmark(script: str, *args: str) -> str:
    before = RESULTS.read_text()
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--no-write"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert RESULTS.read_text() == before, "--no-write must leave RESULTS.md alone"
    assert "****" in result.stdout and "password" not in result.stdout.lower()
    return result.stdout


@pytest.mark.timeout(300)
def test_bench_pool_runs_all_four_scenarios_and_prints_the_table():
    out = run_benchmark("bench_pool.py", "--rounds", "4", "--cycles", "20", "--queries", "3",
                        "--repeats", "1", "--per-thread", "5", "--scale-repeats", "1", "--scale-per-thread", "2")
    for row in ("1. checkout+return", "2. with pool.connection()", "3. 16 threads on 4 connections",
                "4. 64 threads on 8 connections", "4. 256 threads on 8 connections", "bare `with` floor",
                "one-lock floor"):
        assert row in out
    assert "Scenario 3 errors: kit 0," in out


@pytest.mark.timeout(300)
def test_bench_wiretap_compares_the_tap_with_the_plain_proxy_and_prices_decoding():
    out = run_benchmark("bench_wiretap.py", "--repeats", "2", "--queries", "5", "--connects", "2",
                        "--decode-rounds", "2")
    assert "| SELECT 1 on a held connection" in out and "| connect + close (ms/connect)" in out
    assert "µs/message" in out and "Messages dropped by the cap during the run: 0" in out


@pytest.mark.timeout(300)
def test_bench_refusal_times_each_refused_command_line_in_a_fresh_process():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_refusal.py"), "--repeats", "1",
                             "--no-write"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for row in ("pgfactory-kit up --port 70000", "pgfactory-kit bench --rtt-ms 0 -5", "interpreter start"):
        assert row in result.stdout
