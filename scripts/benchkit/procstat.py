"""CPU and memory of processes and of the machine, read from Linux's /proc.

The parsers take the file's text, so they can be checked against fixed
samples; the readers around them open the live files and answer None (or
zeros) when a process has gone or /proc is missing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
# Clock ticks per second: the unit of the CPU times in /proc.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# In /proc/<pid>/stat after the ")" that ends the command name: utime and stime
# are fields 14 and 15 of the whole line, so 11 and 12 of what follows ")".
_UTIME_AFTER_COMM = 11
_STIME_AFTER_COMM = 12
# The first line of /proc/stat: "cpu user nice system idle iowait irq softirq steal ...";
# idle and iowait are the columns that are not busy time.
_MACHINE_COLUMNS = 8
_IDLE_COLUMNS = (3, 4)


def parse_process_cpu_ticks(stat_text: str) -> int:
    """utime + stime in clock ticks, from the text of /proc/<pid>/stat.

    The command name, in parentheses, may hold spaces and parentheses itself,
    so fields are counted after the last ")".
    """
    fields = stat_text.rpartition(")")[2].split()
    return int(fields[_UTIME_AFTER_COMM]) + int(fields[_STIME_AFTER_COMM])


def parse_machine_jiffies(stat_text: str) -> tuple[float, float]:
    """(busy, total) jiffies of all cores together, from the text of /proc/stat."""
    first = stat_text.splitlines()[0].split()
    if first[0] != "cpu":
        raise ValueError(f"/proc/stat starts with {first[0]!r}, not the 'cpu' line")
    values = [float(v) for v in first[1 : 1 + _MACHINE_COLUMNS]]
    idle = sum(values[i] for i in _IDLE_COLUMNS)
    return sum(values) - idle, sum(values)


def parse_rss_mib(status_text: str) -> float:
    """Resident memory in MiB (one decimal), from the text of /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise ValueError("no VmRSS line (a kernel thread, or a process that has exited)")


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of a process in seconds; None when it has gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return parse_process_cpu_ticks(text) / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores; (0, 0) without /proc."""
    try:
        text = (PROC / "stat").read_text()
    except OSError:
        return 0.0, 0.0
    return parse_machine_jiffies(text)


def rss_mib(pid: int) -> float:
    """Resident memory of a live process in MiB."""
    return parse_rss_mib((PROC / str(pid) / "status").read_text())


def open_files(pid: int) -> int:
    """Open file descriptors of a live process."""
    return len(os.listdir(PROC / str(pid) / "fd"))


def busy_cores(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """How many cores were busy on average between two ``machine_cpu`` readings."""
    total = after[1] - before[1]
    if not total:
        return None
    return (after[0] - before[0]) / total * (os.cpu_count() or 1)


def cpu_s_deltas(
    before: dict[str, float | None], after: dict[str, float | None]
) -> dict[str, float]:
    """CPU seconds used per name between two readings, for names readable at both."""
    return {
        name: round(end - start, 2)
        for name, start in before.items()
        if start is not None and (end := after.get(name)) is not None
    }


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of named processes, the machine and this process, at one instant."""

    processes: dict[str, float | None]
    machine: tuple[float, float]
    own_cpu_s: float
    wall_s: float

    @classmethod
    def take(cls, pids: dict[str, int]) -> CpuSample:
        times = os.times()
        return cls(
            {name: process_cpu_s(pid) for name, pid in pids.items()},
            machine_cpu(),
            times.user + times.system,
            time.monotonic(),
        )


def cpu_delta(before: CpuSample, after: CpuSample) -> dict[str, Any]:
    """The report's CPU figures between two samples (the processes are the nodes)."""
    nodes = cpu_s_deltas(before.processes, after.processes)
    wall = after.wall_s - before.wall_s
    cores = busy_cores(before.machine, after.machine)
    total = after.machine[1] - before.machine[1]
    return {
        "wall_s": round(wall, 2),
        "cpu_s_per_node": nodes,
        "cpu_s_all_nodes": round(sum(nodes.values()), 2),
        "cpu_s_bench_parent": round(after.own_cpu_s - before.own_cpu_s, 2),
        "machine_busy_fraction": round((after.machine[0] - before.machine[0]) / total, 3)
        if total
        else None,
        "machine_busy_cores": round(cores, 2) if cores is not None else None,
        "machine_busy_core_s": round(cores * wall, 2) if cores is not None else None,
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]
