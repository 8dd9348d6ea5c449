"""Where to connect: ConnectionSettings, read from arguments, a DSN, the environment or an env file.

Promises: the password never appears in ``repr()``, in ``masked_dsn()`` or in any error raised here.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from . import checks
from .paths import find_upwards, kit_env_file

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 15432
DEFAULT_PGBOUNCER_PORT = 16432  # the local PgBouncer and docker-compose's (.env.example: PGBOUNCER_PORT)
DEFAULT_DBNAME = "mydatabase"
DEFAULT_USER = "myuser"
DEFAULT_PASSWORD = "mypassword"
MASK = "****"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# libpq keywords we understand; anything else in a DSN is an error that names the key.
_KEYWORDS = {
    "host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "connect_timeout",
    "application_name", "passfile", "options", "sslrootcert", "sslcert", "sslkey",
    "target_session_attrs", "keepalives", "keepalives_idle", "gssencmode", "channel_binding",
}
_URL_ALIASES = {"database": "dbname", "username": "user"}


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything needed to open a psycopg2 connection. Frozen; hashable; safe to print."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    dbname: str = DEFAULT_DBNAME
    user: str = DEFAULT_USER
    password: str | None = field(default=None, repr=False)
    sslmode: str | None = None
    connect_timeout: int = 10
    application_name: str = "pgfactory_kit"

    def __post_init__(self) -> None:
        """Check every field, naming it (TypeError: wrong kind, ValueError: out of range). Numbers may come
        as text (from a DSN or the environment)."""
        port = checks.whole_number("port", self.port, minimum=1, maximum=65535, allow_text=True,
                                   hint="check PGPORT / PGFACTORY_DSN")
        object.__setattr__(self, "port", port)
        timeout = checks.whole_number("connect_timeout", self.connect_timeout, minimum=0, maximum=86_400,
                                      allow_text=True, hint="seconds to wait for the server; 0 waits forever")
        object.__setattr__(self, "connect_timeout", timeout)
        for name in ("host", "dbname", "user"):
            checks.text(name, getattr(self, name))
        kind = type(self.password).__name__  # never the value: it is a password
        if self.password is not None and not isinstance(self.password, str):
            raise TypeError(f"password must be a string or None, got a {kind}")
        checks.one_of("sslmode", self.sslmode, SSLMODES, allow_none=True)
        if not isinstance(self.application_name, str):
            raise TypeError(f"application_name must be a string, got {self.application_name!r}")

    def __repr__(self) -> str:
        pw = None if self.password is None else MASK
        return (
            f"ConnectionSettings(host={self.host!r}, port={self.port}, dbname={self.dbname!r}, "
            f"user={self.user!r}, password={pw!r}, sslmode={self.sslmode!r}, "
            f"connect_timeout={self.connect_timeout}, application_name={self.application_name!r})"
        )

    __str__ = __repr__

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_dsn(cls, dsn: str) -> ConnectionSettings:
        """Parse a ``postgresql://`` URL or a libpq ``key=value`` string.

        Raises ValueError saying what is wrong; the password is never echoed.
        """
        if not isinstance(dsn, str) or not dsn.strip():
            raise ValueError("empty DSN: expected 'postgresql://user:password@host:port/dbname' "
                             "or 'host=... port=... dbname=... user=...'")
        text = dsn.strip()
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
            params = _parse_url(text)
        else:
            params = _parse_keyvalue(text)
        return cls._from_params(params)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConnectionSettings:
        """Settings from, in order: PGFACTORY_DSN / DATABASE_URL; libpq's PG* variables; the env file
        written by ``pgfactory-kit up``; ``.env`` (the docker-compose credentials); the kit's defaults."""
        env = os.environ if environ is None else environ
        for name in ("PGFACTORY_DSN", "DATABASE_URL"):
            if env.get(name):
                try:
                    return cls.from_dsn(env[name])
                except ValueError as exc:
                    raise ValueError(f"{name} is not a valid DSN: {exc}") from None
        pg_vars = {k: env[k] for k in _PG_ENV if env.get(k)}
        if {"PGHOST", "PGPORT", "PGDATABASE", "PGUSER"} & pg_vars.keys():
            return cls._from_pg_vars(pg_vars)
        kit_file = kit_env_file(env)
        if kit_file is not None and kit_file.is_file():
            return cls.from_env_file(kit_file)
        dot_env = find_upwards(".env", env)
        if dot_env is not None:
            return cls.from_compose_env(dot_env)
        return cls(password=pg_vars.get("PGPASSWORD", DEFAULT_PASSWORD))

    @classmethod
    def from_env_file(cls, path: str | os.PathLike[str]) -> ConnectionSettings:
        """Read a file of ``PGHOST=…`` lines as written by ``pgfactory-kit up``.

        The password comes from ``PGPASSWORD`` or from the pgpass file that ``PGPASSFILE`` names."""
        values = read_env_file(path)
        try:
            return cls._from_pg_vars(values, base=Path(path).parent)
        except (TypeError, ValueError) as exc:  # e.g. a port an older version wrote
            raise ValueError(f"{path} is not usable: {exc}. What to do: `pgfactory-kit up` rewrites it "
                             "(or delete the file)") from None

    @classmethod
    def from_compose_env(cls, path: str | os.PathLike[str]) -> ConnectionSettings:
        """Read docker-compose's ``.env`` (POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB / POSTGRES_PORT)."""
        values = read_env_file(path)
        return cls(
            host=values.get("POSTGRES_HOST", DEFAULT_HOST),
            port=values.get("POSTGRES_PORT", DEFAULT_PORT),
            dbname=values.get("POSTGRES_DB", DEFAULT_DBNAME),
            user=values.get("POSTGRES_USER", DEFAULT_USER),
            password=values.get("POSTGRES_PASSWORD"),
        )

    @classmethod
    def _from_pg_vars(cls, values: Mapping[str, str], base: Path | None = None) -> ConnectionSettings:
        params = {key: values[var] for var, key in _PG_ENV.items() if values.get(var)}
        settings = cls._from_params({k: v for k, v in params.items() if k != "passfile"})
        if settings.password is None and params.get("passfile"):
            passfile = Path(params["passfile"])
            if base is not None and not passfile.is_absolute():
                passfile = base / passfile
            password = read_pgpass(passfile, settings)
            if password is not None:
                settings = replace(settings, password=password)
        return settings

    @classmethod
    def _from_params(cls, params: Mapping[str, str]) -> ConnectionSettings:
        kwargs: dict[str, Any] = {}
        for key in ("host", "port", "dbname", "user", "password", "sslmode",
                    "connect_timeout", "application_name"):
            if params.get(key) not in (None, ""):
                kwargs[key] = params[key]
        if "hostaddr" in params and "host" not in kwargs:
            kwargs["host"] = params["hostaddr"]
        return cls(**kwargs)

    # ----------------------------------------------------------------- outputs
    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect`` (includes the password: do not log them)."""
        kwargs: dict[str, Any] = {
            "host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user,
            "connect_timeout": self.connect_timeout, "application_name": self.application_name,
        }
        if self.password is not None:
            kwargs["password"] = self.password
        if self.sslmode:
            kwargs["sslmode"] = self.sslmode
        return kwargs

    def dsn(self) -> str:
        """The full URL, password included: for handing to other tools, never for printing."""
        return self._url(self.password)

    def masked_dsn(self) -> str:
        """The URL with the password replaced by ``****``: safe to print and log."""
        return self._url(None if self.password is None else MASK)

    def _url(self, password: str | None) -> str:
        auth = quote(self.user, safe="")
        if password is not None:
            auth += ":" + (password if password == MASK else quote(password, safe=""))
        host = self.host
        if host.startswith("/"):
            netloc = f"{auth}@"
            query = [f"host={quote(host, safe='/')}", f"port={self.port}"]
        else:
            netloc = f"{auth}@{'[' + host + ']' if ':' in host else host}:{self.port}"
            query = []
        if self.sslmode:
            query.append(f"sslmode={self.sslmode}")
        tail = ("?" + "&".join(query)) if query else ""
        return f"postgresql://{netloc}/{quote(self.dbname, safe='')}{tail}"

    def with_(self, **changes: Any) -> ConnectionSettings:
        """A copy with some fields changed (``dataclasses.replace`` under a friendlier name)."""
        return replace(self, **changes)

    @property
    def transport(self) -> str:
        """'unix socket' when host is a directory, 'TLS' when sslmode requires it, else 'TCP'."""
        if self.host.startswith("/"):
            return "unix socket"
        if self.sslmode in ("require", "verify-ca", "verify-full"):
            return "TLS"
        return "TCP"


_PG_ENV = {
    "PGHOST": "host", "PGPORT": "port", "PGDATABASE": "dbname", "PGUSER": "user",
    "PGPASSWORD": "password", "PGSSLMODE": "sslmode", "PGCONNECT_TIMEOUT": "connect_timeout",
    "PGAPPNAME": "application_name", "PGPASSFILE": "passfile",
}


def _parse_url(text: str) -> dict[str, str]:
    try:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        hostname = parts.hostname
        port = parts.port  # raises ValueError on a non-numeric port
    except ValueError as exc:
        reason = "the port is not a number between 0 and 65535" if "port" in str(exc) else "it cannot be parsed"
        raise ValueError(f"malformed DSN URL: {reason}; expected "
                         "postgresql://user:password@host:port/dbname") from None
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"unsupported DSN scheme {scheme!r}: use postgresql://")
    params: dict[str, str] = {}
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password is not None:
        params["password"] = unquote(parts.password)
    if hostname:
        params["host"] = hostname
    if port is not None:
        params["port"] = str(port)
    if parts.path and parts.path != "/":
        params["dbname"] = unquote(parts.path.lstrip("/"))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        key = _URL_ALIASES.get(key, key)
        if key not in _KEYWORDS:
            raise ValueError(f"unknown DSN parameter {key!r}; known: {', '.join(sorted(_KEYWORDS))}")
        params[key] = value
    return params


def _parse_keyvalue(text: str) -> dict[str, str]:
    """libpq's ``key=value`` syntax: values may be single-quoted, with backslash escapes."""
    params: dict[str, str] = {}
    i, position = _skip_spaces(text, 0), 0
    while i < len(text):
        position += 1
        start = i
        while i < len(text) and not text[i].isspace() and text[i] != "=":
            i += 1
        key = text[start:i]
        i = _skip_spaces(text, i)
        if i >= len(text) or text[i] != "=":
            shown = f"{key!r}" if key in _KEYWORDS else f"item {position}"
            raise ValueError(f"malformed DSN: {shown} has no '=value' (write key=value pairs "
                             "separated by spaces; quote values containing spaces: key='a b')")
        if key not in _KEYWORDS:
            raise ValueError(f"malformed DSN: unknown parameter {key!r} at item {position}; "
                             f"known: {', '.join(sorted(_KEYWORDS))}")
        params[key], i = _read_value(text, _skip_spaces(text, i + 1), key)
        i = _skip_spaces(text, i)
    if not params:
        raise ValueError("malformed DSN: no key=value pairs found")
    return params


