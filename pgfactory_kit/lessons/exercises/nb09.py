"""Checker for notebook 09 (capstone): the blog's two operations as a small service on a pool, with
timeouts and a safe retry, proved with the session counter, the wire tap and 20 ms of network."""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import psycopg2.extensions

from ...factory import make_factory
from ...pooling.pool import ConnectionPool
from ...settings import ConnectionSettings
from ..lesson import server_view, wait_until_gone
from . import Verdict, check, not_attempted, passed, todo

APP = "pgfactory_kit_capstone"
MARKER = "capstone-"
SEED = {"Ada", "Grace", "Edsger", "Barbara", "Donald"}


class ConnectPerCall:
    """The blog's way behind a pool's face: ``connection()`` opens a new connection, lends it for one
    ``with`` block (commit on success; on error it closes without committing) and closes it."""

    def __init__(self, factory: Callable[[], psycopg2.extensions.connection]) -> None:
        self.factory = factory

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg2.extensions.connection]:
        conn = self.factory()
        try:
            yield conn
            conn.commit()  # sends nothing in autocommit; commits a transaction the block opened
        finally:
            conn.close()  # an error left uncommitted is rolled back as the connection closes

    def close(self) -> None:
        pass


def blog_pool(settings: ConnectionSettings) -> ConnectPerCall:
    """The blog's connect-per-operation, shaped like a pool so the same service code runs on it."""
    return ConnectPerCall(make_factory(settings, autocommit=True))


def measure(make_pool: Callable[[ConnectionSettings], Any], list_names: Callable[[Any], Any],
            add_name: Callable[[Any, str], Any], settings: ConnectionSettings, requests: int = 20,
            delay_ms: float = 10.0) -> dict[str, Any]:
    """Run ``requests`` requests (list, add, list, add, …) through a wire tap that adds ``delay_ms`` each
    way (a round trip of twice that), on the pool ``make_pool`` builds for the tapped settings.
    Returns the median ``ms_per_request``, the median ``round_trips`` per request of each kind, the
    ``connections`` the tap saw and the ``sessions_opened`` the server counted. Rows it added are deleted."""
    from ...measuring.wiretap import WireTap

    if not 1 <= int(requests) <= 500:
        raise ValueError(f"requests must be between 1 and 500, got {requests!r}")
    view = server_view(settings)
    before = view.sessions()
    times: list[float] = []
    trips: dict[str, list[int]] = {"list": [], "add": []}
    with WireTap(settings.host or "127.0.0.1", settings.port or 5432, delay_ms=delay_ms) as tap:
        through = settings.with_(host=tap.listen_host, port=tap.port, application_name=APP)
        pool = make_pool(through)
        try:
            for number in range(int(requests)):
                kind = "list" if number % 2 == 0 else "add"
                label = f"{kind} {number}"
                with tap.operation(label):
                    started = time.perf_counter()
                    if kind == "list":
                        list_names(pool)
                    else:
                        add_name(pool, f"{MARKER}{number}")
                    times.append((time.perf_counter() - started) * 1000)
                trips[kind].append(tap.round_trips(operation=label))
        finally:
            pids = [int(p) for p in view.activity(APP)["pid"]]
            close = getattr(pool, "close", None)
            if callable(close):
                close()
        connections = int(tap.messages()["conn"].nunique())
    wait_until_gone(settings, pids)
    opened = view.sessions() - before
    _remove_rows(settings)
    return {"ms_per_request": statistics.median(times),
            "round_trips_list": statistics.median(trips["list"]) if trips["list"] else 0,
            "round_trips_add": statistics.median(trips["add"]) if trips["add"] else 0,
            "connections": connections, "sessions_opened": opened, "requests": int(requests)}


