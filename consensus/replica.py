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

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from consensus.blocks import ChainTip, CommittedBlock, certificate_problem, derive_header
from consensus.codec import Signer, Verifier
from consensus.config import ReplicaConfig
from consensus.events import (
    Broadcast,
    ClientRequest,
    Deliver,
    Effect,
    Event,
    Executed,
    Persist,
    PreparedRecord,
    PrePrepareRecord,
    Received,
    Record,
    RequestDropped,
    Send,
    ServeBlocks,
    StableCheckpointRecord,
    Tick,
    ViewRecord,
    VoteRecord,
)
from consensus.messages import (
    Batch,
    CertifiedBatch,
    Checkpoint,
    CheckpointProof,
    Commit,
    ForwardedRequest,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    SignedMessage,
    StateRequest,
    StateResponse,
    Status,
    ViewChange,
    sign,
    signature_valid,
)
from consensus.proofs import (
    Checker,
    new_view_batches,
    view_change_problem,
)

RequestValidator = Callable[[bytes], bool]
V = TypeVar("V", Prepare, Commit)


class InvariantViolation(AssertionError):
    """The replica's own state is inconsistent: the host must stop it."""


@dataclass
class Slot:
    """Everything the current view knows about one height."""

    pre_prepare: PrePrepare | None = None
    prepares: dict[int, Prepare] = field(default_factory=dict)
    commits: dict[int, Commit] = field(default_factory=dict)
    sent_prepare: bool = False
    sent_commit: bool = False
    committed: bool = False


GENESIS_PROOF_ROOT = b""


