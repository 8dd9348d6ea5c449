"""JupyterHub for a room of learners: a ``pre_spawn_hook`` that gives each hub user a database of their own.

On each spawn the hub user gets a learner role and database from ``provision`` (the same code as
``pgfactory-kit provision``: idempotent, passwords kept in the credentials file, mode 0600) and the
single-user server's environment names them: ``PGHOST``/``PGPORT``/``PGDATABASE``/``PGUSER`` and
``PGPASSWORD``, which ``ConnectionSettings.from_env()`` (and psql) read. When the room does not fit the
server's ``max_connections`` at the lessons' connection limit, learners are pointed at PgBouncer instead.

Promises: a hub user keeps the same role across spawns and hub restarts (the name -> learner map is a
file next to the credentials); no password is logged or shown in a repr; the hub's event loop is never
blocked by the database work (it runs in a thread).
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock

from ..errors import ProvisionError
from ..settings import ConnectionSettings
from . import provision as prov

MAP_FILE = "hub-learners.json"


class Bouncer(Protocol):
    """What the room needs of a PgBouncer (``LocalPgBouncer`` is one): ``start()`` is idempotent and makes a
    running one re-read its auth file, so newly provisioned learners can log in through it."""

    def start(self) -> ConnectionSettings: ...


@dataclass(frozen=True)
class Placement:
    """Where the room's learners connect, and why: straight to the server, or through PgBouncer."""

    via_pgbouncer: bool
    connection_limit: int
    reason: str


