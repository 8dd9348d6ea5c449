"""Errors that say what happened, what the kit tried, and what to do next — never the password.

Every exception the kit raises on purpose is defined here, under one root: ``except KitError`` catches
them all, and each keeps the base its callers already catch (psycopg2's ``OperationalError`` for a
connection that cannot be had, ``RuntimeError`` for the lab's equipment)::

    KitError
    ├── KitConnectError          psycopg2.OperationalError: a failed connect, explained
    ├── PoolTimeout              psycopg2.OperationalError: no connection within the timeout
    ├── PoolClosed               psycopg2.OperationalError: the pool hands out no more connections
    ├── ServerError              RuntimeError: the kit's own servers
    │   ├── BinariesMissingError
    │   ├── PortInUseError
    │   ├── DataDirNotWritableError
    │   ├── ServerStartError
    │   └── PgBouncerError
    │       └── PgBouncerMissingError
    ├── ProvisionError           RuntimeError: workshop provisioning cannot go ahead
    └── StrategyUnavailable      RuntimeError: a bench strategy that cannot run here (skipped, with a note)

A value that is wrong before anything runs (a malformed DSN, ``max_size=0``) raises ``ValueError`` or
``TypeError``, as Python's own functions do. The challenge checkers' ``ExerciseFailed``
(``lessons/exercises``) stays an ``AssertionError`` of their own: a learner's answer, not a kit failure.
"""
from __future__ import annotations

import psycopg2

from .settings import ConnectionSettings

# (needle in the server's words, advice). The first match wins, so specific needles come first.
_ADVICE = [
    ("too many connections for role",
     "role {user} has reached its CONNECTION LIMIT (set by the instructor, see docs/workshops.md). "
     "Close connections you no longer use (conn.close(), pool.close(), or restart the notebook's kernel), "
     "keep a pool's max_size below the limit, or ask the instructor to raise it."),
    ("password authentication failed",
     "the server rejected the password for role {user}, or that role does not exist (the server does not "
     "say which, on purpose). Check the user and password in PGFACTORY_DSN / PGUSER / PGPASSWORD / .env; "
     "for the kit's own server the lesson's credentials are in .pgfactory/kit.env (run `pgfactory-kit up`); "
     "in a workshop, use the line the instructor gave you."),
    ("permission denied for database",
     "role {user} may not connect to database {dbname} (no CONNECT privilege). Connect to your own "
     "database (in a workshop: the one named in your DSN), or ask the database's owner for access."),
    ("role \"",
     "role {user} does not exist on this server. Use an existing role, or run `pgfactory-kit up` "
     "to get the kit's server, which creates it."),
    ("database \"",
     "database {dbname} does not exist on this server. Create it, pick another with PGDATABASE, or run "
     "`pgfactory-kit up` to get the kit's server, which creates it."),
    ("connection refused",
     "nothing is listening on {host}:{port}. Start the database with `pgfactory-kit up` "
     "(or `docker compose up -d --wait`), or point the kit elsewhere with PGFACTORY_DSN."),
    ("no such file or directory",
     "no server socket at {host}. Start the database with `pgfactory-kit up`, or use host=127.0.0.1."),
    ("timeout expired",
     "the server at {host}:{port} accepted the connection but did not answer within connect_timeout={timeout}s. "
     "It may be overloaded, behind a firewall, or not a PostgreSQL server; check the host and port "
     "(`pgfactory-kit status` for the kit's own server)."),
    ("too many clients",
     "the server is at max_connections. Close idle connections, use a pool with a smaller max_size, "
     "or put PgBouncer in front (see notebook 06)."),
    ("remaining connection slots are reserved",
     "the server is at max_connections (the last slots are reserved for superusers). Use fewer "
     "connections: a pool with a smaller max_size, or PgBouncer."),
    ("the database system is starting up",
     "the server is still starting; wait a few seconds and retry (`pgfactory-kit status`)."),
    ("the database system is shutting down",
     "the server is stopping; start it again with `pgfactory-kit up` (or wait for its restart) and retry."),
    ("could not translate host name",
     "the host name {host} could not be resolved. Check PGHOST / PGFACTORY_DSN for a typo."),
    ("server does not support ssl",
     "sslmode={sslmode} needs a server with TLS; this one has none (the pip-installed binaries "
     "are built without SSL). Use sslmode=disable/prefer, or a server with TLS."),
    ("expected authentication request",
     "something that is not PostgreSQL answers on {host}:{port}. Check the port (the kit's server uses "
     "15432 by default; `pgfactory-kit status` shows it)."),
    ("received invalid response to ssl negotiation",
     "something that is not PostgreSQL answers on {host}:{port}. Check the port (the kit's server uses "
     "15432 by default; `pgfactory-kit status` shows it)."),
    ("unsupported startup parameter",
     "this is PgBouncer, which refuses server settings sent at connect time (make_factory(session=...) sends "
     "them as libpq `options`). With transaction pooling they would not stick anyway: set them per "
     "transaction with SET LOCAL, or connect to PostgreSQL directly."),
    ("server closed the connection unexpectedly",
     "the server ended the connection during start-up; it may have crashed or be restarting. Look at its "
     "log (`pgfactory-kit status` shows where) and retry."),
]
_DEFAULT_ADVICE = "check that the server is running and the settings are right (`pgfactory-kit status`)."


