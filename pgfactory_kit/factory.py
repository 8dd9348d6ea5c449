"""Connection factories: the blog's ``create_connection`` generalised, and psycopg2's own
``connection_factory=`` hook (``KitConnection``), which counts what a connection costs."""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import psycopg2
import psycopg2.extensions

from .errors import explain_connect_error
from .settings import ConnectionSettings

ConnectionFactory = Callable[[], "psycopg2.extensions.connection"]


class KitConnection(psycopg2.extensions.connection):
    """A psycopg2 connection that counts statements and client/server round trips.

    ``statements``: calls to ``execute``/``executemany`` (one per statement sent);
    ``round_trips``: messages the client waited on — each execute, commit and rollback, plus
    the connect handshake counted in ``connect_round_trips`` (psycopg2 does not expose it).
    Counters are per connection and thread-safe enough for the lessons (a lock guards them).
    """

    def __init__(self, dsn: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(dsn, *args, **kwargs)
        self._counter_lock = threading.Lock()
        self.statements = 0
        self.round_trips = 0
        self.commits = 0
        self.rollbacks = 0

    def _count(self, statements: int = 0, commits: int = 0, rollbacks: int = 0) -> None:
        with self._counter_lock:
            self.statements += statements
            self.commits += commits
            self.rollbacks += rollbacks
            self.round_trips += statements + commits + rollbacks

    def cursor(self, *args: Any, **kwargs: Any) -> psycopg2.extensions.cursor:
        cursor_factory = kwargs.get("cursor_factory") or self.cursor_factory or psycopg2.extensions.cursor
        kwargs["cursor_factory"] = _counting_cursor_class(cursor_factory)
        return super().cursor(*args, **kwargs)

    def commit(self) -> None:
        # psycopg2 sends nothing when no transaction is open; count only what reaches the server.
        sends = self.status != psycopg2.extensions.STATUS_READY
        super().commit()
        if sends:
            self._count(commits=1)

    def rollback(self) -> None:
        sends = self.status != psycopg2.extensions.STATUS_READY
        super().rollback()
        if sends:
            self._count(rollbacks=1)

    def counters(self) -> dict[str, int]:
        """A snapshot: statements, round_trips, commits, rollbacks."""
        with self._counter_lock:
            return {"statements": self.statements, "round_trips": self.round_trips,
                    "commits": self.commits, "rollbacks": self.rollbacks}


_COUNTING_CLASSES: dict[type, type] = {}
_COUNTING_LOCK = threading.Lock()


def _counting_cursor_class(base: type) -> type:
    """A subclass of ``base`` whose execute/executemany report to their KitConnection."""
    with _COUNTING_LOCK:
        cls = _COUNTING_CLASSES.get(base)
        if cls is None:
            def execute(self: Any, query: Any, vars: Any = None) -> Any:
                result = base.execute(self, query, vars)
                self.connection._count(statements=1)
                return result

            def executemany(self: Any, query: Any, vars_list: Any) -> Any:
                vars_list = list(vars_list)
                result = base.executemany(self, query, vars_list)
                self.connection._count(statements=len(vars_list))
                return result

            cls = type(f"Counting{base.__name__}", (base,), {"execute": execute, "executemany": executemany})
            _COUNTING_CLASSES[base] = cls
        return cls


def session_options(session: Mapping[str, Any] | None) -> str | None:
    """libpq ``options`` text applying server settings at connect (no extra round trip)."""
    if not session:
        return None
    parts = []
    for name, value in session.items():
        if not str(name).replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"session setting name {name!r} is not a valid PostgreSQL setting name")
        text = str(value).replace("\\", "\\\\").replace(" ", "\\ ")
        parts.append(f"-c {name}={text}")
    return " ".join(parts)


def make_factory(
    settings: ConnectionSettings | None = None,
    *,
    connection_factory: type | None = None,
    cursor_factory: type | None = None,
    autocommit: bool = False,
    session: Mapping[str, Any] | None = None,
) -> ConnectionFactory:
    """A zero-argument callable; each call opens a *new* psycopg2 connection.

    ``settings`` defaults to ``ConnectionSettings.from_env()``; ``connection_factory`` and
    ``cursor_factory`` go to ``psycopg2.connect``; ``session`` settings (e.g.
    ``{"statement_timeout": "5s"}``) are applied at connect time through libpq's ``options``.
    Connection failures raise ``psycopg2.OperationalError`` with a message that says what to do.
    """
    resolved = settings if settings is not None else ConnectionSettings.from_env()
    kwargs = resolved.connect_kwargs()
    options = session_options(session)
    if options:
        kwargs["options"] = options
    if connection_factory is not None:
        kwargs["connection_factory"] = connection_factory
    if cursor_factory is not None:
        kwargs["cursor_factory"] = cursor_factory

    def connection_factory_fn() -> psycopg2.extensions.connection:
        try:
            conn = psycopg2.connect(**kwargs)
        except psycopg2.OperationalError as exc:
            raise explain_connect_error(exc, resolved) from None
        if autocommit:
            conn.autocommit = True
        return conn

    connection_factory_fn.settings = resolved  # type: ignore[attr-defined]
    connection_factory_fn.__qualname__ = connection_factory_fn.__name__ = "create_connection"
    connection_factory_fn.__doc__ = f"Open a new connection to {resolved.masked_dsn()}."
    return connection_factory_fn
