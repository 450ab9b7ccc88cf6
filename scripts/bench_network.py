#!/usr/bin/env python3
"""Benchmark of a real local network: validators as processes, load from client processes.

Prints one JSON document on stdout (progress goes to stderr).  Run it through
``scripts/bench``, which makes ``.venv`` and installs the project first.

What it does
------------
1. Measures this machine's Ed25519 verifications per second on one core
   (``scripts/bench_verify.verify_rate`` for the hot-path backend) before
   anything else runs, and derives the ceiling ``2 cores x verify rate / N``:
   every validator verifies every transaction's signature once, so on a
   two-core host N validators cannot commit more than that even if
   verification were all they did.
2. Creates a network of ``--validators`` nodes in a temporary directory with
   ``node.ops.netinit.init_network`` and starts it with ``node.ops.netctl.up``: each
   node is its own ``provenet node run`` process, as a user starts them.
3. Signs the whole workload in advance (``node.workload.build_workload``,
   a run tag and the senders' ``pending_next_nonce``), so signing never
   competes with the nodes, and commits the workload's setup transactions.
4. Throughput run: ``--clients`` client processes, each owning whole senders
   (a lane of ``Workload.lanes``), POST batches of envelopes
   (``POST /v1/txs/batch``, msgpack) to their own node (client i -> node
   i mod N) and keep at most ``--window`` of their transactions in flight
   (submitted, not yet committed): the node's mempool keeps each sender's
   nonce order, so a lane pipelines.  A subscriber on ``GET /v1/events``
   (websocket, one frame per block) sees every commit; it timestamps each
   transaction and tells each client how many of its lane's transactions
   committed (over a pipe, so flow control costs the nodes nothing).
   The default window (200 per client, 100 per POST) keeps requests in
   flight for well under a second: a longer backlog outwaits the nodes' 1 s
   re-broadcast of pending requests and 2 s view-change timer, and then the
   run measures view changes, not throughput.  Throughput is committed transactions per second between the first and
   the last commit; latency is commit-seen time minus the client's submit
   time (``time.monotonic`` is one clock for every process on Linux).
5. Latency run: one client process offers ``--rate`` tx/s for
   ``--duration-s`` seconds, one ``POST /v1/txs`` per transaction at a steady
   pace, to a backup (``--latency-node``, so the forward to the primary
   counts), with the realistic mixed diamond workload in one lane.
6. Checks that every validator reports the same height, block hash and state
   root, and that every observer holds that state root, and always stops the
   network (``node.ops.netctl.down``) at the end.

Observers (``--observers M``, default 1): the network also runs M observer
nodes (``o0``...), which follow the validators over ``GET /v1/chain`` and
re-execute every block.  During both runs an event watcher process
subscribes to ``GET /v1/events`` on ``v0`` and on ``o0`` at once and stamps
every block's arrival on each with its own ``time.monotonic()``; it also
samples ``o0``'s ``/v1/status`` (``following.lag_blocks``) every 0.1 s.
Each run then gets an ``observer`` section: the lag in blocks (the sampled
``lag_blocks``, and v0's height minus o0's latest at every v0 block
arrival), the lag in milliseconds (o0's arrival minus v0's for the same
height), whether o0 reached the validators' height and state root after the
run, and o0's CPU seconds (over the run, and including its catch-up).  The
observers' and the watcher's CPU are not in ``cpu_s_per_node`` (validators
only) but count as the bench's own in ``cpu_s_outside_bench_processes``.

CPU seconds per node are utime + stime deltas of each node process from
``/proc/<pid>/stat`` over each run; the clients' and this process's own CPU
and the machine's busy fraction (``/proc/stat``) are reported alongside, so
the JSON says whether the host's cores were the limit; ``cpu_budget_per_tx``
puts the node CPU per committed transaction next to the part of it that
signature verification must take.

Usage: scripts/bench [--validators N] [--observers M] [--clients C] [--chains K]
                     [--mode independent|mixed] [--rate R] [--duration-s S] [--tls] [--keep] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import multiprocessing
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from benchkit.workload import INDEPENDENT, MIXED, MODES, build_workload

from consensus import ed25519
from consensus.codec import decode, digest, encode
from contracts.tx import encode_tx
from node.ops import netctl
from node.ops.netinit import PEER_PORT_OFFSET, init_network
from node.sdk.keys import load_identity

MSGPACK = "application/msgpack"
RETRYABLE = frozenset({"mempool_full", "sender_queue_full", "rate_limited"})
RETRY_DELAY_S = 0.05
MAX_ATTEMPTS = 200
CEILING_CORES = 2
TARGET_TX_PER_S = 2_000
TARGET_P50_MS = 15.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_loop(coroutine: Any) -> Any:
    """asyncio.run on uvloop when it is installed (it is, on Linux), as the nodes do."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# ------------------------------------------------------------ measuring


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 (nearest rank), mean and max, in the unit of ``values``."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]

    return {
        "p50": round(rank(50), 2),
        "p95": round(rank(95), 2),
        "p99": round(rank(99), 2),
        "mean": round(sum(ordered) / len(ordered), 2),
        "max": round(ordered[-1], 2),
    }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of a process in seconds, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    values = [float(v) for v in first[:8]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class CpuSample:
    nodes: dict[str, float | None]
    machine: tuple[float, float]
    me: float
    wall: float

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
    nodes = {
        name: round(end - start, 2)
        for name, start in before.nodes.items()
        if start is not None and (end := after.nodes.get(name)) is not None
    }
    busy = after.machine[0] - before.machine[0]
    total = after.machine[1] - before.machine[1]
    wall = after.wall - before.wall
    return {
        "wall_s": round(wall, 2),
        "cpu_s_per_node": nodes,
        "cpu_s_all_nodes": round(sum(nodes.values()), 2),
        "cpu_s_bench_parent": round(after.me - before.me, 2),
        "machine_busy_fraction": round(busy / total, 3) if total else None,
        "machine_busy_cores": round(busy / total * (os.cpu_count() or 1), 2) if total else None,
        "machine_busy_core_s": round(busy / total * (os.cpu_count() or 1) * wall, 2)
        if total
        else None,
    }


# ------------------------------------------------------------ client processes


@dataclass
class ClientJob:
    """What one client process sends; picklable for the 'spawn' start method."""

    index: int
    api_url: str
    ca_file: str | None
    envelopes: list[bytes]
    kind: str  # "batch" (throughput) or "paced" (latency)
    batch_size: int = 100
    window: int = 200
    rate: float = 100.0


@dataclass
class ClientState:
    committed: int = 0
    accepted: int = 0
    stop: bool = False
    go_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


def client_main(job: ClientJob, conn: Connection) -> None:
    """Entry point of a client process."""
    try:
        result = run_loop(_client(job, conn))
        conn.send(("done", result))
    except BaseException as exc:  # report, never hang the parent
        with contextlib.suppress(OSError):
            conn.send(("error", f"client {job.index}: {exc!r}"))
        raise


def _client_ssl(ca_file: str | None) -> ssl.SSLContext | bool:
    if ca_file is None:
        return False
    from node.sdk.tls import client_context

    return client_context(Path(ca_file))


def pump_pipe(
    conn: Connection,
    loop: asyncio.AbstractEventLoop,
    on_message: Callable[[Any], None],
    on_eof: Callable[[BaseException], None],
) -> threading.Thread:
    """A thread that receives from ``conn`` and hands each message to ``loop``.

    (``loop.add_reader`` on the pipe would make its descriptor non-blocking,
    and ``Connection.recv`` cannot read a large message from such a pipe.)
    """

    def deliver(callback: Callable[..., None], value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(callback, value)

    def run() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError) as exc:
                deliver(on_eof, exc)
                return
            deliver(on_message, message)

    thread = threading.Thread(target=run, name="pipe", daemon=True)
    thread.start()
    return thread


async def _client(job: ClientJob, conn: Connection) -> dict[str, Any]:
    state = ClientState()

    def on_message(message: Any) -> None:
        match message:
            case ("go", at):
                state.go_at = at
            case ("committed", count):
                state.committed = count
            case ("stop",):
                state.stop = True
        state.changed.set()

    def on_eof(exc: BaseException) -> None:
        state.stop = True
        state.changed.set()

    pump_pipe(conn, asyncio.get_running_loop(), on_message, on_eof)
    connector = aiohttp.TCPConnector(limit=64, ssl=_client_ssl(job.ca_file))
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(f"{job.api_url}/healthz") as response:
            await response.read()
        conn.send(("ready", job.index))
        while state.go_at is None and not state.stop:
            await state.changed.wait()
            state.changed.clear()
        started = os.times()
        if job.kind == "batch":
            result = await _batch_client(job, session, state)
        else:
            result = await _paced_client(job, session, state)
        ended = os.times()
    result["cpu_s"] = round(ended.user + ended.system - started.user - started.system, 3)
    return result


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, stats: Counter[str]
) -> tuple[int, Any]:
    """POST msgpack, read a msgpack answer; (status, body) or (0, None) on a transport error."""
    headers = {"Content-Type": MSGPACK, "Accept": MSGPACK}
    try:
        async with session.post(url, data=body, headers=headers) as response:
            raw = await response.read()
            stats["posts"] += 1
            try:
                return response.status, decode(raw)
            except ValueError:
                return response.status, None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        stats[f"transport_error:{type(exc).__name__}"] += 1
        return 0, None


