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
    """A psycopg2 connection that counts statements and client/server round trips as the wire carries
    them (checked against the WireTap in the tests).

    ``statements``: statements sent by ``execute`` (one) and ``executemany`` (one per row);
    ``round_trips``: exchanges the client waited for after connecting — each statement, the ``BEGIN``
    psycopg2 sends before the first statement of a transaction (autocommit off), and each ``COMMIT`` or
    ``ROLLBACK`` that is sent (none when no transaction is open; ``with conn:`` sends them even in
    autocommit). ``begins`` counts those BEGINs.
    A statement the server rejects still made its round trip; one psycopg2 rejects before sending
    (a bad placeholder) made none. Not counted: the connect itself (about 4 round trips with SCRAM and
    ``sslmode=prefer``: see the wire tap), server-side (named) cursors' FETCHes, COPY.
    Counters are per connection and thread-safe enough for the lessons (a lock guards them).
    """

    def __init__(self, dsn: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(dsn, *args, **kwargs)
        self._counter_lock = threading.Lock()
        self.statements = 0
        self.round_trips = 0
        self.begins = 0
        self.commits = 0
        self.rollbacks = 0
        self._in_block = False

    def _count(self, statements: int = 0, commits: int = 0, rollbacks: int = 0, begins: int = 0) -> None:
        with self._counter_lock:
            self.statements += statements
            self.begins += begins
            self.commits += commits
            self.rollbacks += rollbacks
            self.round_trips += statements + begins + commits + rollbacks

    def _begin_pending(self) -> int:
        """1 when psycopg2 will send BEGIN before the next statement: no transaction open, and autocommit
        off or inside ``with conn:`` (psycopg2 2.9 opens a transaction there even in autocommit)."""
        return int((not self.autocommit or self._in_block) and self.status == psycopg2.extensions.STATUS_READY)

    def __enter__(self) -> KitConnection:
        result = super().__enter__()
        self._in_block = True
        return result

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._in_block = False

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
        """A snapshot: statements, round_trips, begins, commits, rollbacks."""
        with self._counter_lock:
            return {"statements": self.statements, "round_trips": self.round_trips, "begins": self.begins,
                    "commits": self.commits, "rollbacks": self.rollbacks}


_COUNTING_CLASSES: dict[type, type] = {}
_COUNTING_LOCK = threading.Lock()


def _reached_server(exc: BaseException) -> bool:
    """Whether a failed call had sent its statement: the server answered with an error (a SQLSTATE)."""
    return isinstance(exc, psycopg2.Error) and exc.pgcode is not None


def _counting_cursor_class(base: type) -> type:
    """A subclass of ``base`` whose execute/executemany report what they sent to their KitConnection."""
    with _COUNTING_LOCK:
        cls = _COUNTING_CLASSES.get(base)
        if cls is None:
            def execute(self: Any, query: Any, vars: Any = None) -> Any:
                conn = self.connection
                begin = conn._begin_pending()
                try:
                    result = base.execute(self, query, vars)
                except BaseException as exc:
                    if _reached_server(exc):
                        conn._count(statements=1, begins=begin)
                    raise
                conn._count(statements=1, begins=begin)
                return result

            def executemany(self: Any, query: Any, vars_list: Any) -> Any:
                # psycopg2 sends one statement per row (BEGIN first when a transaction starts); when a
                # row fails part-way, every row is counted (psycopg2 does not say which one failed).
                vars_list = list(vars_list)
                conn = self.connection
                begin = conn._begin_pending() if vars_list else 0
                try:
                    result = base.executemany(self, query, vars_list)
                except BaseException as exc:
                    if _reached_server(exc):
                        conn._count(statements=len(vars_list), begins=begin)
                    raise
                conn._count(statements=len(vars_list), begins=begin)
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
