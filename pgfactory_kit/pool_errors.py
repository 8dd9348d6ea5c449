"""The pool's errors: subclasses of ``psycopg2.OperationalError``, so one ``except`` catches them all."""
from __future__ import annotations

import psycopg2


class PoolTimeout(psycopg2.OperationalError):
    """No connection became available within the timeout."""


class PoolClosed(psycopg2.OperationalError):
    """The pool is closed: it hands out no more connections."""