async def _batch_client(
    job: ClientJob, session: aiohttp.ClientSession, state: ClientState
) -> dict[str, Any]:
    """Send the lane in batches, at most ``window`` transactions in flight."""
    url = f"{job.api_url}/v1/txs/batch"
    envelopes = job.envelopes
    total = len(envelopes)
    submitted_at: list[float | None] = [None] * total
    failed: dict[int, str] = {}
    attempts = Counter[int]()
    retry: list[int] = []
    retry_due = 0.0
    stats: Counter[str] = Counter()
    post_ms: list[float] = []
    next_index = 0
    while (next_index < total or retry) and not state.stop:
        now = time.monotonic()
        if retry and now >= retry_due:
            indices, retry = retry[: job.batch_size], retry[job.batch_size :]
        elif next_index < total:
            room = job.window - (state.accepted - state.committed)
            size = min(job.batch_size, total - next_index)
            if room < size:
                state.changed.clear()
                await state.changed.wait()
                continue
            indices = list(range(next_index, next_index + size))
            next_index += size
        else:
            await asyncio.sleep(max(0.0, retry_due - now))
            continue
        body = encode([envelopes[i] for i in indices])
        sent = time.monotonic()
        for i in indices:
            if submitted_at[i] is None:
                submitted_at[i] = sent
        status, answer = await _post(session, url, body, stats)
        post_ms.append((time.monotonic() - sent) * 1000)
        results = answer.get("results") if status == 200 and isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(indices):
            stats[f"batch_http_{status}"] += 1
            for i in indices:
                attempts[i] += 1
                if attempts[i] >= MAX_ATTEMPTS:
                    failed[i] = f"http_{status}"
                else:
                    retry.append(i)
            retry.sort()
            retry_due = time.monotonic() + RETRY_DELAY_S
            continue
        again: list[int] = []
        for i, item in zip(indices, results, strict=True):
            outcome = item.get("status")
            error = item.get("error") or {}
            if outcome in ("pending", "committed"):
                state.accepted += 1
            elif outcome == "refused" and error.get("code") in RETRYABLE:
                stats[f"retried:{error.get('code')}"] += 1
                attempts[i] += 1
                if attempts[i] >= MAX_ATTEMPTS:
                    failed[i] = str(error.get("code"))
                else:
                    again.append(i)
            else:
                failed[i] = str(error.get("code") or outcome)
        if again:
            retry = sorted(retry + again)
            retry_due = time.monotonic() + RETRY_DELAY_S
    return {
        "index": job.index,
        "submitted_at": submitted_at,
        "failed": failed,
        "stats": dict(stats),
        "post_ms": percentiles(post_ms),
        "posts": len(post_ms),
    }


async def _paced_client(
    job: ClientJob, session: aiohttp.ClientSession, state: ClientState
) -> dict[str, Any]:
    """One ``POST /v1/txs`` per transaction at ``rate`` per second, not waiting for commits.

    The POSTs go one after another on one connection: the mixed workload's
    transactions depend on other senders' earlier ones, so they must reach
    the node in order (concurrent POSTs on several connections can overtake
    each other).  A POST slower than the interval delays the next one; the
    rate actually offered is reported.
    """
    url = f"{job.api_url}/v1/txs"
    total = len(job.envelopes)
    submitted_at: list[float | None] = [None] * total
    failed: dict[int, str] = {}
    stats: Counter[str] = Counter()
    post_ms: list[float] = []

    async def submit(index: int) -> None:
        sent = time.monotonic()
        submitted_at[index] = sent
        status, answer = await _post(session, url, job.envelopes[index], stats)
        post_ms.append((time.monotonic() - sent) * 1000)
        if status not in (200, 202):
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            failed[index] = str(error.get("code") or f"http_{status}")
        elif isinstance(answer, dict) and answer.get("status") == "dropped":
            failed[index] = "dropped"

    start = time.monotonic()
    for index in range(total):
        if state.stop:
            break
        delay = start + index / job.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await submit(index)
    offered_s = time.monotonic() - start
    return {
        "index": job.index,
        "submitted_at": submitted_at,
        "failed": failed,
        "stats": dict(stats),
        "post_ms": percentiles(post_ms),
        "posts": len(post_ms),
        "offered_s": round(offered_s, 3),
        "offered_tx_per_s_actual": round(total / offered_s, 1) if offered_s > 0 else None,
    }


# ------------------------------------------------------------ the block subscriber


@dataclass
class Block:
    seen: float
    height: int
    txs: int
    tracked: Counter[str]  # transactions of each phase in this block


