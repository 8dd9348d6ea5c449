"""The machine record: a figure's line names the machine the numbers came from, not the reader's."""
from __future__ import annotations

import platform

from pgfactory_kit.measuring.machine import machine_summary, summary_line

RECORDED = dict(postgresql="18.6", transport="TCP", auth="scram-sha-256", added_rtt_ms=0.0, cpu_count=2)


def test_summary_line_prints_the_recorded_system_not_the_readers():
    other = "Windows" if platform.system() != "Windows" else "Linux"
    line = summary_line(dict(RECORDED, system=other, platform=f"{other}-10-AMD64"))
    assert line.endswith(f"· 2 CPUs · {other}")
    assert platform.system() not in line.split(" · ")[-1]


def test_a_record_made_before_system_was_kept_reads_it_from_platform():
    assert summary_line(dict(RECORDED, platform="macOS-14.1-arm64-arm-64bit")).endswith("· macOS")
    assert summary_line(RECORDED).endswith("· ?")


def test_a_new_record_carries_this_machines_system():
    record = machine_summary(postgresql="18.6", auth="trust", transport="TCP", rtt_ms=0.0, target="127.0.0.1:1")
    assert record["system"] == platform.system()
    assert summary_line(record).endswith(f"· {platform.system()}")
