"""The commit subscriber: one node's block stream, timestamping the runs' transactions."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from benchkit.console import log
from benchkit.http import NodeFailed, NodeHttp
from consensus.codec import digest

# A transaction's place in a benchmark: (phase name, lane, index in the lane).
TxPlace = tuple[str, int, int]


@dataclass(frozen=True)
class Block:
    seen: float
    height: int
    txs: int
    tracked: Counter[str]  # transactions of each phase in this block


@dataclass(frozen=True)
class Commit:
    """When the subscriber saw a transaction commit, and its receipt."""

    seen: float
    status: str
    code: str | None


class Tracker:
    """Listens to one node's block stream and timestamps the transactions of the runs.

    Each lane's client process hears how many of its transactions committed
    (over its pipe, registered in ``conns``), which is its flow control.
    """

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.index: dict[bytes, TxPlace] = {}  # tx id -> its place
        self.commit: dict[TxPlace, Commit] = {}
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

    def blocks_of(self, phase: str) -> list[Block]:
        return [b for b in self.blocks if b.tracked[phase]]

    async def run(self, http: NodeHttp, from_height: int) -> None:
        """Follow the stream from ``from_height`` until cancelled."""
        self.last_height = from_height - 1
        await http.follow_events(
            self.api_url,
            lambda: self.last_height + 1,
            lambda seen, text: self.on_frame(seen, json.loads(text)),
            on_open=self.connected.set,
            on_drop=self._on_drop,
        )

    def _on_drop(self, error: NodeFailed | None) -> None:
        if error is not None:
            log(f"event stream: {error}; reconnecting")
        self.reconnects += 1

    def on_frame(self, seen: float, frame: dict[str, Any]) -> None:
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
            self.commit[key] = Commit(seen, str(tx.get("status")), tx.get("code"))
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
