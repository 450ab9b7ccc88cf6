"""The load generator: client processes that send pre-signed transactions to one node.

A client process gets a :class:`ClientJob` (its lane of envelopes and its
node), says ``("ready", index)`` once it reached the node, waits for
``("go", at)``, sends, and answers ``("done", result)``.  The parent tells it
``("committed", n)`` as the lane's transactions commit (a batch client
keeps at most ``window`` of them in flight) and ``("stop",)`` to give up.

Two kinds of client:

* ``batch`` (throughput): ``POST /v1/txs/batch`` of ``batch_size``
  envelopes, msgpack both ways, keeping at most ``window`` transactions
  submitted and not yet committed; refusals that say "later"
  (:data:`RETRYABLE`) are sent again after :data:`RETRY_DELAY_S`.
* ``paced`` (latency): one ``POST /v1/txs`` per transaction at ``rate``
  per second, one after another.

The result holds each transaction's submit time (``time.monotonic``, one
clock for every process on Linux), the failures by index, counters, the
POST round-trip percentiles and the process's CPU seconds.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from benchkit.children import pump_pipe
from benchkit.http import MSGPACK, NodeFailed, NodeHttp, ssl_for_ca_file
from benchkit.stats import percentiles
from consensus.codec import encode

BATCH = "batch"
PACED = "paced"
# Refusals that mean "not now": the transaction is sent again.
RETRYABLE = frozenset({"mempool_full", "sender_queue_full", "rate_limited"})
RETRY_DELAY_S = 0.05
MAX_ATTEMPTS = 200
# Connections one client process keeps to its node (the node's per-address cap is 64).
MAX_CONNECTIONS = 64
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ClientJob:
    """What one client process sends; picklable for the 'spawn' start method."""

    index: int
    api_url: str
    ca_file: str | None
    envelopes: list[bytes]
    kind: str  # BATCH (throughput) or PACED (latency)
    batch_size: int = 100
    window: int = 200
    rate: float = 100.0


@dataclass
class ClientState:
    """What the parent has told a client so far."""

    committed: int = 0
    accepted: int = 0
    stop: bool = False
    go_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_message(self, message: Any) -> None:
        match message:
            case ("go", at):
                self.go_at = at
            case ("committed", count):
                self.committed = count
            case ("stop",):
                self.stop = True
        self.changed.set()

    def on_eof(self, exc: BaseException) -> None:
        self.stop = True
        self.changed.set()


async def client(job: ClientJob, conn: Connection) -> dict[str, Any]:
    """A client process's work (run it with ``children.spawn``)."""
    state = ClientState()
    pump_pipe(conn, asyncio.get_running_loop(), state.on_message, state.on_eof)
    async with NodeHttp(
        [job.api_url],
        ssl_for_ca_file(job.ca_file),
        max_connections_per_node=MAX_CONNECTIONS,
        timeout_s=REQUEST_TIMEOUT_S,
        # A loaded node may be slow to accept; the request's own timeout bounds it.
        connect_timeout_s=REQUEST_TIMEOUT_S,
    ) as http:
        await http.send("GET", job.api_url, "/healthz")
        conn.send(("ready", job.index))
        while state.go_at is None and not state.stop:
            await state.changed.wait()
            state.changed.clear()
        started = os.times()
        if job.kind == BATCH:
            result = await batch_client(job, http, state)
        else:
            result = await paced_client(job, http, state)
        ended = os.times()
    result["cpu_s"] = round(ended.user + ended.system - started.user - started.system, 3)
    return result


async def post(
    http: NodeHttp, api_url: str, path: str, body: bytes, stats: Counter[str]
) -> tuple[int, Any]:
    """POST msgpack, read a msgpack answer; (status, body), or (0, None) when the node
    could not be reached (counted in ``stats``)."""
    try:
        answer = await http.send("POST", api_url, path, body, content_type=MSGPACK, accept=MSGPACK)
    except NodeFailed as exc:
        stats[f"transport_error:{exc.kind}"] += 1
        return 0, None
    stats["posts"] += 1
    return answer.status, answer.body


