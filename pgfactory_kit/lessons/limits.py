"""Running out of connections, safely: the ``max_connections`` demonstrations of notebook 06.

They only ever run against a small server of their own (``start_small_server``): a server's connection
slots, connections held until one is refused, many clients at once, and several processes each with its
own pool. Promises: every loop is bounded in count and time; every connection, thread and process a
helper starts is ended by it (or by the ``close()``/``destroy()`` the notebook calls).
"""
from __future__ import annotations

import multiprocessing
import queue as queue_module
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.extensions

from ..factory import make_factory
from ..pooling.pool import ConnectionPool
from ..servers.postgres import LocalServer
from ..servers.throwaway import ThrowawayServer, start_throwaway_server
from ..settings import ConnectionSettings

if TYPE_CHECKING:
    import pandas as pd  # loaded by the helpers that build tables, not at import


# ---------------------------------------------------------------------------- a small server of our own
def start_small_server(max_connections: int = 8, password: str | None = None) -> ThrowawayServer:
    """A fresh server in a temporary folder on a free port with a low ``max_connections``, for running
    out of connections safely (never the shared server). ``destroy()`` stops it and removes the folder;
    an ``atexit`` hook does so anyway if the kernel exits first. Starting takes a second or two."""
    return start_throwaway_server(prefix="pgfactory-small-", max_connections=max_connections, password=password)


def connection_limits(server: LocalServer) -> dict[str, int]:
    """``max_connections``, the slots reserved for superusers (and for ``pg_use_reserved_connections``),
    and what is left for ordinary roles such as ``myuser``, read from the server itself."""
    conn = psycopg2.connect(**server.admin_settings().connect_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name, setting::int FROM pg_settings WHERE name = ANY(%s)",
                        (["max_connections", "superuser_reserved_connections", "reserved_connections"],))
            values = dict(cur.fetchall())
    finally:
        conn.close()
    values.setdefault("reserved_connections", 0)
    values["available_to_apps"] = (values["max_connections"] - values["superuser_reserved_connections"]
                                   - values["reserved_connections"])
    return values


