"""Bad input is stopped at the door (issue #17): the CLI checks every option before any work.

A refused command exits with status 2, names the option as the user typed it, starts nothing (no server,
proxy, progress bar or timed run) and changes no file the kit manages.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import socket
import string
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgfactory_kit import LocalServer
from pgfactory_kit.cli import main

from .conftest import free_port, started_server

OLD_CONF = "# Written by pgfactory-kit on every start; edit LocalServer instead.\nport = 15999\n"
# Generous: a refused command does no I/O beyond argparse; this bounds "starts no work", it is no benchmark.
REFUSAL_BOUND_S = 1.0
BOUNDED = settings(max_examples=15, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project whose .pgfactory/ holds what an earlier `up` left (config, env file, pgpass), with
    no PG*/PGFACTORY_* variables in the environment and the project as the working directory."""
    root = tmp_path_factory.mktemp("project")
    data = root / ".pgfactory" / "data"
    data.mkdir(parents=True)
    (data / "pgfactory_kit.conf").write_text(OLD_CONF)
    (root / ".pgfactory" / "kit.env").write_text("PGHOST=127.0.0.1\nPGPORT=15999\n")
    (root / ".pgfactory" / "pgpass").write_text("127.0.0.1:15999:mydatabase:myuser:mypassword\n")
    (root / "a-file.txt").write_text("not a folder\n")
    (root / "empty-bin").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("PG") or key == "DATABASE_URL":
                patch.delenv(key)
        patch.setenv("PGFACTORY_HOME", str(root))
        patch.setenv("MPLBACKEND", "Agg")
        patch.chdir(root)
        yield root


