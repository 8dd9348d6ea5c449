"""Helpers the notebooks call, so that their cells stay short and what they show stays tested.

Promises: nothing here prints or returns a password; every wait is bounded in time; evidence
comes from the server itself (``pg_stat_activity``, ``pg_stat_database``), read through one
observer connection per settings so that looking does not change what is counted.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.extensions

from ..errors import explain_connect_error
from ..settings import ConnectionSettings

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ..servers.postgres import LocalServer

QUICK_ENV = "PGFACTORY_QUICK"
REPORT_DIR_ENV = "PGFACTORY_REPORT_DIR"
DATA_DIR_ENV = "PGFACTORY_DATA_DIR"
OBSERVER_APP = "pgfactory_kit_observer"
_EXPLICIT_ENV = ("PGFACTORY_DSN", "DATABASE_URL", "PGHOST", "PGPORT")


def quick_mode() -> bool:
    """True when ``PGFACTORY_QUICK`` is 1/true/yes: CI and the report run small, fast versions."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------- finding the database
def connect_to_database(*, start: bool = True) -> ConnectionSettings:
    """Settings for a server that answers: the one the environment names, else the kit's own
    ``LocalServer`` (started when ``start`` and nothing answers). One call, for every notebook.

    When ``PGFACTORY_DSN``/``DATABASE_URL``/``PGHOST``/``PGPORT`` name a server, that server is
    used as is: if it does not answer the error says so (the kit does not start another one)."""
    settings = ConnectionSettings.from_env()
    try:
        _probe(settings)
        return settings
    except psycopg2.OperationalError as exc:
        explicit = [name for name in _EXPLICIT_ENV if os.environ.get(name)]
        if explicit or not start:
            raise explain_connect_error(exc, settings) from None
    from ..servers.postgres import LocalServer

    return LocalServer(data_dir=os.environ.get(DATA_DIR_ENV) or None).start()


def _probe(settings: ConnectionSettings) -> None:
    conn = psycopg2.connect(**settings.with_(connect_timeout=min(settings.connect_timeout, 5),
                                             application_name=OBSERVER_APP).connect_kwargs())
    conn.close()


def kit_server(settings: ConnectionSettings) -> LocalServer | None:
    """The kit's ``LocalServer`` behind ``settings``, or None when the server is someone else's
    (then the notebooks never stop or restart it). Looks in ``PGFACTORY_DATA_DIR`` or ``.pgfactory/``."""
    from ..servers.postgres import LocalServer

    if settings.host not in ("127.0.0.1", "localhost"):
        return None
    # The password is the one we connect with: restart() re-applies the lesson role's password.
    server = LocalServer(data_dir=os.environ.get(DATA_DIR_ENV) or None, password=settings.password)
    try:
        status = server.status()
        pid_lines = (server.data_dir / "postmaster.pid").read_text().splitlines()
        listening_port = int(pid_lines[3])  # postmaster.pid's 4th line is the port it listens on
    except Exception:  # not running, or a folder we cannot read: not ours to restart
        return None
    if not status.running or listening_port != settings.port or server.port != settings.port:
        return None
    return server


