"""ConnectionPool: a thread-safe pool of psycopg2 connections from any zero-argument factory.

What it promises (docs/pool.md says why):
- an exhausted pool makes callers wait, first come first served, up to ``timeout``;
- connections are opened outside the pool's lock, which is never held during I/O;
- a returned connection is reset (open or failed transaction rolled back, optional ``reset``
  callback); a closed, broken, foreign or twice-returned connection is never handed out again;
- stale connections are caught at checkout and silently replaced: one idle for ``check_after``
  seconds or more gets a ``SELECT 1``; a more recent one gets a zero-timeout ``poll()`` of its
  socket (no round trip: a readable idle socket means the server spoke, usually to say goodbye);
  one returned less than TRUST_WINDOW (10 ms) ago is handed out with no syscall at all;
- ``max_lifetime`` / ``max_idle`` (each with jitter) retire connections: lifetime is checked at
  checkout and return, idleness on a return at most every ``max_idle``/20 seconds;
- a connection a borrower drops without returning is noticed by a weak reference when it is
  garbage collected: the slot is reclaimed with a warning (its socket is closed by psycopg2);
- after ``os.fork()`` the child neither uses nor closes the parent's sockets (see pool_fork).

How threads share it (docs/pool.md, "How threads share it"). The everyday checkout and return
take no lock: each is one atomic operation on a built-in container (in CPython a single
``list.pop``, ``list.append``, ``set.add`` or ``set.remove`` runs without interruption), and
whoever wins it owns the connection's record:
- ``_idle`` is a stack of idle records; popping one makes the popper its only owner
  (a borrower, ``close()``, or the retirement of an idle connection);
- ``_lent`` is the set of records of lent connections; a return claims the record by removing
  it, so of two returns of one connection exactly one succeeds, and the weak reference's
  callback reclaims a dropped connection only if no return claimed it. (A set, not a dict keyed
  by ``id(conn)``: adding and removing the same keys reuses its slots, where a dict keeps
  growing and rebuilding its table.)
A ``with pool.connection()`` block needs no claim: it owns its borrow (``rec.in_block``),
``putconn()`` refuses that connection, and only the block's ``__exit__`` returns it.
Everything else (waiting, opening, discarding, closing, counting) happens under ``_lock``.
Waiting without lost wake-ups: a waiter is queued under the lock and then matches queued
waiters with idle connections; a lock-free return pushes its connection and *then* looks for
waiters. The GIL runs one step at a time, so of these two second looks at least one sees the
other side's step, and the match is made under the lock (tests/test_pool_races.py forces both
orders).
"""
from __future__ import annotations

import _thread
import collections
import itertools
import logging
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
from . import fork as pool_fork
from .health import close_quietly, make_poller, spoken_to, usable

__all__ = ["ConnectionPool", "PoolTimeout", "PoolClosed"]

Connection = psycopg2.extensions.connection
logger = logging.getLogger(__name__)

_IDLE_TX = psycopg2.extensions.TRANSACTION_STATUS_IDLE
_UNKNOWN_TX = psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN  # also what a closed connection reports
_NAMES = itertools.count(1)
# A connection returned less than this many seconds ago is handed out with no check at all (no
# syscall): the hot path of a busy pool. The chance that the server dropped it in between is tiny,
# and that failure looks like any connection lost mid-query.
TRUST_WINDOW = 0.01
_COUNTERS = ("requests_queued", "requests_wait_ms", "requests_errors", "connections_num",
             "connections_ms", "connections_errors", "connections_lost", "returns_bad")


class _Record:
    """What the pool knows about one of its connections."""

    __slots__ = ("ref", "key", "hold", "in_block", "fd", "poller", "lends", "last_used", "check_at",
                 "expires", "max_idle", "__weakref__")

    def __init__(self, conn: Connection, pool: ConnectionPool, now: float) -> None:
        self.ref = weakref.ref(conn, _on_collected(weakref.ref(pool), self))
        self.key = id(conn)  # the key in the pool's _records
        self.hold: Connection | None = None  # the pool's strong reference, only while idle
        self.in_block = False  # lent to a `with pool.connection()` block, which alone returns it
        self.fd = conn.fileno()
        self.poller = make_poller(conn)
        self.lends = 0  # lock-free checkouts, counted by the owner; stats() adds them up
        self.last_used = now
        self.expires = now + pool.max_lifetime * random.uniform(0.9, 1.0)
        self.check_at = min(now + pool._trust, self.expires)  # handed out unchecked until then
        self.max_idle = pool.max_idle * random.uniform(0.9, 1.0)