def _skip_spaces(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _read_value(text: str, i: int, key: str) -> tuple[str, int]:
    """The value starting at ``text[i]`` and the index after it. Quoted (``'a b'``) it ends at the closing
    quote, bare at a space; in both a backslash takes the next character as it is."""
    quoted = i < len(text) and text[i] == "'"
    i += quoted
    chars: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
        elif (ch == "'") if quoted else ch.isspace():
            return "".join(chars), i + quoted
        else:
            chars.append(ch)
            i += 1
    if quoted:
        raise ValueError(f"malformed DSN: the quoted value of {key!r} is not closed with '")
    return "".join(chars), i


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse ``KEY=value`` lines (``export`` prefixes, quotes and comments allowed)."""
    values: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].strip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def read_pgpass(path: Path, settings: ConnectionSettings) -> str | None:
    """The password a pgpass file gives for these settings, or None."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    wanted = [settings.host, str(settings.port), settings.dbname, settings.user]
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        fields = re.split(r"(?<!\\):", line, maxsplit=4)
        if len(fields) != 5:
            continue
        fields = [f.replace("\\:", ":").replace("\\\\", "\\") for f in fields]
        if all(f in ("*", w) for f, w in zip(fields[:4], wanted, strict=True)):
            return fields[4]
    return None


def pgpass_line(settings: ConnectionSettings) -> str:
    """One pgpass line for these settings (escaping ``:`` and ``\\``)."""
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")
    fields = [settings.host, str(settings.port), settings.dbname, settings.user, settings.password or ""]
    return ":".join(esc(f) for f in fields)
