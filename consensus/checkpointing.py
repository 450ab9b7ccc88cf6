"""Checkpoints, garbage collection, heartbeats and state transfer.

A quorum of matching CHECKPOINTs is a stable checkpoint: the window moves to
it and the log, votes and buffers at or below it are dropped, which is what
keeps a replica's memory bounded over an unbounded run.  A replica learns it
is behind from a stable checkpoint or f+1 checkpoints above its executed
height, or from f+1 peers' signed STATUS heartbeats; it then asks one peer at
a time (rotating, with a timeout) for the missing blocks and delivers each
only after checking its commit certificate.
"""

from __future__ import annotations

from consensus.blocks import certificate_problem
from consensus.events import (
    Broadcast,
    Effect,
    Persist,
    Send,
    ServeBlocks,
    StableCheckpointRecord,
)
from consensus.messages import (
    Checkpoint,
    CheckpointProof,
    StateRequest,
    StateResponse,
    Status,
    sign,
)
from consensus.replica_base import InvariantViolation, ReplicaBase


class Checkpointing(ReplicaBase):
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
        """Adopt a stable checkpoint: move the window, drop the log and votes
        at or below it, and offer buffered messages again."""
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

    def _on_status(self, status: Status, effects: list[Effect]) -> None:
        # One peer's claim is enough to ask it: every block it sends must
        # carry a commit certificate, so a liar costs one request per timeout
        # and cannot make us deliver anything uncommitted.
        # Honest heights never go down, so an older STATUS replayed by a
        # Byzantine peer cannot lower what we believe an honest peer holds.
        known = self.peer_heights.get(status.sender, 0)
        self.peer_heights[status.sender] = max(known, status.delivered_height)
        seen = (status.view, status.view_active)
        self.peer_views[status.sender] = max(seen, self.peer_views.get(status.sender, seen))
        if status.suspect:
            self.suspicions[status.sender] = status.view
        elif self.suspicions.get(status.sender) == status.view:
            del self.suspicions[status.sender]
        self._maybe_depose(effects)
        self._raise_transfer_target(status.delivered_height)
        if status.stable_height < self.low_watermark:
            self._resend_stable_proof(status.sender, effects)
        if status.view < self.view or (status.view == self.view and not status.view_active):
            self._resend_new_view(status.sender, effects)

    def _resend_stable_proof(self, peer: int, effects: list[Effect]) -> None:
        """A peer missed the checkpoints that made ours stable: send it the proof."""
        last_ms = self._proof_sent_ms.get(peer)
        if last_ms is not None and self.now_ms - last_ms < self.config.status_interval_ms:
            return
        self._proof_sent_ms[peer] = self.now_ms
        effects.extend(Send(peer, checkpoint) for checkpoint in self.stable.checkpoints)

    def _rebroadcast_own_checkpoints(self, effects: list[Effect]) -> None:
        """Checkpoint votes get lost too; until one is stable, keep offering ours.
        Without this a window whose checkpoints were all lost never moves again."""
        for height in sorted(self.checkpoint_votes):
            own = self.checkpoint_votes[height].get(self.me)
            if own is not None and height > self.low_watermark:
                effects.append(Broadcast(own))

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
        else:
            # It had nothing we lack after all: stop asking it until its next STATUS.
            self.peer_heights[sender] = min(self.peer_heights.get(sender, 0), self.delivered.height)