class RoomDatabase:
    """One learner role + database per hub user, for ``room_size`` learners.

    ``admin_settings``: a superuser on the shared server (``None``: ``PGFACTORY_ADMIN_DSN``).
    ``state_dir``: where the credentials file and the user map live (the hub's own folder, not shared).
    ``host``: the server's address as learners reach it, when it differs from the admin's.
    ``pgbouncer``: used when the room does not fit ``max_connections``; without one that is an error."""

    def __init__(self, admin_settings: ConnectionSettings | None = None, *, room_size: int,
                 state_dir: str | os.PathLike[str], prefix: str = prov.DEFAULT_PREFIX, host: str | None = None,
                 pgbouncer: Bouncer | None = None) -> None:
        prov.learner_names(prefix, room_size)  # checks the prefix and the size
        self.admin_settings = admin_settings or _admin_from_env()
        self.room_size = room_size
        self.prefix = prefix
        self.host = host
        self.pgbouncer = pgbouncer
        self.state_dir = Path(state_dir)
        self.credentials_file = self.state_dir / f"{prefix}-credentials.csv"
        self.map_file = self.state_dir / MAP_FILE
        self._placement: Placement | None = None

    def __repr__(self) -> str:
        return (f"RoomDatabase(admin={self.admin_settings.masked_dsn()!r}, room_size={self.room_size}, "
                f"prefix={self.prefix!r}, state_dir={str(self.state_dir)!r})")

    # ------------------------------------------------------------------ hub hooks
    async def pre_spawn_hook(self, spawner: Any) -> None:
        """``c.Spawner.pre_spawn_hook``: provision ``spawner.user.name`` and put their settings in the
        single-user server's environment."""
        env = await asyncio.to_thread(self.environment_for, spawner.user.name)
        spawner.environment.update(env)
        spawner.log.info("pgfactory-kit: %s connects as %s to %s:%s", spawner.user.name, env["PGUSER"],
                         env["PGHOST"], env["PGPORT"])

    def environment_for(self, username: str) -> dict[str, str]:
        """The variables a hub user's server needs; provisions them first (idempotent)."""
        learner = self.learner_for(username)
        settings = self._settings_for(learner)
        return {
            "PGHOST": settings.host, "PGPORT": str(settings.port), "PGDATABASE": settings.dbname,
            "PGUSER": settings.user, "PGPASSWORD": settings.password or "",
            "PGAPPNAME": settings.application_name, "PGFACTORY_LEARNER": learner.name,
            **({"PGSSLMODE": settings.sslmode} if settings.sslmode else {}),
        }

    # ------------------------------------------------------------------ steps
    def placement(self) -> Placement:
        """Direct when every learner of the room can have at least ``MIN_LIMIT`` connections, else PgBouncer."""
        if self._placement is None:
            budget = prov.check(self.admin_settings, self.prefix).budget
            share = budget.available // self.room_size
            if share >= prov.MIN_LIMIT:
                self._placement = Placement(False, min(prov.RECOMMENDED_LIMIT, share),
                                            f"{self.room_size} learners fit: {budget.arithmetic()}")
            elif self.pgbouncer is None:
                raise ProvisionError(
                    f"a room of {self.room_size} does not fit: {budget.arithmetic()} connections, {share} each "
                    f"(at least {prov.MIN_LIMIT} needed). What to do: pass pgbouncer=LocalPgBouncer(...) to "
                    "RoomDatabase, or raise max_connections on the server.")
            elif share < 1:
                raise ProvisionError(
                    f"a room of {self.room_size} does not fit even through PgBouncer: {budget.arithmetic()} "
                    "server connections, fewer than one per learner. What to do: raise max_connections.")
            else:
                self._placement = Placement(True, share, f"{self.room_size} learners do not fit directly "
                                            f"({budget.arithmetic()}): through PgBouncer, {share} server "
                                            "connection(s) each")
        return self._placement

    def learner_for(self, username: str) -> prov.Learner:
        """The learner account of ``username`` (numbered in order of first spawn), provisioned now."""
        placement = self.placement()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        with FileLock(str(self.state_dir / ".hub.lock"), timeout=60):
            mapping = self._read_map()
            if username not in mapping:
                if len(mapping) >= self.room_size:
                    raise ProvisionError(f"the room is full: {self.room_size} learners have a database already. "
                                         "What to do: raise room_size in jupyterhub_config.py.")
                mapping[username] = len(mapping) + 1
                self._write_map(mapping)
            count = max(mapping.values())
            result = prov.provision(self.admin_settings, count, self.prefix,
                                    connection_limit=placement.connection_limit, out=self.credentials_file,
                                    host=self.host)
        name = f"{self.prefix}{mapping[username]}"
        learner = next(item for item in result.learners if item.name == name)
        if learner.password is None:
            raise ProvisionError(f"learner {name} exists but its password is not in {self.credentials_file}. "
                                 "What to do: `pgfactory-kit provision --reset-passwords` with that file.")
        return learner

    def _settings_for(self, learner: prov.Learner) -> ConnectionSettings:
        settings = learner.settings(self.host or self.admin_settings.host, self.admin_settings.port,
                                    self.admin_settings.sslmode)
        if self.placement().via_pgbouncer and self.pgbouncer is not None:
            bouncer = self.pgbouncer.start()  # re-reads the auth file: the new learner can log in
            settings = settings.with_(host=bouncer.host, port=bouncer.port)
        return settings

    def _read_map(self) -> dict[str, int]:
        if not self.map_file.is_file():
            return {}
        data = json.loads(self.map_file.read_text(encoding="utf-8"))
        return {str(name): int(number) for name, number in data.items()}

    def _write_map(self, mapping: Mapping[str, int]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=f".{MAP_FILE}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(mapping), handle, indent=1, sort_keys=True)
        os.replace(tmp, self.map_file)


def _admin_from_env() -> ConnectionSettings:
    dsn = os.environ.get("PGFACTORY_ADMIN_DSN")
    if not dsn:
        raise ProvisionError("RoomDatabase needs a superuser: pass admin_settings=ConnectionSettings(...) or set "
                             "PGFACTORY_ADMIN_DSN in the hub's environment.")
    return ConnectionSettings.from_dsn(dsn)
