"""Measuring connection cost: the bench runner (runner.py) and its strategies (strategies.py), statistics
(stats.py), the connect-cost breakdown (breakdown.py), the latency-adding DelayProxy (proxy.py), the
protocol decoder (wire_protocol.py) and the WireTap that records with it (wiretap.py), the machine record
(machine.py) and the figures (plots.py). Notebooks use ``runner`` under the name ``bench``."""
from .proxy import DelayProxy
from .wiretap import WireTap

__all__ = ["DelayProxy", "WireTap"]
