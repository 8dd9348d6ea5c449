"""The ways of getting a connection that the bench compares, and the workloads it runs on them.

Every strategy offers ``open()`` (untimed set-up), ``connection()`` (a context manager: the timed
part of an operation starts before it and ends after it), and ``close()``. Optional strategies
(``psycopg_pool``, ``pgbouncer``) report why they are unavailable instead of failing.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import StrategyUnavailable
from ..factory import make_factory
from ..settings import ConnectionSettings

if TYPE_CHECKING:
    from ..servers.postgres import LocalServer

STRATEGIES = ("connect_per_query", "reused", "pool", "psycopg2_pool", "psycopg_pool", "pgbouncer")
DEFAULT_STRATEGIES = ("connect_per_query", "reused", "pool")
DESCRIPTIONS = {
    "connect_per_query": "the blog's pattern: a new connection for every operation, closed after it",
    "reused": "one connection opened once and handed out again (ReusedConnection)",
    "pool": "the kit's ConnectionPool (thread-safe, waits when exhausted)",
    "psycopg2_pool": "psycopg2.pool.ThreadedConnectionPool(n, n) (guarded so it waits instead of failing)",
    "psycopg_pool": "psycopg 3's psycopg_pool.ConnectionPool (production-grade pool)",
    "pgbouncer": "a new connection per operation, but to PgBouncer, which keeps server sessions open",
}


class Connection(Protocol):
    """What a workload needs of a connection: psycopg2's and psycopg 3's both have it."""

    def cursor(self) -> Any: ...

    def commit(self) -> None: ...


# ------------------------------------------------------------------------------------- workloads
@dataclass
class Workload:
    """What one operation does on a connection; ``autocommit`` is what the bench's connections use."""

    name: str
    sql: str
    autocommit: bool
    params: tuple[Any, ...] | None = None
    fetch: bool = True
    commit: bool = False

    def run(self, conn: Connection) -> None:
        """Execute the statement on ``conn`` (psycopg2 or psycopg 3), fetch, commit when it writes."""
        cur = conn.cursor()
        try:
            cur.execute(self.sql, self.params)
            if self.fetch:
                cur.fetchall()
        finally:
            cur.close()
        if self.commit:
            conn.commit()


def make_workload(name: str, marker: str) -> Workload:
    """``select1``, ``select_all`` (the blog's SELECT) or ``insert`` (the blog's INSERT, parameterised and
    committed; rows carry ``marker`` as their name so the bench can delete them afterwards).

    Reads run in autocommit (one round trip per query, as read-only code should); the INSERT does what
    the blog does: execute then ``commit()`` (psycopg2 sends BEGIN, INSERT, COMMIT)."""
    if name == "select1":
        return Workload(name, "SELECT 1", autocommit=True)
    if name == "select_all":
        return Workload(name, "SELECT * FROM mytable", autocommit=True)
    if name == "insert":
        return Workload(name, "INSERT INTO mytable (name) VALUES (%s)", autocommit=False, params=(marker,),
                        fetch=False, commit=True)
    raise ValueError(f"unknown workload {name!r}; choose select1, select_all or insert")


# ------------------------------------------------------------------------------------ strategies
@dataclass
class Strategy:
    """Base class: ``settings`` says where to connect; ``pool_size`` bounds the pooled strategies."""

    settings: ConnectionSettings
    autocommit: bool
    pool_size: int = 4
    name: str = "strategy"
    server: LocalServer | None = None
    route: Callable[[ConnectionSettings], ConnectionSettings] | None = None
    notes: list[str] = field(default_factory=list)

    def factory(self) -> Callable[[], Connection]:
        return make_factory(self.settings, autocommit=self.autocommit)

    def open(self) -> None:
        """Untimed set-up (pools open here)."""

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        raise NotImplementedError
        yield  # pragma: no cover

    def close(self) -> None:
        """Close everything this strategy opened."""


class ConnectPerQuery(Strategy):
    """The blog's pattern: factory(), use, close()."""

    def open(self) -> None:
        self._factory = self.factory()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        conn = self._factory()
        try:
            yield conn
        finally:
            conn.close()


class _Lender(Strategy):
    """A strategy whose connections come from one object that ``open()`` makes (``self._lender``), with a
    ``connection()`` context manager and ``close()``: ReusedConnection, ConnectionPool, psycopg_pool."""

    _lender: Any

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._lender.connection() as conn:
            yield conn

    def close(self) -> None:
        self._lender.close()


class Reused(_Lender):
    """One connection, handed out again and again (``ReusedConnection``); threads take turns."""

    def open(self) -> None:
        from ..pooling.reuse import ReusedConnection
        self._lender = ReusedConnection(self.factory())