class Tracker:
    """Listens to one node's block stream and timestamps the transactions of the runs."""

    def __init__(self, api_url: str, ssl_context: ssl.SSLContext | bool) -> None:
        self.url = api_url.replace("http", "ws", 1) + "/v1/events"
        self.ssl = ssl_context
        # tx id -> (phase, lane, index in lane)
        self.index: dict[bytes, tuple[str, int, int]] = {}
        self.commit: dict[tuple[str, int, int], tuple[float, str, str | None]] = {}
        self.lane_committed: Counter[tuple[str, int]] = Counter()
        self.blocks: list[Block] = []
        self.conns: dict[tuple[str, int], Connection] = {}
        self.last_height = 0
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.progress = asyncio.Event()

    def track(self, phase: str, lanes: Sequence[Sequence[bytes]]) -> None:
        for lane, envelopes in enumerate(lanes):
            for i, envelope in enumerate(envelopes):
                self.index[digest(envelope)] = (phase, lane, i)

    def committed_of(self, phase: str) -> int:
        return sum(n for (p, _), n in self.lane_committed.items() if p == phase)

    async def run(self, session: aiohttp.ClientSession, from_height: int) -> None:
        self.last_height = from_height - 1
        while True:
            url = f"{self.url}?from_height={self.last_height + 1}"
            try:
                async with session.ws_connect(url, ssl=self.ssl, max_msg_size=0) as ws:
                    self.connected.set()
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        self._on_frame(time.monotonic(), json.loads(message.data))
            except (aiohttp.ClientError, OSError) as exc:
                log(f"event stream: {exc!r}; reconnecting")
            self.reconnects += 1
            await asyncio.sleep(0.05)

    def _on_frame(self, seen: float, frame: dict[str, Any]) -> None:
        height = int(frame["height"])
        if height <= self.last_height:
            return
        self.last_height = height
        txs = frame.get("txs") or []
        touched: set[tuple[str, int]] = set()
        tracked: Counter[str] = Counter()
        for tx in txs:
            key = self.index.get(bytes.fromhex(tx["tx_id"]))
            if key is None or key in self.commit:
                continue
            tracked[key[0]] += 1
            self.commit[key] = (seen, str(tx.get("status")), tx.get("code"))
            lane = (key[0], key[1])
            self.lane_committed[lane] += 1
            touched.add(lane)
        self.blocks.append(Block(seen, height, len(txs), tracked))
        for lane in touched:
            conn = self.conns.get(lane)
            if conn is not None:
                try:
                    conn.send(("committed", self.lane_committed[lane]))
                except OSError:
                    self.conns.pop(lane, None)
        self.progress.set()


# ------------------------------------------------------------ running a phase


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
        extra[" watcher"] = watcher_pid
    context = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    processes: list[multiprocessing.process.BaseProcess] = []
    conns: dict[int, Connection] = {}
    pumps: list[threading.Thread] = []
    ready: set[int] = set()
    wake = asyncio.Event()

    def on_message(index: int, message: Any) -> None:
        match message:
            case ("ready", _):
                ready.add(index)
            case ("done", result):
                phase.results[index] = result
            case ("error", text):
                phase.errors.append(text)
                phase.results.setdefault(index, {})
        wake.set()

    def on_eof(index: int, exc: BaseException) -> None:
        if index not in phase.results:
            phase.errors.append(f"client {index} exited without a result ({exc!r})")
            phase.results[index] = {}
        wake.set()

    try:
        for job in phase.jobs:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=client_main, args=(job, child_end), daemon=True)
            process.start()
            child_end.close()
            processes.append(process)
            conns[job.index] = parent_end
            tracker.conns[(phase.name, job.index)] = parent_end
            pumps.append(
                pump_pipe(
                    parent_end,
                    loop,
                    functools.partial(on_message, job.index),
                    functools.partial(on_eof, job.index),
                )
            )
        deadline = time.monotonic() + 60
        while len(ready) + len(phase.results) < len(phase.jobs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{phase.name}: clients did not start in time")
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 1.0)
        before = CpuSample.take(pids)
        extra_before = {name: process_cpu_s(pid) for name, pid in extra.items()}
        phase.observer_cpu_before = {
            name: cpu for name, cpu in extra_before.items() if name != " watcher"
        }
        phase.started = time.monotonic()
        for conn in conns.values():
            conn.send(("go", phase.started))
        expected = sum(len(lane) for lane in phase.lanes)
        last_count, last_change = -1, time.monotonic()
        while True:
            count = tracker.committed_of(phase.name)
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            clients_done = len(phase.results) == len(phase.jobs)
            failed = sum(len(r.get("failed", {})) for r in phase.results.values())
            if clients_done and count + failed >= expected:
                break
            if now - phase.started > max_s:
                phase.timed_out = True
                log(f"{phase.name}: stopping after {max_s:g} s ({count}/{expected} committed)")
                break
            if now - last_change > stall_s:
                phase.timed_out = True
                log(f"{phase.name}: no commit for {stall_s:g} s ({count}/{expected} committed)")
                break
            tracker.progress.clear()
            wake.clear()
            waiters = [asyncio.ensure_future(e.wait()) for e in (tracker.progress, wake)]
            await asyncio.wait(waiters, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        phase.ended = time.monotonic()
        after = CpuSample.take(pids)
        extra_after = {name: process_cpu_s(pid) for name, pid in extra.items()}
        for conn in conns.values():
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        deadline = time.monotonic() + 10
        while len(phase.results) < len(phase.jobs) and time.monotonic() < deadline:
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 0.5)
        cpu = cpu_delta(before, after)
        extra_delta = {
            name: round(end - start, 2)
            for name, start in extra_before.items()
            if start is not None and (end := extra_after.get(name)) is not None
        }
        if observer_pids:
            cpu["cpu_s_observers"] = {n: extra_delta.get(n) for n in observer_pids}
        if watcher_pid is not None:
            cpu["cpu_s_event_watcher"] = extra_delta.get(" watcher")
        return cpu
    finally:
        for index in conns:
            tracker.conns.pop((phase.name, index), None)
        for child in processes:
            child.join(timeout=5)
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
        for pump in pumps:  # they see EOF once their client has exited
            pump.join(timeout=5)
        for conn in conns.values():
            conn.close()


