"""The lab's servers: the kit's own PostgreSQL (postgres.py, ``LocalServer``), a local PgBouncer
(pgbouncer.py), the daemon plumbing they share (daemon.py), the service user that runs them as root
(service_user.py), workshop provisioning (provision.py), SCRAM verifiers (scram.py) and the Docker
Compose database (compose.py)."""
from .pgbouncer import LocalPgBouncer, find_pgbouncer
from .postgres import LocalServer

__all__ = ["LocalServer", "LocalPgBouncer", "find_pgbouncer"]
