"""`pgfactory-kit bench` writes every file it promises and prints the summary (a tiny run)."""
from __future__ import annotations

import json

import pandas as pd

from pgfactory_kit.cli import main

EXPECTED_FILES = {"results.csv", "summary.csv", "sessions.csv", "machine.json", "rtt_fit.csv", "breakdown.csv",
                  "latency_distribution.png", "speedup.png", "sessions_opened.png", "throughput_vs_threads.png",
                  "p95_vs_threads.png", "cost_vs_rtt.png", "connect_breakdown.png"}


def test_bench_writes_every_file_and_prints_the_summary(server, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    out = tmp_path / "bench"
    code = main(["bench", "--quick", "--out", str(out), "--data-dir", str(server.data_dir), "--port",
                 str(server.port), "--strategies", "connect_per_query", "reused", "pool", "--operations", "6",
                 "--warmup", "1", "--repeats", "1", "--threads", "1", "2", "--rtt-ms", "0", "2"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    for png in out.glob("*.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"
    summary = pd.read_csv(out / "summary.csv")
    assert {"connect_per_query", "reused", "pool"} == set(summary["strategy"])
    assert {"median_ms", "p95_ms", "p99_ms", "ops_per_s", "ratio", "ratio_low", "ratio_high"} <= set(summary.columns)
    results = pd.read_csv(out / "results.csv")
    assert {"warmup", "measure"} == set(results["phase"])
    machine = json.loads((out / "machine.json").read_text())
    assert machine["postgresql"].startswith("18") and machine["cpu_count"] >= 1
    assert server.password not in (out / "machine.json").read_text()
    printed = capsys.readouterr().out
    assert "connect_per_query" in printed and "× reused" in printed and "server sessions" in printed
    assert server.password not in printed


def test_bench_with_an_unreachable_dsn_fails_with_advice_not_a_traceback(tmp_path, capsys) -> None:
    from tests.conftest import free_port
    code = main(["bench", "--quick", "--out", str(tmp_path), "--dsn",
                 f"postgresql://myuser:secret-pw@127.0.0.1:{free_port()}/mydatabase"])
    err = capsys.readouterr().err
    assert code != 0
    assert "What to do" in err and "secret-pw" not in err