def summarise(phase: Phase, tracker: Tracker, cpu: dict[str, Any]) -> dict[str, Any]:
    """Throughput, latency, batch size and failures of a finished phase."""
    expected = sum(len(lane) for lane in phase.lanes)
    latencies: list[float] = []
    commit_times: list[float] = []
    receipts: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    client_stats: Counter[str] = Counter()
    client_cpu = 0.0
    post_ms = {}
    for lane in range(len(phase.lanes)):
        result = phase.results.get(lane, {})
        submitted = result.get("submitted_at") or []
        for code in result.get("failed", {}).values():
            refused[code] += 1
        client_stats.update(result.get("stats", {}))
        client_cpu += result.get("cpu_s", 0.0)
        post_ms[str(lane)] = result.get("post_ms")
        for i in range(len(phase.lanes[lane])):
            seen = tracker.commit.get((phase.name, lane, i))
            if seen is None:
                continue
            commit_times.append(seen[0])
            receipts[seen[1] if seen[2] is None else f"{seen[1]}:{seen[2]}"] += 1
            sent = submitted[i] if i < len(submitted) else None
            if sent is not None:
                latencies.append((seen[0] - sent) * 1000)
    committed = len(commit_times)
    commit_times.sort()
    blocks = [b for b in tracker.blocks if b.tracked[phase.name]]
    summary: dict[str, Any] = {
        "offered_txs": expected,
        "committed_txs": committed,
        "committed_ok": receipts.get("ok", 0),
    }
    if committed >= 2:
        first_block = blocks[0]
        window_s = commit_times[-1] - commit_times[0]
        # The first block's transactions are the window's left edge, not inside it.
        inside = committed - first_block.tracked[phase.name]
        summary["committed_tx_per_s"] = round(inside / window_s, 1) if window_s > 0 else None
        summary["steady_window_s"] = round(window_s, 3)
        lo, hi = commit_times[committed // 10], commit_times[(committed * 9) // 10]
        summary["committed_tx_per_s_middle_80pct"] = (
            round(0.8 * committed / (hi - lo), 1) if hi > lo else None
        )
        summary["first_submit_to_last_commit_tx_per_s"] = round(
            committed / (commit_times[-1] - phase.started), 1
        )
    else:
        summary["committed_tx_per_s"] = None
    summary["latency_ms"] = percentiles(latencies)
    summary["blocks"] = len(blocks)
    summary["mean_batch_size"] = (
        round(sum(b.txs for b in blocks) / len(blocks), 1) if blocks else None
    )
    summary["max_batch_size_seen"] = max((b.txs for b in blocks), default=None)
    if len(blocks) >= 2:
        span = blocks[-1].seen - blocks[0].seen
        summary["blocks_per_s"] = round((len(blocks) - 1) / span, 1) if span > 0 else None
    summary["cpu"] = cpu
    summary["cpu"]["cpu_s_clients"] = round(client_cpu, 2)
    if cpu.get("machine_busy_core_s") is not None:
        # Busy CPU not charged to the nodes or the bench's processes: kernel threads
        # working for them (disk journal, network softirqs) and any other program.
        # The observers and the event watcher are the bench's processes too.
        ours = cpu["cpu_s_all_nodes"] + cpu["cpu_s_bench_parent"] + client_cpu
        ours += sum(v for v in (cpu.get("cpu_s_observers") or {}).values() if v is not None)
        ours += cpu.get("cpu_s_event_watcher") or 0.0
        summary["cpu"]["cpu_s_outside_bench_processes"] = round(
            max(0.0, cpu["machine_busy_core_s"] - ours), 2
        )
    if committed and cpu.get("cpu_s_all_nodes"):
        summary["cpu"]["node_cpu_ms_per_committed_tx"] = round(
            cpu["cpu_s_all_nodes"] / committed * 1000, 3
        )
    summary["client_post_ms"] = post_ms
    summary["client_stats"] = dict(client_stats)
    not_ok = {k: v for k, v in receipts.items() if k != "ok"}
    missing = expected - committed - sum(refused.values())
    summary["failures"] = {
        "refused_at_submit": dict(refused),
        "committed_not_ok": not_ok,
        "never_committed": max(0, missing),
        "total": sum(refused.values()) + sum(not_ok.values()) + max(0, missing),
    }
    summary["timed_out"] = phase.timed_out
    if phase.errors:
        summary["client_errors"] = phase.errors
    return summary


# ------------------------------------------------------------ the observer watcher

# A block frame starts {"type": "block", "height": N, ...}; reading the height
# with a regular expression keeps the arrival stamp of the other stream from
# waiting on json.loads of a large frame.
FRAME_HEIGHT = re.compile(r'"height":\s*(\d+)')


@dataclass
class WatchJob:
    """What the event watcher process follows; picklable for the 'spawn' start method."""

    validator: str
    validator_url: str
    observer: str
    observer_url: str
    ca_file: str | None
    from_height: int
    sample_interval_s: float = 0.1


def watch_main(job: WatchJob, conn: Connection) -> None:
    """Entry point of the event watcher process."""
    try:
        result = run_loop(_watch(job, conn))
        conn.send(("done", result))
    except BaseException as exc:  # report, never hang the parent
        with contextlib.suppress(OSError):
            conn.send(("error", f"watcher: {exc!r}"))
        raise


async def _watch(job: WatchJob, conn: Connection) -> dict[str, Any]:
    """Follow the validator's and the observer's block streams side by side until told to stop.

    Every frame is stamped with ``time.monotonic()`` as it arrives, before it
    is parsed.  At each validator frame the observer's latest height is
    noted; the observer's ``/v1/status`` is sampled every
    ``sample_interval_s`` for its own ``following.lag_blocks``.
    """
    stop = asyncio.Event()

    def on_message(message: Any) -> None:
        if message == ("stop",):
            stop.set()

    pump_pipe(conn, asyncio.get_running_loop(), on_message, lambda exc: stop.set())
    names = (job.validator, job.observer)
    arrivals: dict[str, dict[int, float]] = {name: {} for name in names}
    last = dict.fromkeys(names, job.from_height - 1)
    at_validator: list[tuple[float, int, int]] = []  # (seen, validator height, observer height)
    samples: list[tuple[float, Any, Any, Any, Any]] = []  # (t, lag, source_height, height, source)
    reconnects: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    connected = {name: asyncio.Event() for name in names}
    ssl_context = _client_ssl(job.ca_file)

    async def follow(session: aiohttp.ClientSession, name: str, api_url: str) -> None:
        url = api_url.replace("http", "ws", 1) + "/v1/events"
        while True:
            try:
                async with session.ws_connect(
                    f"{url}?from_height={last[name] + 1}", max_msg_size=0
                ) as ws:
                    connected[name].set()
                    async for message in ws:
                        seen = time.monotonic()
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        found = FRAME_HEIGHT.search(message.data, 0, 200)
                        height = (
                            int(found.group(1))
                            if found
                            else int(json.loads(message.data)["height"])
                        )
                        if height <= last[name]:
                            continue
                        last[name] = height
                        arrivals[name][height] = seen
                        if name == job.validator:
                            at_validator.append((seen, height, last[job.observer]))
            except (aiohttp.ClientError, OSError) as exc:
                errors[f"{name}:{type(exc).__name__}"] += 1
            reconnects[name] += 1
            await asyncio.sleep(0.05)

    async def sample(session: aiohttp.ClientSession) -> None:
        url = f"{job.observer_url}/v1/status"
        while True:
            due = time.monotonic() + job.sample_interval_s
            try:
                async with session.get(url, headers={"Accept": "application/json"}) as response:
                    body = await response.json(content_type=None)
                following = body.get("following") or {}
                samples.append(
                    (
                        time.monotonic(),
                        following.get("lag_blocks"),
                        following.get("source_height"),
                        body.get("height"),
                        following.get("source"),
                    )
                )
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, AttributeError) as exc:
                errors[f"status:{type(exc).__name__}"] += 1
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    started = os.times()
    connector = aiohttp.TCPConnector(ssl=ssl_context)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [
            asyncio.create_task(follow(session, job.validator, job.validator_url)),
            asyncio.create_task(follow(session, job.observer, job.observer_url)),
            asyncio.create_task(sample(session)),
        ]
        try:
            waiter = asyncio.gather(*(event.wait() for event in connected.values()))
            await asyncio.wait_for(waiter, 10)
            conn.send(("ready",))
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    ended = os.times()
    return {
        "arrivals": {name: sorted(seen.items()) for name, seen in arrivals.items()},
        "at_validator": at_validator,
        "samples": samples,
        "reconnects": {name: reconnects[name] for name in names},
        "errors": dict(errors),
        "cpu_s": round(ended.user + ended.system - started.user - started.system, 3),
    }


