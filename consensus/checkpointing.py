"""Execution results, checkpoints, garbage collection and state transfer.

A quorum of matching CHECKPOINTs is a stable checkpoint: the window moves to
it and the log, votes and buffers at or below it are dropped, which is what
keeps a replica's memory bounded over an unbounded run.  A replica learns it
is behind from a stable checkpoint or f+1 checkpoints above its executed
height, or from f+1 peers' signed STATUS heartbeats; it then asks one peer at
a time (rotating, with a timeout) for the missing blocks and delivers each
only after checking its commit certificate.
"""

from __future__ import annotations

from dataclasses import replace

from consensus.blocks import certificate_problem
from consensus.events import (
    Broadcast,
    Effect,
    Persist,
    Send,
    ServeBlocks,
    StableCheckpointRecord,
    VoteRecord,
)
from consensus.messages import (
    Checkpoint,
    CheckpointProof,
    StateRequest,
    StateResponse,
    Status,
    sign,
)
from consensus.modes import InvariantViolation
from consensus.normal_case import deliver_ready
from consensus.quorum import ValidatorSet
from consensus.state import ReplicaState


def on_checkpoint(r: ReplicaState, checkpoint: Checkpoint, effects: list[Effect]) -> bool:
    """Route CHECKPOINT.  True when the window moved: the caller then offers
    the buffered messages again."""
    if checkpoint.height <= r.low_watermark:
        r.dropped["stale"] += 1
        return False
    if checkpoint.height % r.config.checkpoint_interval:
        r.dropped["checkpoint_off_interval"] += 1
        return False
    return add_checkpoint(r, checkpoint, effects)


def add_checkpoint(r: ReplicaState, checkpoint: Checkpoint, effects: list[Effect]) -> bool:
    """Count a checkpoint vote (ours or a peer's); True when it made one stable."""
    votes = r.checkpoint_votes.setdefault(checkpoint.height, {})
    known = votes.get(checkpoint.sender)
    if known is not None:
        r.dropped["duplicate" if known == checkpoint else "conflicting_vote"] += 1
        return False
    votes[checkpoint.sender] = checkpoint
    bound_checkpoint_votes(r, checkpoint.sender)
    return count_checkpoint(r, checkpoint.height, checkpoint.results_root, effects)


def count_checkpoint(
    r: ReplicaState, height: int, results_root: bytes, effects: list[Effect]
) -> bool:
    """Count the votes for (height, results_root) of the validators in force
    at ``height``; a quorum makes it stable once the set that follows it is
    settled (consensus.epochs), f+1 say we are behind."""
    validators = r.epochs.set_at(height)
    matching = [
        c
        for c in r.checkpoint_votes.get(height, {}).values()
        if c.results_root == results_root and validators.contains(c.sender)
    ]
    if len(matching) >= validators.quorum and height < r.settled_height:
        ordered = tuple(sorted(matching, key=lambda c: c.sender))
        proof = CheckpointProof(height, results_root, ordered)
        return stabilize(r, proof, effects)
    if len(matching) >= validators.weak:
        raise_transfer_target(r, height)
    return False


def recount_settled_checkpoints(r: ReplicaState, effects: list[Effect]) -> bool:
    """Checkpoints counted while their successor set was not yet settled
    may be stable now.  True when the window moved."""
    moved = False
    for height in sorted(r.checkpoint_votes):
        if r.low_watermark < height < r.settled_height:
            roots = {c.results_root for c in r.checkpoint_votes.get(height, {}).values()}
            for root in sorted(roots):
                moved = count_checkpoint(r, height, root, effects) or moved
    return moved


def bound_checkpoint_votes(r: ReplicaState, sender: int) -> None:
    """Keep at most window/interval + 1 checkpoint votes per sender."""
    limit = r.config.window_size // r.config.checkpoint_interval + 1
    heights = sorted(h for h, votes in r.checkpoint_votes.items() if sender in votes)
    for height in heights[: max(0, len(heights) - limit)]:
        del r.checkpoint_votes[height][sender]
        if not r.checkpoint_votes[height]:
            del r.checkpoint_votes[height]


def stabilize(r: ReplicaState, proof: CheckpointProof, effects: list[Effect]) -> bool:
    """Adopt a stable checkpoint: move the window and drop the log and votes
    at or below it.  True when the window moved, so that buffered messages
    may fit it now (the caller replays them: view_change.replay_buffer)."""
    if proof.height <= r.low_watermark or proof.height >= r.settled_height:
        return False
    if r.epochs.epoch_start(proof.height + 1) != r.epochs.epoch_start(r.low_watermark + 1):
        r.entered_epoch_by_checkpoint = True
    r.stable = proof
    effects.append(Persist(StableCheckpointRecord(proof)))
    low = proof.height
    for table in (r.log, r.prepared_certs, r.checkpoint_votes):
        for height in [h for h in table if h <= low]:
            del table[height]
    for height in [h for h in r.executed_roots if h < low and h < r.executed_height]:
        del r.executed_roots[height]
    # Keep the set that signed this checkpoint: view changes carry its proof.
    r.epochs = r.epochs.pruned(min(low, r.delivered.height))
    r.prune_sent()
    check_against_stable(r)
    raise_transfer_target(r, low)
    return True


def check_against_stable(r: ReplicaState) -> None:
    mine = r.executed_roots.get(r.stable.height)
    if r.stable.height and mine is not None and mine != r.stable.results_root:
        raise InvariantViolation(
            f"replica {r.me} executed height {r.stable.height} to a state root "
            "that differs from the stable checkpoint: its execution diverged"
        )


