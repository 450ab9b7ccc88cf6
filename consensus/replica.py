"""A PBFT replica as a pure state machine: events in, effects out.

Theory of operation
-------------------
``Replica.step(event)`` is the only entry point.  It never blocks, reads a
clock, touches a socket or a disk, or draws a random number: time arrives in
``Tick(now_ms)``, peer traffic in ``Received``, execution results in
``Executed``.  It returns a list of effects that the host must carry out in
order; every vote is preceded by the ``Persist`` of the record that makes it
impossible to contradict after a restart (see events.py).

Which inputs each mode accepts, buffers or ignores, and how the modes
change, is one table: consensus.modes (read it next).  ``step`` checks what
holds in every mode (a peer's message must come from another validator,
be new to us and carry a valid signature), then runs the one handler that
the table routes the input to; handlers live in plain modules of functions
over ``ReplicaState``, one module per job.

Normal case (Castro & Liskov, OSDI 1999, section 4.2): the primary batches requests and sends
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

Timers, suspicion and the rule that no timer of one replica takes it into
a view the others are not in: see consensus.liveness.

Failures are kept apart: a peer that misbehaves is dropped and counted in
``dropped``; a host that misuses the API gets ``ValueError``; a broken
invariant (this replica about to contradict its own vote, or its execution
diverging from a stable checkpoint) raises :class:`InvariantViolation` and
the host must stop.
"""

from __future__ import annotations

from collections.abc import Iterable

from consensus import checkpointing, liveness, normal_case, restore, view_change
from consensus.blocks import ChainTip
from consensus.codec import Signer, Verifier
from consensus.config import ReplicaConfig
from consensus.epochs import ValidatorHistory
from consensus.events import ClientRequest, Effect, Event, Executed, Received, Record, Tick
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
    signature_valid,
)
from consensus.modes import InvariantViolation, Mode, Route, route
from consensus.state import ReplicaState, RequestValidator, Sabotage, Slot

__all__ = [
    "InvariantViolation",
    "Mode",
    "Replica",
    "ReplicaState",
    "RequestValidator",
    "Sabotage",
    "Slot",
]

Input = Message | ClientRequest | Tick | Executed


class Replica(ReplicaState):
    """One validator's view of PBFT: its state, stepped by events.  See the
    module docstring."""

    def step(self, event: Event) -> list[Effect]:
        """Feed one event; return the effects to carry out, in order."""
        effects: list[Effect] = []
        match event:
            case Received(sender=sender, message=message):
                if self._admit(sender, message):
                    self._run(message, sender, effects)
            case Tick(now_ms=now_ms):
                resumed = now_ms - self.last_tick_ms > self.config.max_tick_gap_ms
                self.now_ms = max(self.now_ms, now_ms)
                self.last_tick_ms = max(self.last_tick_ms, now_ms)
                if resumed:
                    liveness.resume(self)
                self._run(event, self.me, effects)
            case ClientRequest() | Executed():
                self._run(event, self.me, effects)
            case _:
                raise ValueError(f"not a replica event: {event!r}")
        normal_case.maybe_propose(self, effects)
        checkpointing.maybe_fetch(self, effects)
        return effects

    def _run(self, item: Input, sender: int, effects: list[Effect]) -> None:
        """Run the handler that consensus.modes routes ``item`` to in our mode."""
        match route(self.mode, type(item)), item:
            case Route.ORDER, PrePrepare() | Prepare() | Commit():
                view_change.order_or_depose(self, sender, item, effects)
            case Route.BUFFER, PrePrepare() | Prepare() | Commit():
                normal_case.hold(self, sender, item)
            case Route.CHECKPOINT, Checkpoint():
                if checkpointing.on_checkpoint(self, item, effects):
                    view_change.window_moved(self, effects)
            case Route.VIEW_CHANGE_OR_ANSWER, ViewChange():
                view_change.on_view_change_while_active(self, item, effects)
            case Route.VIEW_CHANGE, ViewChange():
                view_change.on_view_change_while_changing(self, item, effects)
            case Route.NEW_VIEW_ABOVE, NewView():
                view_change.on_new_view_while_active(self, item, effects)
            case Route.NEW_VIEW, NewView():
                view_change.on_new_view_while_changing(self, item, effects)
            case Route.STATUS, Status():
                liveness.on_status(self, item, effects)
            case Route.SERVE_BLOCKS, StateRequest():
                checkpointing.on_state_request(self, item, effects)
            case Route.STATE_TRANSFER, StateResponse():
                checkpointing.on_state_response(self, sender, item, effects)
            case Route.KEEP_REQUEST, ForwardedRequest(request=request):
                if request.well_formed() and self.request_valid(request.payload):
                    normal_case.on_client_request(self, request, effects, forward=False)
                else:
                    self.dropped["invalid_request"] += 1
            case Route.KEEP_REQUEST, ClientRequest(request=request):
                normal_case.on_client_request(self, request, effects, forward=False)
            case Route.KEEP_AND_FORWARD_REQUEST, ClientRequest(request=request):
                normal_case.on_client_request(self, request, effects, forward=True)
            case Route.REQUEST_TIMER, Tick():
                liveness.on_tick_while_active(self, effects)
            case Route.NEW_VIEW_TIMER, Tick():
                liveness.on_tick_while_changing(self, effects)
            case Route.EXECUTED, Executed(
                height=height, results_root=results_root, validators=validators
            ):
                if checkpointing.on_executed(self, height, results_root, validators, effects):
                    view_change.window_moved(self, effects)
            case unrouted:
                raise InvariantViolation(f"the route table sends {unrouted} nowhere")

    def _admit(self, sender: int, message: Message) -> bool:
        """What holds in every mode: a message from another validator; a signed
        one new to us, in its signer's name but not ours, signature valid."""
        if sender not in self.epochs.members():
            self.dropped["not_a_validator"] += 1
            return False
        if sender == self.me:
            self.dropped["from_self"] += 1
            return False
        if isinstance(message, ForwardedRequest | StateResponse):
            # Unsigned: a forwarded request is checked as a request, and each
            # block of a state response carries its own commit certificate.
            return True
        if self._holds_already(message):
            self.dropped["duplicate"] += 1
            return False
        if message.sender == self.me:
            # Our own message relayed back to us (evidence, or a replay).
            self.dropped["from_self"] += 1
            return False
        return self._authentic(message)

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
        # Any validator of an epoch still kept may speak (a joining one asks
        # for blocks, a leaving one's checkpoints still count); whether its
        # vote counts is decided by the set in force where the vote applies.
        key = self.epochs.members().get(message.sender)
        if key is None:
            self.dropped["not_a_validator"] += 1
            return False
        if not signature_valid(message, key, self.config.chain_id, self.verify):
            self.dropped["bad_signature"] += 1
            return False
        return True

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
        sabotage: Sabotage | None = None,
        history: ValidatorHistory | None = None,
    ) -> tuple[Replica, list[Effect]]:
        """Rebuild a replica from what it persisted, and what it should re-send.

        ``tip`` is the last block the host executed and ``history`` the
        validator sets it knows through at least the tip (None: the set of
        ``config`` forever).  The returned effects
        re-send, unchanged, the view change or proposals the replica had in
        flight, so the cluster hears them even if the crash swallowed them.
        """
        replica = cls(config, signer, verify, request_valid, tip, now_ms, sabotage, history)
        effects = restore.replay_records(replica, list(records))
        return replica, effects