class Pool(_Lender):
    """The kit's ``ConnectionPool`` with ``max_size=pool_size``."""

    def open(self) -> None:
        from ..pooling.pool import ConnectionPool
        self._lender = ConnectionPool(self.factory(), min_size=1, max_size=self.pool_size, name="bench")


class Psycopg2Pool(Strategy):
    """psycopg2's ``ThreadedConnectionPool``. It raises when exhausted instead of waiting, so a
    semaphore of the pool's size makes borrowers wait, as any real application would have to.
    ``minconn = maxconn``: psycopg2 *closes* every returned connection beyond ``minconn``, so the
    common ``ThreadedConnectionPool(1, n)`` reconnects all the time under concurrency."""

    def open(self) -> None:
        from psycopg2.pool import ThreadedConnectionPool
        self._pool = ThreadedConnectionPool(self.pool_size, self.pool_size, **self.settings.connect_kwargs())
        self._slots = threading.BoundedSemaphore(self.pool_size)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._slots:
            conn = self._pool.getconn()
            ok = False
            try:
                if conn.autocommit != self.autocommit:
                    conn.autocommit = self.autocommit
                yield conn
                if not self.autocommit:
                    conn.commit()
                ok = True
            finally:
                if not ok and not conn.closed:
                    conn.rollback()
                self._pool.putconn(conn)

    def close(self) -> None:
        self._pool.closeall()


class PsycopgPool(_Lender):
    """psycopg 3's ``psycopg_pool.ConnectionPool`` (install the ``compare`` extra)."""

    def open(self) -> None:
        try:
            import psycopg
            import psycopg_pool
        except ImportError:
            raise StrategyUnavailable(
                "psycopg_pool skipped: psycopg 3 and psycopg-pool are not installed "
                "(install them with `pip install -e '.[compare]'`).") from None
        conninfo = psycopg.conninfo.make_conninfo(**self.settings.connect_kwargs())
        self._lender = psycopg_pool.ConnectionPool(conninfo, min_size=1, max_size=self.pool_size,
                                                   kwargs={"autocommit": self.autocommit}, open=True,
                                                   name="bench-psycopg")
        self._lender.wait(timeout=30)


class PgBouncerPerQuery(ConnectPerQuery):
    """Connect-per-query through a local PgBouncer (transaction pooling): each operation opens a new
    client connection, but PgBouncer reuses its few server sessions."""

    def open(self) -> None:
        try:
            from ..servers.pgbouncer import LocalPgBouncer, find_pgbouncer
        except ImportError:
            raise StrategyUnavailable("pgbouncer skipped: this installation has no pgfactory_kit.servers.pgbouncer "
                                      "module.") from None
        if find_pgbouncer() is None:
            raise StrategyUnavailable(
                "pgbouncer skipped: no pgbouncer program found (install it: `apt-get install pgbouncer`, "
                "`conda install -c conda-forge pgbouncer`, or use docker compose).")
        if self.server is None:
            raise StrategyUnavailable("pgbouncer skipped: it needs the kit's LocalServer (pass server=...), "
                                      "not just connection settings.")
        self._bouncer = LocalPgBouncer(self.server)
        self._was_running = self._bouncer.status().running
        # PgBouncer authenticates clients with scram-sha-256 whatever the role does on the server.
        bouncer = self._bouncer.start().with_(dbname=self.settings.dbname,
                                              application_name=self.settings.application_name)
        # With added RTT the network sits between the application and PgBouncer (PgBouncer on the
        # database host): each new client connection and each query cross it.
        self.settings = self.route(bouncer) if self.route is not None else bouncer
        super().open()
        try:  # a PgBouncer that cannot log in to the server is reported, not timed
            self._factory().close()
        except Exception as exc:  # noqa: BLE001 - any failure means: skip with the reason
            self.close()
            raise StrategyUnavailable(f"pgbouncer skipped: a test connection through it failed: "
                                      f"{str(exc).splitlines()[0]}") from None

    def close(self) -> None:
        if not self._was_running:  # leave a PgBouncer that `pgfactory-kit up --pgbouncer` started
            self._bouncer.stop()


_CLASSES: dict[str, type[Strategy]] = {
    "connect_per_query": ConnectPerQuery, "reused": Reused, "pool": Pool, "psycopg2_pool": Psycopg2Pool,
    "psycopg_pool": PsycopgPool, "pgbouncer": PgBouncerPerQuery,
}


def make_strategy(name: str, settings: ConnectionSettings, workload: Workload, pool_size: int,
                  server: LocalServer | None = None,
                  route: Callable[[ConnectionSettings], ConnectionSettings] | None = None) -> Strategy:
    """A new, unopened strategy called ``name``; ``route`` sends a strategy's own endpoints (PgBouncer)
    through the same added network delay as the server."""
    if name not in _CLASSES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return _CLASSES[name](settings=settings, autocommit=workload.autocommit, pool_size=pool_size, name=name,
                          server=server, route=route)
