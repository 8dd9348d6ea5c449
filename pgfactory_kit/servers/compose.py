"""The Docker path: the database that ``docker compose up`` runs, as described by the project's ``.env``.

``pgfactory-kit up`` uses it instead of starting the kit's own server when it answers with the
``.env`` credentials; ``ConnectionSettings.from_env()`` then resolves to it through ``.env``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg2

from .. import paths
from ..settings import DEFAULT_PGBOUNCER_PORT, ConnectionSettings, read_env_file

if TYPE_CHECKING:
    from .postgres import LocalServer

PROBE_TIMEOUT_S = 3


def compose_env_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The project's ``.env`` (the docker-compose credentials), or None."""
    return paths.find_upwards(".env", environ)


def compose_settings(environ: Mapping[str, str] | None = None) -> ConnectionSettings | None:
    """The database that ``.env`` describes, or None when there is no ``.env``."""
    env_file = compose_env_file(environ)
    return None if env_file is None else ConnectionSettings.from_compose_env(env_file)


def compose_pgbouncer_settings(environ: Mapping[str, str] | None = None) -> ConnectionSettings | None:
    """The compose ``pgbouncer`` service (``PGBOUNCER_PORT``, default 16432), or None without ``.env``."""
    env_file = compose_env_file(environ)
    if env_file is None:
        return None
    port = read_env_file(env_file).get("PGBOUNCER_PORT") or DEFAULT_PGBOUNCER_PORT
    return ConnectionSettings.from_compose_env(env_file).with_(port=port)


def answers(settings: ConnectionSettings) -> bool:
    """Whether a server at ``settings`` accepts a connection with those credentials (a few seconds at most)."""
    if settings.password is None:
        return False
    probe = settings.with_(connect_timeout=PROBE_TIMEOUT_S, application_name="pgfactory_kit_probe")
    try:
        conn = psycopg2.connect(**probe.connect_kwargs())
    except (OSError, psycopg2.Error):
        return False
    conn.close()
    return True


def docker_database(environ: Mapping[str, str] | None = None) -> ConnectionSettings | None:
    """The ``.env`` database's settings when it answers and accepts those credentials, else None."""
    settings = compose_settings(environ)
    return settings if settings is not None and answers(settings) else None


def docker_instead_of(server: LocalServer, chosen: Iterable[object] = ()) -> ConnectionSettings | None:
    """The ``.env`` database, when the kit should use it instead of ``server``: no particular kit server
    was asked for (every value in ``chosen`` -- the CLI's --port/--data-dir/--bin-dir -- is None), the
    kit's own server does not run, and the ``.env`` database answers with its credentials."""
    if any(value is not None for value in chosen) or server.status().running:
        return None
    return docker_database()


def forget_kit_env_file(state_dir: Path) -> Path | None:
    """Remove ``<state_dir>/kit.env`` if ``pgfactory-kit up`` wrote it for the kit's own server (it
    would win over ``.env``); return its path if removed. Files the kit did not write are left alone."""
    kit_file = state_dir / paths.ENV_FILE_NAME
    try:
        written_by_kit = kit_file.read_text(encoding="utf-8").startswith("# Written by `pgfactory-kit up`")
    except OSError:
        return None
    if not written_by_kit:
        return None
    kit_file.unlink()
    return kit_file