class Watcher:
    """The event watcher process, seen from the parent."""

    def __init__(self, job: WatchJob) -> None:
        self.job = job
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.pump: threading.Thread | None = None
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.ready = asyncio.Event()
        self.finished = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _on_message(self, message: Any) -> None:
        match message:
            case ("ready",):
                self.ready.set()
            case ("done", result):
                self.result = result
                self.finished.set()
            case ("error", text):
                self.error = text
                self.finished.set()

    def _on_eof(self, exc: BaseException) -> None:
        if self.result is None and self.error is None:
            self.error = f"watcher exited without a result ({exc!r})"
        self.finished.set()

    async def start(self, timeout_s: float = 30.0) -> None:
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        self.process = context.Process(target=watch_main, args=(self.job, child_end), daemon=True)
        self.process.start()
        child_end.close()
        self.conn = parent_end
        self.pump = pump_pipe(
            parent_end, asyncio.get_running_loop(), self._on_message, self._on_eof
        )
        ready = asyncio.ensure_future(self.ready.wait())
        finished = asyncio.ensure_future(self.finished.wait())
        await asyncio.wait(
            {ready, finished}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        finished.cancel()
        if not self.ready.is_set():
            raise RuntimeError(self.error or "the event watcher did not connect in time")

    async def stop(self, timeout_s: float = 15.0) -> dict[str, Any] | None:
        """Tell the watcher to stop, collect what it saw, make sure the process is gone."""
        if self.process is None or self.conn is None:
            return None
        try:
            with contextlib.suppress(OSError):
                self.conn.send(("stop",))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.finished.wait(), timeout_s)
        finally:
            await asyncio.to_thread(self.process.join, 5)
            if self.process.is_alive():
                self.process.terminate()
                await asyncio.to_thread(self.process.join, 5)
            if self.pump is not None:
                await asyncio.to_thread(self.pump.join, 5)
            self.conn.close()
        return self.result


async def observer_settled(
    session: aiohttp.ClientSession,
    validators: Sequence[netctl.NodeEntry],
    observer: netctl.NodeEntry,
    timeout_s: float,
) -> dict[str, Any]:
    """Wait until the observer is at the validators' common height; compare it with them."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        statuses = [await get_json(session, f"{e.api_url}/v1/status") for e in validators]
        mine = await get_json(session, f"{observer.api_url}/v1/status")
        heights = {s["height"] for s in statuses}
        settled = len(heights) == 1 and mine["height"] in heights
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    roots = {s["state_root"] for s in statuses}
    hashes = {s["block_hash"] for s in statuses}
    top = max(heights)
    return {
        "observer_height": mine["height"],
        "validator_heights": sorted(heights),
        "same_height": settled,
        "same_state_root": settled and roots == {mine["state_root"]},
        "same_block_hash": settled and hashes == {mine["block_hash"]},
        "waited_s": round(time.monotonic() - started, 3),
        "alerts": len(mine.get("alerts") or []),
        "lag_blocks_at_end": top - mine["height"],
    }


def observer_summary(
    seen: dict[str, Any],
    job: WatchJob,
    phase: Phase,
    heights: tuple[int, int] | None,
    settled: dict[str, Any] | None,
) -> dict[str, Any]:
    """The observer section of one run, from what the watcher saw."""
    summary: dict[str, Any] = {
        "observer": job.observer,
        "compared_with": job.validator,
        "heights": list(heights) if heights else None,
    }
    lo, hi = heights if heights else (1, 0)
    validator_seen = dict(seen["arrivals"][job.validator])
    observer_seen = dict(seen["arrivals"][job.observer])
    lag_ms = []
    for height in range(lo, hi + 1):
        if height in validator_seen and height in observer_seen:
            lag_ms.append((observer_seen[height] - validator_seen[height]) * 1000)
    at_arrival = [v - o for _, v, o in seen["at_validator"] if lo <= v <= hi]
    status_lag = [
        lag
        for t, lag, *_ in seen["samples"]
        if phase.started <= t <= phase.ended and isinstance(lag, int)
    ]
    summary["lag_blocks_status"] = {
        **percentiles(status_lag),
        "samples": len(status_lag),
        "what": "o0 /v1/status following.lag_blocks, sampled every "
        f"{job.sample_interval_s:g} s during the run",
    }
    summary["lag_blocks_at_validator_arrival"] = {
        **percentiles(at_arrival),
        "min": min(at_arrival, default=None),
        "samples": len(at_arrival),
        "what": f"{job.validator} height minus the last {job.observer} height seen, "
        f"at each {job.validator} block arrival",
    }
    summary["lag_ms"] = {
        **percentiles(lag_ms),
        "min": round(min(lag_ms), 2) if lag_ms else None,
        "blocks": len(lag_ms),
        "missing_on_observer": sum(1 for h in range(lo, hi + 1) if h not in observer_seen),
        "missing_on_validator": sum(1 for h in range(lo, hi + 1) if h not in validator_seen),
        "what": f"{job.observer} arrival minus {job.validator} arrival of the same height "
        "(GET /v1/events on both, one watcher process)",
    }
    summary["end"] = settled
    return summary


# ------------------------------------------------------------ the network


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, headers={"Accept": "application/json"}) as response:
        return await response.json(content_type=None)


async def wait_connected(
    session: aiohttp.ClientSession, nodes: Sequence[netctl.NodeEntry], timeout_s: float
) -> None:
    """Until every node reports every peer link connected."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = [await get_json(session, f"{e.api_url}/v1/status") for e in nodes]
        if all(
            all(peer.get("connected") for peer in (s.get("peers") or {}).values()) for s in statuses
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"peer links not all connected after {timeout_s:g} s")
        await asyncio.sleep(0.1)


async def commit_setup(
    session: aiohttp.ClientSession, api_url: str, envelopes: Sequence[bytes]
) -> None:
    """Commit setup transactions one by one, waiting for each."""
    for envelope in envelopes:
        headers = {"Content-Type": MSGPACK}
        async with session.post(
            f"{api_url}/v1/txs?wait=true&timeout_ms=20000", data=envelope, headers=headers
        ) as response:
            body = await response.json(content_type=None)
        receipt = (body or {}).get("receipt") or {}
        if body.get("status") != "committed" or receipt.get("status") != "ok":
            raise RuntimeError(f"setup transaction did not commit ok: {body}")