def note_status(r: ReplicaState, status: Status) -> None:
    """Remember what a peer's STATUS says: its height, view and suspicion."""
    # One peer's claim is enough to ask it: every block it sends must
    # carry a commit certificate, so a liar costs one request per timeout
    # and cannot make us deliver anything uncommitted.
    # Honest heights never go down, so an older STATUS replayed by a
    # Byzantine peer cannot lower what we believe an honest peer holds.
    known = r.peer_heights.get(status.sender, 0)
    r.peer_heights[status.sender] = max(known, status.delivered_height)
    seen = (status.view, status.view_active)
    r.peer_views[status.sender] = max(seen, r.peer_views.get(status.sender, seen))
    if status.suspect:
        r.suspicions[status.sender] = status.view
    elif r.suspicions.get(status.sender) == status.view:
        del r.suspicions[status.sender]


def resend_stable_proof(r: ReplicaState, peer: int, effects: list[Effect]) -> None:
    """A peer missed the checkpoints that made ours stable: send it the proof."""
    last_ms = r.proof_sent_ms.get(peer)
    if last_ms is not None and r.now_ms - last_ms < r.config.status_interval_ms:
        return
    r.proof_sent_ms[peer] = r.now_ms
    effects.extend(Send(peer, checkpoint) for checkpoint in r.stable.checkpoints)


def rebroadcast_own_checkpoints(r: ReplicaState, effects: list[Effect]) -> None:
    """Checkpoint votes get lost too; until one is stable, keep offering ours.
    Without this a window whose checkpoints were all lost never moves again."""
    for height in sorted(r.checkpoint_votes):
        own = r.checkpoint_votes[height].get(r.me)
        if own is not None and height > r.low_watermark:
            effects.append(Broadcast(own))


def raise_transfer_target(r: ReplicaState, height: int) -> None:
    if height > r.transfer_target:
        r.transfer_target = height


def maybe_fetch(r: ReplicaState, effects: list[Effect]) -> None:
    if r.transfer_target <= r.delivered.height:
        r.transfer_deadline_ms = None
        return
    if r.transfer_deadline_ms is not None and r.now_ms < r.transfer_deadline_ms:
        return
    peers = [
        p
        for p in sorted(r.epochs.members())
        if p != r.me and r.peer_heights.get(p, r.transfer_target) > r.delivered.height
    ]
    if not peers:
        return
    peer = peers[r.transfer_round % len(peers)]
    r.transfer_round += 1
    first = r.delivered.height + 1
    last = min(r.transfer_target, first + r.config.max_blocks_per_transfer - 1)
    request = sign(StateRequest(first, last, r.me), r.signer, r.config.chain_id)
    effects.append(Send(peer, request))
    r.transfer_deadline_ms = r.now_ms + r.config.state_transfer_timeout_ms


def on_state_request(r: ReplicaState, request: StateRequest, effects: list[Effect]) -> None:
    first = request.from_height
    last = min(request.to_height, first + r.config.max_blocks_per_transfer - 1)
    last = min(last, r.delivered.height)
    if first < 1 or last < first:
        r.dropped["state_request_unservable"] += 1
        return
    effects.append(ServeBlocks(request.sender, first, last))


def on_state_response(
    r: ReplicaState, sender: int, response: StateResponse, effects: list[Effect]
) -> None:
    progressed = False
    for certified in response.blocks[: r.config.max_blocks_per_transfer]:
        height = certified.batch.height
        if height <= r.delivered.height or height in r.committed:
            continue
        if height != r.delivered.height + 1 or height > r.settled_height:
            # Blocks past the settled height wait until execution tells
            # which validators certify them.
            break
        problem = certificate_problem(
            height,
            certified.batch.digest,
            certified.certificate,
            r.epochs.set_at(height),
            r.config.chain_id,
            r.verify,
        )
        if problem is not None or not all(r.well_formed() for r in certified.batch.requests):
            r.dropped["bad_state_response"] += 1
            r.peer_heights[sender] = r.delivered.height
            break
        r.committed[height] = certified
        deliver_ready(r, effects)
        progressed = True
    if progressed:
        r.transfer_deadline_ms = None
    else:
        # It had nothing we lack after all: stop asking it until its next STATUS.
        r.peer_heights[sender] = min(r.peer_heights.get(sender, 0), r.delivered.height)


def on_executed(
    r: ReplicaState,
    height: int,
    results_root: bytes,
    validators: ValidatorSet | None,
    effects: list[Effect],
) -> bool:
    """Route EXECUTED: the host executed a delivered block.  The validator
    set in state after it may schedule a change (consensus.epochs).  Every
    ``checkpoint_interval`` heights this replica, if the set in force there
    holds it, signs its CHECKPOINT.  True when a checkpoint became stable
    (the caller replays the buffer)."""
    if height != r.executed_height + 1 or height > r.delivered.height:
        raise ValueError(
            f"executed height {height} out of order: executed {r.executed_height}, "
            f"delivered {r.delivered.height}"
        )
    r.executed_height = height
    r.executed_ms = r.now_ms
    r.executed_roots[height] = results_root
    r.epochs = r.epochs.observe(
        height, validators, r.config.checkpoint_interval, r.config.window_size
    )
    if height == r.delivered.height:
        r.delivered = replace(r.delivered, results_root=results_root)
    window_moved = recount_settled_checkpoints(r, effects)
    if height % r.config.checkpoint_interval == 0 and r.epochs.set_at(height).contains(r.me):
        checkpoint = Checkpoint(height, results_root, r.me)
        r.guard("checkpoint", 0, height, results_root)
        signed = sign(checkpoint, r.signer, r.config.chain_id)
        effects.append(Persist(VoteRecord(signed)))
        effects.append(Broadcast(signed))
        window_moved = add_checkpoint(r, signed, effects) or window_moved
    if height == r.stable.height:
        check_against_stable(r)
    return window_moved
