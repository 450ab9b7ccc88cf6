"""The replica task: the one coroutine that owns the Replica.

Theory of operation
-------------------
Peer links, the client API and the clock all reach the replica through
this task.  Peer messages (already authenticated and signature-checked by
node/peers.py) and client requests released by the mempool are queued as
events; :meth:`Engine.run` takes them one at a time, calls
``Replica.step`` and carries out the effects in order (etcd raft's
Step/Ready):

* ``Persist`` records are gathered and written in one durable SQLite
  transaction before the next ``Send``/``Broadcast``/``Deliver`` (persist
  before send), or at the end of the step;
* ``Send``/``Broadcast`` encode the message once and queue the frame on the
  peer links (which never block the task);
* ``Deliver`` executes the block through contracts/ and stores it with its
  receipts and state writes in one transaction; the state root then goes
  back to the replica as ``Executed``, and the mempool, waiting clients and
  event-stream subscribers hear about it;
* ``ServeBlocks`` answers a peer's state request from the block store;
* ``RequestDropped`` is counted; the mempool offers the request again later
  unless it was already ordered.

An ``InvariantViolation`` from the replica, or any exception while
executing, stops the node: its durable state is consistent, and a restart
recovers from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from consensus.blocks import CommittedBlock, batch_of
from consensus.codec import DecodeError, digest
from consensus.events import (
    Broadcast,
    ClientRequest,
    Deliver,
    Effect,
    Event,
    Executed,
    Persist,
    Received,
    Record,
    RequestDropped,
    Send,
    ServeBlocks,
    StableCheckpointRecord,
    Tick,
    compact,
)
from consensus.messages import CertifiedBatch, ForwardedRequest, Message, Request, StateResponse
from consensus.replica import Replica
from consensus.wire import message_to_wire, record_to_wire
from contracts.orgs import nonce_key
from contracts.records import load_int
from contracts.tx import decode_tx
from node.config import NodeConfig
from node.ledger import ExecutedBlock, Ledger, TxCache
from node.mempool import Dropped, Mempool, PoolEntry
from node.metrics import NodeMetrics
from node.storage import Store
from node.views import event_view

log = logging.getLogger("provenet.engine")

HOUSEKEEPING_INTERVAL_MS = 250
# Events taken in one turn before the task yields to the I/O loop.
EVENTS_PER_TURN = 256


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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


class Engine:
    def __init__(
        self,
        config: NodeConfig,
        replica: Replica,
        store: Store,
        ledger: Ledger,
        tx_cache: TxCache,
        metrics: NodeMetrics,
        send: Callable[[int, bytes], None],
        broadcast: Callable[[bytes], None],
        backlog_bytes: Callable[[int], int],
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.replica = replica
        self.store = store
        self.ledger = ledger
        self.tx_cache = tx_cache
        self.metrics = metrics
        self._send = send
        self._broadcast = broadcast
        self._backlog_bytes = backlog_bytes
        self.mempool = Mempool(config.limits, self.committed_nonce)
        self._events: deque[Event] = deque()
        self._peer_events = 0
        self._wakeup = asyncio.Event()
        self._records: list[Record] = []
        self._waiters: dict[bytes, list[asyncio.Future[Outcome]]] = {}
        self._dropped: OrderedDict[bytes, Outcome] = OrderedDict()
        self._subscribers: set[Subscriber] = set()
        self._stopped = False
        self.last_executed: ExecutedBlock | None = None
        self.fatal: BaseException | None = None

    # ------------------------------------------------------------ inputs

    def committed_nonce(self, sender: bytes) -> int:
        return load_int(self.ledger.state, nonce_key(sender))

    def on_peer_message(self, sender: int, message: Message) -> bool:
        """Queue an authenticated peer message; False when the queue is full."""
        if self._peer_events >= self.limits.inbound_queue_max:
            return False
        self._peer_events += 1
        self._events.append(Received(sender, message))
        self._wakeup.set()
        return True

    def submit(self, entry: PoolEntry) -> PoolEntry:
        """Admit a checked transaction to the mempool (raises mempool.Refused)."""
        held = self.mempool.admit(entry)
        if held is entry:
            self._dropped.pop(entry.tx_id, None)
            self.tx_cache.put(entry.tx_id, entry.tx)
            self._release(entry.tx.sender)
            self.metrics.mempool_size.set(len(self.mempool))
        return held

    def request_valid(self, payload: bytes) -> bool:
        """The replica's check of a request it did not admit itself (decode + signature)."""
        tx_id = digest(payload)
        if self.mempool.get(tx_id) is not None or tx_id in self.tx_cache:
            return True
        try:
            tx = decode_tx(payload, self.ledger.contract_limits)
        except DecodeError:
            return False
        if tx.chain_id != self.config.chain_id or not self.ledger.verify(tx):
            return False
        self.tx_cache.put(tx_id, tx)
        return True

    def _release(self, sender: bytes) -> None:
        for entry in self.mempool.release(sender, now_ms()):
            request = Request(entry.payload, entry.tx_id)
            self._events.append(ClientRequest(request))
            if not self.replica.active:
                # A replica changing views keeps requests without forwarding
                # them.  Sending them to every validator now (PBFT's client
                # multicast) serves this node's clients even while it is alone
                # in a view, and keeps each sender's nonce order: the frames
                # reach every possible next primary ahead of later forwards.
                self._broadcast(message_to_wire(ForwardedRequest(request, self.replica.me)))
        self._wakeup.set()

    # ------------------------------------------------------------ outputs to clients

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

    # ------------------------------------------------------------ the task

    def stop(self) -> None:
        self._stopped = True
        self._wakeup.set()

    async def run(self, initial_effects: list[Effect]) -> None:
        try:
            self._carry_out(initial_effects)
            await self._loop()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("replica task stopped")
                self.fatal = exc
            raise

    async def _loop(self) -> None:
        last_tick = 0
        next_housekeeping = 0
        while not self._stopped:
            # Recomputed every turn: a request that just arrived shortens the wait.
            next_tick = last_tick + self._tick_interval_ms()
            if not self._events:
                wait_s = max(0.0, (next_tick - now_ms()) / 1000)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait_s)
                self._wakeup.clear()
            for _ in range(min(EVENTS_PER_TURN, len(self._events))):
                event = self._events.popleft()
                if isinstance(event, Received):
                    self._peer_events -= 1
                self._step(event)
            current = now_ms()
            if current >= last_tick + self._tick_interval_ms():
                last_tick = current
                self._step(Tick(current))
            if current >= next_housekeeping:
                next_housekeeping = current + HOUSEKEEPING_INTERVAL_MS
                self._housekeeping(current)
            await asyncio.sleep(0)

    def _tick_interval_ms(self) -> int:
        """Tick often only while requests wait to be batched: an idle node
        ticking every millisecond or two burns CPU its busy peers need."""
        if self.replica.unproposed:
            return max(1, self.limits.busy_tick_interval_ms)
        return max(1, self.limits.tick_interval_ms)

    def _step(self, event: Event) -> None:
        self._carry_out(self.replica.step(event))

    def _carry_out(self, effects: list[Effect]) -> None:
        follow_ups: deque[Event] = deque()
        pending: list[Record] = []
        for effect in effects:
            match effect:
                case Persist(record=record):
                    pending.append(record)
                    continue
            self._persist(pending)
            match effect:
                case Send(to=to, message=message):
                    self._send(to, message_to_wire(message))
                case Broadcast(message=message):
                    self._broadcast(message_to_wire(message))
                case Deliver(block=block):
                    executed = self._execute(block)
                    follow_ups.append(Executed(executed.height, executed.state_root))
                case ServeBlocks(to=to, from_height=low, to_height=high):
                    self._serve_blocks(to, low, high)
                case RequestDropped(reason=reason):
                    self.metrics.submissions.labels(f"replica_{reason}").inc()
        self._persist(pending)
        while follow_ups:
            self._carry_out(self.replica.step(follow_ups.popleft()))

    def _persist(self, pending: list[Record]) -> None:
        if not pending:
            return
        self._records.extend(pending)
        if any(isinstance(record, StableCheckpointRecord) for record in pending):
            self._records = compact(self._records)
            self.store.replace_records([record_to_wire(r) for r in self._records])
        else:
            self.store.append_records([record_to_wire(r) for r in pending])
        pending.clear()

    def load_records(self, records: list[Record]) -> None:
        self._records = list(records)

    # ------------------------------------------------------------ blocks

    def _execute(self, block: CommittedBlock) -> ExecutedBlock:
        started = time.perf_counter()
        executed = self.ledger.execute_block(block)
        self.metrics.block_execute_seconds.observe(time.perf_counter() - started)
        self.last_executed = executed
        self.metrics.height.set(executed.height)
        self.metrics.view.set(self.replica.view)
        self.metrics.blocks.inc()
        for receipt in executed.receipts:
            self.metrics.txs.labels(str(receipt["status"])).inc()
        for tx_id in executed.tx_ids:
            self._resolve(Outcome(tx_id, "committed", None, ""))
        self._record_dropped(self.mempool.on_executed(executed.tx_ids, executed.senders))
        for sender in executed.senders:
            self._release(sender)
        self.metrics.mempool_size.set(len(self.mempool))
        self._publish(executed)
        return executed

    def _publish(self, executed: ExecutedBlock) -> None:
        if not self._subscribers:
            return
        stored = self.store.block(executed.height)
        assert stored is not None, "an executed block is stored"
        frame = event_view(stored)
        for subscriber in list(self._subscribers):
            subscriber.offer(frame)

    def _serve_blocks(self, to: int, low: int, high: int) -> None:
        """Answer a state request with as many blocks as fit in half a frame.

        A peer whose earlier answers still wait in its send queue is not sent
        more: it will ask again, and a peer asking in a loop cannot make this
        node queue block after block in memory.
        """
        if self._backlog_bytes(to) > self.limits.max_frame_bytes:
            self.metrics.peer_frames.labels("out", "state_request_deferred").inc()
            return
        budget_bytes = self.limits.max_frame_bytes // 2
        blocks: list[CertifiedBatch] = []
        for height in range(low, high + 1):
            stored = self.store.block(height)
            if stored is None:
                break
            budget_bytes -= sum(len(request.payload) for request in stored.block.requests)
            if blocks and budget_bytes < 0:
                break
            blocks.append(CertifiedBatch(batch_of(stored.block), stored.block.certificate))
        if blocks:
            self._send(to, message_to_wire(StateResponse(tuple(blocks), self.replica.me)))

    def _housekeeping(self, current_ms: int) -> None:
        next_height = self.store.height() + 1
        self._record_dropped(self.mempool.expire(next_height, current_ms))
        for entry in self.mempool.due_for_resubmit(current_ms):
            # PBFT's client retransmission: a request not executed in time goes to
            # every validator, so every backup's request timer runs and a silent
            # primary is deposed by a quorum rather than by this node alone.
            request = Request(entry.payload, entry.tx_id)
            self._events.append(ClientRequest(request))
            self._broadcast(message_to_wire(ForwardedRequest(request, self.replica.me)))
        self.metrics.mempool_size.set(len(self.mempool))
        self.metrics.view.set(self.replica.view)
        # A subscriber that fell a whole queue behind gets no more frames; its
        # handler sees ``overflowed`` and closes the stream so the client resumes.
        self._subscribers -= {s for s in self._subscribers if s.overflowed}
