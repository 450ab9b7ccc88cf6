"""What every node does with executed blocks, validator or observer.

:class:`ChainHost` holds the executed chain (store and ledger), the mempool
the API reads, the clients waiting on transactions and the event-stream
subscribers.  A validator's :class:`~node.runtime.engine.Engine` executes the
blocks its replica delivers; an observer's :class:`~node.runtime.follower.Follower`
executes the blocks it fetched and checked.  Both call
:meth:`ChainHost.execute_and_announce`, so waiting clients, subscribers,
the mempool and the metrics hear about a block the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from consensus.blocks import CommittedBlock
from contracts.orgs import nonce_key
from contracts.records import load_int
from node.runtime.config import NodeConfig
from node.runtime.divergence import Divergence
from node.runtime.ledger import ExecutedBlock, Ledger
from node.runtime.mempool import Dropped, Mempool, PoolEntry, Refused
from node.runtime.metrics import NodeMetrics
from node.runtime.storage import Store
from node.runtime.views import event_view

log = logging.getLogger("provenet.chain")

MAX_ALERTS_KEPT = 100


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Alert:
    kind: str
    validator: str
    height: int
    message: str
    time_ms: int

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "validator": self.validator,
            "height": self.height,
            "message": self.message,
            "time_ms": self.time_ms,
        }


@dataclass(frozen=True)
class Outcome:
    """How a transaction ended, for clients waiting on it."""

    tx_id: bytes
    status: str  # "committed" or "dropped"
    code: str | None
    message: str


class Subscriber:
    """One event-stream client: a bounded queue of block frames."""

    def __init__(self, max_blocks: int) -> None:
        self.queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(max_blocks)
        self.overflowed = False

    def offer(self, frame: dict[str, object]) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed = True


class ChainHost:
    def __init__(
        self, config: NodeConfig, store: Store, ledger: Ledger, metrics: NodeMetrics
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.store = store
        self.ledger = ledger
        self.metrics = metrics
        self.mempool = Mempool(config.limits, self.committed_nonce)
        self._waiters: dict[bytes, list[asyncio.Future[Outcome]]] = {}
        self._dropped: OrderedDict[bytes, Outcome] = OrderedDict()
        self._subscribers: set[Subscriber] = set()
        self.last_executed: ExecutedBlock | None = None
        self.fatal: BaseException | None = None
        # The latest block executed here, and an event set (then replaced) each
        # time one is: what chain streams (node/api/chain_stream.py) wait on.
        self.latest_block: CommittedBlock | None = None
        self._block_stored = asyncio.Event()
        self.alerts: deque[Alert] = deque(maxlen=MAX_ALERTS_KEPT)
        # Set when this node's results differ from certified ones: it then
        # executes nothing more (node/runtime/divergence.py).
        self.divergence: Divergence | None = None

    # ------------------------------------------------------------ divergence

    def halt(self, divergence: Divergence) -> None:
        """Stop executing (or say more about why it stopped): status, metrics, log."""
        self.divergence = divergence
        self.metrics.halted.set(1)
        self.metrics.diverged.clear()
        difference = divergence.difference
        self.metrics.diverged.labels(
            divergence.kind,
            "" if divergence.tx_id is None else divergence.tx_id.hex(),
            "" if difference is None or difference.own is None else difference.own.describe(),
            ""
            if difference is None or difference.certified is None
            else difference.certified.describe(),
        ).set(divergence.height)
        last = self.alerts[-1] if self.alerts else None
        if last is not None and last.kind == "execution_diverged":
            self.alerts.pop()  # the same divergence, now said more precisely
        self.alerts.append(
            Alert(
                "execution_diverged",
                divergence.source,
                divergence.height,
                divergence.message,
                now_ms(),
            )
        )
        log.error("%s", divergence.message)

    def submit(self, entry: PoolEntry) -> PoolEntry:
        """Admit a checked transaction; a node that orders none refuses it."""
        raise Refused("read_only", "this node does not accept transactions; submit to a validator")

    def committed_nonce(self, sender: bytes) -> int:
        return load_int(self.ledger.state, nonce_key(sender))

    # ------------------------------------------------------------ blocks

    def execute_and_announce(self, block: CommittedBlock) -> ExecutedBlock:
        """Execute and store ``block``, then tell everyone who is waiting."""
        assert self.divergence is None, "a node whose execution diverged executes nothing"
        started = time.perf_counter()
        executed = self.ledger.execute_block(block)
        self.metrics.block_execute_seconds.observe(time.perf_counter() - started)
        self.last_executed = executed
        self.metrics.height.set(executed.height)
        self.metrics.blocks.inc()
        for receipt in executed.receipts:
            self.metrics.txs.labels(str(receipt["status"])).inc()
        for tx_id in executed.tx_ids:
            self._resolve(Outcome(tx_id, "committed", None, ""))
        self._record_dropped(self.mempool.on_executed(executed.tx_ids, executed.senders))
        self.metrics.mempool_size.set(len(self.mempool))
        self._publish(executed)
        self.latest_block = block
        stored, self._block_stored = self._block_stored, asyncio.Event()
        stored.set()
        return executed

    def block_stored(self) -> asyncio.Event:
        """An event set when the next block is stored here (take it before waiting)."""
        return self._block_stored

    def _publish(self, executed: ExecutedBlock) -> None:
        if not self._subscribers:
            return
        stored = self.store.block(executed.height)
        assert stored is not None, "an executed block is stored"
        frame = event_view(stored)
        for subscriber in list(self._subscribers):
            subscriber.offer(frame)

    def drop_overflowed_subscribers(self) -> None:
        # A subscriber that fell a whole queue behind gets no more frames; its
        # handler sees ``overflowed`` and closes the stream so the client resumes.
        self._subscribers -= {s for s in self._subscribers if s.overflowed}

    # ------------------------------------------------------------ clients

    def outcome_of(self, tx_id: bytes) -> Outcome | None:
        if self.store.has_tx(tx_id):
            return Outcome(tx_id, "committed", None, "")
        return self._dropped.get(tx_id)

    async def wait_for(self, tx_id: bytes, timeout_s: float) -> Outcome | None:
        """The outcome of ``tx_id``, waiting up to ``timeout_s``; None if still pending."""
        known = self.outcome_of(tx_id)
        if known is not None or self.mempool.get(tx_id) is None:
            return known
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_id, []).append(future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(tx_id)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[tx_id]

    def subscribe(self) -> Subscriber | None:
        if len(self._subscribers) >= self.limits.max_subscribers:
            return None
        subscriber = Subscriber(self.limits.subscriber_queue_blocks)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def _resolve(self, outcome: Outcome) -> None:
        for future in self._waiters.pop(outcome.tx_id, []):
            if not future.done():
                future.set_result(outcome)

    def _record_dropped(self, dropped: list[Dropped]) -> None:
        for item in dropped:
            outcome = Outcome(item.tx_id, "dropped", item.code, item.message)
            self._dropped[item.tx_id] = outcome
            if len(self._dropped) > self.limits.dropped_receipts_kept:
                self._dropped.popitem(last=False)
            self.metrics.dropped.labels(item.code).inc()
            self._resolve(outcome)
