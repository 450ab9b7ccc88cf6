"""One run of a benchmark (a phase): start its client processes, wait for its commits.

A phase ends when every client is done and every transaction committed or
failed, after ``max_s``, or when nothing of it committed for ``stall_s``.
Its CPU figures cover the time from "go" to that end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from benchkit.children import pump_pipe, spawn, stop_process
from benchkit.console import log
from benchkit.load import ClientJob, client
from benchkit.procstat import CpuSample, cpu_delta, cpu_s_deltas, process_cpu_s
from benchkit.tracker import Tracker

# How long client processes may take to reach their node, and to send their
# results after being told to stop.
CLIENT_START_TIMEOUT_S = 60.0
CLIENT_RESULT_TIMEOUT_S = 10.0
# The event watcher's key among the extra processes whose CPU is measured.
_WATCHER = " watcher"


@dataclass
class Phase:
    name: str
    lanes: list[list[bytes]]
    jobs: list[ClientJob]
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    timed_out: bool = False
    # CPU seconds of the observers at the phase's start (to add their catch-up after it)
    observer_cpu_before: dict[str, float | None] = field(default_factory=dict)

    @property
    def expected(self) -> int:
        return sum(len(lane) for lane in self.lanes)

    def failed(self) -> int:
        return sum(len(r.get("failed", {})) for r in self.results.values())


class _Clients:
    """The phase's client processes and their pipes, seen from the parent."""

    def __init__(self, phase: Phase, tracker: Tracker) -> None:
        self.phase = phase
        self.tracker = tracker
        self.processes: list[BaseProcess] = []
        self.conns: dict[int, Connection] = {}
        self.pumps: list[threading.Thread] = []
        self.ready: set[int] = set()
        self.wake = asyncio.Event()

    def on_message(self, index: int, message: Any) -> None:
        match message:
            case ("ready", _):
                self.ready.add(index)
            case ("done", result):
                self.phase.results[index] = result
            case ("error", text):
                self.phase.errors.append(text)
                self.phase.results.setdefault(index, {})
        self.wake.set()

    def on_eof(self, index: int, exc: BaseException) -> None:
        if index not in self.phase.results:
            self.phase.errors.append(f"client {index} exited without a result ({exc!r})")
            self.phase.results[index] = {}
        self.wake.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for job in self.phase.jobs:
            process, conn = spawn(client, f"client {job.index}", job)
            self.processes.append(process)
            self.conns[job.index] = conn
            self.tracker.conns[(self.phase.name, job.index)] = conn
            on_message = functools.partial(self.on_message, job.index)
            on_eof = functools.partial(self.on_eof, job.index)
            self.pumps.append(pump_pipe(conn, loop, on_message, on_eof))

    async def wait(self, count: Callable[[], int], timeout_s: float, poll_s: float) -> bool:
        """Until ``count()`` reaches the number of clients; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while count() < len(self.phase.jobs):
            if time.monotonic() > deadline:
                return False
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), poll_s)
        return True

    def started(self) -> int:
        """Clients ready to go, or already failed."""
        return len(self.ready | set(self.phase.results))

    def finished(self) -> int:
        return len(self.phase.results)

    def send(self, message: tuple[Any, ...]) -> None:
        for conn in self.conns.values():
            with contextlib.suppress(OSError):
                conn.send(message)

    def close(self) -> None:
        for index in self.conns:
            self.tracker.conns.pop((self.phase.name, index), None)
        for process in self.processes:
            stop_process(process)
        for pump in self.pumps:  # they see EOF once their client has exited
            pump.join(timeout=5)
        for conn in self.conns.values():
            conn.close()


async def _until_committed(
    phase: Phase, tracker: Tracker, clients: _Clients, max_s: float, stall_s: float
) -> None:
    expected = phase.expected
    last_count, last_change = -1, time.monotonic()
    while True:
        count = tracker.committed_of(phase.name)
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        clients_done = len(phase.results) == len(phase.jobs)
        if clients_done and count + phase.failed() >= expected:
            return
        if now - phase.started > max_s:
            phase.timed_out = True
            log(f"{phase.name}: stopping after {max_s:g} s ({count}/{expected} committed)")
            return
        if now - last_change > stall_s:
            phase.timed_out = True
            log(f"{phase.name}: no commit for {stall_s:g} s ({count}/{expected} committed)")
            return
        tracker.progress.clear()
        clients.wake.clear()
        waiters = [asyncio.ensure_future(e.wait()) for e in (tracker.progress, clients.wake)]
        await asyncio.wait(waiters, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()


async def run_phase(
    phase: Phase,
    tracker: Tracker,
    pids: dict[str, int],
    max_s: float,
    stall_s: float,
    observer_pids: dict[str, int] | None = None,
    watcher_pid: int | None = None,
) -> dict[str, Any]:
    """Start the phase's clients, let them run to completion, return CPU figures.

    ``pids`` are the validators (``cpu_s_per_node``); the observers' and the
    event watcher's CPU over the same window is reported beside them.
    """
    extra = dict(observer_pids or {})
    if watcher_pid is not None:
        extra[_WATCHER] = watcher_pid
    clients = _Clients(phase, tracker)
    try:
        clients.start()
        if not await clients.wait(clients.started, CLIENT_START_TIMEOUT_S, 1.0):
            raise RuntimeError(f"{phase.name}: clients did not start in time")
        before = CpuSample.take(pids)
        extra_before = {name: process_cpu_s(pid) for name, pid in extra.items()}
        phase.observer_cpu_before = {
            name: cpu for name, cpu in extra_before.items() if name != _WATCHER
        }
        phase.started = time.monotonic()
        clients.send(("go", phase.started))
        await _until_committed(phase, tracker, clients, max_s, stall_s)
        phase.ended = time.monotonic()
        after = CpuSample.take(pids)
        extra_delta = cpu_s_deltas(
            extra_before, {name: process_cpu_s(pid) for name, pid in extra.items()}
        )
        clients.send(("stop",))
        await clients.wait(clients.finished, CLIENT_RESULT_TIMEOUT_S, 0.5)
        cpu = cpu_delta(before, after)
        if observer_pids:
            cpu["cpu_s_observers"] = {n: extra_delta.get(n) for n in observer_pids}
        if watcher_pid is not None:
            cpu["cpu_s_event_watcher"] = extra_delta.get(_WATCHER)
        return cpu
    finally:
        clients.close()