async def next_nonces(
    session: aiohttp.ClientSession, api_url: str, signers: dict[str, Any]
) -> dict[str, int]:
    nonces = {}
    for org, signer in signers.items():
        body = await get_json(session, f"{api_url}/v1/nonce/{signer.public_key.hex()}")
        nonces[org] = int(body["pending_next_nonce"])
    return nonces


async def agreement(
    session: aiohttp.ClientSession, nodes: Sequence[netctl.NodeEntry], timeout_s: float = 15.0
) -> dict[str, Any]:
    """Wait until every node is at one height, then compare hashes and state roots."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = {e.name: await get_json(session, f"{e.api_url}/v1/status") for e in nodes}
        heights = {s["height"] for s in statuses.values()}
        if len(heights) == 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    roots = {s["state_root"] for s in statuses.values()}
    hashes = {s["block_hash"] for s in statuses.values()}
    dropped = {
        name: sum(int(p.get("dropped", 0)) for p in (s.get("peers") or {}).values())
        for name, s in statuses.items()
    }
    return {
        "all_agree": len(heights) == 1 and len(roots) == 1 and len(hashes) == 1,
        "heights": {name: s["height"] for name, s in statuses.items()},
        "state_root": next(iter(roots)) if len(roots) == 1 else sorted(roots),
        "views": sorted({s.get("view") for s in statuses.values()}),
        "mempool_sizes": {
            name: (s.get("mempool") or {}).get("size") for name, s in statuses.items()
        },
        "peer_frames_dropped": dropped,
    }


async def observers_agree(
    session: aiohttp.ClientSession,
    observers: Sequence[netctl.NodeEntry],
    validators: dict[str, Any],
    timeout_s: float = 15.0,
) -> dict[str, Any]:
    """Each observer's height, and whether it holds the validators' state root there."""
    heights = set(validators["heights"].values())
    root = validators["state_root"]
    deadline = time.monotonic() + timeout_s
    result = {}
    for entry in observers:
        while True:
            status = await get_json(session, f"{entry.api_url}/v1/status")
            if status["height"] in heights or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        result[entry.name] = {
            "height": status["height"],
            "agrees": len(heights) == 1
            and status["height"] in heights
            and isinstance(root, str)
            and status["state_root"] == root,
            "alerts": len(status.get("alerts") or []),
            "following": status.get("following"),
        }
    return result


def start_network(netdir: Path, timeout_s: float) -> dict[str, int]:
    """``netctl.up``, tolerating its false "exited" verdict on a node that is just starting.

    ``netctl`` checks that a pid is the node by reading ``/proc/<pid>/cmdline``;
    right after the fork that file can still be empty, and ``up`` then gives up
    on a healthy node at once.  Polling the same nodes again settles it.
    """
    try:
        netctl.up(netdir, timeout_s)
    except netctl.NetError as exc:
        network = netctl.load_network(netdir)
        failed = netctl.wait_healthy(network, timeout_s)
        if failed:
            raise
        log(
            f"net up reported a starting node as exited; all are healthy: {str(exc).splitlines()[0]}"
        )
    network = netctl.load_network(netdir)
    pids = {entry.name: netctl.running_pid(entry) for entry in network.nodes}
    missing = [name for name, pid in pids.items() if pid is None]
    if missing:
        raise RuntimeError(f"nodes {missing} are not running")
    return {name: pid for name, pid in pids.items() if pid is not None}


def ports_free(host: str, ports: Sequence[int]) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                busy.append(port)
    return busy


# ------------------------------------------------------------ main


async def bench(args: argparse.Namespace, root: Path, report: dict[str, Any]) -> None:
    netdir = root / "net"
    n = args.validators
    total = n + args.observers
    ports = [args.base_port + i for i in range(total)]
    ports += [args.base_port + PEER_PORT_OFFSET + i for i in range(total)]
    busy = ports_free("127.0.0.1", ports)
    if busy:
        raise RuntimeError(f"ports {busy} are in use; choose another --base-port")
    init_network(netdir, n, tls=args.tls, base_port=args.base_port, observers=args.observers)
    network = netctl.load_network(netdir)
    validators = [e for e in network.nodes if e.role == "validator"]
    observers = [e for e in network.nodes if e.role == "observer"]
    log(f"starting {n} validators and {len(observers)} observers in {netdir}")
    all_pids = await asyncio.to_thread(start_network, netdir, 60.0)
    pids = {e.name: all_pids[e.name] for e in validators}
    observer_pids = {e.name: all_pids[e.name] for e in observers}
    report["node_pids"] = pids
    if observers:
        report["observer_pids"] = observer_pids
    ssl_context: ssl.SSLContext | bool = network.ssl_context() or False
    ca_file = str(network.ca_file) if network.tls and network.ca_file else None
    connector = aiohttp.TCPConnector(ssl=ssl_context)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_connected(session, validators, 20.0)
        primary_url = validators[0].api_url
        signers = {org: load_identity(path).signer for org, path in network.orgs.items()}
        nonces = await next_nonces(session, primary_url, signers)
        tag = f"b{int(time.time())}"
        started = time.perf_counter()
        workload = build_workload(
            signers,
            network.chain_id,
            mode=args.mode,
            chains=args.chains,
            run_tag=f"{tag}t",
            next_nonces=nonces,
        )
        lanes = [[encode_tx(tx) for tx in lane] for lane in workload.lanes(args.clients)]
        lanes = [lane for lane in lanes if lane]
        log(
            f"signed {len(workload.txs)} {args.mode} transactions in "
            f"{time.perf_counter() - started:.1f} s; lanes {[len(lane) for lane in lanes]}"
        )
        tracker = Tracker(validators[-1].api_url, ssl_context)
        height = (await get_json(session, f"{validators[-1].api_url}/v1/status"))["height"]
        subscriber = asyncio.create_task(tracker.run(session, height + 1))
        watcher: Watcher | None = None
        # run name -> (phase, its heights, the observer's state after it, its CPU)
        observed: dict[
            str, tuple[Phase, tuple[int, int] | None, dict[str, Any], dict[str, Any]]
        ] = {}

        async def observe(phase: Phase) -> None:
            """After a run: wait for the observer to catch up and note how it ended."""
            if not observers:
                return
            settled = await observer_settled(session, validators, observers[0], 30.0)
            heights = [b.height for b in tracker.blocks if b.tracked[phase.name]]
            cpu = {}
            for name, pid in observer_pids.items():
                start, end = phase.observer_cpu_before.get(name), process_cpu_s(pid)
                cpu[name] = round(end - start, 2) if start is not None and end is not None else None
            observed[phase.name] = (
                phase,
                (min(heights), max(heights)) if heights else None,
                settled,
                cpu,
            )
            log(
                f"{phase.name}: {observers[0].name} at height {settled['observer_height']} "
                f"after {settled['waited_s']} s; same root {settled['same_state_root']}"
            )

        try:
            await asyncio.wait_for(tracker.connected.wait(), 10)
            await commit_setup(session, primary_url, [encode_tx(tx) for tx in workload.setup])
            log(f"committed {len(workload.setup)} setup transactions")
            if observers:
                settled = await observer_settled(session, validators, observers[0], 30.0)
                if not settled["same_height"]:
                    raise RuntimeError(f"{observers[0].name} did not catch up: {settled}")
                watcher = Watcher(
                    WatchJob(
                        validator=validators[0].name,
                        validator_url=validators[0].api_url,
                        observer=observers[0].name,
                        observer_url=observers[0].api_url,
                        ca_file=ca_file,
                        from_height=settled["observer_height"] + 1,
                    )
                )
                await watcher.start()
                log(f"watching {validators[0].name} and {observers[0].name} block streams")

            # ---- throughput run
            tracker.track("throughput", lanes)
            jobs = [
                ClientJob(
                    index=i,
                    api_url=validators[i % n].api_url,
                    ca_file=ca_file,
                    envelopes=lane,
                    kind="batch",
                    batch_size=args.batch,
                    window=args.window,
                )
                for i, lane in enumerate(lanes)
            ]
            phase = Phase("throughput", lanes, jobs)
            log(f"throughput run: {len(jobs)} client processes, {sum(map(len, lanes))} txs")
            blocks_before = len(tracker.blocks)
            cpu = await run_phase(
                phase,
                tracker,
                pids,
                args.max_run_s,
                args.stall_s,
                observer_pids,
                watcher.pid if watcher else None,
            )
            summary = summarise(phase, tracker, cpu)
            summary["blocks_all"] = len(tracker.blocks) - blocks_before
            report["throughput"] = {
                "mode": args.mode,
                "chains": args.chains,
                "clients": len(jobs),
                "client_nodes": [validators[i % n].name for i in range(len(jobs))],
                "lane_sizes": [len(lane) for lane in lanes],
                "txs_per_post": args.batch,
                "window_per_lane": args.window,
                **summary,
            }
            log(
                f"throughput: {summary.get('committed_tx_per_s')} tx/s, "
                f"p50 {summary['latency_ms']['p50']} ms, batch {summary['mean_batch_size']}"
            )
            await observe(phase)

            # ---- latency run
            if args.duration_s > 0 and args.rate > 0:
                count = max(1, math.ceil(args.rate * args.duration_s))
                per_chain = 16 if args.latency_mode == MIXED else 15
                nonces = await next_nonces(session, primary_url, signers)
                workload = build_workload(
                    signers,
                    network.chain_id,
                    mode=args.latency_mode,
                    chains=math.ceil(count / per_chain),
                    run_tag=f"{tag}l",
                    next_nonces=nonces,
                )
                await commit_setup(session, primary_url, [encode_tx(tx) for tx in workload.setup])
                lane = [encode_tx(tx) for tx in workload.txs[:count]]
                node = validators[args.latency_node % n]
                tracker.track("latency", [lane])
                job = ClientJob(0, node.api_url, ca_file, lane, "paced", rate=args.rate)
                phase = Phase("latency", [lane], [job])
                log(f"latency run: {args.rate:g} tx/s for {args.duration_s:g} s to {node.name}")
                cpu = await run_phase(
                    phase,
                    tracker,
                    pids,
                    args.duration_s + args.stall_s + 30,
                    args.stall_s,
                    observer_pids,
                    watcher.pid if watcher else None,
                )
                summary = summarise(phase, tracker, cpu)
                for key in (
                    "committed_tx_per_s_middle_80pct",
                    "first_submit_to_last_commit_tx_per_s",
                ):
                    summary.pop(key, None)
                report["latency"] = {
                    "mode": args.latency_mode,
                    "offered_tx_per_s": args.rate,
                    "duration_s": args.duration_s,
                    "submit": "one POST /v1/txs per transaction, msgpack, no wait",
                    "client_node": node.name,
                    "offered_s": (phase.results.get(0) or {}).get("offered_s"),
                    "offered_tx_per_s_actual": (phase.results.get(0) or {}).get(
                        "offered_tx_per_s_actual"
                    ),
                    **summary,
                }
                log(
                    f"latency: p50 {summary['latency_ms']['p50']} ms, "
                    f"p99 {summary['latency_ms']['p99']} ms"
                )
                await observe(phase)
        finally:
            if watcher is not None:
                try:
                    seen = await watcher.stop()
                    attach_observer_sections(report, watcher, seen, observed)
                except Exception as exc:  # the report still gets the rest
                    report["observer_error"] = f"{type(exc).__name__}: {exc}"
            subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await subscriber
        report["subscriber"] = {"node": validators[-1].name, "reconnects": tracker.reconnects}
        report["agreement"] = await agreement(session, validators)
        if observers:
            report["agreement"]["observers"] = await observers_agree(
                session, observers, report["agreement"]
            )


def attach_observer_sections(
    report: dict[str, Any],
    watcher: Watcher,
    seen: dict[str, Any] | None,
    observed: dict[str, tuple[Phase, tuple[int, int] | None, dict[str, Any], dict[str, Any]]],
) -> None:
    """Put an ``observer`` section into each run's report from what the watcher saw."""
    if seen is None:
        report["observer_error"] = watcher.error or "the event watcher returned nothing"
        return
    for name, (phase, heights, settled, cpu) in observed.items():
        if name not in report:
            continue
        section = observer_summary(seen, watcher.job, phase, heights, settled)
        run_cpu = (report[name].get("cpu") or {}).get("cpu_s_observers") or {}
        section["cpu_s"] = {
            observer: {"run": run_cpu.get(observer), "run_and_catch_up": total}
            for observer, total in cpu.items()
        }
        section["cpu_s_event_watcher_run"] = (report[name].get("cpu") or {}).get(
            "cpu_s_event_watcher"
        )
        report[name]["observer"] = section
    report["event_watcher"] = {
        "nodes": [watcher.job.validator, watcher.job.observer],
        "reconnects": seen["reconnects"],
        "errors": seen["errors"],
        "cpu_s": seen["cpu_s"],
    }


