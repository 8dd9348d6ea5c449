"""ConnectionPool: a thread-safe pool of psycopg2 connections from any zero-argument factory.

The locking rule, in one sentence: every change to the pool's shared state happens while
holding ``self._lock``, and nothing slow (connecting, a query, a rollback, closing) ever does.

Each connection of the pool is in one state at a time (docs/pool.md has the full table):

    idle      on the ``_idle`` stack; the pool holds it, ready to lend
    lent      lent by ``getconn()``; the pool keeps only a weak reference, to notice a dropped one
    in_block  lent to a ``with pool.connection()`` block, which alone gives it back
    busy      owned for a moment by one thread, outside the lock: being reset, retired or closed

Borrowers that find no idle connection and no room to open one wait in line: ``_Waiter``
objects in a FIFO deque. A connection that comes back is handed to the first of them directly,
so nobody overtakes and no crowd of threads wakes up to fight over it.
"""
from __future__ import annotations

import collections
import itertools
import logging
import os
import random
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from time import monotonic
from typing import Any

import psycopg2
import psycopg2.extensions

from ..errors import PoolClosed, PoolTimeout
from . import fork
from .arguments import check_pool_arguments
from .health import TRUST_WINDOW, close_quietly, fit_to_lend, make_poller

__all__ = ["ConnectionPool", "PoolTimeout", "PoolClosed"]

Connection = psycopg2.extensions.connection
logger = logging.getLogger(__name__)

IDLE, LENT, IN_BLOCK, BUSY = "idle", "lent", "in_block", "busy"
_TX_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
_TX_UNKNOWN = psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN
_TX_OPEN = (psycopg2.extensions.TRANSACTION_STATUS_ACTIVE, psycopg2.extensions.TRANSACTION_STATUS_INTRANS,
            psycopg2.extensions.TRANSACTION_STATUS_INERROR)  # a transaction is open: commit() sends COMMIT
OPEN_ATTEMPTS = 60  # a background open retries at most this often (pauses grow to 1 s: about a minute)
_NAMES = itertools.count(1)


class _Pooled:
    """One connection of the pool and what the pool knows about it."""

    __slots__ = ("conn", "watch", "key", "state", "poller", "last_used", "trusted_until", "expires_at",
                 "idle_limit")

    def __init__(self, conn: Connection, pool: ConnectionPool) -> None:
        now = monotonic()
        self.conn: Connection | None = conn  # a strong reference while the pool holds it (idle, busy)
        # Its callback runs only if the connection dies while the pool does not hold it (lent) and
        # has not forgotten it (``_forget`` drops this reference first): a borrower dropped it.
        self.watch: weakref.ref | None = weakref.ref(conn, _on_drop(pool._self_ref, self))
        self.key = id(conn)  # its key in the pool's _records
        self.state = BUSY
        self.poller = make_poller(conn)
        self.last_used = now
        self.expires_at = now + pool.max_lifetime * random.uniform(0.9, 1.0)  # jitter: not all at once
        self.trusted_until = min(now + pool._trust, self.expires_at)  # lent with no check until then
        self.idle_limit = pool.max_idle * random.uniform(0.9, 1.0)


class _Waiter:
    """A borrower waiting in line. The pool lends it a connection, or gives it an error, directly.

    ``ready`` is a lock the waiter does not hold: it sleeps trying to take it, and the pool
    releases it to wake exactly this waiter (cheaper than an Event, which wraps a Condition)."""

    __slots__ = ("state", "ready", "conn", "rec", "error")

    def __init__(self, state: str) -> None:
        self.state = state  # LENT or IN_BLOCK: how the connection will be lent
        self.ready = threading.Lock()
        self.ready.acquire()
        self.conn: Connection | None = None
        self.rec: _Pooled | None = None
        self.error: BaseException | None = None

    def wake(self) -> None:
        """Called under the pool's lock, once ``conn`` or ``error`` is set."""
        self.ready.release()


class _Block:
    """``with pool.connection() as conn``: borrow, commit on success (roll back on error), give back."""

    __slots__ = ("pool", "timeout", "conn", "pid")

    def __init__(self, pool: ConnectionPool, timeout: float | None) -> None:
        self.pool, self.timeout, self.conn, self.pid = pool, timeout, None, 0

    def __enter__(self) -> Connection:
        if self.conn is not None:
            raise RuntimeError("this `pool.connection()` block is already in use; nest two blocks to get "
                               "two connections: `with pool.connection() as a, pool.connection() as b:`")
        self.conn, self.pid = self.pool._checkout(self.timeout, IN_BLOCK), os.getpid()
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            raise RuntimeError("this `pool.connection()` block holds no connection: it was not entered, "
                               "or it has already given its connection back")
        if self.pid != os.getpid():
            return  # entered before os.fork(): the parent's connection, neither ours to commit nor to return
        try:
            if exc_type is None and conn.get_transaction_status() in _TX_OPEN:
                conn.commit()
        finally:
            self.pool._give_back(conn, close=False, state=IN_BLOCK)  # rolls back whatever is left open


