"""Errors that say what happened, what the kit tried, and what to do next — never the password."""
from __future__ import annotations

import psycopg2

from .settings import ConnectionSettings

_ADVICE = [
    ("password authentication failed",
     "the server rejected the password for role {user}. Check PGPASSWORD / PGFACTORY_DSN / .env; "
     "for the kit's own server the lesson's credentials are in .pgfactory/kit.env (run `pgfactory-kit up`)."),
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
     "the server at {host}:{port} did not answer within connect_timeout={timeout}s. It may be "
     "overloaded, behind a firewall, or not a PostgreSQL server; check the host and port."),
    ("too many clients",
     "the server is at max_connections. Close idle connections, use a pool with a smaller max_size, "
     "or put PgBouncer in front (see notebook 05)."),
    ("remaining connection slots are reserved",
     "the server is at max_connections (the last slots are reserved for superusers). Use fewer "
     "connections: a pool with a smaller max_size, or PgBouncer."),
    ("too many connections for role",
     "role {user} has reached its CONNECTION LIMIT. Close connections you hold (pool.close()), "
     "or ask the instructor to raise the limit."),
    ("could not translate host name",
     "the host name {host} could not be resolved. Check PGHOST / PGFACTORY_DSN for a typo."),
    ("server does not support ssl",
     "sslmode={sslmode} needs a server with TLS; this one has none (the pip-installed binaries "
     "are built without SSL). Use sslmode=disable/prefer, or a server with TLS."),
]


class KitConnectError(psycopg2.OperationalError):
    """A connection failure explained: the server's words, what was tried, and what to do."""


def scrub(text: str, password: str | None) -> str:
    """``text`` with every occurrence of ``password`` replaced by ``****``."""
    if password:
        text = text.replace(password, "****")
    return text


def explain_connect_error(exc: BaseException, settings: ConnectionSettings) -> KitConnectError:
    """Wrap a psycopg2 connect failure in a KitConnectError whose message says what to do."""
    server_words = scrub(str(exc).strip(), settings.password) or type(exc).__name__
    lowered = server_words.lower()
    advice = "check that the server is running and the settings are right (`pgfactory-kit status`)."
    for needle, text in _ADVICE:
        if needle in lowered:
            advice = text
            break
    advice = advice.format(user=repr(settings.user), dbname=repr(settings.dbname), host=settings.host,
                           port=settings.port, timeout=settings.connect_timeout, sslmode=settings.sslmode)
    first_line = server_words.splitlines()[0] if server_words else ""
    message = (f"could not connect to {settings.masked_dsn()}: {first_line}\n"
               f"What to do: {advice}")
    err = KitConnectError(message)
    err.server_message = server_words  # type: ignore[attr-defined]
    return err


class ServerError(RuntimeError):
    """The kit's own PostgreSQL could not do what was asked; the message says what to do next."""


class BinariesMissingError(ServerError):
    """No PostgreSQL server binaries were found."""


class PortInUseError(ServerError):
    """Something else already listens on the port the kit's server wants."""


class DataDirNotWritableError(ServerError):
    """The data directory cannot be created or written."""


class ServerStartError(ServerError):
    """The server was launched but did not come up; the message carries the tail of its log."""
