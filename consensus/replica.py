"""A PBFT replica as a pure state machine: events in, effects out.

Theory of operation
-------------------
``Replica.step(event)`` is the only entry point.  It never blocks, reads a
clock, touches a socket or a disk, or draws a random number: time arrives in
``Tick(now_ms)``, peer traffic in ``Received``, execution results in
``Executed``.  It returns a list of effects that the host must carry out in
order; every vote is preceded by the ``Persist`` of the record that makes it
impossible to contradict after a restart (see events.py).

The replica is always in one of two modes for its current view ``v``::

    mode        accepts                                     leaves when
    ---------   -----------------------------------------   -------------------------------
    active      everything of view v                        request timer expires,
                                                            f+1 VIEW-CHANGE above v,
                                                            primary equivocates      -> changing(v+1 or higher)
    changing    CHECKPOINT, VIEW-CHANGE, NEW-VIEW,          valid NEW-VIEW for v (or above)  -> active
                state transfer, STATUS                      view-change timer expires -> changing(v+1)

Messages for a view it has not reached (or heights beyond its window) are
buffered, a bounded number per sender, and replayed when it gets there.

Normal case (PBFT.md steps 1-6): the primary batches requests and sends
PRE-PREPARE; a backup that accepts it sends PREPARE; ``prepared`` is the
pre-prepare plus quorum-1 matching prepares from backups; a prepared replica
records its prepared certificate and sends COMMIT; a prepared replica with a
quorum of matching commits has a commit certificate.  Committed batches are
delivered strictly in height order, each with the header this replica derives
(previous-block hash included) and the certificate.

Checkpoints: after executing a multiple of ``checkpoint_interval`` the replica
signs CHECKPOINT(height, state root).  A quorum of matching ones is stable:
the window moves, and everything at or below it is dropped.  f+1 checkpoints
above the executed height, a stable proof above it, or f+1 peers' STATUS above
it send the replica to fetch the missing blocks (state transfer): each block
comes with its commit certificate, which is checked before delivery.

Failures are kept apart: a peer that misbehaves is dropped and counted in
``dropped``; a host that misuses the API gets ``ValueError``; a broken
invariant (this replica about to contradict its own vote, or its execution
diverging from a stable checkpoint) raises :class:`InvariantViolation` and
the host must stop.
"""

from __future__ import annotations

from collections.abc import Iterable

from consensus.blocks import ChainTip
from consensus.checkpointing import Checkpointing
from consensus.codec import Signer, Verifier
from consensus.config import ReplicaConfig
from consensus.events import (
    Broadcast,
    ClientRequest,
    Effect,
    Event,
    Executed,
    Received,
    Record,
    Tick,
)
from consensus.messages import (
    Checkpoint,
    Commit,
    ForwardedRequest,
    Message,
    NewView,
    Prepare,
    PrePrepare,
    SignedMessage,
    StateRequest,
    StateResponse,
    Status,
    ViewChange,
    sign,
    signature_valid,
)
from consensus.normal_case import NormalCase
from consensus.replica_base import InvariantViolation, RequestValidator, Slot
from consensus.restore import Restoring
from consensus.view_change import ViewChanging

__all__ = ["InvariantViolation", "Replica", "RequestValidator", "Slot"]


