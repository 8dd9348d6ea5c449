"""pgfactory-kit: PostgreSQL connection factories and connection reuse with psycopg2, taught and measured.

The public API is imported here; module paths are not the contract. The package has layers that
import only downward (``tests/test_layers.py`` checks it)::

    lessons/     what the notebooks call, exercise checkers, notebook execution, report
    measuring/   bench runner and strategies, stats, DelayProxy, machine, plots
    pooling/     ReusedConnection, ConnectionPool and their helpers  (the code to copy)
    servers/     LocalServer, LocalPgBouncer, provisioning, seeding
    settings, factory, errors, paths   where to connect, how, and what went wrong

``cli/`` (the ``pgfactory-kit`` command) may import from all of them.
"""
from .errors import PoolClosed, PoolTimeout
from .factory import KitConnection, make_factory
from .pooling.pool import ConnectionPool
from .pooling.reuse import ReusedConnection
from .servers.postgres import LocalServer
from .settings import ConnectionSettings

__all__ = ["ConnectionSettings", "make_factory", "KitConnection", "ReusedConnection", "ConnectionPool",
           "PoolTimeout", "PoolClosed", "LocalServer"]
__version__ = "0.1.0"