def _remove_rows(settings: ConnectionSettings) -> None:
    conn = psycopg2.connect(**settings.connect_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM mytable WHERE name LIKE %s OR name = %s", (MARKER + "%", "O'Brien"))
    finally:
        conn.close()


class _DeadFirst:
    """A pool whose first ``connection()`` lends a connection the server has already ended; the
    next ones come from ``pool``. What a caller meets after a failover or an idle timeout."""

    def __init__(self, pool: Any, settings: ConnectionSettings) -> None:
        self._pool = pool
        self.borrows = 0
        self._dead = psycopg2.connect(**settings.with_(application_name=APP).connect_kwargs())
        self._dead.autocommit = True
        pid = int(self._dead.info.backend_pid)
        server_view(settings).terminate(pid)
        wait_until_gone(settings, [pid])

    def connection(self, timeout: float | None = None) -> Any:
        self.borrows += 1
        if self.borrows == 1:
            return contextlib.nullcontext(self._dead)
        return self._pool.connection(timeout=timeout)

    def close(self) -> None:
        self._dead.close()


def _committed(settings: ConnectionSettings, name: str) -> int:
    return int(server_view(settings).query("SELECT count(*) FROM mytable WHERE name = %s", (name,))[0][0])


def check_service(make_pool: Any, list_names: Any, add_name: Any, settings: ConnectionSettings,
                  requests: int = 20) -> Verdict:
    """``make_pool(settings)`` -> a ``ConnectionPool`` with a statement timeout and a pool timeout;
    ``list_names(pool)`` -> the names in mytable (a read, retried once when its connection was lost);
    ``add_name(pool, name)`` -> inserts ``name`` with a parameter and commits (a write, never retried)."""
    if not_attempted(make_pool, list_names, add_name):
        return todo("the service", "replace the three `...` with make_pool(settings), list_names(pool) and "
                                   "add_name(pool, name), as described above.")
    pool = make_pool(settings)
    try:
        check(isinstance(pool, ConnectionPool), expected="make_pool returns a pgfactory_kit.ConnectionPool",
              seen=type(pool).__name__,
              hint="return ConnectionPool(make_factory(settings, ...), max_size=..., timeout=...)")
        check(pool.max_size <= 4, expected="a small pool: max_size <= 4", seen=pool.max_size,
              hint="two connections serve this service; a pool is about reuse, not about opening many.")
        check(pool.timeout <= 10, expected="a pool timeout of at most 10 s (the default is 30)", seen=pool.timeout,
              hint="pass timeout=... so a caller learns quickly that the service is overloaded.")
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT current_setting('statement_timeout')")
            statement_timeout = cur.fetchone()[0]
        check(statement_timeout not in ("0", "0ms"), expected="a statement_timeout set on the pool's connections",
              seen=f"statement_timeout = {statement_timeout}",
              hint='make_factory(settings, autocommit=True, session={"statement_timeout": "2s"})')
        names = list_names(pool)
        check(isinstance(names, (list, tuple)) and SEED <= set(names),
              expected="list_names returns the names in mytable (the five seed names among them)", seen=names,
              hint="SELECT name FROM mytable ORDER BY id, and return [name for (name,) in cur.fetchall()].")
        add_name(pool, "O'Brien")
        stored = _committed(settings, "O'Brien")
        check(stored == 1, expected="add_name(pool, \"O'Brien\") stores one committed row",
              seen=f"{stored} rows named O'Brien",
              hint="pass the name as a %s parameter (never spliced into the SQL) and let the `with` block commit.")
        broken = _DeadFirst(pool, settings)
        try:
            again = list_names(broken)
        except psycopg2.OperationalError as exc:
            check(False, expected="list_names retries once when its connection was lost", seen=type(exc).__name__,
                  hint="catch psycopg2.OperationalError, and when conn.closed is non-zero run the read once more.")
        finally:
            broken.close()
        check(SEED <= set(again) and broken.borrows == 2, expected="the names, after exactly one retry",
              seen=f"{broken.borrows} borrows", hint="retry once, with a new `with pool.connection()` block.")
        broken = _DeadFirst(pool, settings)
        try:
            add_name(broken, f"{MARKER}retried")
            raised: BaseException | None = None
        except BaseException as exc:  # noqa: BLE001 - the learner's code may raise anything
            raised = exc
        finally:
            broken.close()
        check(isinstance(raised, psycopg2.OperationalError) and broken.borrows == 1,
              expected="add_name lets a lost connection's error through, after one attempt",
              seen=f"{type(raised).__name__ if raised else 'no error'} after {broken.borrows} attempt(s)",
              hint="a write is not retried blindly: if the connection died after the COMMIT was sent, the row may "
                   "already be there. Let the caller decide (or make the write idempotent with a unique key).")
    finally:
        pool.close()
        _remove_rows(settings)
    blog = measure(blog_pool, list_names, add_name, settings, requests)
    service = measure(make_pool, list_names, add_name, settings, requests)
    check(service["round_trips_list"] == 1, expected="one round trip per read on the wire",
          seen=f"{service['round_trips_list']} round trips",
          hint="make the pool's connections autocommit (make_factory(settings, autocommit=True)): a read then needs "
               "no BEGIN and no COMMIT.")
    check(service["connections"] <= pool.max_size and service["sessions_opened"] <= pool.max_size,
          expected=f"at most {pool.max_size} connections for {requests} requests",
          seen=f"{service['connections']} connections on the wire, {service['sessions_opened']} sessions",
          hint="borrow from the pool you were given in every request; never call the factory yourself.")
    check(service["ms_per_request"] * 3 < blog["ms_per_request"],
          expected="the service more than 3x faster per request than the blog's way, 20 ms from the database",
          seen=f"{service['ms_per_request']:.0f} ms against {blog['ms_per_request']:.0f} ms",
          hint="are the reads one round trip each, on pooled connections?")
    return passed("the service", f"{requests} requests on {service['connections']} connection(s): "
                                 f"{service['ms_per_request']:.0f} ms each against the blog's "
                                 f"{blog['ms_per_request']:.0f} ms at 20 ms RTT; a lost read retried once, "
                                 "a lost write reported.")