def fingerprint(root: Path) -> dict[str, str]:
    """Every path under the project (folders too) and a hash of each file's bytes and mode."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            found[str(path)] = hashlib.sha256(path.read_bytes() + oct(path.stat().st_mode).encode()).hexdigest()
        else:
            found[str(path)] = "folder"
    return found


def run_cli(argv: list[str]) -> tuple[int, str, float]:
    """(exit status, stderr, seconds) of ``pgfactory-kit argv`` run in this process."""
    err = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue(), time.monotonic() - started


def assert_refused(project: Path, argv: list[str], option: str, *expected: str) -> str:
    before = fingerprint(project)
    code, err, elapsed = run_cli(argv)
    assert code == 2, f"{argv}: exit {code}, stderr {err!r}"
    assert option in err, f"{argv}: the message does not name {option}: {err!r}"
    for text in expected:
        assert text in err, f"{argv}: {text!r} not in {err!r}"
    assert "Traceback" not in err
    assert "pgfactory-kit bench:" not in err or "%|" not in err, "a progress bar started"
    assert elapsed < REFUSAL_BOUND_S, f"{argv} took {elapsed:.2f}s to refuse"
    assert fingerprint(project) == before, f"{argv} changed files in the project"
    return err


def unreachable_dsn() -> str:
    return f"postgresql://myuser@127.0.0.1:{free_port()}/mydatabase"


@pytest.fixture(autouse=True, scope="module")
def _parser_imported(project: Path) -> None:
    """Import every subcommand's module once, so the first refusal's time is not the imports'
    (benchmarks/bench_refusal.py measures a fresh process, imports included)."""
    for command in ("up", "bench", "provision", "report", "notebooks"):
        run_cli([command, "--help"])


# ----------------------------------------------------------------------------- one test per reported case
def test_up_port_70000_exits_2_and_leaves_the_config_as_it_was(project) -> None:
    err = assert_refused(project, ["up", "--port", "70000"], "--port", "70000", "65535")
    assert (project / ".pgfactory" / "data" / "pgfactory_kit.conf").read_text() == OLD_CONF
    assert not (project / ".pgfactory" / "data" / "PG_VERSION").exists()
    assert "What to do" in err or "e.g." in err


def test_a_port_left_invalid_by_an_older_version_is_reported_with_the_file_and_the_fix(project) -> None:
    conf = project / ".pgfactory" / "data" / "pgfactory_kit.conf"
    try:
        conf.write_text("port = 70000\n")
        for command in ("status", "env", "down"):
            before = fingerprint(project)
            code, err, _ = run_cli([command])
            assert code != 0, (command, err)
            assert str(conf) in err and "70000" in err, (command, err)
            assert "--port" in err and "Traceback" not in err, (command, err)  # the fix: up --port N
            assert fingerprint(project) == before
    finally:
        conf.write_text(OLD_CONF)


def test_bench_rtt_ms_minus_5_is_refused_naming_the_option_and_the_typed_value(project) -> None:
    err = assert_refused(project, ["bench", "--quick", "--dsn", unreachable_dsn(), "--rtt-ms", "0", "-5"],
                         "--rtt-ms", "-5")
    assert "delay_ms" not in err and "-2.5" not in err


@pytest.mark.parametrize("option", ["--threads", "--pool-size"])
def test_bench_threads_0_or_pool_size_0_is_refused_naming_only_that_option(project, option) -> None:
    err = assert_refused(project, ["bench", "--quick", "--dsn", unreachable_dsn(), option, "0"], option, "0")
    message = " ".join(line for line in err.splitlines() if "error:" in line)  # not the usage lines
    others = {"operations", "repeats", "warmup", "block_warmup", "pool_size", "threads"}
    others -= {option[2:].replace("-", "_")}
    assert not [name for name in others if name in message], message


def test_bench_operations_0_is_refused_not_read_as_the_default(project) -> None:
    assert_refused(project, ["bench", "--quick", "--dsn", unreachable_dsn(), "--operations", "0"],
                   "--operations", "0")


@pytest.mark.parametrize("argv, option", [
    (["bench", "--dsn", "postgresql://u@127.0.0.1:5/db", "--auth", "md5"], "--auth"),
    (["bench", "--dsn", "postgresql://u@127.0.0.1:5/db", "--data-dir", "x"], "--dsn"),
    (["provision", "--learners", "2", "--dsn", "postgresql://u@127.0.0.1:5/db", "--port", "5433"], "--dsn"),
    (["provision", "--check", "--learners", "2"], "--learners"),
    (["provision"], "--learners"),
])
def test_conflicting_or_missing_options_are_refused_before_any_work(project, argv, option) -> None:
    assert_refused(project, argv, option)


def test_a_malformed_dsn_is_refused_without_echoing_its_password(project) -> None:
    err = assert_refused(project, ["bench", "--dsn", "postgresql://u:hunter2-secret@h:notaport/db"], "--dsn")
    assert "hunter2-secret" not in err


def test_up_on_a_taken_port_fails_and_leaves_the_servers_files_as_they_were(tmp_path_factory) -> None:
    with started_server(tmp_path_factory, "taken") as srv, socket.socket() as blocker:
        srv.stop()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        real = srv._real_data_dir()
        managed = [real / "pgfactory_kit.conf", real / "pg_hba.conf", srv.state_dir / "kit.env",
                   srv.state_dir / "pgpass"]
        before = {path: path.read_bytes() for path in managed}
        code, err, _ = run_cli(["up", "--data-dir", str(srv.data_dir), "--port", str(taken)])
        assert code == 1 and f"port {taken}" in err and "What to do" in err, err
        assert {path: path.read_bytes() for path in managed} == before
        assert LocalServer(data_dir=srv.data_dir).port == srv.port  # status/down still find the server


# ----------------------------------------------------------------------------- generated bad values
def _not_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return True
    return False


def _not_finite_float(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return True


NON_NUMERIC = st.text(alphabet=string.ascii_letters + string.punctuation + " ", max_size=6).filter(_not_int)


def ints(minimum: int, maximum: int) -> st.SearchStrategy[str]:
    """Values an option taking ``minimum..maximum`` must refuse, as typed."""
    return st.one_of(st.integers(max_value=minimum - 1).map(str), st.integers(min_value=maximum + 1).map(str),
                     NON_NUMERIC, st.sampled_from(["", "1.5", "1e3", "0x10"]))


def floats(minimum: float, maximum: float) -> st.SearchStrategy[str]:
    return st.one_of(st.floats(max_value=minimum, exclude_max=True, allow_nan=False).map(repr),
                     st.floats(min_value=maximum, exclude_min=True, allow_nan=False).map(repr),
                     NON_NUMERIC.filter(_not_finite_float), st.sampled_from(["nan", "inf", "-inf", ""]))


def paths(kind: str) -> st.SearchStrategy[str]:
    """Paths that cannot be used: ``folder`` (to create), ``existing`` (a server's folder), ``file`` (to write),
    ``bin`` (PostgreSQL binaries)."""
    under_a_file = st.sampled_from(["a-file.txt/sub", "a-file.txt/sub/deeper", "/proc/version/x"])
    options = {"folder": st.one_of(under_a_file, st.just("a-file.txt"), st.just("")),
               "existing": st.one_of(under_a_file, st.just("a-file.txt"), st.just("no-such-folder"), st.just("")),
               "file": st.one_of(under_a_file, st.just("empty-bin"), st.just(".")),
               "bin": st.one_of(st.just("empty-bin"), st.just("no-such-folder"), st.just("a-file.txt"))}
    return options[kind]


PORT = ints(1, 65535)
DB_COMMANDS = {
    "up": {"--port": PORT, "--data-dir": paths("folder"), "--bin-dir": paths("bin")},
    "restart": {"--port": PORT, "--data-dir": paths("existing"), "--bin-dir": paths("bin")},
    "down": {"--port": PORT, "--data-dir": paths("existing"), "--bin-dir": paths("bin")},
    "status": {"--port": PORT, "--data-dir": paths("existing"), "--bin-dir": paths("bin")},
    "env": {"--port": PORT, "--data-dir": paths("existing"), "--bin-dir": paths("bin")},
}
BENCH = {
    "--operations": ints(1, 1_000_000), "--repeats": ints(1, 100), "--warmup": ints(0, 100_000),
    "--threads": ints(1, 64), "--pool-size": ints(1, 1000), "--rtt-ms": floats(0.0, 10_000.0),
    "--port": PORT, "--out": paths("folder"), "--data-dir": paths("folder"), "--bin-dir": paths("bin"),
    "--dsn": st.sampled_from(["", "postgresql://u@h:notaport/db", "mysql://u@h/db", "host=h colour=blue"]),
}
PROVISION = {
    "--learners": ints(1, 500), "--connection-limit": ints(1, 10_000), "--port": PORT,
    "--prefix": st.sampled_from(["", "1abc", "Learner", "a-b", "x" * 42, "a b"]),
    "--out": paths("file"), "--data-dir": paths("existing"), "--host": st.sampled_from(["", " "]),
    "--dsn": st.sampled_from(["", "postgresql://u@h:notaport/db", "host=h colour=blue"]),
}
REPORT = {"--timeout": floats(1.0, 86_400.0), "--out": paths("folder"), "--notebooks": paths("existing")}


def _cases(commands: dict[str, dict[str, st.SearchStrategy[str]]]) -> st.SearchStrategy[tuple[str, str, str]]:
    return st.one_of(*[st.tuples(st.just(command), st.just(option), values)
                       for command, options in commands.items() for option, values in options.items()])


def _check_generated(project: Path, command: str, option: str, value: str, base: list[str]) -> None:
    assert_refused(project, [command, *base, f"{option}={value}"], option)


@BOUNDED
@given(case=_cases(DB_COMMANDS))
def test_database_commands_refuse_generated_bad_values(project, case) -> None:
    command, option, value = case
    _check_generated(project, command, option, value, [])


@settings(BOUNDED, max_examples=40)
@given(case=_cases({"bench": BENCH}))
def test_bench_refuses_generated_bad_values(project, case) -> None:
    command, option, value = case
    _check_generated(project, command, option, value, ["--quick"])


@settings(BOUNDED, max_examples=30)
@given(case=_cases({"provision": PROVISION}))
def test_provision_refuses_generated_bad_values(project, case) -> None:
    command, option, value = case
    base = [] if option == "--learners" else ["--learners", "2"]
    _check_generated(project, command, option, value, base)


@BOUNDED
@given(case=_cases({"report": REPORT}))
def test_report_refuses_generated_bad_values(project, case) -> None:
    command, option, value = case
    _check_generated(project, command, option, value, ["--quick"])


@BOUNDED
@given(value=paths("folder"))
def test_notebooks_refuses_a_folder_it_cannot_create(project, value) -> None:
    assert_refused(project, ["notebooks", "--", value], "folder")