def _on_collected(pool_ref: weakref.ref, rec: _Record) -> Callable[[Any], None]:
    """The weakref callback: a borrowed connection was garbage collected without putconn()."""
    def callback(_ref: Any) -> None:
        pool = pool_ref()
        if pool is None:
            return
        if rec.in_block:  # a `with` block that never ended (its __exit__ clears the flag first)
            rec.in_block = False
        else:
            try:
                pool._lent.remove(rec)  # claimed like a return: a returned, idle or forgotten one is not there
            except KeyError:
                return
        if pool._closed:
            return
        pool._lost.append(rec)
        pool._reclaim_soon()
        try:
            # Warned here, in the thread that dropped the connection, so the warning points near the bug.
            warnings.warn(f"pool {pool.name!r}: a borrowed connection was garbage collected without being "
                          "returned; its slot is reclaimed (psycopg2 closed its socket). What to do: use "
                          "`with pool.connection()` or call putconn().", RuntimeWarning, stacklevel=2)
        except Exception:  # noqa: BLE001 - e.g. warnings turned into errors: the slot is reclaimed anyway
            logger.warning("pool %r: a borrowed connection was dropped without being returned", pool.name)
    return callback


class _Waiter:
    """A client waiting for a connection; the pool hands one over directly (FIFO, no stampede)."""

    __slots__ = ("lock", "conn", "rec", "error")

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        self.lock.acquire()
        self.conn: Connection | None = None
        self.rec: _Record | None = None
        self.error: BaseException | None = None

    def wake(self, conn: Connection | None = None, rec: _Record | None = None,
             error: BaseException | None = None) -> None:
        self.conn, self.rec, self.error = conn, rec, error
        self.lock.release()


class _Lend:
    """``with pool.connection() as conn``: commit on success, roll back on error, return.

    The block owns its borrow: it alone returns the connection (``putconn()`` refuses it), so
    the return needs no claim. Its hot path is getconn()'s, inlined.
    """

    __slots__ = ("pool", "timeout", "conn", "rec")

    def __init__(self, pool: ConnectionPool, timeout: float | None) -> None:
        self.pool, self.timeout, self.conn, self.rec = pool, timeout, None, None

    def __enter__(self) -> Connection:
        if self.conn is not None:
            raise RuntimeError("this `pool.connection()` block is already in use; nest two blocks to get "
                               "two connections: `with pool.connection() as a, pool.connection() as b:`")
        pool = self.pool
        try:
            rec = pool._idle.pop()
        except IndexError:  # the general path: lent like getconn(), returned like putconn()
            self.conn, self.rec = pool._getconn_slow(pool.timeout if self.timeout is None else self.timeout), None
            return self.conn
        conn, rec.hold = rec.hold, None
        rec.lends += 1
        if monotonic() < rec.check_at and not pool._closed:
            rec.in_block = True
            self.conn, self.rec = conn, rec
            return conn
        pool._lent.add(rec)
        self.conn, self.rec = pool._check_out(conn, rec, pool.timeout if self.timeout is None else self.timeout), None
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn, rec, self.conn, self.rec = self.conn, self.rec, None, None
        if conn is None:
            raise RuntimeError("this `pool.connection()` block holds no connection: it was not entered, "
                               "or it has already given its connection back")
        pool = self.pool
        status = conn.get_transaction_status()
        if exc_type is None and status != _IDLE_TX and status != _UNKNOWN_TX:
            # Commit only if a transaction is open: a no-op commit() still costs psycopg2 a GIL release.
            try:
                conn.commit()
            except BaseException:
                self._return_after_failed_commit(conn, rec)
                raise
            status = _IDLE_TX
        if rec is None:
            pool.putconn(conn)
            return
        rec.in_block = False
        # _give_back()'s hot path, inlined: a clean connection, nobody waiting, no reset, not expiring.
        now = monotonic()
        check_at = now + pool._trust
        if status != _IDLE_TX or pool._attention or check_at >= rec.expires:
            pool._give_back(conn, rec, status, False)
            return
        rec.last_used = now
        rec.check_at = check_at
        rec.hold = conn
        pool._idle.append(rec)
        if pool._attention:  # checked after the push: see "Waiting without lost wake-ups"
            pool._settle()
        elif now >= pool._sweep_at:
            pool._sweep(now)

    def _return_after_failed_commit(self, conn: Connection, rec: _Record | None) -> None:
        """Give the connection back after its commit raised (rolled back, or discarded if broken)."""
        if rec is None:
            self.pool.putconn(conn)
        else:
            rec.in_block = False
            self.pool._give_back(conn, rec, conn.get_transaction_status(), False)


