"""Checker for notebook 04 (connection pools): many threads, a bounded pool."""
from __future__ import annotations

from typing import Any

from ...pooling.pool import ConnectionPool
from . import Verdict, check, not_attempted, passed, todo


def check_bounded_pool(pool: Any, pids: Any, tasks: int = 6, max_size: int = 3) -> Verdict:
    """``tasks`` tasks ran through ``pool`` (max_size ``max_size``) on threads at the same time; ``pids``
    holds the backend PID each task saw. The work must have overlapped (some borrowers queued), and
    the server must have served it with at most ``max_size`` backends."""
    if not_attempted(pool, pids):
        return todo("bounded pool", f"replace both `...`: a ConnectionPool(create_connection, max_size={max_size}) "
                                    f"and the list of backend PIDs seen by {tasks} tasks run on {tasks} threads.")
    check(isinstance(pool, ConnectionPool), expected="a pgfactory_kit.ConnectionPool", seen=type(pool).__name__,
          hint="pool = ConnectionPool(create_connection, max_size=3)")
    check(pool.max_size == max_size, expected=f"max_size == {max_size}", seen=pool.max_size,
          hint=f"pass max_size={max_size} when you create the pool.")
    check(isinstance(pids, (list, tuple)) and len(pids) == tasks,
          expected=f"a list of {tasks} PIDs, one per task", seen=pids,
          hint="have each task return backend_pid(conn) and collect the results, e.g. list(executor.map(...)).")
    stats = pool.stats()
    check(stats["requests_num"] >= tasks, expected=f"at least {tasks} requests made to the pool",
          seen=stats["requests_num"], hint="each task should borrow with `with pool.connection() as conn:`.")
    check(stats["requests_queued"] > 0,
          expected=f"some tasks waited for a connection (requests_queued > 0): {tasks} tasks at once on {max_size}",
          seen=f"requests_queued = {stats['requests_queued']}",
          hint=f"run the tasks at the same time on {tasks} threads (ThreadPoolExecutor(max_workers={tasks}) and "
               "executor.map), not one after another in a loop: the point is more tasks than connections.")
    check(len(set(pids)) <= max_size, expected=f"at most {max_size} different backends", seen=sorted(set(pids)),
          hint="borrow every connection from the pool; do not call create_connection() in the tasks.")
    check(stats["connections_num"] <= max_size, expected=f"the pool opened at most {max_size} connections",
          seen=stats["connections_num"], hint="use a fresh pool for this challenge.")
    return passed("bounded pool", f"{tasks} tasks, {len(set(pids))} backend(s): the pool capped the server's load.")