class Replica(NormalCase, Checkpointing, ViewChanging, Restoring):
    """One validator's view of PBFT.  See the module docstring."""

    def step(self, event: Event) -> list[Effect]:
        """Feed one event; return the effects to carry out, in order."""
        effects: list[Effect] = []
        match event:
            case Tick(now_ms=now_ms):
                self.now_ms = max(self.now_ms, now_ms)
                self._on_tick(effects)
            case Received(sender=sender, message=message):
                if not self.validators.contains(sender):
                    self.dropped["not_a_validator"] += 1
                elif sender == self.me:
                    self.dropped["from_self"] += 1
                else:
                    self._on_message(sender, message, effects)
            case ClientRequest(request=request):
                self._on_client_request(request, effects, forward=True)
            case Executed(height=height, state_root=state_root):
                self._on_executed(height, state_root, effects)
            case _:
                raise ValueError(f"not a replica event: {event!r}")
        self._maybe_propose(effects)
        self._maybe_fetch(effects)
        return effects

    def _on_message(self, sender: int, message: Message, effects: list[Effect]) -> None:
        match message:
            case ForwardedRequest(request=request):
                if request.well_formed() and self._request_valid(request.payload):
                    self._on_client_request(request, effects, forward=False)
                else:
                    self.dropped["invalid_request"] += 1
                return
            case StateResponse():
                self._on_state_response(sender, message, effects)
                return
        if self._holds_already(message):
            self.dropped["duplicate"] += 1
            return
        if message.sender == self.me:
            # Our own message relayed back to us (evidence, or a replay).
            self.dropped["from_self"] += 1
            return
        if not self._authentic(message):
            return
        match message:
            case PrePrepare() | Prepare() | Commit():
                self._on_view_message(sender, message, effects)
            case Checkpoint():
                self._on_checkpoint(message, effects)
            case ViewChange():
                self._on_view_change(message, effects)
            case NewView():
                self._on_new_view(message, effects)
            case Status():
                self._on_status(message, effects)
            case StateRequest():
                self._on_state_request(message, effects)

    def _holds_already(self, message: SignedMessage) -> bool:
        """Is this exact message (signature included) already stored?  Then it
        was verified on arrival, and a re-sent copy costs no verification."""
        match message:
            case PrePrepare() | Prepare() | Commit() if message.view == self.view:
                slot = self.log.get(message.height)
                if slot is None:
                    return False
                if isinstance(message, PrePrepare):
                    return slot.pre_prepare == message
                votes = slot.prepares if isinstance(message, Prepare) else slot.commits
                return votes.get(message.sender) == message
            case Checkpoint():
                return self.checkpoint_votes.get(message.height, {}).get(message.sender) == message
            case ViewChange():
                return self.view_changes.get(message.sender) == message
        return False

    def _authentic(self, message: SignedMessage) -> bool:
        if not self.validators.contains(message.sender):
            self.dropped["not_a_validator"] += 1
            return False
        key = self.validators.key_of(message.sender)
        if not signature_valid(message, key, self.config.chain_id, self._checker.verify):
            self.dropped["bad_signature"] += 1
            return False
        return True

    def _on_tick(self, effects: list[Effect]) -> None:
        now = self.now_ms
        if self.active and not self.is_primary and self.waiting:
            _, oldest_ms = next(iter(self.waiting.values()))
            stalled = now - max(oldest_ms, self.progress_ms) >= self.config.request_timeout_ms
            # A primary that executes others' requests but never this one is
            # censoring it: progress elsewhere does not save it forever.
            starved = now - oldest_ms >= self.config.max_request_wait_ms
            if stalled or starved:
                self.dropped["request_timeout"] += 1
                self._start_view_change(self.view + 1, effects)
        elif (
            not self.active
            and self.view_change_deadline_ms is not None
            and now >= self.view_change_deadline_ms
        ):
            self._start_view_change(self.view + 1, effects)
        if now >= self._status_due_ms:
            self._status_due_ms = now + self.config.status_interval_ms
            status = Status(
                self.view, self.active, self.delivered.height, self.low_watermark, self.me
            )
            effects.append(Broadcast(sign(status, self._signer, self.config.chain_id)))
            self._rebroadcast_own_checkpoints(effects)
            self._share_waiting_while_lagging(effects)
            own_view_change = self.view_changes.get(self.me)
            if not self.active and own_view_change is not None:
                # Messages get lost: keep offering our view change until the view starts.
                effects.append(Broadcast(own_view_change))

    @classmethod
    def restore(
        cls,
        config: ReplicaConfig,
        signer: Signer,
        verify: Verifier,
        request_valid: RequestValidator,
        tip: ChainTip,
        records: Iterable[Record],
        now_ms: int = 0,
    ) -> tuple[Replica, list[Effect]]:
        """Rebuild a replica from what it persisted, and what it should re-send.

        ``tip`` is the last block the host executed.  The returned effects
        re-send, unchanged, the view change or proposals the replica had in
        flight, so the cluster hears them even if the crash swallowed them.
        """
        replica = cls(config, signer, verify, request_valid, tip, now_ms)
        effects = replica._replay_records(list(records))
        return replica, effects
