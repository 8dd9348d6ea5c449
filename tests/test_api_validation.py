"""The public Python API checks its arguments before any work and names the parameter (issue #17).

ConnectionSettings, LocalServer, run_benchmark and provision: a wrong type raises TypeError, a value out
of range ValueError; the message names the parameter; nothing is connected to, started or written first.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgfactory_kit import ConnectionSettings, LocalServer
from pgfactory_kit.errors import ProvisionError
from pgfactory_kit.measuring import runner as bench
from pgfactory_kit.servers.provision import provision

from .conftest import free_port

BOUNDED = settings(max_examples=40, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])
NOT_A_NUMBER = st.one_of(st.text(max_size=4), st.none(), st.booleans(), st.lists(st.integers(), max_size=1))


def bad_ints(minimum: int, maximum: int | None = None, text_ok: bool = False) -> st.SearchStrategy[Any]:
    """Values a whole-number parameter in ``minimum..maximum`` must refuse."""
    wrong = [st.integers(max_value=minimum - 1), st.floats(allow_nan=True).filter(lambda f: not f.is_integer()),
             st.booleans(), st.none(), st.lists(st.integers(), max_size=1)]
    if maximum is not None:
        wrong.append(st.integers(min_value=maximum + 1))
    wrong.append(st.text(max_size=4).filter(lambda s: not s.strip().lstrip("-").isdigit()) if text_ok
                 else st.text(max_size=4))
    return st.one_of(*wrong)


def bad_floats(minimum: float, maximum: float | None = None) -> st.SearchStrategy[Any]:
    wrong = [st.floats(max_value=minimum, exclude_max=True), st.just(math.nan), st.just(math.inf),
             st.text(max_size=4), st.none(), st.booleans()]
    if maximum is not None:
        wrong.append(st.floats(min_value=maximum, exclude_min=True))
    return st.one_of(*wrong)


def assert_names(exc: BaseException, name: str) -> None:
    assert isinstance(exc, TypeError | ValueError | ProvisionError), repr(exc)
    assert name in str(exc), f"{name!r} not named in: {exc}"


def tree_fingerprint(root: Path) -> list[tuple[str, str]]:
    return [(str(p), hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder")
            for p in sorted(root.rglob("*"))]


# ----------------------------------------------------------------------------- ConnectionSettings
def test_connection_settings_connect_timeout_minus_3_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="connect_timeout") as info:
        ConnectionSettings(connect_timeout=-3)
    assert "-3" in str(info.value)


SETTINGS_BAD = {
    "port": bad_ints(1, 65535, text_ok=True),
    "connect_timeout": bad_ints(0, 86_400, text_ok=True),
    "host": st.one_of(st.just(""), st.just("  "), st.integers(), st.none()),
    "dbname": st.one_of(st.just(""), st.integers(), st.none()),
    "user": st.one_of(st.just(""), st.integers(), st.none()),
    "password": st.one_of(st.integers(), st.booleans(), st.lists(st.text(), max_size=1)),
    "sslmode": st.one_of(st.sampled_from(["", "yes", "on", "REQUIRE"]), st.integers()),
    "application_name": st.one_of(st.integers(), st.none()),
}


@BOUNDED
@given(case=st.one_of(*[st.tuples(st.just(k), v) for k, v in SETTINGS_BAD.items()]))
def test_connection_settings_refuses_generated_bad_values_naming_the_field(case) -> None:
    name, value = case
    with pytest.raises((TypeError, ValueError)) as info:
        ConnectionSettings(**{name: value})
    assert_names(info.value, name)


def test_an_env_file_left_invalid_by_an_older_version_is_reported_with_the_file_and_the_fix(tmp_path) -> None:
    env_file = tmp_path / "kit.env"
    env_file.write_text("PGHOST=127.0.0.1\nPGPORT=70000\nPGDATABASE=mydatabase\nPGUSER=myuser\n")
    with pytest.raises(ValueError) as info:
        ConnectionSettings.from_env({"PGFACTORY_ENV_FILE": str(env_file)})
    assert str(env_file) in str(info.value) and "70000" in str(info.value)
    assert "pgfactory-kit up" in str(info.value)


def test_connection_settings_still_reads_numbers_from_a_dsn() -> None:
    s = ConnectionSettings.from_dsn("host=h port=6543 connect_timeout=3")
    assert (s.port, s.connect_timeout) == (6543, 3)


# ----------------------------------------------------------------------------- LocalServer
SERVER_BAD = {
    "port": bad_ints(1, 65535).filter(lambda v: v is not None),  # None: the default port
    "max_connections": bad_ints(4, 10_000),
    "data_dir": st.one_of(st.integers(), st.just(""), st.booleans()),
    "bin_dir": st.one_of(st.integers(), st.just(""), st.booleans()),
    "password": st.one_of(st.integers(), st.just(""), st.booleans()),
}


@BOUNDED
@given(case=st.one_of(*[st.tuples(st.just(k), v) for k, v in SERVER_BAD.items()]))
def test_local_server_refuses_generated_bad_values_and_creates_nothing(tmp_path, case) -> None:
    name, value = case
    options: dict[str, Any] = {"data_dir": tmp_path / "data", "port": free_port(), name: value}
    before = tree_fingerprint(tmp_path)
    with pytest.raises((TypeError, ValueError)) as info:
        LocalServer(**options)
    assert_names(info.value, name)
    assert tree_fingerprint(tmp_path) == before


def test_local_server_names_a_bad_pgfactory_port_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PGFACTORY_PORT", "70000")
    with pytest.raises(ValueError, match="PGFACTORY_PORT") as info:
        LocalServer(data_dir=tmp_path / "data")
    assert "70000" in str(info.value)


# ----------------------------------------------------------------------------- run_benchmark
BENCH_BAD = {
    "operations": bad_ints(1, 1_000_000), "warmup": bad_ints(0, 100_000), "repeats": bad_ints(1, 100),
    "threads": bad_ints(1, 64), "pool_size": bad_ints(1, 1000), "blocks": bad_ints(1, 10_000),
    "block_warmup": bad_ints(0, 1000), "seed": st.one_of(st.text(max_size=3), st.floats(), st.none()),
    "rtt_ms": bad_floats(0.0, 10_000.0), "time_limit_s": st.one_of(bad_floats(0.0), st.just(0.0)),
    "strategies": st.one_of(st.just("reused"), st.just(()), st.lists(st.text(max_size=5), min_size=1, max_size=2)
                            .filter(lambda xs: any(x not in bench.STRATEGIES for x in xs))),
    "workload": st.one_of(st.sampled_from(["", "select2", "SELECT1"]), st.integers()),
    "auth": st.one_of(st.sampled_from(["", "password", "scram"]), st.integers()),
    "transport": st.one_of(st.sampled_from(["", "udp", "TCP"]), st.none()),
    "settings": st.one_of(st.text(max_size=5), st.integers()),
}


@BOUNDED
@given(case=st.one_of(*[st.tuples(st.just(k), v) for k, v in BENCH_BAD.items()]))
def test_run_benchmark_refuses_generated_bad_values_before_connecting(case) -> None:
    name, value = case
    unreachable = ConnectionSettings(port=free_port(), connect_timeout=1)
    options: dict[str, Any] = {"settings": unreachable, "progress": False, name: value}
    with pytest.raises((TypeError, ValueError)) as info:
        bench.run_benchmark(**options)
    assert_names(info.value, name)


# ----------------------------------------------------------------------------- provision
PROVISION_BAD = {
    "learners": bad_ints(1, 500), "prefix": st.one_of(st.sampled_from(["", "1a", "Abc", "a-b"]), st.integers()),
    "connection_limit": bad_ints(1, 10_000).filter(lambda v: v is not None),
    "out": st.one_of(st.integers(), st.just("")), "host": st.one_of(st.integers(), st.just("")),
    "admin_settings": st.one_of(st.text(max_size=5), st.none(), st.integers()),
}


@BOUNDED
@given(case=st.one_of(*[st.tuples(st.just(k), v) for k, v in PROVISION_BAD.items()]))
def test_provision_refuses_generated_bad_values_before_connecting(tmp_path, case) -> None:
    name, value = case
    options: dict[str, Any] = {"admin_settings": ConnectionSettings(port=free_port(), connect_timeout=1),
                               "learners": 2, "prefix": "vtest", "out": tmp_path / "creds.csv", name: value}
    before = tree_fingerprint(tmp_path)
    with pytest.raises((TypeError, ValueError, ProvisionError)) as info:
        provision(**options)
    assert_names(info.value, name)
    assert tree_fingerprint(tmp_path) == before