def _result(
    job: ClientJob,
    submitted_at: list[float | None],
    failed: dict[int, str],
    stats: Counter[str],
    post_ms: list[float],
) -> dict[str, Any]:
    return {
        "index": job.index,
        "submitted_at": submitted_at,
        "failed": failed,
        "stats": dict(stats),
        "post_ms": percentiles(post_ms),
        "posts": len(post_ms),
    }


@dataclass
class _Retries:
    """Transactions to send again, and when."""

    attempts: Counter[int] = field(default_factory=Counter)
    pending: list[int] = field(default_factory=list)
    due: float = 0.0

    def attempt(self, index: int, failed: dict[int, str], reason: str) -> bool:
        """Count a failed attempt: True to send it again, or False and the transaction
        failed for ``reason`` once it has had MAX_ATTEMPTS."""
        self.attempts[index] += 1
        if self.attempts[index] < MAX_ATTEMPTS:
            return True
        failed[index] = reason
        return False

    def schedule(self, indices: list[int]) -> None:
        self.pending = sorted(self.pending + indices)
        self.due = time.monotonic() + RETRY_DELAY_S


async def batch_client(job: ClientJob, http: NodeHttp, state: ClientState) -> dict[str, Any]:
    """Send the lane in batches, at most ``window`` transactions in flight."""
    total = len(job.envelopes)
    submitted_at: list[float | None] = [None] * total
    failed: dict[int, str] = {}
    retries = _Retries()
    stats: Counter[str] = Counter()
    post_ms: list[float] = []
    next_index = 0
    while (next_index < total or retries.pending) and not state.stop:
        now = time.monotonic()
        if retries.pending and now >= retries.due:
            indices = retries.pending[: job.batch_size]
            retries.pending = retries.pending[job.batch_size :]
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
            await asyncio.sleep(max(0.0, retries.due - now))
            continue
        body = encode([job.envelopes[i] for i in indices])
        sent = time.monotonic()
        for i in indices:
            if submitted_at[i] is None:
                submitted_at[i] = sent
        status, answer = await post(http, job.api_url, "/v1/txs/batch", body, stats)
        post_ms.append((time.monotonic() - sent) * 1000)
        results = answer.get("results") if status == 200 and isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(indices):
            stats[f"batch_http_{status}"] += 1
            retries.schedule([i for i in indices if retries.attempt(i, failed, f"http_{status}")])
            continue
        again: list[int] = []
        for i, item in zip(indices, results, strict=True):
            outcome = item.get("status")
            error = item.get("error") or {}
            if outcome in ("pending", "committed"):
                state.accepted += 1
            elif outcome == "refused" and error.get("code") in RETRYABLE:
                stats[f"retried:{error.get('code')}"] += 1
                if retries.attempt(i, failed, str(error.get("code"))):
                    again.append(i)
            else:
                failed[i] = str(error.get("code") or outcome)
        if again:
            retries.schedule(again)
    return _result(job, submitted_at, failed, stats, post_ms)


async def paced_client(job: ClientJob, http: NodeHttp, state: ClientState) -> dict[str, Any]:
    """One ``POST /v1/txs`` per transaction at ``rate`` per second, not waiting for commits.

    The POSTs go one after another on one connection: the mixed workload's
    transactions depend on other senders' earlier ones, so they must reach
    the node in order (concurrent POSTs on several connections can overtake
    each other).  A POST slower than the interval delays the next one; the
    rate actually offered is reported.
    """
    total = len(job.envelopes)
    submitted_at: list[float | None] = [None] * total
    failed: dict[int, str] = {}
    stats: Counter[str] = Counter()
    post_ms: list[float] = []

    async def submit(index: int) -> None:
        sent = time.monotonic()
        submitted_at[index] = sent
        status, answer = await post(http, job.api_url, "/v1/txs", job.envelopes[index], stats)
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
        **_result(job, submitted_at, failed, stats, post_ms),
        "offered_s": round(offered_s, 3),
        "offered_tx_per_s_actual": round(total / offered_s, 1) if offered_s > 0 else None,
    }