class ConnectionPool:
    """A thread-safe pool of connections made by ``factory`` (any zero-argument callable)."""

    def __init__(self, factory: Callable[[], Connection], *, min_size: int = 1, max_size: int = 10,
                 timeout: float = 30.0, max_lifetime: float = 3600.0, max_idle: float = 600.0,
                 check_after: float = 1.0, reset: Callable[[Connection], Any] | None = None,
                 name: str | None = None) -> None:
        check_pool_arguments(factory, min_size, max_size, timeout, max_lifetime, max_idle, check_after, reset)
        self.name = name or f"pool-{next(_NAMES)}"
        self.min_size, self.max_size, self.timeout = min_size, max_size, timeout
        self.max_lifetime, self.max_idle, self.check_after = max_lifetime, max_idle, check_after
        self._factory, self._reset_callback = factory, reset
        self._self_ref = weakref.ref(self)  # what lent connections' callbacks hold: never the pool itself
        self._trust = min(TRUST_WINDOW, check_after)  # used this recently: lent with no check at all
        self._start_empty()
        self._closed = False
        fork.register(self)
        try:
            for _ in range(min_size):  # a wrong password or a stopped server fails here, at once
                with self._lock:
                    self._size += 1
                self._put_back(self._connect_or_free_slot())
        except BaseException:
            self.close()
            raise

    def _start_empty(self) -> None:
        """The pool's shared state (guarded by ``_lock``) and its counters."""
        self._lock = threading.Lock()
        self._idle: collections.deque[_Pooled] = collections.deque()  # a stack: newest on the right
        self._waiting: collections.deque[_Waiter] = collections.deque()  # first come, first served
        self._records: dict[int, _Pooled] = {}  # id(conn) -> record, for every open connection
        self._size = 0  # connections open or being opened
        self._opening = 0  # of which: being opened in the background for waiters or min_size
        self._counts = dict.fromkeys(("requests_num", "requests_queued", "requests_wait_ms", "requests_errors",
                                      "connections_num", "connections_ms", "connections_errors",
                                      "connections_lost", "returns_bad"), 0)
        self._last_error = ""

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self._size}/{self.max_size} idle={len(self._idle)}"
        return f"<ConnectionPool {self.name!r} {state}>"

    # ------------------------------------------------------------------ public API
    def connection(self, timeout: float | None = None) -> _Block:
        """``with pool.connection() as conn:`` commits on success, rolls back on error, gives it back."""
        return _Block(self, timeout)

    def getconn(self, timeout: float | None = None) -> Connection:
        """Borrow a connection, waiting up to ``timeout`` seconds (default: the pool's) in line.

        Give it back with ``putconn()``. Raises PoolTimeout, or PoolClosed after ``close()``.
        """
        return self._checkout(timeout, LENT)

    def putconn(self, conn: Connection, close: bool = False) -> None:
        """Give back a connection from ``getconn()``: reset for the next borrower, or closed if broken or ``close``.

        A connection that is not this pool's, is returned twice, or belongs to a ``with`` block
        raises ValueError and leaves the pool unharmed.
        """
        self._give_back(conn, close=close, state=LENT)

    def stats(self) -> dict[str, int]:
        """Counters named like psycopg_pool's ``get_stats()`` (same meaning where both have a key)."""
        with self._lock:
            gauges = {"pool_min": self.min_size, "pool_max": self.max_size, "pool_size": self._size,
                      "pool_available": len(self._idle), "requests_waiting": len(self._waiting)}
            return gauges | {key: int(value) for key, value in self._counts.items()}

    def close(self) -> None:
        """Close idle connections now and lent ones as they come back; waiting borrowers get PoolClosed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = [self._forget(rec) for rec in self._idle]
            self._idle.clear()
            for waiter in self._waiting:
                waiter.error = PoolClosed(f"pool {self.name!r} was closed while this request waited")
                waiter.wake()
            self._waiting.clear()
        for conn in idle:
            close_quietly(conn)
        fork.unregister(self)

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ checkout
    def _checkout(self, timeout: float | None, state: str) -> Connection:
        """Lend a connection as ``state``: an idle one that passes its check, a new one, or one from the line."""
        timeout = self.timeout if timeout is None else timeout
        deadline = monotonic() + timeout
        for attempt in range(self.max_size + 2):  # bounded: each pass lends a connection or discards a bad one
            conn, rec = self._take(state, deadline, timeout, new_request=attempt == 0)
            if monotonic() < rec.trusted_until or self._fit(conn, rec):
                return conn
        raise psycopg2.OperationalError(
            f"pool {self.name!r}: discarded {self.max_size + 2} unusable connections in a row. "
            "What to do: check the server log; the factory may be returning broken connections.")

    def _take(self, state: str, deadline: float, timeout: float, new_request: bool) -> tuple[Connection, _Pooled]:
        """Lend an idle connection, or open a new one, or wait in line."""
        with self._lock:
            # Critical section: decide here whether a connection is ready, can be opened, or we wait.
            if self._closed:  # like psycopg_pool: a request to a closed pool is not counted
                raise self._closed_error()
            self._counts["requests_num"] += new_request
            if self._idle:
                rec = self._idle.pop()
                return self._lend(rec, state), rec
            if self._size >= self.max_size:
                waiter = _Waiter(state)
                self._waiting.append(waiter)
                self._counts["requests_queued"] += 1
            else:
                waiter = None
                self._size += 1  # the slot is ours; the connect happens below, outside the lock
        if waiter is not None:
            return self._wait(waiter, deadline, timeout)
        rec = self._connect_or_free_slot()
        with self._lock:
            closed = self._closed
            conn = self._forget(rec) if closed else self._lend(rec, state)
        if closed:
            close_quietly(conn)
            raise self._closed_error()
        return conn, rec

    def _wait(self, waiter: _Waiter, deadline: float, timeout: float) -> tuple[Connection, _Pooled]:
        """Sleep until the pool lends this waiter a connection (or an error), or the deadline passes."""
        started = monotonic()
        waiter.ready.acquire(timeout=max(0.0, deadline - started))
        with self._lock:
            # Critical section: either a connection was handed over, or we leave the line.
            self._counts["requests_wait_ms"] += (monotonic() - started) * 1000
            served = waiter.conn is not None or waiter.error is not None
            if not served:
                self._waiting.remove(waiter)
                self._counts["requests_errors"] += 1
                size, others, last_error = self._size, len(self._waiting), self._last_error
        if waiter.error is not None:
            raise waiter.error
        if served:
            return waiter.conn, waiter.rec
        hint = f" The last attempt to open a connection failed: {last_error}." if last_error else ""
        raise PoolTimeout(
            f"pool {self.name!r} (size {size}, max_size {self.max_size}) had no free connection after "
            f"waiting {monotonic() - started:.3f} s (timeout {timeout} s); {others} other requests are waiting."
            f"{hint} What to do: return connections promptly (use `with pool.connection()`), "
            "or raise max_size or timeout.")

    def _fit(self, conn: Connection, rec: _Pooled) -> bool:
        """Check a just-lent connection before the borrower sees it (outside the lock); discard it if unfit."""
        now = monotonic()
        if now >= rec.expires_at:
            self._discard(rec, conn)
            return False
        if fit_to_lend(conn, rec.poller, now - rec.last_used, self.check_after):
            return True
        logger.info("pool %r: replaced a connection the server had closed", self.name)
        self._discard(rec, conn, counter="connections_lost")
        return False

    def _lend(self, rec: _Pooled, state: str) -> Connection:
        """Lend ``rec`` as ``state`` (under the lock): from now on the pool holds it only weakly."""
        conn, rec.conn = rec.conn, None
        rec.state = state
        return conn

    # ------------------------------------------------------------------ return
    def _give_back(self, conn: Connection, *, close: bool, state: str) -> None:
        """A borrower's return. A clean one (no transaction open, no reset callback) is claimed and
        pooled in one critical section; any other is claimed, then reset or closed outside the lock."""
        if not isinstance(conn, Connection):
            raise TypeError(f"pool {self.name!r}: putconn() expects a connection it gave out, "
                            f"not {type(conn).__name__}")
        clean = not close and self._reset_callback is None and conn.get_transaction_status() == _TX_IDLE
        with self._lock:
            # Critical section: is this a lend we know, as ``state``? Then this return is the only one.
            rec = self._records.get(id(conn))
            if rec is None or rec.state != state or rec.watch is None or rec.watch() is not conn:
                raise ValueError(self._why_not_returnable(conn, rec))  # twice, foreign, or a block's
            rec.state, rec.conn = BUSY, conn
            now = monotonic()
            pooled = clean and now < rec.expires_at
            doomed = self._pool(rec, now) if pooled else []
        for stale in doomed:
            close_quietly(stale)
        if pooled:
            return
        if close:
            self._discard(rec, conn)
            return
        problem = self._reset(conn)
        if problem is not None:
            logger.warning("pool %r: a returned connection was discarded because %s", self.name, problem)
            self._discard(rec, conn, counter="returns_bad")
        elif monotonic() >= rec.expires_at:
            self._discard(rec, conn)
        else:
            self._put_back(rec)

    def _why_not_returnable(self, conn: Connection, rec: _Pooled | None) -> str:
        """The message for a return that is refused (under the lock), and why it must be."""
        if rec is None or rec.watch is None or rec.watch() is not conn:
            return (f"can't return {conn!r} to pool {self.name!r}: it does not come from this pool (a "
                    "connection lent before os.fork() belongs to the parent process). What to do: return a "
                    "connection to the pool that gave it out.")
        if rec.state == IN_BLOCK:
            return (f"can't putconn() a connection of pool {self.name!r} that a `with pool.connection()` "
                    "block holds: the block returns it when it ends, and returning it here too would lend "
                    "it to two borrowers. What to do: leave it to the block (or use getconn()/putconn()).")
        return (f"connection returned twice to pool {self.name!r}; the second return was refused and "
                "the pool is unharmed. What to do: return each connection once (`with pool.connection()` "
                "does it for you).")

    def _reset(self, conn: Connection) -> str | None:
        """Make a returned connection clean for its next borrower (outside the lock); say why not, if it can't be."""
        if conn.closed:
            return "it was closed"
        if conn.get_transaction_status() == _TX_UNKNOWN:
            return "its session with the server is lost"
        try:
            if conn.get_transaction_status() != _TX_IDLE:
                conn.rollback()
            if self._reset_callback is not None:
                self._reset_callback(conn)
                if conn.get_transaction_status() != _TX_IDLE:
                    return "the reset callback left a transaction open"
        except Exception as exc:  # noqa: BLE001 - any failure means the connection is not reusable
            return f"resetting it failed: {type(exc).__name__}: {str(exc).strip()}"
        return None

    def _put_back(self, rec: _Pooled, *, opened_for_others: bool = False) -> None:
        """Pool a usable busy connection (taking the lock); close what that retires, outside it."""
        with self._lock:
            self._opening -= opened_for_others
            doomed = self._pool(rec, monotonic())
        for conn in doomed:
            close_quietly(conn)

    def _pool(self, rec: _Pooled, now: float) -> list[Connection | None]:
        """Hand a busy connection to the first waiter, else push it on the idle stack (under the lock).

        Returns the connections to close after the lock is released: this one if the pool is
        closed, else those idle past their max_idle at the bottom of the stack, down to min_size.
        """
        # Critical section: decide here who gets the connection.
        if self._closed:
            return [self._forget(rec)]
        rec.last_used = now  # known good now: the next borrower needs no check for a moment
        rec.trusted_until = min(now + self._trust, rec.expires_at)
        if self._waiting:
            waiter = self._waiting.popleft()
            waiter.conn, waiter.rec = self._lend(rec, waiter.state), rec
            waiter.wake()
            return []
        rec.state = IDLE
        self._idle.append(rec)
        doomed = []
        while self._size > self.min_size and rec.last_used - self._idle[0].last_used > self._idle[0].idle_limit:
            doomed.append(self._forget(self._idle.popleft()))
        return doomed

    # ------------------------------------------------------------------ opening, discarding, forgetting
    def _connect(self) -> _Pooled:
        """Call the factory (outside the lock) and count the result; the caller holds the slot."""
        started = monotonic()
        try:
            conn = self._factory()
            if not isinstance(conn, Connection):
                raise TypeError(f"the factory of pool {self.name!r} returned {type(conn).__name__}, "
                                "not a psycopg2 connection")
        except BaseException as exc:
            with self._lock:
                self._counts["connections_errors"] += 1
                self._last_error = f"{type(exc).__name__}: {str(exc).strip()}"
            raise
        rec = _Pooled(conn, self)
        with self._lock:
            self._counts["connections_num"] += 1
            self._counts["connections_ms"] += (monotonic() - started) * 1000
            self._records[rec.key] = rec
        return rec

    def _connect_or_free_slot(self) -> _Pooled:
        """Open a connection for a slot the caller counted; if that fails, free the slot for the waiters.

        The freed slot goes to the first waiter (a background open): a failed connect never strands
        the borrowers queued behind it.
        """
        try:
            return self._connect()
        except BaseException:
            with self._lock:
                self._size -= 1
                opens = self._plan_opens(refill_min=False)
            self._open_in_background(opens)
            raise

    def _plan_opens(self, refill_min: bool = True) -> int:
        """How many connections to open in the background now, their slots counted (under the lock):
        one per waiter not already awaiting a background open, and enough to get back to min_size."""
        if self._closed:
            return 0
        wanted = len(self._waiting) - self._opening
        if refill_min:
            wanted = max(wanted, self.min_size - self._size)
        opens = max(0, min(wanted, self.max_size - self._size))
        self._size += opens
        self._opening += opens
        return opens

    def _open_in_background(self, count: int) -> None:
        """Start ``count`` short-lived threads, each opening one connection for a slot _plan_opens() counted."""
        for _ in range(count):
            try:
                threading.Thread(target=self._open_for_others, name=f"{self.name}-open", daemon=True).start()
            except RuntimeError:  # the interpreter is shutting down: give the slot back
                with self._lock:
                    self._size -= 1
                    self._opening -= 1

    def _open_for_others(self) -> None:
        """Open one connection and pool it (in its own thread). A failure is retried after a growing
        pause while someone waits or the pool is below min_size, at most OPEN_ATTEMPTS times."""
        for attempt in range(OPEN_ATTEMPTS):
            try:
                rec = self._connect()
            except Exception as exc:  # noqa: BLE001 - counted in stats; waiters see it in PoolTimeout
                with self._lock:
                    needed = not self._closed and bool(self._waiting or self._size <= self.min_size)
                if not needed:
                    break
                if attempt == 0:
                    logger.warning("pool %r: could not open a connection, retrying: %s", self.name, exc)
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
                continue
            self._put_back(rec, opened_for_others=True)
            return
        with self._lock:
            self._size -= 1
            self._opening -= 1

    def _discard(self, rec: _Pooled, conn: Connection, *, counter: str | None = None) -> None:
        """Close a connection the caller holds, free its slot, and open a replacement if one is needed."""
        with self._lock:
            self._forget(rec)
            if counter is not None:
                self._counts[counter] += 1
            opens = self._plan_opens()
        close_quietly(conn)
        self._open_in_background(opens)

    def _forget(self, rec: _Pooled) -> Connection | None:
        """Take ``rec`` off the books and free its slot (under the lock); returns its connection to close."""
        if self._records.get(rec.key) is rec:
            del self._records[rec.key]
        self._size -= 1
        conn, rec.conn, rec.watch, rec.state = rec.conn, None, None, "gone"
        return conn

    def _reclaim(self, rec: _Pooled) -> None:
        """Free the slot of a connection that a borrower dropped without returning it."""
        with self._lock:
            if self._records.get(rec.key) is not rec or rec.state not in (LENT, IN_BLOCK):
                return
            self._forget(rec)
            opens = self._plan_opens()
        self._open_in_background(opens)

    def _closed_error(self) -> PoolClosed:
        return PoolClosed(f"pool {self.name!r} is closed: it hands out no more connections. "
                          "What to do: create a new ConnectionPool.")

    # ------------------------------------------------------------------ fork safety (see fork.py)
    def _before_fork(self) -> None:
        self._lock.acquire()  # so the child inherits the books in a consistent state

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        """Start empty: every inherited socket pointed at /dev/null, every inherited record forgotten."""
        for rec in self._records.values():
            conn = rec.conn if rec.conn is not None else (rec.watch() if rec.watch is not None else None)
            if conn is not None and not conn.closed:
                fork.neutralise_fd(conn.fileno())
            rec.watch = None  # the parent's lent connections are not "dropped" when the child frees them
        self._start_empty()


def _on_drop(pool_ref: weakref.ref, rec: _Pooled) -> Callable[[weakref.ref], None]:
    """The weak reference's callback: a lent connection was garbage collected without being returned."""
    def dropped(_ref: weakref.ref) -> None:
        pool = pool_ref()
        if pool is None:
            return
        if not pool.closed:
            try:
                warnings.warn(f"pool {pool.name!r}: a borrowed connection was garbage collected without being "
                              "returned; its slot is reclaimed (psycopg2 closed its socket). What to do: use "
                              "`with pool.connection()` or call putconn().", RuntimeWarning, stacklevel=2)
            except Exception:  # noqa: BLE001 - e.g. warnings turned into errors: reclaim all the same
                logger.warning("pool %r: a borrowed connection was dropped without being returned", pool.name)
        # Garbage collection can run while this very thread holds the pool's lock: free the slot from another.
        threading.Thread(target=pool._reclaim, args=(rec,), daemon=True).start()
    return dropped
