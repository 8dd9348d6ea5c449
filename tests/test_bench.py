"""run_benchmark against a real server: what each strategy costs the SERVER, and the run's bookkeeping."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import psycopg2
import pytest

from pgfactory_kit.measuring import runner as bench

SMALL = dict(operations=12, warmup=2, repeats=1, blocks=3, progress=False)
# Every operation the server sees: warm-ups, one settling operation per block, and the timed ones.
ALL_OPS = SMALL["operations"] + SMALL["warmup"] + SMALL["blocks"]


def _sessions(result: bench.BenchResult) -> dict[str, dict]:
    return result.sessions.set_index("strategy").to_dict("index")


def test_each_strategy_opens_the_number_of_server_sessions_it_should(server) -> None:
    result = bench.run_benchmark(server=server, strategies=("connect_per_query", "reused", "pool"),
                                 pool_size=3, **SMALL)
    seen = _sessions(result)
    ops = ALL_OPS
    assert seen["connect_per_query"]["operations"] == ops
    assert seen["connect_per_query"]["sessions_opened"] == ops  # one per operation, says the server
    assert seen["connect_per_query"]["backend_pids"] == ops
    assert seen["reused"]["sessions_opened"] == 1
    assert seen["reused"]["backend_pids"] == 1
    assert 1 <= seen["pool"]["sessions_opened"] <= 3
    assert 1 <= seen["pool"]["backend_pids"] <= 3


def test_pool_stays_within_max_size_when_threads_outnumber_it(server) -> None:
    result = bench.run_benchmark(server=server, strategies=("reused", "pool", "psycopg2_pool"), threads=4,
                                 pool_size=2, **SMALL)
    seen = _sessions(result)
    assert 1 <= seen["pool"]["sessions_opened"] <= 2
    assert seen["psycopg2_pool"]["sessions_opened"] == 2  # minconn = maxconn, opened up front
    assert seen["reused"]["sessions_opened"] == 1
    assert set(result.results["thread"]) == {0, 1, 2, 3}


def test_results_are_tidy_with_warmups_marked_and_the_machine_recorded(server) -> None:
    result = bench.run_benchmark(server=server, strategies=("connect_per_query", "reused"), **SMALL)
    frame = result.results
    assert list(frame.columns) == bench.RESULT_COLUMNS
    counts = frame.groupby(["strategy", "phase"]).size()
    assert counts[("reused", "warmup")] == SMALL["warmup"] + SMALL["blocks"]
    assert counts[("reused", "measure")] == SMALL["operations"]
    assert (frame["ns"] > 0).all()
    assert result.machine["postgresql"].startswith("18")
    # Asked of the server (pg_stat_ssl): the kit's pip binaries have no SSL, so libpq's "prefer" stays plain.
    assert result.machine["auth"] == "scram-sha-256" and result.machine["transport"] == "TCP, no TLS"
    assert {"cpu_count", "packages", "platform", "added_rtt_ms"} <= result.machine.keys()
    assert server.password not in str(result.machine)
    summary = result.summary(n_boot=100)
    assert set(summary["strategy"]) == {"connect_per_query", "reused"}
    assert summary.set_index("strategy").loc["connect_per_query", "ratio"] > 1  # a new connection costs more


def test_insert_workload_commits_its_rows_and_deletes_them_afterwards(server, monkeypatch) -> None:
    committed: list[int] = []
    original = bench._Monitor.delete_marker

    def counting_delete(self, marker):
        committed.append(original(self, marker))
        return committed[-1]

    monkeypatch.setattr(bench._Monitor, "delete_marker", counting_delete)
    bench.run_benchmark(server=server, strategies=("connect_per_query", "reused", "pool"), workload="insert",
                        **SMALL)
    assert committed == [3 * ALL_OPS]  # every INSERT was committed
    conn = psycopg2.connect(**server.settings().with_(dbname=bench.BENCH_DATABASE).connect_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM mytable WHERE name LIKE 'pgfactory-bench-%%'")
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


@pytest.mark.parametrize("auth", ["trust", "md5"])
def test_other_auth_methods_and_the_unix_socket_can_be_measured(server, auth) -> None:
    result = bench.run_benchmark(server=server, strategies=("connect_per_query", "reused"), auth=auth,
                                 transport="unix", **SMALL)
    assert set(result.results["auth"]) == {auth}
    assert set(result.results["transport"]) == {"unix socket"}
    assert _sessions(result)["reused"]["sessions_opened"] == 1


def test_added_rtt_makes_every_reused_query_wait_at_least_one_round_trip(server) -> None:
    result = bench.run_benchmark(server=server, strategies=("reused",), rtt_ms=10, operations=3, warmup=1,
                                 repeats=1, progress=False)
    measured = result.results[result.results["phase"] == "measure"]
    assert (measured["ns"] >= 10e6).all()
    assert result.machine["added_rtt_ms"] == 10


def test_an_unavailable_strategy_is_skipped_with_a_note(server, monkeypatch) -> None:
    import pgfactory_kit.servers.pgbouncer as pgbouncer_module
    monkeypatch.setattr(pgbouncer_module, "find_pgbouncer", lambda: None)
    result = bench.run_benchmark(server=server, strategies=("reused", "pgbouncer"), **SMALL)
    assert set(result.results["strategy"]) == {"reused"}
    assert any("pgbouncer skipped" in note and "install" in note for note in result.notes)


@pytest.mark.skipif(importlib.util.find_spec("psycopg_pool") is None, reason="psycopg_pool not installed")
def test_psycopg_pool_strategy_runs_when_installed(server) -> None:
    result = bench.run_benchmark(server=server, strategies=("reused", "psycopg_pool"), pool_size=2, **SMALL)
    assert 1 <= _sessions(result)["psycopg_pool"]["sessions_opened"] <= 2


def test_asking_for_tls_on_a_server_without_ssl_says_so(server) -> None:
    if server.supports_ssl:
        pytest.skip("this server has SSL")
    with pytest.raises(ValueError, match="without SSL"):
        bench.run_benchmark(server=server, transport="tls", **SMALL)


def test_unknown_names_are_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="connect_per_query"):
        bench.run_benchmark(strategies=("reuse_everything",), progress=False)


def test_sweeps_label_each_configuration(server) -> None:
    result = bench.thread_sweep(server=server, threads=(1, 2), strategies=("reused", "pool"), **SMALL)
    assert set(result.results["scenario"]) == {"1 thread", "2 threads"}
    assert set(result.summary(n_boot=50)["threads"]) == {1, 2}
    rtt = bench.rtt_sweep(server=server, rtt_ms=(0, 4), strategies=("reused",), operations=3, warmup=1,
                          repeats=1, progress=False)
    fit = rtt.fit()
    assert fit.loc[0, "strategy"] == "reused" and fit.loc[0, "rtt_levels"] == 2
    assert fit.loc[0, "round_trips"] > 0.5  # each query crosses the added RTT at least once


def test_connect_breakdown_measures_every_part(server) -> None:
    table = bench.connect_breakdown(server, samples=3)
    assert (table["ms"] >= 0).all()
    logins = set(table["login"])
    assert {"trust (no password)", "md5", "scram-sha-256", "scram-sha-256, Unix socket"} <= logins
    scram = table[table["login"] == "scram-sha-256"].set_index("component")["ms"]
    assert {"TCP handshake", "backend start + session set-up", "password authentication"} <= set(scram.index)
    if not server.supports_ssl:
        assert any("TLS not measured" in n for n in table.attrs["notes"])


def test_pgbouncer_strategy_keeps_server_sessions_few_while_clients_connect_per_query(server) -> None:
    from pgfactory_kit.servers.pgbouncer import find_pgbouncer
    if find_pgbouncer() is None:
        pytest.skip("PgBouncer is not installed")
    result = bench.run_benchmark(server=server, strategies=("connect_per_query", "pgbouncer"), **SMALL)
    if "pgbouncer" not in set(result.results["strategy"]):
        pytest.skip("PgBouncer could not run here: " + "; ".join(result.notes))
    seen = _sessions(result)
    assert seen["connect_per_query"]["sessions_opened"] == ALL_OPS
    assert 1 <= seen["pgbouncer"]["sessions_opened"] <= 5  # PgBouncer's default_pool_size in the kit


def test_a_server_that_drops_everyone_mid_run_surfaces_the_original_error(server, monkeypatch) -> None:
    from pgfactory_kit.measuring import strategies as bench_strategies
    original = bench_strategies.Workload.run
    calls = {"n": 0}

    def run_then_drop_everyone(self, conn):
        calls["n"] += 1
        if calls["n"] == 6:  # like a server restart: every bench backend, the monitor's too, is ended
            admin = psycopg2.connect(**server.admin_settings().connect_kwargs())
            try:
                admin.autocommit = True
                with admin.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE application_name LIKE 'pgfactory_kit_bench_%%'")
            finally:
                admin.close()
        return original(self, conn)

    monkeypatch.setattr(bench_strategies.Workload, "run", run_then_drop_everyone)
    with pytest.raises(psycopg2.OperationalError):
        bench.run_benchmark(server=server, strategies=("reused", "pool"), **SMALL)


def test_plain_settings_work_and_the_notes_say_whose_sessions_are_counted(settings) -> None:
    result = bench.run_benchmark(settings, strategies=("connect_per_query", "reused"), **SMALL)
    assert set(result.results["strategy"]) == {"connect_per_query", "reused"}
    assert any("counts every client" in note for note in result.notes)
    assert _sessions(result)["connect_per_query"]["sessions_opened"] >= ALL_OPS


DEBIAN_PG = Path("/usr/lib/postgresql/15/bin")


@pytest.mark.skipif(not (DEBIAN_PG / "postgres").exists(), reason="needs PostgreSQL binaries built with SSL")
def test_the_recorded_transport_is_what_the_server_saw_not_what_the_settings_say(tmp_path_factory) -> None:
    # Settings that say plain TCP (sslmode unset = libpq's prefer) against a server with SSL: the
    # connection negotiates TLS, and the results file must say so.
    from tests.conftest import started_server

    with started_server(tmp_path_factory, "pg_tls", bin_dir=DEBIAN_PG) as tls_server:
        if not tls_server.supports_ssl:
            pytest.skip("these binaries are built without SSL")
        settings = tls_server.settings()
        assert settings.transport == "TCP"
        result = bench.run_benchmark(server=tls_server, strategies=("reused",), **SMALL)
    assert result.machine["transport"].startswith("TCP + TLS")
