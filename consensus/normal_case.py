"""PBFT's normal case: requests, proposals, the three phases and delivery.

The primary batches waiting requests into PRE-PREPAREs (at most
``max_batch_size``, or fewer once the oldest has waited ``batch_timeout_ms``)
for consecutive heights inside the window.  A backup checks a proposal
(``_batch_problem``) before it PREPAREs; a replica with the pre-prepare and
quorum-1 matching prepares from backups is prepared, records its prepared
certificate and COMMITs; a quorum of matching commits gives the commit
certificate.  Committed batches are delivered strictly in height order with
the header the replica derives, and ``Executed`` brings back each state root
(and, every ``checkpoint_interval`` heights, the replica's CHECKPOINT).
"""

from __future__ import annotations

from dataclasses import replace
from itertools import islice

from consensus.blocks import ChainTip, CommittedBlock, derive_header
from consensus.events import (
    Broadcast,
    Deliver,
    Effect,
    Persist,
    PreparedRecord,
    PrePrepareRecord,
    RequestDropped,
    Send,
    VoteRecord,
)
from consensus.messages import (
    Batch,
    CertifiedBatch,
    Checkpoint,
    Commit,
    ForwardedRequest,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    sign,
)
from consensus.replica_base import ReplicaBase, V


class NormalCase(ReplicaBase):
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
        if height > self.delivered.height:
            # Progress resets the back-offs and restarts the request timer;
            # re-committing a delivered height (as a new view does with O) is
            # not progress.
            self.view_change_attempts = 0
            self._note_progress()
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

    def _share_waiting_while_lagging(self, effects: list[Effect]) -> None:
        """A primary that cannot propose (it is still catching up to the
        stable checkpoint) hands its oldest waiting requests to the backups,
        so their request timers depose it if it never catches up."""
        if not (self.active and self.is_primary and self.delivered.height < self.low_watermark):
            return
        for request, _ in islice(self.waiting.values(), self.config.max_batch_size):
            for peer in range(self.validators.n):
                if peer != self.me:
                    effects.append(Send(peer, ForwardedRequest(request, self.me)))

    def _take_batch(self) -> list[Request]:
        """The oldest unproposed requests, within the batch's count and byte
        bounds (always at least one, so an oversized request cannot stall)."""
        requests: list[Request] = []
        size_bytes = 0
        for digest in list(islice(self.unproposed, self.config.max_batch_size)):
            size_bytes += len(self.unproposed[digest].payload)
            if requests and size_bytes > self.config.max_batch_bytes:
                break
            requests.append(self.unproposed.pop(digest))
        return requests

    def _maybe_propose(self, effects: list[Effect]) -> None:
        if not (self.active and self.is_primary):
            return
        if self.delivered.height < self.low_watermark:
            # A primary still catching up cannot tell which of its waiting
            # requests the stable part of the chain already holds.
            return
        while self.unproposed and self.next_height <= self.low_watermark + self.config.window_size:
            oldest = next(iter(self.unproposed))
            waited_ms = self.now_ms - self.waiting.get(oldest, (None, self.now_ms))[1]
            full = len(self.unproposed) >= self.config.max_batch_size
            if not full and waited_ms < self.config.batch_timeout_ms:
                return
            requests = self._take_batch()
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
        # Any block delivered is the cluster's progress, ours or not (a block
        # fetched by state transfer too): the primary is working.
        self._note_progress()
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