class KitError(Exception):
    """The root of every exception the kit raises on purpose (the tree is in this module's docstring)."""


class KitConnectError(KitError, psycopg2.OperationalError):
    """A connection failure explained: the server's words, what was tried, and what to do.

    Attributes: ``server_message`` (the driver's text, password scrubbed), ``tried`` and ``advice``."""

    def __init__(self, message: str = "", *, server_message: str = "", tried: str = "", advice: str = "") -> None:
        super().__init__(message)
        self.server_message = server_message
        self.tried = tried
        self.advice = advice


def scrub(text: str, password: str | None) -> str:
    """``text`` with every occurrence of ``password`` replaced by ``****``.

    Passwords shorter than 4 characters are left alone: replacing every ``x`` in a message would
    garble it, and such a password is no secret anyway (the server's own words never contain it)."""
    if password and len(password) >= 4:
        text = text.replace(password, "****")
    return text


def describe_attempt(settings: ConnectionSettings) -> str:
    """What the kit tried, in words: transport, address, role, database, timeout (never the password)."""
    if settings.transport == "unix socket":
        where = f"the Unix socket in {settings.host} (port {settings.port})"
    else:
        where = f"{settings.transport} to {settings.host}:{settings.port}"
    auth = "with a password" if settings.password else "without a password"
    return (f"{where} as role {settings.user!r} {auth}, database {settings.dbname!r}, "
            f"waiting at most connect_timeout={settings.connect_timeout}s")


def advice_for(server_words: str, settings: ConnectionSettings) -> str:
    """The 'what to do next' sentence matching the server's (or libpq's) words."""
    lowered = server_words.lower()
    advice = next((text for needle, text in _ADVICE if needle in lowered), _DEFAULT_ADVICE)
    return advice.format(user=repr(settings.user), dbname=repr(settings.dbname), host=settings.host,
                         port=settings.port, timeout=settings.connect_timeout, sslmode=settings.sslmode)


def explain_connect_error(exc: BaseException, settings: ConnectionSettings) -> KitConnectError:
    """Wrap a psycopg2 connect failure in a KitConnectError whose message says what happened,
    what the kit tried and what to do next; the password is scrubbed from all of it."""
    raw = str(exc).strip()
    advice = advice_for(raw, settings)  # matched on the driver's own words, before scrubbing
    server_words = scrub(raw, settings.password) or type(exc).__name__
    tried = describe_attempt(settings)
    lines = [line.strip() for line in server_words.splitlines() if line.strip()]
    happened = " ".join(lines[:2])  # the error and, when there is one, its DETAIL line
    message = (f"could not connect to {settings.masked_dsn()}: {happened}\n"
               f"What the kit tried: {tried}.\n"
               f"What to do: {advice}")
    return KitConnectError(message, server_message=server_words, tried=tried, advice=advice)


class ServerError(KitError, RuntimeError):
    """The kit's own PostgreSQL could not do what was asked; the message says what to do next."""


class BinariesMissingError(ServerError):
    """No PostgreSQL server binaries were found."""


class PortInUseError(ServerError):
    """Something else already listens on the port the kit's server wants."""


class DataDirNotWritableError(ServerError):
    """The data directory cannot be created or written."""


class ServerStartError(ServerError):
    """The server was launched but did not come up; the message carries the tail of its log."""


class PgBouncerError(ServerError):
    """The kit's local PgBouncer could not do what was asked; the message says what to do next."""


class PgBouncerMissingError(PgBouncerError):
    """PgBouncer is not installed."""


class ProvisionError(KitError, RuntimeError):
    """Workshop provisioning cannot go ahead; the message says why and what to change."""


class StrategyUnavailable(KitError, RuntimeError):
    """A bench strategy this installation or server cannot run; the bench skips it with a note."""


class PoolTimeout(KitError, psycopg2.OperationalError):
    """No connection became available within the timeout."""


class PoolClosed(KitError, psycopg2.OperationalError):
    """The pool is closed: it hands out no more connections."""