# ---------------------------------------------------------------------------- evidence from the server
class ServerView:
    """One autocommit observer connection that reads the server's own statistics.

    It is opened once and kept, so its own session is counted before the first reading and
    never again: differences between two readings are the learner's connections only."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._conn: psycopg2.extensions.connection | None = None
        self._lock = threading.Lock()

    def _cursor(self) -> psycopg2.extensions.cursor:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg2.connect(**self.settings.with_(application_name=OBSERVER_APP).connect_kwargs())
            except psycopg2.OperationalError as exc:
                raise explain_connect_error(exc, self.settings) from None
            self._conn.autocommit = True
        return self._conn.cursor()

    def query(self, sql: str, params: Iterable[Any] | None = None) -> list[tuple]:
        """Run one read-only query on the observer connection; reconnects once after a restart."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    with self._cursor() as cur:
                        cur.execute("SELECT pg_stat_clear_snapshot()")  # fresh numbers, not a cached snapshot
                        cur.execute(sql, tuple(params) if params is not None else None)
                        return cur.fetchall() if cur.description else []
                except (psycopg2.OperationalError, psycopg2.InterfaceError):
                    if attempt == 2:
                        raise
                    self.close_quietly()
        return []

    def sessions(self) -> int:
        """``pg_stat_database.sessions`` for this database: sessions ever established to it."""
        rows = self.query("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(rows[0][0])

    def backends(self) -> list[int]:
        """PIDs of client backends connected to this database now, the observer excluded."""
        rows = self.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                          "AND backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY pid")
        return [int(r[0]) for r in rows]

    def wait_until_gone(self, pids: Iterable[int], timeout: float = 5.0) -> bool:
        """Wait (at most ``timeout`` s) until none of ``pids`` is connected; True if they all left.

        A closed connection's backend exits a moment after the client hangs up, and records its
        statistics on the way out: wait for this before reading ``sessions()``."""
        wanted = {int(p) for p in pids}
        deadline = time.monotonic() + timeout
        while True:
            alive = wanted & set(self.backends())
            if not alive:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def terminate(self, pid: int) -> bool:
        """``pg_terminate_backend(pid)``: what an admin, a restart or an idle timeout does to a
        connection. A role may terminate its own backends. True if the signal was sent."""
        rows = self.query("SELECT pg_terminate_backend(%s)", (int(pid),))
        return bool(rows and rows[0][0])

    def activity(self, application_name: str | None = None):
        """pg_stat_activity rows for this database (observer excluded) as a DataFrame."""
        import pandas as pd

        sql = ("SELECT pid, usename AS user, application_name, state, "
               "backend_start::timestamp(0) AS backend_start, "
               "round(extract(epoch FROM now() - xact_start)::numeric, 1) AS xact_age_s, "
               "left(query, 60) AS last_query "
               "FROM pg_stat_activity WHERE datname = current_database() "
               "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
        params: list[Any] = []
        if application_name is not None:
            sql += " AND application_name = %s"
            params.append(application_name)
        rows = self.query(sql + " ORDER BY pid", params)
        columns = ["pid", "user", "application_name", "state", "backend_start", "xact_age_s", "last_query"]
        return pd.DataFrame(rows, columns=columns)

    def close_quietly(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


_VIEWS: dict[ConnectionSettings, ServerView] = {}
_VIEWS_LOCK = threading.Lock()


def server_view(settings: ConnectionSettings) -> ServerView:
    """The shared ServerView for these settings (one observer connection per notebook)."""
    with _VIEWS_LOCK:
        view = _VIEWS.get(settings)
        if view is None:
            view = _VIEWS[settings] = ServerView(settings)
        return view


def server_sessions(settings: ConnectionSettings) -> int:
    """Sessions ever established to this database (``pg_stat_database.sessions``).

    Read through the shared observer, so calling it does not add to the count (after the first call)."""
    return server_view(settings).sessions()


def activity(settings: ConnectionSettings, application_name: str | None = None):
    """Who is connected to this database right now (pg_stat_activity), as a DataFrame."""
    return server_view(settings).activity(application_name)


def wait_until_gone(settings: ConnectionSettings, pids: Iterable[int], timeout: float = 5.0) -> bool:
    """Wait (bounded) until the backends ``pids`` have exited; see ``ServerView.wait_until_gone``."""
    return server_view(settings).wait_until_gone(pids, timeout)


def terminate_backend(settings: ConnectionSettings, pid: int) -> bool:
    """Terminate one backend, as a restart or an admin would (the role may end its own sessions)."""
    return server_view(settings).terminate(pid)


def backend_pid(conn: psycopg2.extensions.connection) -> int:
    """The server process serving ``conn``: the server tells the client at connect time."""
    return int(conn.info.backend_pid)


# ---------------------------------------------------------------------------- showing results
def show(df: Any, max_rows: int = 20) -> None:
    """Display a DataFrame (or anything) in a notebook, or print it in a terminal."""
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with the kit
        print(df)
        return
    if hasattr(df, "head") and len(df) > max_rows:
        df = df.head(max_rows)
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas ships with the kit
        display(df)
        return
    with pd.option_context("display.max_colwidth", 120):  # error messages in tables stay readable
        display(df)


def report_dir() -> Path | None:
    """``$PGFACTORY_REPORT_DIR`` when the report runs the notebooks (created), else None."""
    value = os.environ.get(REPORT_DIR_ENV)
    if not value:
        return None
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_csv(df: pd.DataFrame, name: str) -> Path | None:
    """Save a DataFrame as ``<report dir>/<name>.csv`` when the report runs; return the path or None."""
    folder = report_dir()
    if folder is None:
        return None
    path = folder / (name if name.endswith(".csv") else f"{name}.csv")
    df.to_csv(path, index=False)
    return path


def save_figure(fig: Figure, name: str) -> Path | None:
    """Save a matplotlib figure as ``<report dir>/<name>.png`` when the report runs."""
    folder = report_dir()
    if folder is None:
        return None
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