def first_line(exc: BaseException) -> str:
    """The server's own words: the first line of an error, without the connection prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split("FATAL:", 1)[-1].strip()


@dataclass
class Exhaustion:
    """What ``open_until_refused`` did: the connections it holds, and the refusal it met."""

    held: list[psycopg2.extensions.connection] = field(default_factory=list)
    refused_at: int | None = None  # attempt number (1-based) that was refused, or None
    error: str | None = None

    def close(self) -> None:
        """Close every held connection (idempotent)."""
        while self.held:
            try:
                self.held.pop().close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def open_until_refused(settings: ConnectionSettings, max_tries: int = 50, timeout_s: float = 30.0) -> Exhaustion:
    """Open connections one after another, keeping them all, until the server refuses one
    (at most ``max_tries`` attempts and ``timeout_s`` seconds). Close them with ``.close()``."""
    found = Exhaustion()
    deadline = time.monotonic() + timeout_s
    kwargs = settings.with_(connect_timeout=5, application_name="pgfactory_kit_exhaust").connect_kwargs()
    for attempt in range(1, max_tries + 1):
        if time.monotonic() > deadline:
            break
        try:
            found.held.append(psycopg2.connect(**kwargs))
        except psycopg2.OperationalError as exc:
            found.refused_at, found.error = attempt, first_line(exc)
            break
    return found


# ---------------------------------------------------------------------------- many clients at once
def many_clients(settings: ConnectionSettings, clients: int, hold_s: float = 0.3,
                 timeout_s: float = 30.0) -> pd.DataFrame:
    """``clients`` threads connect at once, each running ``SELECT pg_backend_pid(), pg_sleep(hold_s)``
    (so their sessions overlap) then closing. One row per client: ok, server backend PID, error.
    Bounded: each connect has a 5 s timeout, the whole run ``timeout_s``."""
    import pandas as pd

    kwargs = settings.with_(connect_timeout=5, application_name="pgfactory_kit_client").connect_kwargs()
    rows: list[dict[str, Any]] = [dict(client=i, ok=False, backend_pid=None, error="did not finish in time")
                                  for i in range(clients)]
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        try:
            start.wait(timeout=timeout_s)
            conn = psycopg2.connect(**kwargs)
        except threading.BrokenBarrierError:
            rows[i].update(error="never started")
            return
        except psycopg2.OperationalError as exc:
            rows[i].update(error=first_line(exc))
            return
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid(), pg_sleep(%s)", (hold_s,))
                rows[i].update(ok=True, backend_pid=int(cur.fetchone()[0]), error=None)
        except psycopg2.Error as exc:
            rows[i].update(error=first_line(exc))
        finally:
            conn.close()

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    table = pd.DataFrame(rows, columns=["client", "ok", "backend_pid", "error"])
    table["backend_pid"] = table["backend_pid"].astype("Int64")
    return table


# ---------------------------------------------------------------------------- many processes, each with a pool
def _pool_process(settings: ConnectionSettings, index: int, max_size: int, hold_s: float, timeout_s: float,
                  barrier: Any, results: Any) -> None:
    """One application process: a ConnectionPool of ``max_size``, and ``max_size`` threads that each
    hold a connection for ``hold_s`` seconds at the same time. Reports one dict on ``results``."""
    report: dict[str, Any] = dict(process=index, pool_max_size=max_size, connections_got=0, refused=0,
                                  error=None)
    lock = threading.Lock()
    pool = ConnectionPool(make_factory(settings.with_(connect_timeout=5, application_name=f"app-process-{index}")),
                          min_size=0, max_size=max_size, timeout=min(timeout_s, 5.0), name=f"process-{index}")

    def borrower() -> None:
        try:
            with pool.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(%s)", (hold_s,))
            with lock:
                report["connections_got"] += 1
        except psycopg2.OperationalError as exc:
            with lock:
                report["refused"] += 1
                report["error"] = report["error"] or first_line(exc)

    try:
        try:
            barrier.wait(timeout=timeout_s)
        except threading.BrokenBarrierError:
            pass  # start anyway: the parent bounds the run
        threads = [threading.Thread(target=borrower, daemon=True) for _ in range(max_size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout_s)
    finally:
        pool.close()
        results.put(report)


def processes_with_pools(settings: ConnectionSettings, processes: int, max_size: int, hold_s: float = 1.0,
                         timeout_s: float = 30.0) -> pd.DataFrame:
    """Start ``processes`` separate Python processes (as a web server's workers would be), each with its
    own ConnectionPool(max_size) whose connections are all in use at the same moment. One row per process:
    connections it got, connections the server refused, the first error. Bounded by ``timeout_s``;
    a process still running then is terminated."""
    import pandas as pd

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker, like gunicorn's workers
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    workers = [ctx.Process(target=_pool_process, args=(settings, i, max_size, hold_s, timeout_s, barrier, results),
                           daemon=True) for i in range(processes)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + timeout_s + 10
    rows = []
    while len(rows) < processes and time.monotonic() < deadline:
        try:
            rows.append(results.get(timeout=0.2))
        except queue_module.Empty:
            if not any(worker.is_alive() for worker in workers):
                break  # every process has exited; nothing more will arrive
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.terminate()
            worker.join(5)
    for i in set(range(processes)) - {r["process"] for r in rows}:
        rows.append(dict(process=i, pool_max_size=max_size, connections_got=0, refused=0,
                         error="the process did not report in time"))
    columns = ["process", "pool_max_size", "connections_got", "refused", "error"]
    return pd.DataFrame(rows, columns=columns).sort_values("process").reset_index(drop=True)


def outcomes(clients: pd.DataFrame) -> pd.DataFrame:
    """How many clients of ``many_clients`` succeeded, and how many met each error."""
    import pandas as pd

    labels = clients["error"].where(~clients["ok"], "ok: connected, queried, closed").fillna("unknown")
    counts = labels.value_counts()
    return pd.DataFrame({"outcome": counts.index, "clients": counts.to_numpy()})
