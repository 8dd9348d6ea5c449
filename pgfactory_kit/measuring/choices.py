"""What a bench run can be asked for: the names it knows and the ranges of its numbers.

Kept apart from ``runner`` (which needs numpy and pandas) so that the command line can check its
options against the same rules without importing them: a refused option costs no import time.
"""
from __future__ import annotations

TRANSPORTS = ("tcp", "unix", "tls")
AUTH_METHODS = ("scram-sha-256", "md5", "trust")
PRIVATE_AUTH = ("md5", "trust")  # measured on a private server: the kit's own accepts scram-sha-256 only
WORKLOADS = ("select1", "select_all", "insert")
MAX_RTT_MS = 10_000.0
# (field, minimum, maximum) of Scenario's whole-number fields: beyond these a run is a mistake, not a plan.
LIMITS = (("operations", 1, 1_000_000), ("warmup", 0, 100_000), ("repeats", 1, 100), ("threads", 1, 64),
          ("pool_size", 1, 1000), ("blocks", 1, 10_000), ("block_warmup", 0, 1000), ("seed", 0, 2**32 - 1))