class Replica:
    """One validator's view of PBFT.  See the module docstring."""

    def __init__(
        self,
        config: ReplicaConfig,
        signer: Signer,
        verify: Verifier,
        request_valid: RequestValidator,
        tip: ChainTip,
        now_ms: int = 0,
    ) -> None:
        if config.validators.key_of(config.replica_id) != signer.public_key:
            raise ValueError("the signer's key is not this replica's validator key")
        self.config = config
        self.validators = config.validators
        self.me = config.replica_id
        self._signer = signer
        self._request_valid = request_valid
        self._checker = Checker(config.validators, config.chain_id, verify)
        self.now_ms = now_ms
        self.dropped: Counter[str] = Counter()
        # View state.
        self.view = 0
        self.active = True
        self.view_change_attempts = 0
        self.view_change_timeout_ms = config.view_change_timeout_ms
        self.view_change_deadline_ms: int | None = None
        self.view_changes: dict[int, ViewChange] = {}
        self.last_new_view: NewView | None = None
        self._new_view_sent_ms: dict[int, int] = {}
        # The log of the current view and what survives views.
        self.log: dict[int, Slot] = {}
        self.next_height = tip.height + 1
        self.prepared_certs: dict[int, PreparedCertificate] = {}
        self.committed: dict[int, CertifiedBatch] = {}
        self._sent: dict[tuple[str, int, int], bytes] = {}
        # Checkpoints.
        self.stable = CheckpointProof(0, GENESIS_PROOF_ROOT, ())
        self.checkpoint_votes: dict[int, dict[int, Checkpoint]] = {}
        # Chain: what has been delivered and what has been executed.
        self.delivered = tip
        self.executed_height = tip.height
        self.executed_roots: dict[int, bytes] = {tip.height: tip.state_root}
        self._recent: deque[tuple[int, tuple[bytes, ...]]] = deque()
        self._recent_digests: dict[bytes, int] = {}
        # Requests: waiting (not yet delivered, with the time we saw them,
        # oldest first), those not yet in any pre-prepare of this view, and
        # those in flight (digest -> height in this view's log).
        self.waiting: dict[bytes, tuple[Request, int]] = {}
        self.unproposed: dict[bytes, Request] = {}
        self.in_flight: dict[bytes, int] = {}
        # State transfer and peer heights.
        self.peer_heights: dict[int, int] = {}
        self.transfer_target = tip.height
        self.transfer_deadline_ms: int | None = None
        self._transfer_round = 0
        self._status_due_ms = now_ms
        self._buffer: dict[int, deque[tuple[int, Message]]] = {}

    # ------------------------------------------------------------ entry point

    def step(self, event: Event) -> list[Effect]:
        """Feed one event; return the effects to carry out, in order."""
        effects: list[Effect] = []
        match event:
            case Tick(now_ms=now_ms):
                self.now_ms = max(self.now_ms, now_ms)
                self._on_tick(effects)
            case Received(sender=sender, message=message):
                if not self.validators.contains(sender) or sender == self.me:
                    self.dropped["not_a_validator"] += 1
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

    @property
    def primary(self) -> int:
        return self.validators.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.me

    @property
    def vote_quorum(self) -> int:
        """Votes that make a height prepared and committed (a hook for the
        simulator's deliberately broken replica; never override it otherwise)."""
        return self.validators.quorum

    @property
    def low_watermark(self) -> int:
        return self.stable.height

    # ------------------------------------------------------------ messages

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

    def _authentic(self, message: SignedMessage) -> bool:
        if not self.validators.contains(message.sender):
            self.dropped["not_a_validator"] += 1
            return False
        key = self.validators.key_of(message.sender)
        if not signature_valid(message, key, self.config.chain_id, self._checker.verify):
            self.dropped["bad_signature"] += 1
            return False
        return True

    def _on_view_message(
        self, sender: int, message: PrePrepare | Prepare | Commit, effects: list[Effect]
    ) -> None:
        if message.view < self.view or message.height <= self.low_watermark:
            self.dropped["stale"] += 1
            return
        if (
            message.view > self.view
            or not self.active
            or message.height > self.low_watermark + self.config.window_size
        ):
            self._buffer_message(sender, message)
            return
        match message:
            case PrePrepare():
                self._on_pre_prepare(message, effects)
            case Prepare():
                self._on_prepare(message, effects)
            case Commit():
                self._on_commit(message, effects)

    def _buffer_message(self, sender: int, message: Message) -> None:
        queue = self._buffer.setdefault(sender, deque())
        if len(queue) >= self.config.max_buffered_per_sender:
            queue.popleft()
            self.dropped["buffer_full"] += 1
        queue.append((sender, message))

    def _replay_buffer(self, effects: list[Effect]) -> None:
        buffered = self._buffer
        self._buffer = {}
        for queue in buffered.values():
            for sender, message in queue:
                self._on_message(sender, message, effects)

    # ------------------------------------------------------------ normal case

    def _slot(self, height: int) -> Slot:
        slot = self.log.get(height)
        if slot is None:
            slot = self.log[height] = Slot()
        return slot

    def _on_pre_prepare(self, pre_prepare: PrePrepare, effects: list[Effect]) -> None:
        if pre_prepare.sender != self.primary:
            self.dropped["pre_prepare_not_from_primary"] += 1
            return
        slot = self._slot(pre_prepare.height)
        if slot.pre_prepare is not None:
            if slot.pre_prepare.batch.digest != pre_prepare.batch.digest:
                self._primary_equivocated(slot.pre_prepare, pre_prepare, effects)
            else:
                self.dropped["duplicate"] += 1
            return
        problem = self._batch_problem(pre_prepare.batch, pre_prepare.height)
        if problem is not None:
            self.dropped[f"bad_batch:{problem}"] += 1
            return
        self._accept_pre_prepare(pre_prepare, effects)

    def _batch_problem(self, batch: Batch, height: int) -> str | None:
        """Why a fresh proposal for ``height`` must not be prepared, if it must not."""
        if batch.height != height:
            return "height"
        if not 0 < len(batch.requests) <= self.config.max_batch_size:
            return "size"
        seen: set[bytes] = set()
        for request in batch.requests:
            if request.digest in seen or not request.well_formed():
                return "request_malformed_or_repeated"
            seen.add(request.digest)
            if request.digest in self._recent_digests:
                return "request_already_ordered"
            if self.in_flight.get(request.digest, height) != height:
                return "request_in_flight"
            if request.digest not in self.waiting and not self._request_valid(request.payload):
                return "request_invalid"
        if abs(batch.proposer_time_ms - self.now_ms) > self.config.max_clock_skew_ms:
            return "clock_skew"
        if batch.proposer_time_ms < self._previous_time_ms(height):
            return "time_before_previous"
        if not 0 <= batch.executed_height < height:
            return "executed_height"
        known_root = self.executed_roots.get(batch.executed_height)
        if known_root is not None and known_root != batch.executed_state_root:
            return "state_root_mismatch"
        return None

    def _previous_time_ms(self, height: int) -> int:
        """The proposer time of height - 1 when this view's log has it, else 0.

        Block times are made monotonic at derivation anyway (blocks.py); this
        check only stops a primary from proposing times that run backwards.
        """
        previous = self.log.get(height - 1)
        if previous is not None and previous.pre_prepare is not None:
            return previous.pre_prepare.batch.proposer_time_ms
        return 0

    def _accept_pre_prepare(self, pre_prepare: PrePrepare, effects: list[Effect]) -> None:
        """Log a pre-prepare (fresh or from a new view) and vote for it."""
        slot = self._slot(pre_prepare.height)
        slot.pre_prepare = pre_prepare
        self.next_height = max(self.next_height, pre_prepare.height + 1)
        for request in pre_prepare.batch.requests:
            self.unproposed.pop(request.digest, None)
            if pre_prepare.height > self.delivered.height:
                self.in_flight[request.digest] = pre_prepare.height
                if len(self.waiting) < self.config.max_pending_requests:
                    self.waiting.setdefault(request.digest, (request, self.now_ms))
        effects.append(Persist(PrePrepareRecord(pre_prepare)))
        if pre_prepare.sender != self.me:
            vote = Prepare(self.view, pre_prepare.height, pre_prepare.batch.digest, self.me)
            slot.prepares[self.me] = self._cast(vote, effects)
            slot.sent_prepare = True
        self._check_prepared(pre_prepare.height, effects)

    def _primary_equivocated(
        self, first: PrePrepare, second: PrePrepare, effects: list[Effect]
    ) -> None:
        """Two signed proposals for one (view, height): relay the evidence, depose."""
        self.dropped["equivocation"] += 1
        effects.append(Broadcast(first))
        effects.append(Broadcast(second))
        self._start_view_change(self.view + 1, effects)

    def _on_prepare(self, prepare: Prepare, effects: list[Effect]) -> None:
        if prepare.sender == self.primary:
            self.dropped["prepare_from_primary"] += 1
            return
        slot = self._slot(prepare.height)
        if not self._record_vote(slot.prepares, prepare):
            return
        self._check_prepared(prepare.height, effects)

    def _on_commit(self, commit: Commit, effects: list[Effect]) -> None:
        slot = self._slot(commit.height)
        if not self._record_vote(slot.commits, commit):
            return
        self._check_committed(commit.height, effects)

    def _record_vote(
        self, votes: dict[int, Prepare] | dict[int, Commit], vote: Prepare | Commit
    ) -> bool:
        known = votes.get(vote.sender)
        if known is not None:
            kind = "duplicate" if known.digest == vote.digest else "conflicting_vote"
            self.dropped[kind] += 1
            return False
        votes[vote.sender] = vote  # type: ignore[assignment]
        return True

    def _matching(self, votes: Iterable[Prepare | Commit], digest: bytes) -> list[int]:
        return [vote.sender for vote in votes if vote.digest == digest]

    def _check_prepared(self, height: int, effects: list[Effect]) -> None:
        slot = self.log[height]
        if slot.pre_prepare is None or slot.sent_commit:
            return
        digest = slot.pre_prepare.batch.digest
        prepares = [p for p in slot.prepares.values() if p.digest == digest]
        if len(prepares) < self.vote_quorum - 1:
            return
        certificate = PreparedCertificate(
            slot.pre_prepare, tuple(sorted(prepares, key=lambda p: p.sender))
        )
        self.prepared_certs[height] = certificate
        effects.append(Persist(PreparedRecord(certificate)))
        slot.commits[self.me] = self._cast(Commit(self.view, height, digest, self.me), effects)
        slot.sent_commit = True
        self._check_committed(height, effects)

    def _check_committed(self, height: int, effects: list[Effect]) -> None:
        slot = self.log[height]
        if slot.committed or not slot.sent_commit or slot.pre_prepare is None:
            return
        digest = slot.pre_prepare.batch.digest
        commits = [c for c in slot.commits.values() if c.digest == digest]
        if len(commits) < self.vote_quorum:
            return
        slot.committed = True
        self.view_change_attempts = 0
        if height > self.delivered.height and height not in self.committed:
            certificate = tuple(sorted(commits, key=lambda c: c.sender)[: self.vote_quorum])
            self.committed[height] = CertifiedBatch(slot.pre_prepare.batch, certificate)
            self._deliver_ready(effects)

    def _cast(self, vote: V, effects: list[Effect]) -> V:
        """Sign, persist and broadcast one of our votes, refusing to contradict one."""
        kind = type(vote).DOMAIN
        self._guard(kind, vote.view, vote.height, vote.digest)
        signed = sign(vote, self._signer, self.config.chain_id)
        effects.append(Persist(VoteRecord(signed)))
        effects.append(Broadcast(signed))
        return signed

    def _prune_sent(self) -> None:
        """Forget own votes that can never be contradicted any more."""
        low = self.low_watermark
        self._sent = {
            key: value
            for key, value in self._sent.items()
            if (key[0] == "checkpoint" and key[2] > low)
            or (key[0] in {"view-change", "new-view"} and key[1] >= self.view)
            or (key[1] >= self.view and key[2] > low)
        }

    def _guard(self, kind: str, view: int, height: int, value: bytes) -> None:
        key = (kind, view, height)
        known = self._sent.get(key)
        if known is not None and known != value:
            raise InvariantViolation(
                f"replica {self.me} about to send a {kind} for view {view} height {height} "
                "that contradicts one it sent before"
            )
        self._sent[key] = value

    # ------------------------------------------------------------ delivery and execution

    def _deliver_ready(self, effects: list[Effect]) -> None:
        while True:
            height = self.delivered.height + 1
            certified = self.committed.pop(height, None)
            if certified is None:
                return
            batch = certified.batch
            header = derive_header(
                self.config.chain_id, batch, self.delivered.block_hash, self.delivered.time_ms
            )
            effects.append(Deliver(CommittedBlock(header, batch.requests, certified.certificate)))
            self.delivered = ChainTip(height, header.hash, header.time_ms, b"")
            self._forget_delivered(height, batch)

    def _forget_delivered(self, height: int, batch: Batch) -> None:
        digests = tuple(request.digest for request in batch.requests)
        for request_digest in digests:
            self.waiting.pop(request_digest, None)
            self.unproposed.pop(request_digest, None)
            self.in_flight.pop(request_digest, None)
            self._recent_digests[request_digest] = height
        self._recent.append((height, digests))
        horizon = height - self.config.dedup_horizon_heights
        while self._recent and self._recent[0][0] <= horizon:
            old_height, old_digests = self._recent.popleft()
            for request_digest in old_digests:
                if self._recent_digests.get(request_digest) == old_height:
                    del self._recent_digests[request_digest]

    def _on_executed(self, height: int, state_root: bytes, effects: list[Effect]) -> None:
        if height != self.executed_height + 1 or height > self.delivered.height:
            raise ValueError(
                f"executed height {height} out of order: executed {self.executed_height}, "
                f"delivered {self.delivered.height}"
            )
        self.executed_height = height
        self.executed_roots[height] = state_root
        if height == self.delivered.height:
            self.delivered = replace(self.delivered, state_root=state_root)
        if height % self.config.checkpoint_interval == 0:
            checkpoint = Checkpoint(height, state_root, self.me)
            self._guard("checkpoint", 0, height, state_root)
            signed = sign(checkpoint, self._signer, self.config.chain_id)
            effects.append(Persist(VoteRecord(signed)))
            effects.append(Broadcast(signed))
            self._add_checkpoint(signed, effects)
        if height == self.stable.height:
            self._check_against_stable()

    # ------------------------------------------------------------ checkpoints

    def _on_checkpoint(self, checkpoint: Checkpoint, effects: list[Effect]) -> None:
        if checkpoint.height <= self.low_watermark:
            self.dropped["stale"] += 1
            return
        if checkpoint.height % self.config.checkpoint_interval:
            self.dropped["checkpoint_off_interval"] += 1
            return
        self._add_checkpoint(checkpoint, effects)

    def _add_checkpoint(self, checkpoint: Checkpoint, effects: list[Effect]) -> None:
        votes = self.checkpoint_votes.setdefault(checkpoint.height, {})
        known = votes.get(checkpoint.sender)
        if known is not None:
            self.dropped["duplicate" if known == checkpoint else "conflicting_vote"] += 1
            return
        votes[checkpoint.sender] = checkpoint
        self._bound_checkpoint_votes(checkpoint.sender)
        matching = [c for c in votes.values() if c.state_root == checkpoint.state_root]
        if len(matching) >= self.validators.quorum:
            ordered = tuple(sorted(matching, key=lambda c: c.sender))
            proof = CheckpointProof(checkpoint.height, checkpoint.state_root, ordered)
            self._stabilize(proof, effects)
        elif len(matching) >= self.validators.weak:
            self._raise_transfer_target(checkpoint.height)

    def _bound_checkpoint_votes(self, sender: int) -> None:
        """Keep at most window/interval + 1 checkpoint votes per sender."""
        limit = self.config.window_size // self.config.checkpoint_interval + 1
        heights = sorted(h for h, votes in self.checkpoint_votes.items() if sender in votes)
        for height in heights[: max(0, len(heights) - limit)]:
            del self.checkpoint_votes[height][sender]
            if not self.checkpoint_votes[height]:
                del self.checkpoint_votes[height]

    def _stabilize(
        self, proof: CheckpointProof, effects: list[Effect], replay: bool = True
    ) -> None:
        """Adopt a stable checkpoint: move the window and drop the log below it."""
        if proof.height <= self.low_watermark:
            return
        self.stable = proof
        effects.append(Persist(StableCheckpointRecord(proof)))
        low = proof.height
        for table in (self.log, self.prepared_certs, self.checkpoint_votes):
            for height in [h for h in table if h <= low]:
                del table[height]
        for height in [h for h in self.executed_roots if h < low and h < self.executed_height]:
            del self.executed_roots[height]
        self._prune_sent()
        self._check_against_stable()
        self._raise_transfer_target(low)
        if replay:
            self._replay_buffer(effects)

    def _check_against_stable(self) -> None:
        mine = self.executed_roots.get(self.stable.height)
        if self.stable.height and mine is not None and mine != self.stable.state_root:
            raise InvariantViolation(
                f"replica {self.me} executed height {self.stable.height} to a state root "
                "that differs from the stable checkpoint: its execution diverged"
            )

    # ------------------------------------------------------------ requests and proposals

    def _on_client_request(self, request: Request, effects: list[Effect], forward: bool) -> None:
        digest = request.digest
        if digest in self._recent_digests:
            effects.append(RequestDropped(digest, "already_ordered"))
            return
        if digest in self.waiting:
            if forward and not self.is_primary and digest in self.unproposed and self.active:
                effects.append(Send(self.primary, ForwardedRequest(request, self.me)))
            return
        if len(self.waiting) >= self.config.max_pending_requests:
            effects.append(RequestDropped(digest, "pending_requests_full"))
            return
        self.waiting[digest] = (request, self.now_ms)
        if digest not in self.in_flight:
            self.unproposed[digest] = request
        if forward and not self.is_primary and self.active:
            effects.append(Send(self.primary, ForwardedRequest(request, self.me)))

    def _maybe_propose(self, effects: list[Effect]) -> None:
        if not (self.active and self.is_primary):
            return
        while self.unproposed and self.next_height <= self.low_watermark + self.config.window_size:
            oldest = next(iter(self.unproposed))
            waited_ms = self.now_ms - self.waiting.get(oldest, (None, self.now_ms))[1]
            full = len(self.unproposed) >= self.config.max_batch_size
            if not full and waited_ms < self.config.batch_timeout_ms:
                return
            requests = []
            for digest in list(self.unproposed)[: self.config.max_batch_size]:
                requests.append(self.unproposed.pop(digest))
            batch = Batch(
                self.next_height,
                tuple(requests),
                max(self.now_ms, self._previous_time_ms(self.next_height)),
                self.executed_height,
                self.executed_roots[self.executed_height],
            )
            proposal = sign(
                PrePrepare(self.view, self.next_height, batch, self.me),
                self._signer,
                self.config.chain_id,
            )
            self._guard("pre-prepare", self.view, proposal.height, batch.digest)
            self._accept_pre_prepare(proposal, effects)
            effects.append(Broadcast(proposal))

    # ------------------------------------------------------------ timers

    def _on_tick(self, effects: list[Effect]) -> None:
        now = self.now_ms
        if self.active and not self.is_primary and self.waiting:
            _, oldest_ms = next(iter(self.waiting.values()))
            if now - oldest_ms >= self.config.request_timeout_ms:
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
            own_view_change = self.view_changes.get(self.me)
            if not self.active and own_view_change is not None:
                # Messages get lost: keep offering our view change until the view starts.
                effects.append(Broadcast(own_view_change))

    # ------------------------------------------------------------ view change

    def _start_view_change(self, new_view: int, effects: list[Effect]) -> None:
        if new_view <= self.view:
            return
        self.view = new_view
        self.active = False
        self.view_change_timeout_ms = min(
            self.config.view_change_timeout_ms * 2**self.view_change_attempts,
            self.config.max_view_change_timeout_ms,
        )
        self.view_change_attempts += 1
        self.view_change_deadline_ms = None
        self.log = {}
        effects.append(Persist(ViewRecord(new_view, False)))
        prepared = tuple(
            self.prepared_certs[h] for h in sorted(self.prepared_certs) if h > self.low_watermark
        )
        view_change = ViewChange(new_view, self.stable, prepared, self.me)
        signed = sign(view_change, self._signer, self.config.chain_id)
        self._guard("view-change", new_view, 0, signed.ident)
        effects.append(Persist(VoteRecord(signed)))
        effects.append(Broadcast(signed))
        self.view_changes[self.me] = signed
        self._arm_view_change_timer()
        self._maybe_new_view(effects)

    def _arm_view_change_timer(self) -> None:
        """Start the new-view timer once a quorum asks for this view (PBFT
        section 4.5.2): a replica alone in a view change waits rather than
        running off to ever higher views that nobody else will join."""
        if self.active or self.view_change_deadline_ms is not None:
            return
        # A peer asking for a later view has given up on this one too.
        voters = sum(1 for vc in self.view_changes.values() if vc.new_view >= self.view)
        if voters >= self.validators.quorum:
            self.view_change_deadline_ms = self.now_ms + self.view_change_timeout_ms

    def _on_view_change(self, view_change: ViewChange, effects: list[Effect]) -> None:
        sender = view_change.sender
        if view_change.new_view < self.view or (view_change.new_view == self.view and self.active):
            self._resend_new_view(sender, effects)
            return
        known = self.view_changes.get(sender)
        if known is not None and known.new_view >= view_change.new_view:
            self.dropped["duplicate" if known == view_change else "stale"] += 1
            return
        problem = view_change_problem(view_change, self.config.window_size, self._checker)
        if problem is not None:
            self.dropped["bad_view_change"] += 1
            return
        self.view_changes[sender] = view_change
        higher = [vc.new_view for vc in self.view_changes.values() if vc.new_view > self.view]
        if len(higher) >= self.validators.weak:
            self._start_view_change(min(higher), effects)
        self._arm_view_change_timer()
        self._maybe_new_view(effects)

    def _maybe_new_view(self, effects: list[Effect]) -> None:
        if self.active or not self.is_primary:
            return
        voters = sorted(
            (vc for vc in self.view_changes.values() if vc.new_view == self.view),
            key=lambda vc: (vc.sender != self.me, vc.sender),
        )
        if len(voters) < self.validators.quorum:
            return
        chosen = tuple(voters[: self.validators.quorum])
        plan = new_view_batches(chosen)
        pre_prepares = tuple(
            sign(PrePrepare(self.view, b.height, b, self.me), self._signer, self.config.chain_id)
            for b in plan.batches
        )
        new_view = sign(
            NewView(self.view, chosen, pre_prepares, self.me), self._signer, self.config.chain_id
        )
        self._guard("new-view", self.view, 0, new_view.ident)
        for pre_prepare in pre_prepares:
            self._guard("pre-prepare", self.view, pre_prepare.height, pre_prepare.batch.digest)
        effects.append(Persist(VoteRecord(new_view)))
        effects.append(Broadcast(new_view))
        self._enter_view(new_view, plan.stable, effects)

    def _on_new_view(self, new_view: NewView, effects: list[Effect]) -> None:
        if new_view.view < self.view or (new_view.view == self.view and self.active):
            self.dropped["stale"] += 1
            return
        problem = self._new_view_problem(new_view)
        if problem is not None:
            self.dropped[f"bad_new_view:{problem}"] += 1
            return
        stable = max((vc.stable for vc in new_view.view_changes), key=lambda p: p.height)
        if new_view.view > self.view:
            self.view = new_view.view
        effects.append(Persist(VoteRecord(new_view)))
        self._enter_view(new_view, stable, effects)

    def _new_view_problem(self, new_view: NewView) -> str | None:
        """Check V and recompute O, as PBFT requires of every backup."""
        view = new_view.view
        if new_view.sender != self.validators.primary(view):
            return "not_from_primary"
        senders = {vc.sender for vc in new_view.view_changes}
        if len(senders) != len(new_view.view_changes) or len(senders) < self.validators.quorum:
            return "view_change_quorum"
        for view_change in new_view.view_changes:
            if view_change.new_view != view:
                return "view_change_for_other_view"
            if view_change_problem(view_change, self.config.window_size, self._checker):
                return "invalid_view_change"
        plan = new_view_batches(new_view.view_changes)
        if len(plan.batches) != len(new_view.pre_prepares):
            return "pre_prepares_differ"
        for batch, pre_prepare in zip(plan.batches, new_view.pre_prepares, strict=True):
            if (pre_prepare.view, pre_prepare.height, pre_prepare.sender) != (
                view,
                batch.height,
                new_view.sender,
            ) or pre_prepare.batch.digest != batch.digest:
                return "pre_prepares_differ"
            if not self._checker.signed_by_sender(pre_prepare):
                return "bad_pre_prepare_signature"
        return None

    def _enter_view(
        self, new_view: NewView, stable: CheckpointProof, effects: list[Effect]
    ) -> None:
        """Start operating in ``new_view.view``: O becomes the log's pre-prepares."""
        self.active = True
        self.view_change_deadline_ms = None
        self.last_new_view = new_view
        self.log = {}
        self.in_flight = {}
        effects.append(Persist(ViewRecord(self.view, True)))
        if stable.height > self.low_watermark:
            self._stabilize(stable, effects, replay=False)
        for pre_prepare in new_view.pre_prepares:
            if pre_prepare.height > self.low_watermark:
                self._accept_pre_prepare(pre_prepare, effects)
        self.next_height = max(
            [self.low_watermark + 1] + [p.height + 1 for p in new_view.pre_prepares]
        )
        # Every request not yet delivered gets a full timeout in the new view,
        # and the new primary hears of every one that is not already in O.
        now = self.now_ms
        self.waiting = {d: (request, now) for d, (request, _) in self.waiting.items()}
        self.unproposed = {
            d: request for d, (request, _) in self.waiting.items() if d not in self.in_flight
        }
        if not self.is_primary:
            for request in self.unproposed.values():
                effects.append(Send(self.primary, ForwardedRequest(request, self.me)))
        self.view_changes = {
            s: vc for s, vc in self.view_changes.items() if vc.new_view > self.view
        }
        self._prune_sent()
        self._replay_buffer(effects)

    def _resend_new_view(self, peer: int, effects: list[Effect]) -> None:
        """A peer is behind our view: give it the NEW-VIEW that got us here."""
        new_view = self.last_new_view
        if not self.active or new_view is None or new_view.view != self.view:
            return
        last_ms = self._new_view_sent_ms.get(peer)
        if last_ms is not None and self.now_ms - last_ms < self.config.status_interval_ms:
            return
        self._new_view_sent_ms[peer] = self.now_ms
        effects.append(Send(peer, new_view))

    # ------------------------------------------------------------ status and state transfer

    def _on_status(self, status: Status, effects: list[Effect]) -> None:
        self.peer_heights[status.sender] = status.delivered_height
        heights = sorted(self.peer_heights.values(), reverse=True)
        if len(heights) >= self.validators.weak:
            # f+1 peers claim at least this much, so one honest peer has it.
            self._raise_transfer_target(heights[self.validators.weak - 1])
        if status.view < self.view or (status.view == self.view and not status.view_active):
            self._resend_new_view(status.sender, effects)

    def _raise_transfer_target(self, height: int) -> None:
        if height > self.transfer_target:
            self.transfer_target = height

    def _maybe_fetch(self, effects: list[Effect]) -> None:
        if self.transfer_target <= self.delivered.height:
            self.transfer_deadline_ms = None
            return
        if self.transfer_deadline_ms is not None and self.now_ms < self.transfer_deadline_ms:
            return
        peers = [
            p
            for p in range(self.validators.n)
            if p != self.me
            and self.peer_heights.get(p, self.transfer_target) > self.delivered.height
        ]
        if not peers:
            return
        peer = peers[self._transfer_round % len(peers)]
        self._transfer_round += 1
        first = self.delivered.height + 1
        last = min(self.transfer_target, first + self.config.max_blocks_per_transfer - 1)
        request = sign(StateRequest(first, last, self.me), self._signer, self.config.chain_id)
        effects.append(Send(peer, request))
        self.transfer_deadline_ms = self.now_ms + self.config.state_transfer_timeout_ms

    def _on_state_request(self, request: StateRequest, effects: list[Effect]) -> None:
        first = request.from_height
        last = min(request.to_height, first + self.config.max_blocks_per_transfer - 1)
        last = min(last, self.delivered.height)
        if first < 1 or last < first:
            self.dropped["state_request_unservable"] += 1
            return
        effects.append(ServeBlocks(request.sender, first, last))

    def _on_state_response(
        self, sender: int, response: StateResponse, effects: list[Effect]
    ) -> None:
        progressed = False
        for certified in response.blocks[: self.config.max_blocks_per_transfer]:
            height = certified.batch.height
            if height <= self.delivered.height or height in self.committed:
                continue
            if height != self.delivered.height + 1:
                break
            problem = certificate_problem(
                height,
                certified.batch.digest,
                certified.certificate,
                self.validators,
                self.config.chain_id,
                self._checker.verify,
            )
            if problem is not None or not all(r.well_formed() for r in certified.batch.requests):
                self.dropped["bad_state_response"] += 1
                self.peer_heights[sender] = self.delivered.height
                break
            self.committed[height] = certified
            self._deliver_ready(effects)
            progressed = True
        if progressed:
            self.transfer_deadline_ms = None

    # ------------------------------------------------------------ restart

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

    def _replay_records(self, records: list[Record]) -> list[Effect]:
        my_view_change: ViewChange | None = None
        for record in records:
            match record:
                case ViewRecord(view=view, active=active):
                    if view != self.view:
                        self.log = {}
                    self.view, self.active = view, active
                case StableCheckpointRecord(proof=proof):
                    if proof.height > self.stable.height:
                        self.stable = proof
                case PreparedRecord(certificate=certificate):
                    self.prepared_certs[certificate.height] = certificate
                case PrePrepareRecord(pre_prepare=pre_prepare):
                    if pre_prepare.view == self.view:
                        self._slot(pre_prepare.height).pre_prepare = pre_prepare
                    if pre_prepare.sender == self.me:
                        self._guard(
                            "pre-prepare",
                            pre_prepare.view,
                            pre_prepare.height,
                            pre_prepare.batch.digest,
                        )
                case VoteRecord(vote=vote):
                    my_view_change = self._replay_vote(vote, my_view_change)
        return self._finish_restore(my_view_change)

    def _replay_vote(
        self,
        vote: Prepare | Commit | Checkpoint | ViewChange | NewView,
        my_view_change: ViewChange | None,
    ) -> ViewChange | None:
        match vote:
            case Prepare() | Commit():
                self._guard(vote.DOMAIN, vote.view, vote.height, vote.digest)
                if vote.view == self.view:
                    slot = self._slot(vote.height)
                    if isinstance(vote, Prepare):
                        slot.prepares[self.me], slot.sent_prepare = vote, True
                    else:
                        slot.commits[self.me], slot.sent_commit = vote, True
            case Checkpoint():
                self._guard("checkpoint", 0, vote.height, vote.state_root)
                if vote.height > self.stable.height:
                    self.checkpoint_votes.setdefault(vote.height, {})[self.me] = vote
            case ViewChange():
                self._guard("view-change", vote.new_view, 0, vote.ident)
                return vote
            case NewView():
                self.last_new_view = vote
                if vote.sender == self.me:
                    self._guard("new-view", vote.view, 0, vote.ident)
        return my_view_change

    def _finish_restore(self, my_view_change: ViewChange | None) -> list[Effect]:
        low = self.stable.height
        self.log = {h: s for h, s in self.log.items() if h > low}
        self.prepared_certs = {h: c for h, c in self.prepared_certs.items() if h > low}
        self.next_height = max([self.delivered.height + 1, low + 1] + [h + 1 for h in self.log])
        for height, slot in self.log.items():
            if slot.pre_prepare is not None and height > self.delivered.height:
                for request in slot.pre_prepare.batch.requests:
                    self.in_flight[request.digest] = height
        self._raise_transfer_target(low)
        effects: list[Effect] = []
        if not self.active and my_view_change is not None and my_view_change.new_view == self.view:
            self.view_changes[self.me] = my_view_change
            effects.append(Broadcast(my_view_change))
        elif self.active and self.is_primary:
            for height in sorted(self.log):
                slot = self.log[height]
                if slot.pre_prepare is not None and height > self.delivered.height:
                    effects.append(Broadcast(slot.pre_prepare))
        return effects
