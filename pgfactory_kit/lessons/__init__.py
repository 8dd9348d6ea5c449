"""What the notebooks call: one import place for the lesson helpers.

lesson.py talks to the database for the lessons (connect, backend PIDs, sessions, show, save);
measure.py wraps the measuring layer for notebooks 05-07; limits.py runs a small server of its own out of
connections (notebook 06); exercises/ holds the challenge checkers,
notebooks.py executes notebooks and report.py writes ``report/``.
"""
from ..measuring.predict import cloud_table, predict_ms
from .lesson import (
    activity,
    backend_pid,
    connect_to_database,
    kit_server,
    quick_mode,
    save_csv,
    save_figure,
    server_sessions,
    server_view,
    show,
    terminate_backend,
    wait_until_gone,
)
from .limits import (
    connection_limits,
    many_clients,
    open_until_refused,
    outcomes,
    processes_with_pools,
    start_small_server,
)
from .measure import (
    compact,
    measurement_server,
    pool_label,
    pool_size_sweep,
    pool_sizes_figure,
    row,
    run_workloads,
    save_result,
    show_figure,
    time_connect_and_query,
)

__all__ = [
    "activity", "backend_pid", "connect_to_database", "kit_server", "quick_mode", "save_csv", "save_figure",
    "server_sessions", "server_view", "show", "terminate_backend", "wait_until_gone",
    "cloud_table", "compact", "connection_limits", "many_clients", "measurement_server", "open_until_refused",
    "outcomes", "pool_label", "pool_size_sweep", "pool_sizes_figure", "predict_ms", "processes_with_pools",
    "row", "run_workloads", "save_result", "show_figure", "start_small_server", "time_connect_and_query",
]
