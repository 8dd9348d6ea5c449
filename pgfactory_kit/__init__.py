"""pgfactory-kit: PostgreSQL connection factories and connection reuse with psycopg2, taught and measured."""
from .factory import KitConnection, make_factory
from .settings import ConnectionSettings

__all__ = ["ConnectionSettings", "make_factory", "KitConnection", "ReusedConnection", "ConnectionPool",
           "PoolTimeout", "PoolClosed", "LocalServer"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported lazily so that `import pgfactory_kit` stays cheap and works while parts are missing.
    if name == "ReusedConnection":
        from .reuse import ReusedConnection
        return ReusedConnection
    if name in ("ConnectionPool", "PoolTimeout", "PoolClosed"):
        from . import pool
        return getattr(pool, name)
    if name == "LocalServer":
        from .server import LocalServer
        return LocalServer
    raise AttributeError(f"module 'pgfactory_kit' has no attribute {name!r}")
