"""Shared fixtures: a real PostgreSQL that the tests start themselves on 127.0.0.1."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from pgfactory_kit import ConnectionSettings, make_factory
from pgfactory_kit.servers.daemon import free_port  # the package's own, re-exported for the tests
from pgfactory_kit.servers.postgres import LocalServer

ROOT = Path(__file__).resolve().parent.parent


def run_in_fork(child_body: Callable[[], bytes], parent_body: Callable[[], None] | None = None) -> bytes:
    """Fork: the child runs ``child_body()`` and sends back the bytes it returns, then exits (status 0
    only if it returned; an exception fails the calling test); the parent runs ``parent_body()``
    meanwhile, waits for the child and returns its bytes."""
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(read_fd)
            os.write(write_fd, child_body())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        if parent_body is not None:
            parent_body()
    finally:
        _, status = os.waitpid(child, 0)
        data = os.read(read_fd, 65536)
        os.close(read_fd)
    assert os.waitstatus_to_exitcode(status) == 0, f"the forked child exited with {status}"
    return data


def number_from_child(body: Callable[[], int]) -> int:
    """Run ``body()`` in a forked child and return the number it returns (see ``run_in_fork``)."""
    return int(run_in_fork(lambda: str(body()).encode()) or b"0")


@contextlib.contextmanager
def started_server(tmp_path_factory: pytest.TempPathFactory, name: str, **options) -> Iterator[LocalServer]:
    """A LocalServer of the caller's own (fresh data dir, free port), destroyed afterwards."""
    srv = LocalServer(data_dir=tmp_path_factory.mktemp(name) / "data", port=free_port(), **options)
    srv.start()
    try:
        yield srv
    finally:
        srv.destroy()


@pytest.fixture
def echo():
    """A TCP echo server on 127.0.0.1 (tests/test_latency.py's EchoServer), closed afterwards."""
    from .test_latency import EchoServer

    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """The test session's own LocalServer (fresh data dir, free port); destroyed at the end."""
    with started_server(tmp_path_factory, "pg", max_connections=120) as srv:
        yield srv


@pytest.fixture(scope="session")
def settings(server: LocalServer) -> ConnectionSettings:
    """The blog's credentials against the test server."""
    return server.settings()


@pytest.fixture
def factory(settings: ConnectionSettings):
    """A connection factory for the test server."""
    return make_factory(settings)


@pytest.fixture
def admin_conn(server: LocalServer) -> Iterator[psycopg2.extensions.connection]:
    """A superuser connection (autocommit) for looking at and poking the server."""
    conn = psycopg2.connect(**server.admin_settings("mydatabase").connect_kwargs())
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """An environment with no PG*/PGFACTORY_* variables and a project root with nothing in it."""
    for key in list(os.environ):
        if key.startswith("PG") or key in ("DATABASE_URL",):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    return {"PGFACTORY_HOME": str(tmp_path)}