def verify_ceiling(validators: int, count: int) -> dict[str, Any]:
    from scripts.bench_verify import verify_rate

    backend = ed25519.BACKEND
    rate = verify_rate(backend, count)
    ceiling = CEILING_CORES * rate / validators
    return {
        "backend": backend,
        "verify_per_s_one_core": round(rate),
        "ceiling_tx_per_s": round(ceiling, 1),
        "ceiling_formula": f"{CEILING_CORES} cores x verify rate / {validators} validators",
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4, help="validator processes (4)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (4)")
    parser.add_argument(
        "--chains", type=int, default=1000, help="workload chains (15 or 16 txs each)"
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=INDEPENDENT,
        help="throughput workload (independent: every tx succeeds in any "
        "interleaving; mixed: the diamond chain, cross-sender dependencies "
        "make some txs rejected when lanes interleave)",
    )
    parser.add_argument(
        "--latency-mode",
        choices=MODES,
        default=MIXED,
        help="latency-run workload, in one lane (mixed: the diamond chain)",
    )
    parser.add_argument("--rate", type=float, default=100.0, help="latency run: offered tx/s")
    parser.add_argument("--duration-s", type=float, default=10.0, help="latency run length")
    parser.add_argument(
        "--latency-node",
        type=int,
        default=1,
        help="index of the node the latency client submits to (1: a backup)",
    )
    parser.add_argument("--batch", type=int, default=100, help="envelopes per batch POST")
    parser.add_argument(
        "--window",
        type=int,
        default=200,
        help="transactions in flight per client (submitted, not committed); "
        "keep clients x window under about 1 s of throughput, or requests "
        "outwait the nodes' 1 s re-broadcast and 2 s view-change timers",
    )
    parser.add_argument(
        "--observers",
        type=int,
        default=0,
        help="observer nodes (default 0: validators only, the issue's figure); "
        "with 1 or more the runs compare o0's block stream with v0's",
    )
    parser.add_argument("--base-port", type=int, default=7700)
    parser.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="TLS on API and peer links (default off)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the network directory")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the temporary network directory goes (default: $TMPDIR)",
    )
    parser.add_argument(
        "--max-run-s", type=float, default=90.0, help="stop the throughput run after this long"
    )
    parser.add_argument(
        "--stall-s",
        type=float,
        default=10.0,
        help="end a run when nothing of it commits for this long",
    )
    parser.add_argument(
        "--verify-count",
        type=int,
        default=5000,
        help="signatures per Ed25519 verify-rate measurement",
    )
    args = parser.parse_args(argv)
    if args.validators < 1 or args.clients < 1 or args.chains < 1:
        parser.error("--validators, --clients and --chains must be at least 1")
    if args.observers < 0:
        parser.error("--observers must be at least 0")
    if args.batch < 1 or args.window < args.batch:
        parser.error("--batch must be at least 1 and --window at least --batch")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict[str, Any] = {
        "bench": "provenet network",
        "validators": args.validators,
        "observers": args.observers,
        "tls": args.tls,
        "host": {
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
        },
    }
    busy_before = machine_cpu()
    time.sleep(1.0)
    busy_after = machine_cpu()
    total = busy_after[1] - busy_before[1]
    report["host"]["busy_cores_before_start"] = (
        round((busy_after[0] - busy_before[0]) / total * (os.cpu_count() or 1), 2)
        if total
        else None
    )
    if (report["host"]["busy_cores_before_start"] or 0) > 0.25:
        log(
            f"warning: the host is already busy ({report['host']['busy_cores_before_start']} "
            "cores) before the benchmark starts; results will be lower and noisier"
        )
    log(f"measuring Ed25519 verify rate ({ed25519.BACKEND})")
    report["ed25519"] = verify_ceiling(args.validators, args.verify_count)
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="provenet-bench-", dir=args.work_dir))
    status = run_in_network_dir(
        lambda: bench(args, root, report), root, report, keep=bool(args.keep)
    )
    finish(report)
    print(json.dumps(report, indent=2))
    return status