class ConnectionPool:
    """A thread-safe pool of connections made by ``factory`` (any zero-argument callable)."""

    def __init__(self, factory: Callable[[], Connection], *, min_size: int = 1, max_size: int = 10,
                 timeout: float = 30.0, max_lifetime: float = 3600.0, max_idle: float = 600.0,
                 check_after: float = 1.0, reset: Callable[[Connection], Any] | None = None,
                 name: str | None = None) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be a zero-argument callable returning a psycopg2 connection, "
                            f"not {type(factory).__name__}")
        if max_size < 1 or not 0 <= min_size <= max_size:
            raise ValueError(f"need 0 <= min_size <= max_size and max_size >= 1; got min_size={min_size}, "
                             f"max_size={max_size}")
        for label, value in (("timeout", timeout), ("max_lifetime", max_lifetime), ("max_idle", max_idle),
                             ("check_after", check_after)):
            if value < 0:
                raise ValueError(f"{label} must be >= 0 seconds, got {value}")
        self.name = name or f"pool-{next(_NAMES)}"
        self.min_size, self.max_size, self.timeout = min_size, max_size, timeout
        self.max_lifetime, self.max_idle, self.check_after = max_lifetime, max_idle, check_after
        self._trust = min(TRUST_WINDOW, check_after)  # returned this recently: handed out unchecked
        self._factory, self._reset = factory, reset
        self._plain_returns = reset is None  # returns need no callback (and the pool is open)
        self._sweep_every = max_idle / 20  # how often returns look for connections idle past max_idle
        self._init_state()
        self._requests_num = self._requests_queued = self._requests_errors = 0
        self._requests_wait_ms = self._connections_ms = 0.0
        self._connections_num = self._connections_errors = self._connections_lost = self._returns_bad = 0
        self._last_error = ""
        pool_fork.register(self)
        try:
            for _ in range(min_size):
                with self._lock:
                    self._size += 1
                self._add_to_pool(*self._open())
        except BaseException:
            self.close()
            raise

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Record] = []  # a stack: the most recently used connection goes out first
        self._lent: set[_Record] = set()  # the records of lent connections
        self._records: dict[int, _Record] = {}  # id(conn) -> record, for every connection of the pool
        self._waiting: collections.deque[_Waiter] = collections.deque()
        self._lost: collections.deque[_Record] = collections.deque()
        self._size = 0  # connections open or being opened
        self._closed = False
        # A return must look at the pool (under the lock): someone waits, the pool is closed, or
        # a reset callback runs. Kept up to date under the lock; read without it on the hot path.
        self._attention = self._reset is not None
        self._sweep_at = 0.0  # the first return after this looks for connections idle past max_idle

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self._size}/{self.max_size} idle={len(self._idle)}"
        return f"<ConnectionPool {self.name!r} {state}>"

    # ------------------------------------------------------------------ public API
    def connection(self, timeout: float | None = None) -> _Lend:
        """``with pool.connection() as conn:`` — commits on success, rolls back on error, returns."""
        return _Lend(self, timeout)

    def getconn(self, timeout: float | None = None) -> Connection:
        """Borrow a connection, waiting up to ``timeout`` (default: the pool's) for one to be free.

        Give it back with ``putconn``. Raises PoolTimeout, or PoolClosed after ``close()``.
        """
        try:
            rec = self._idle.pop()  # the hot path: no lock, no syscall, no allocation
        except IndexError:
            return self._getconn_slow(self.timeout if timeout is None else timeout)
        conn, rec.hold = rec.hold, None
        rec.lends += 1
        self._lent.add(rec)
        if monotonic() < rec.check_at and not self._closed:
            return conn
        return self._check_out(conn, rec, self.timeout if timeout is None else timeout)

    def putconn(self, conn: Connection, close: bool = False) -> None:
        """Give back a borrowed connection; it is reset, or closed if it is broken or ``close``.

        Returning a connection that is not this pool's, or returning one twice, raises
        ValueError and leaves the pool unharmed.
        """
        try:
            status = conn.get_transaction_status()
        except AttributeError:
            raise TypeError(f"pool {self.name!r}: putconn() expects a connection it gave out, "
                            f"not {type(conn).__name__}") from None
        rec = self._records.get(id(conn))
        try:
            self._lent.remove(rec)  # claims the return: of two returns of one borrow, one succeeds
        except KeyError:
            raise ValueError(self._bad_return(conn)) from None
        self._give_back(conn, rec, status, close)

    def stats(self) -> dict[str, int]:
        """Counters named like psycopg_pool's ``get_stats()`` (same meaning where both have a key)."""
        with self._lock:
            stats = {"pool_min": self.min_size, "pool_max": self.max_size, "pool_size": self._size,
                     "pool_available": len(self._idle), "requests_waiting": len(self._waiting),
                     "requests_num": self._requests_num + sum(rec.lends for rec in self._records.values())}
            for key in _COUNTERS:
                stats[key] = int(getattr(self, "_" + key))
        return stats

    def close(self) -> None:
        """Close every idle connection now and every borrowed one as it is returned; wake waiters."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._plain_returns = False
            self._attention = True
            idle = self._drain_idle()
            waiting, self._waiting = self._waiting, collections.deque()
        for waiter in waiting:
            waiter.wake(error=PoolClosed(f"pool {self.name!r} was closed while this request waited"))
        for conn in idle:
            close_quietly(conn)
        pool_fork.unregister(self)

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ checkout
    def _check_out(self, conn: Connection, rec: _Record, timeout: float) -> Connection:
        """The lock-free checkout took a record that needs a look: a closed pool, or not recently used."""
        if self._closed:
            self._discard(conn, rec)
            raise PoolClosed(f"pool {self.name!r} is closed: it hands out no more connections. "
                             "What to do: create a new ConnectionPool.")
        if self._fit(conn, rec, monotonic()):
            return conn
        return self._getconn_slow(timeout, counted=True)

    def _getconn_slow(self, timeout: float, counted: bool = False) -> Connection:
        """Take an idle connection, open one if below max_size, or wait in line (FIFO)."""
        deadline = monotonic() + timeout
        if not counted:
            with self._lock:
                self._requests_num += 1
        # Bounded: each round either succeeds, discards one bad connection, or waits until the deadline.
        for _ in range(4 * self.max_size + 8):
            waiter = rec = None
            with self._lock:
                if self._closed:
                    raise PoolClosed(f"pool {self.name!r} is closed: it hands out no more connections. "
                                     "What to do: create a new ConnectionPool.")
                try:
                    rec = self._idle.pop()
                except IndexError:
                    if self._size < self.max_size:
                        self._size += 1
                    else:
                        waiter = _Waiter()
                        self._waiting.append(waiter)
                        self._attention = True
                        self._requests_queued += 1
                        self._match_waiters()  # a lock-free return may have pushed meanwhile
                else:
                    conn, rec.hold = rec.hold, None
                    self._lent.add(rec)
            if waiter is not None:
                conn, rec = self._wait(waiter, deadline, timeout)
            elif rec is None:
                conn, rec = self._open()
                self._lent.add(rec)
                return conn
            if monotonic() < rec.check_at or self._fit(conn, rec, monotonic()):
                return conn
        raise psycopg2.OperationalError(
            f"pool {self.name!r}: gave up after discarding {4 * self.max_size + 8} unusable connections "
            f"in a row. What to do: check the server log; the factory may return broken connections.")

    def _wait(self, waiter: _Waiter, deadline: float, timeout: float) -> tuple[Connection, _Record]:
        started = monotonic()
        waiter.lock.acquire(timeout=max(0.0, deadline - started))
        with self._lock:
            waited_ms = (monotonic() - started) * 1000
            self._requests_wait_ms += waited_ms
            if waiter.conn is None and waiter.error is None:
                try:
                    self._waiting.remove(waiter)
                except ValueError:
                    pass
                self._note_attention()
                self._requests_errors += 1
                size, waiting = self._size, len(self._waiting)
                last_error = self._last_error
        if waiter.error is not None:
            raise waiter.error
        if waiter.conn is not None and waiter.rec is not None:
            return waiter.conn, waiter.rec
        hint = f" The last attempt to open a connection failed: {last_error}." if last_error else ""
        raise PoolTimeout(
            f"pool {self.name!r} (size {size}, max_size {self.max_size}) had no free connection after "
            f"waiting {waited_ms / 1000:.3f} s (timeout {timeout} s); {waiting} other requests are waiting."
            f"{hint} What to do: return connections promptly (use `with pool.connection()`), "
            "or raise max_size or timeout.")

    def _fit(self, conn: Connection, rec: _Record, now: float) -> bool:
        """Check a borrowed connection that was not used just now; discard it (returning False) if unfit."""
        if now >= rec.expires:
            self._discard(conn, rec)
            return False
        idle_for = now - rec.last_used
        if (idle_for >= self.check_after or spoken_to(rec.poller)) and not usable(conn):
            with self._lock:
                self._connections_lost += 1
            logger.info("pool %r: replaced a connection the server had closed", self.name)
            self._discard(conn, rec)
            return False
        return True

    # ------------------------------------------------------------------ return
    def _give_back(self, conn: Connection, rec: _Record, status: int, close: bool) -> None:
        """Pool a returned connection (its return is claimed); the hot path takes no lock."""
        now = monotonic()
        if status != _IDLE_TX or close or now >= rec.expires or not self._plain_returns:
            self._return_slow(conn, rec, close, now)
            return
        rec.last_used = now
        check_at = now + self._trust
        rec.check_at = check_at if check_at < rec.expires else rec.expires
        if self._attention:  # someone waits (or the pool closed meanwhile): hand over under the lock
            self._pool_it(conn, rec, now)
            return
        rec.hold = conn
        self._idle.append(rec)
        if self._attention:  # checked after the push: see "Waiting without lost wake-ups"
            self._settle()
        elif now >= self._sweep_at:
            self._sweep(now)

    def _bad_return(self, conn: Any) -> str:
        """The message for a connection that cannot be returned (it is not lent out)."""
        rec = self._records.get(id(conn))
        if rec is None or rec.ref() is not conn:
            return (f"can't return {conn!r} to pool {self.name!r}: it does not come from this pool. "
                    "What to do: return a connection to the pool that gave it out.")
        if rec.in_block:
            return (f"can't putconn() a connection of pool {self.name!r} that a `with pool.connection()` "
                    "block holds: the block returns it when it ends, and returning it here too would lend "
                    "it to two borrowers. What to do: leave it to the block (or use getconn()/putconn()).")
        return (f"connection returned twice to pool {self.name!r}; the second putconn() was ignored and "
                "the pool is unharmed. What to do: return each connection once (`with pool.connection()` "
                "does it for you).")

    def _return_slow(self, conn: Connection, rec: _Record, close: bool, now: float) -> None:
        """Reset a returned connection outside the lock, then pool it or discard it."""
        reason = None
        if close:
            pass
        elif conn.closed:
            reason = "it was closed"
        elif conn.get_transaction_status() == _UNKNOWN_TX:
            reason = "its session with the server is lost"
        else:
            try:
                if conn.get_transaction_status() != _IDLE_TX:
                    conn.rollback()
                if self._reset is not None:
                    self._reset(conn)
                    if conn.get_transaction_status() != _IDLE_TX:
                        reason = "the reset callback left a transaction open"
            except Exception as exc:  # noqa: BLE001 - any failure means the connection is not reusable
                reason = f"resetting it failed: {type(exc).__name__}: {str(exc).strip()}"
        if reason is not None:
            with self._lock:
                self._returns_bad += 1
            logger.warning("pool %r: a returned connection was discarded because %s", self.name, reason)
        if close or reason is not None or now >= rec.expires:
            self._discard(conn, rec)
            return
        rec.last_used = now = monotonic()
        rec.check_at = min(now + self._trust, rec.expires)
        self._pool_it(conn, rec, now)

    def _pool_it(self, conn: Connection, rec: _Record, now: float) -> None:
        """Give a usable connection to the first waiter or the idle stack; close it if the pool is closed."""
        with self._lock:
            if self._closed:
                self._forget(rec)
                retired = [conn]
            else:
                retired = self._give(conn, rec, now)
        for stale in retired:
            close_quietly(stale)

    def _give(self, conn: Connection, rec: _Record, now: float) -> list[Connection]:
        """Hand ``conn`` to the first waiter, else push it on the idle stack (under the lock).

        Returns the connections idle past their max_idle if a look for them is due: the caller
        closes them after releasing the lock.
        """
        if self._waiting:
            self._lent.add(rec)
            self._waiting.popleft().wake(conn, rec)
            self._note_attention()
            return []
        rec.hold = conn
        self._idle.append(rec)
        return self._retire_idle_past_max(now) if now >= self._sweep_at else []

    def _match_waiters(self) -> None:
        """Hand idle connections to waiters, first come first served (under the lock)."""
        while self._waiting:
            try:
                rec = self._idle.pop()
            except IndexError:
                break
            conn, rec.hold = rec.hold, None
            self._lent.add(rec)
            self._waiting.popleft().wake(conn, rec)
        self._note_attention()

    def _note_attention(self) -> None:
        """Recompute whether returns must look at the pool (under the lock)."""
        self._attention = bool(self._waiting) or self._closed or self._reset is not None

    def _settle(self) -> None:
        """After a lock-free return found waiters or a closed pool: match them, or close what is idle."""
        with self._lock:
            if self._closed:
                idle = self._drain_idle()
            else:
                self._match_waiters()
                idle = []
        for conn in idle:
            close_quietly(conn)

    def _sweep(self, now: float) -> None:
        """Close the connections that have sat idle past their max_idle (a return found it due)."""
        with self._lock:
            retired = self._retire_idle_past_max(now)
        for stale in retired:
            close_quietly(stale)

    def _retire_idle_past_max(self, now: float) -> list[Connection]:
        """Take the connections idle past their max_idle off the bottom of the idle stack, while the
        pool is above min_size (under the lock); the caller closes them. Next look: max_idle/20 later."""
        self._sweep_at = now + self._sweep_every
        retired: list[Connection] = []
        idle = self._idle
        while self._size > self.min_size:
            try:
                oldest = idle[0]
                if now - oldest.last_used <= oldest.max_idle:
                    break
                taken = idle.pop(0)  # atomic: a lock-free borrower may have taken `oldest` meanwhile
            except IndexError:
                break
            if taken is not oldest:
                idle.insert(0, taken)
                self._match_waiters()
                break
            retired.append(oldest.hold)
            oldest.hold = None
            self._forget(oldest)
        return retired

    def _drain_idle(self) -> list[Connection]:
        """Take every idle connection out of the pool (under the lock); the caller closes them."""
        drained = []
        while True:
            try:
                rec = self._idle.pop()
            except IndexError:
                return drained
            drained.append(rec.hold)
            rec.hold = None
            self._forget(rec)

    def _forget(self, rec: _Record) -> None:
        """Remove a record from the pool's books and free its slot (under the lock)."""
        rec.in_block = False
        if self._records.get(rec.key) is rec:
            del self._records[rec.key]
        self._lent.discard(rec)
        self._requests_num += rec.lends
        rec.lends = 0
        self._size -= 1

    # ------------------------------------------------------------------ opening and discarding
    def _open(self) -> tuple[Connection, _Record]:
        """Open a connection outside the lock; the caller has already counted it in ``_size``."""
        started = monotonic()
        try:
            conn = self._factory()
            if not isinstance(conn, psycopg2.extensions.connection):
                raise TypeError(f"the factory of pool {self.name!r} returned {type(conn).__name__}, "
                                "not a psycopg2 connection")
        except BaseException as exc:
            with self._lock:
                self._size -= 1
                self._connections_errors += 1
                self._last_error = f"{type(exc).__name__}: {str(exc).strip()}"
            raise
        now = monotonic()
        rec = _Record(conn, self, now)
        with self._lock:
            self._connections_num += 1
            self._connections_ms += (now - started) * 1000
            closed = self._closed
            if not closed:
                self._records[rec.key] = rec
            else:
                self._size -= 1
        if closed:
            close_quietly(conn)
            raise PoolClosed(f"pool {self.name!r} was closed while a connection was being opened")
        return conn, rec

    def _add_to_pool(self, conn: Connection, rec: _Record) -> None:
        """Pool a newly opened connection (for min_size, or a replacement for waiters)."""
        rec.last_used = now = monotonic()
        rec.check_at = min(now + self._trust, rec.expires)
        self._pool_it(conn, rec, now)

    def _open_in_background(self) -> None:
        """Open one connection in a short-lived thread (after a loss, for waiters or min_size).

        A failed attempt is retried with exponential backoff (at most 8 attempts, ~13 s) while
        someone waits or the pool is below min_size.
        """
        def needed() -> bool:
            if self._closed or self._size >= self.max_size or not (self._waiting or self._size < self.min_size):
                return False
            self._size += 1
            return True

        def add() -> None:
            for attempt in range(8):
                with self._lock:
                    if not needed():
                        return
                try:
                    opened = self._open()
                except PoolClosed:
                    return
                except Exception as exc:  # noqa: BLE001 - counted in stats; waiters see it in PoolTimeout
                    if self._closed:  # closed meanwhile: nobody needs this connection any more
                        return
                    logger.warning("pool %r: could not open a connection (attempt %d): %s",
                                   self.name, attempt + 1, exc)
                    time.sleep(min(0.1 * 2 ** attempt, 3.0))
                    continue
                self._add_to_pool(*opened)
                return

        try:
            threading.Thread(target=add, name=f"{self.name}-open", daemon=True).start()
        except RuntimeError:  # interpreter shutting down
            pass

    def _discard(self, conn: Connection, rec: _Record) -> None:
        """Forget and close a borrowed ``conn``; open a replacement if someone waits or the pool is below min_size."""
        with self._lock:
            self._forget(rec)
            refill = not self._closed and bool(self._waiting or self._size < self.min_size)
        close_quietly(conn)
        if refill:
            self._open_in_background()

    # ------------------------------------------------------------------ dropped connections
    def _reclaim_soon(self) -> None:
        """Called from a weakref callback: reclaim from a short-lived thread (the lock may be held here)."""
        try:
            threading.Thread(target=self._reclaim_lost, daemon=True).start()
        except RuntimeError:  # interpreter shutting down
            pass

    def _reclaim_lost(self) -> None:
        """Free the slots of connections that borrowers dropped without returning."""
        lost = 0
        with self._lock:
            while self._lost:
                self._forget(self._lost.popleft())
                lost += 1
        for _ in range(lost):
            self._open_in_background()

    # ------------------------------------------------------------------ fork safety (see pool_fork)
    def _before_fork(self) -> None:
        self._lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        for rec in self._records.values():
            pool_fork.neutralise_fd(rec.fd)
            rec.hold, rec.in_block = None, False  # the child's copies die unnoticed
        closed = self._closed
        self._init_state()
        self._closed = closed  # a pool closed in the parent stays closed in the child
        self._note_attention()
