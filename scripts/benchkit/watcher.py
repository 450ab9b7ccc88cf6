"""The event watcher: a validator's and an observer's block streams side by side.

It runs in a process of its own (``children.Child``), so the arrival stamps
are not held up by the bench's work; the parent reads what it saw after the
runs and :func:`benchkit.report.observer_summary` turns it into figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from benchkit.children import serve_until_stopped
from benchkit.http import NodeFailed, NodeHttp, ssl_for_ca_file
from node.sdk.network_file import NodeEntry

# A block frame starts {"type": "block", "height": N, ...}; reading the height
# with a regular expression keeps the arrival stamp of the other stream from
# waiting on json.loads of a large frame.
FRAME_HEIGHT = re.compile(r'"height":\s*(\d+)')
# Where in a frame the height is looked for.
_FRAME_HEAD_CHARS = 200
CONNECT_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 10.0


def frame_height(frame: str) -> int:
    """The height of a block frame, from its first characters when it is there."""
    found = FRAME_HEIGHT.search(frame, 0, _FRAME_HEAD_CHARS)
    return int(found.group(1)) if found else int(json.loads(frame)["height"])


@dataclass(frozen=True)
class WatchJob:
    """What the event watcher process follows; picklable for the 'spawn' start method."""

    validator: str
    validator_url: str
    observer: str
    observer_url: str
    ca_file: str | None
    from_height: int
    sample_interval_s: float = 0.1


class _Seen:
    """What the watcher records."""

    def __init__(self, job: WatchJob) -> None:
        self.job = job
        names = (job.validator, job.observer)
        self.arrivals: dict[str, dict[int, float]] = {name: {} for name in names}
        self.last = dict.fromkeys(names, job.from_height - 1)
        # (seen, validator height, observer height) at each validator block
        self.at_validator: list[tuple[float, int, int]] = []
        # (t, lag_blocks, source_height, height, source) of the observer's status
        self.samples: list[tuple[float, Any, Any, Any, Any]] = []
        self.reconnects: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.connected = {name: asyncio.Event() for name in names}

    def on_frame(self, name: str, seen: float, frame: str) -> None:
        height = frame_height(frame)
        if height <= self.last[name]:
            return
        self.last[name] = height
        self.arrivals[name][height] = seen
        if name == self.job.validator:
            self.at_validator.append((seen, height, self.last[self.job.observer]))

    def on_drop(self, name: str, error: NodeFailed | None) -> None:
        if error is not None:
            self.errors[f"{name}:{error.kind}"] += 1
        self.reconnects[name] += 1

    def on_status(self, body: Any) -> None:
        if not isinstance(body, dict):
            self.errors["status:AttributeError"] += 1
            return
        following = body.get("following") or {}
        self.samples.append(
            (
                time.monotonic(),
                following.get("lag_blocks"),
                following.get("source_height"),
                body.get("height"),
                following.get("source"),
            )
        )

    async def follow(self, http: NodeHttp, name: str, api_url: str) -> None:
        await http.follow_events(
            api_url,
            lambda: self.last[name] + 1,
            lambda seen, frame: self.on_frame(name, seen, frame),
            on_open=self.connected[name].set,
            on_drop=lambda error: self.on_drop(name, error),
        )

    async def sample(self, http: NodeHttp) -> None:
        while True:
            due = time.monotonic() + self.job.sample_interval_s
            try:
                self.on_status(await http.get_json(self.job.observer_url, "/v1/status"))
            except NodeFailed as exc:
                self.errors[f"status:{exc.kind}"] += 1
            await asyncio.sleep(max(0.0, due - time.monotonic()))


async def watch(job: WatchJob, conn: Connection) -> dict[str, Any]:
    """The watcher process's work: follow both streams until told to stop.

    Every frame is stamped with ``time.monotonic()`` as it arrives, before it
    is parsed.  At each validator frame the observer's latest height is
    noted; the observer's ``/v1/status`` is sampled every
    ``sample_interval_s`` for its own ``following.lag_blocks``.
    """
    seen = _Seen(job)
    started = os.times()
    async with NodeHttp(
        [job.validator_url, job.observer_url],
        ssl_for_ca_file(job.ca_file),
        connect_timeout_s=CONNECT_TIMEOUT_S,
    ) as http:
        tasks = [
            asyncio.create_task(seen.follow(http, job.validator, job.validator_url)),
            asyncio.create_task(seen.follow(http, job.observer, job.observer_url)),
            asyncio.create_task(seen.sample(http)),
        ]
        await serve_until_stopped(conn, tasks, list(seen.connected.values()), READY_TIMEOUT_S)
    ended = os.times()
    return {
        "arrivals": {name: sorted(times.items()) for name, times in seen.arrivals.items()},
        "at_validator": seen.at_validator,
        "samples": seen.samples,
        "reconnects": {name: seen.reconnects[name] for name in seen.arrivals},
        "errors": dict(seen.errors),
        "cpu_s": round(ended.user + ended.system - started.user - started.system, 3),
    }


async def observer_settled(
    http: NodeHttp,
    validators: Sequence[NodeEntry],
    observer: NodeEntry,
    timeout_s: float,
) -> dict[str, Any]:
    """Wait until the observer is at the validators' common height; compare it with them."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        statuses = [await http.get_json(e.api_url, "/v1/status") for e in validators]
        mine = await http.get_json(observer.api_url, "/v1/status")
        heights = {s["height"] for s in statuses}
        settled = len(heights) == 1 and mine["height"] in heights
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    roots = {s["state_root"] for s in statuses}
    hashes = {s["block_hash"] for s in statuses}
    return {
        "observer_height": mine["height"],
        "validator_heights": sorted(heights),
        "same_height": settled,
        "same_state_root": settled and roots == {mine["state_root"]},
        "same_block_hash": settled and hashes == {mine["block_hash"]},
        "waited_s": round(time.monotonic() - started, 3),
        "alerts": len(mine.get("alerts") or []),
        "lag_blocks_at_end": max(heights) - mine["height"],
    }
