"""The replica task: the one coroutine that owns the Replica.

Theory of operation
-------------------
Peer links, the client API and the clock all reach the replica through
this task.  Peer messages (already authenticated and signature-checked by
node/runtime/peers.py) and client requests released by the mempool are queued as
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

One broken invariant is this node's own fault and named instead: a block
delivered with its commit certificate (or a stable checkpoint) carrying a
results root for a height this node executed to another root.  Then its
execution diverged: the task stops stepping the replica and executing
(before that block), names the first receipt it got wrong from a peer's
certified results (node/runtime/divergence.py) and waits to be stopped,
while the client API keeps serving reads and says why in ``/v1/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable

from consensus.blocks import CommittedBlock, batch_of
from consensus.codec import DecodeError, digest
from consensus.epochs import ValidatorHistory
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
from consensus.replica import InvariantViolation, Replica
from consensus.wire import message_to_wire, record_to_wire
from contracts.tx import decode_tx
from node.runtime import divergence
from node.runtime.chain import ChainHost, now_ms
from node.runtime.config import NodeConfig
from node.runtime.ledger import ExecutedBlock, Ledger, TxCache
from node.runtime.mempool import PoolEntry, Refused
from node.runtime.metrics import NodeMetrics
from node.runtime.storage import Store
from node.sdk.transport import RetryPolicy, Transport

log = logging.getLogger("provenet.engine")

HOUSEKEEPING_INTERVAL_MS = 250
# Events taken in one turn before the task yields to the I/O loop.
EVENTS_PER_TURN = 256


class Engine(ChainHost):
    """The replica task of a validator; see the module docstring."""

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
        super().__init__(config, store, ledger, metrics)
        self.replica = replica
        self.tx_cache = tx_cache
        self._send = send
        self._broadcast = broadcast
        self._backlog_bytes = backlog_bytes
        self._events: deque[Event] = deque()
        self._peer_events = 0
        self._wakeup = asyncio.Event()
        self._records: list[Record] = []
        self._stopped = False
        # The TLS context to reach peers' client APIs (certified results when
        # this node diverged); None: no TLS.
        self.client_ssl: ssl.SSLContext | None = None
        # Told the replica's validator history whenever its epochs change (a
        # set decided, or an old one pruned): the peer links follow it.
        self.on_epochs: Callable[[ValidatorHistory], None] | None = None
        self._epochs_seen = replica.epochs.epochs

    # ------------------------------------------------------------ inputs

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
        if self.divergence is not None:
            raise Refused("unavailable", f"this node stopped: {self.divergence.message}")
        held = self.mempool.admit(entry)
        if held is entry:
            self._dropped.pop(entry.tx_id, None)
            self.tx_cache.put(entry.tx_id, entry.tx)
            self._release(entry.tx.sender)
            self.metrics.mempool_size.set(len(self.mempool))
        return held

    def request_valid(self, payload: bytes) -> bool:
        """The replica's check of a request it did not admit itself (decode +
        signature, and not already on this node's chain: a replica restarted
        from disk has forgotten which requests its chain ordered, and would
        keep, and as primary propose again, one a peer forwards it)."""
        tx_id = digest(payload)
        if self.store.has_tx(tx_id):
            return False
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

    # ------------------------------------------------------------ the task

    def stop(self) -> None:
        self._stopped = True
        self._wakeup.set()

    async def run(self, initial_effects: list[Effect]) -> None:
        try:
            try:
                self._carry_out(initial_effects)
                await self._loop()
            except divergence.Diverged as diverged:
                await self._stop_diverged(diverged)
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
        self._carry_out(self._replica_step(event))

    def _replica_step(self, event: Event) -> list[Effect]:
        """``Replica.step``; a stable checkpoint this node's results contradict
        raises :class:`~node.runtime.divergence.Diverged` instead of the
        replica's InvariantViolation (consensus/checkpointing.py)."""
        try:
            return self.replica.step(event)
        except InvariantViolation:
            stable = self.replica.stable
            own = self.store.results_root_at(stable.height) if stable.height else None
            if own is not None and own != stable.results_root:
                raise divergence.Diverged(
                    stable.height,
                    f"a stable checkpoint at height {stable.height} carries results "
                    "this node did not compute",
                ) from None
            raise

    def _carry_out(self, effects: list[Effect]) -> None:
        """Carry out ``effects``, then tell the replica of each block executed,
        in the order executed.  One queue for all of them: stepping an
        ``Executed`` can deliver more blocks (a checkpoint moved the window,
        or the validator history now settles heights held back), and their
        ``Executed`` must wait behind those already queued, or the replica
        hears of a height before the ones below it."""
        follow_ups: deque[Event] = deque()
        self._apply(effects, follow_ups)
        while follow_ups:
            self._apply(self._replica_step(follow_ups.popleft()), follow_ups)

    def _apply(self, effects: list[Effect], follow_ups: deque[Event]) -> None:
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
                    follow_ups.append(
                        Executed(executed.height, executed.results_root, executed.validators)
                    )
                case ServeBlocks(to=to, from_height=low, to_height=high):
                    self._serve_blocks(to, low, high)
                case RequestDropped(reason=reason):
                    self.metrics.submissions.labels(f"replica_{reason}").inc()
        self._persist(pending)

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
        self._check_carried_results(block)
        executed = self.execute_and_announce(block)
        self.metrics.view.set(self.replica.view)
        for sender in executed.senders:
            self._release(sender)
        return executed

    def _check_carried_results(self, block: CommittedBlock) -> None:
        """A committed block's carried results root is certified by a quorum: if it
        is not this node's own for that height, this node diverged (raises)."""
        header = block.header
        if header.executed_height == 0:
            return
        own = self.store.results_root_at(header.executed_height)
        if own is not None and own != header.executed_results_root:
            raise divergence.Diverged(
                header.executed_height,
                f"committed block {header.height} certifies results at height "
                f"{header.executed_height} this node did not compute",
            )

    async def _stop_diverged(self, diverged: divergence.Diverged) -> None:
        """Execute nothing more; name the first receipt that differs; wait to be stopped."""
        self.halt(divergence.noticed(diverged.detected_height, diverged.reason))
        sources = [divergence.Source(peer.name, peer.api_url) for peer in self.config.peers]
        transport = Transport(
            [source.api_url for source in sources],
            self.client_ssl if self.client_ssl is not None else False,
            timeout_s=self.limits.follow_request_timeout_ms / 1000,
            connect_timeout_s=self.limits.follow_stall_timeout_ms / 1000,
            retry=RetryPolicy(rounds=1),
        )
        try:
            found = await divergence.diagnose(
                self.store,
                transport,
                sources,
                self.replica.validators,
                self.config.chain_id,
                diverged.detected_height,
                self.limits,
            )
        finally:
            await transport.close()
        self.halt(found)
        while not self._stopped:
            await self._wakeup.wait()
            self._wakeup.clear()

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
        self.drop_overflowed_subscribers()
        self._follow_epochs()

    def _follow_epochs(self) -> None:
        history = self.replica.epochs
        if history.epochs == self._epochs_seen:
            return
        self._epochs_seen = history.epochs
        if self.on_epochs is not None:
            self.on_epochs(history)