def run_in_network_dir(
    bench_coroutine: Callable[[], Coroutine[Any, Any, Any]],
    root: Path,
    report: dict[str, Any],
    keep: bool = False,
) -> int:
    """Run one benchmark whose network lives in ``root/net``; always stop the
    network, and remove ``root`` unless ``keep``.  Returns the exit status
    (1 when the benchmark failed, with the error in ``report``)."""
    status = 0
    try:
        run_loop(bench_coroutine())
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        log(f"failed: {report['error']}")
        status = 1
    finally:
        netdir = root / "net"
        if (netdir / netctl.NETWORK_FILE).exists():
            log("stopping the network")
            try:
                report["down"] = netctl.down(netdir)
            except netctl.NetError as exc:
                report["down_error"] = str(exc)
        if keep:
            report["network_dir"] = str(netdir)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


def finish(report: dict[str, Any]) -> None:
    """The headline numbers and the targets of the issue, next to the ceiling."""
    ceiling = report["ed25519"]["ceiling_tx_per_s"]
    throughput = (report.get("throughput") or {}).get("committed_tx_per_s")
    latency = ((report.get("latency") or {}).get("latency_ms") or {}).get("p50")
    report["ed25519"]["throughput_to_ceiling_ratio"] = (
        round(throughput / ceiling, 3) if throughput and ceiling else None
    )
    tput = report.get("throughput") or {}
    validators = report["validators"]
    verify_rate = report["ed25519"]["verify_per_s_one_core"]
    node_ms = (tput.get("cpu") or {}).get("node_cpu_ms_per_committed_tx")
    if node_ms:
        # Every validator verifies every transaction's signature once.
        verify_ms = validators / verify_rate * 1000
        report["cpu_budget_per_tx"] = {
            "node_cpu_ms_all_validators": node_ms,
            "of_which_ed25519_verify_ms": round(verify_ms, 3),
            "ed25519_share": round(verify_ms / node_ms, 3),
            "host_cores_busy": (tput.get("cpu") or {}).get("machine_busy_cores"),
            "cpu_bound_tx_per_s": round(CEILING_CORES / node_ms * 1000, 1),
            "note": "cpu_bound_tx_per_s = 2 cores / node CPU per committed tx; when the host "
            "is busy and this is near the measured rate, node CPU per transaction is the limit",
        }
    report["summary"] = {
        "committed_tx_per_s": throughput,
        "throughput_mode": (report.get("throughput") or {}).get("mode"),
        "latency_p50_ms_at_offered_rate": latency,
        "offered_tx_per_s": (report.get("latency") or {}).get("offered_tx_per_s"),
        "ceiling_tx_per_s": ceiling,
        "ratio_to_ceiling": report["ed25519"]["throughput_to_ceiling_ratio"],
        "target_tx_per_s": TARGET_TX_PER_S,
        "target_p50_ms": TARGET_P50_MS,
        "throughput_target_met": bool(throughput and throughput >= TARGET_TX_PER_S),
        "latency_target_met": bool(latency is not None and latency < TARGET_P50_MS),
    }
    observer = {}
    for name in ("throughput", "latency"):
        section = (report.get(name) or {}).get("observer")
        if section:
            observer[name] = {
                "lag_ms_p50": section["lag_ms"]["p50"],
                "lag_ms_p99": section["lag_ms"]["p99"],
                "lag_blocks_max": section["lag_blocks_at_validator_arrival"]["max"],
                "same_height_and_root": bool(
                    (section.get("end") or {}).get("same_height")
                    and (section.get("end") or {}).get("same_state_root")
                ),
            }
    if observer:
        report["summary"]["observer"] = observer
    contended = []
    for name in ("throughput", "latency"):
        cpu = (report.get(name) or {}).get("cpu") or {}
        outside, busy = cpu.get("cpu_s_outside_bench_processes"), cpu.get("machine_busy_core_s")
        if outside is not None and busy and outside > 0.2 * busy:
            contended.append(f"{name}: {outside} of {busy} busy core-seconds")
    if contended:
        report["summary"]["warning"] = (
            "CPU outside the nodes and the bench's processes (other programs, or kernel "
            "threads) was large, so the numbers are low and noisy; run on an idle host: "
            + "; ".join(contended)
        )


if __name__ == "__main__":
    sys.exit(main())
