"""Reading CPU and memory from /proc text, against fixed samples (not the live machine)."""

from __future__ import annotations

import os

import pytest
from benchkit.procstat import (
    CpuSample,
    busy_cores,
    cpu_delta,
    cpu_s_deltas,
    parse_machine_jiffies,
    parse_process_cpu_ticks,
    parse_rss_mib,
)

PROC_STAT = """\
cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335 33 456 1334 0 0 0 0 0 0
intr 1462898 0 0 0
ctxt 2540000
"""

# A command name may hold spaces and parentheses: fields count after the last ")".
# utime (field 14) is 250 and stime (field 15) is 125.
PID_STAT = (
    "4242 (python3 (bench) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 125 3 4 20 0 "
    "5 0 1000 300000000 20000 18446744073709551615 1 1 0 0 0 0 0 16781312 17026 0 0 0 17 1 0"
)

PID_STATUS = """\
Name:\tprovenet
State:\tS (sleeping)
VmPeak:\t  412000 kB
VmRSS:\t  204800 kB
Threads:\t4
"""


def test_machine_busy_and_total_jiffies_from_the_cpu_line() -> None:
    busy, total = parse_machine_jiffies(PROC_STAT)
    # The first eight columns: user nice system idle iowait irq softirq steal.
    total_expected = 10132153 + 290696 + 3084719 + 46828483 + 16683 + 0 + 25195 + 0
    assert total == total_expected
    # Idle and iowait are not busy.
    assert busy == total_expected - 46828483 - 16683


def test_a_proc_stat_without_the_cpu_line_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_machine_jiffies("intr 1 2 3\n")


def test_process_cpu_ticks_are_utime_plus_stime() -> None:
    assert parse_process_cpu_ticks(PID_STAT) == 375


def test_rss_in_mib_from_status() -> None:
    assert parse_rss_mib(PID_STATUS) == 200.0
    with pytest.raises(ValueError):
        parse_rss_mib("Name:\tkthreadd\n")


def test_busy_cores_scale_the_busy_share_by_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert busy_cores((100.0, 1000.0), (400.0, 1600.0)) == 1.0  # 300 of 600 jiffies
    assert busy_cores((100.0, 1000.0), (100.0, 1000.0)) is None


def test_cpu_deltas_skip_processes_that_were_not_readable() -> None:
    before = {"v0": 1.0, "v1": None, "v2": 2.0}
    after = {"v0": 3.5, "v1": 4.0, "v2": None}
    assert cpu_s_deltas(before, after) == {"v0": 2.5}


def test_cpu_delta_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    before = CpuSample({"v0": 10.0, "v1": 20.0}, (1000.0, 4000.0), 1.0, 100.0)
    after = CpuSample({"v0": 12.0, "v1": 21.5}, (1600.0, 5000.0), 1.25, 110.0)
    assert cpu_delta(before, after) == {
        "wall_s": 10.0,
        "cpu_s_per_node": {"v0": 2.0, "v1": 1.5},
        "cpu_s_all_nodes": 3.5,
        "cpu_s_bench_parent": 0.25,
        "machine_busy_fraction": 0.6,  # 600 of 1000 jiffies
        "machine_busy_cores": 1.2,
        "machine_busy_core_s": 12.0,
    }
