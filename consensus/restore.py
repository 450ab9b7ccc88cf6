"""Rebuilding a replica from its persisted records after a crash.

Records are replayed in the order they were persisted: the last view record
gives the view and mode, pre-prepares and own votes of that view rebuild the
log, prepared certificates and the stable checkpoint come back, and every
own vote is entered in the guard, so the restarted replica can never sign a
vote that contradicts one it sent before the crash.
"""

from __future__ import annotations

from consensus.checkpointing import raise_transfer_target
from consensus.events import (
    Broadcast,
    Effect,
    PreparedRecord,
    PrePrepareRecord,
    Record,
    StableCheckpointRecord,
    ViewRecord,
    VoteRecord,
)
from consensus.messages import (
    Checkpoint,
    Commit,
    NewView,
    Prepare,
    ViewChange,
)
from consensus.modes import Mode, Trigger
from consensus.proofs import highest_stable
from consensus.state import ReplicaState
from consensus.view_change import enter_view, send_view_change, start_view_change


def replay_records(r: ReplicaState, records: list[Record]) -> list[Effect]:
    my_view_change: ViewChange | None = None
    for record in records:
        match record:
            case ViewRecord(view=view, active=active):
                if view != r.view:
                    r.log = {}
                # Not a transition: the mode the replica was in comes back.
                r.view = view
                r.mode = Mode.ACTIVE if active else Mode.CHANGING
            case StableCheckpointRecord(proof=proof):
                if proof.height > r.stable.height:
                    r.stable = proof
            case PreparedRecord(certificate=certificate):
                r.prepared_certs[certificate.height] = certificate
            case PrePrepareRecord(pre_prepare=pre_prepare):
                if pre_prepare.view == r.view:
                    r.slot(pre_prepare.height).pre_prepare = pre_prepare
                if pre_prepare.sender == r.me:
                    r.guard(
                        "pre-prepare",
                        pre_prepare.view,
                        pre_prepare.height,
                        pre_prepare.batch.digest,
                    )
            case VoteRecord(vote=vote):
                my_view_change = replay_vote(r, vote, my_view_change)
    return finish_restore(r, my_view_change)


def replay_vote(
    r: ReplicaState,
    vote: Prepare | Commit | Checkpoint | ViewChange | NewView,
    my_view_change: ViewChange | None,
) -> ViewChange | None:
    match vote:
        case Prepare() | Commit():
            r.guard(vote.DOMAIN, vote.view, vote.height, vote.digest)
            if vote.view == r.view:
                slot = r.slot(vote.height)
                if isinstance(vote, Prepare):
                    slot.prepares[r.me] = vote
                else:
                    slot.commits[r.me], slot.sent_commit = vote, True
        case Checkpoint():
            r.guard("checkpoint", 0, vote.height, vote.results_root)
            if vote.height > r.stable.height:
                r.checkpoint_votes.setdefault(vote.height, {})[r.me] = vote
        case ViewChange():
            r.guard("view-change", vote.new_view, 0, vote.ident)
            return vote
        case NewView():
            r.last_new_view = vote
            if vote.sender == r.me:
                r.guard("new-view", vote.view, 0, vote.ident)
                for pre_prepare in vote.pre_prepares:
                    r.guard("pre-prepare", vote.view, pre_prepare.height, pre_prepare.batch.digest)
    return my_view_change


def finish_restore(r: ReplicaState, my_view_change: ViewChange | None) -> list[Effect]:
    low = r.stable.height
    r.log = {h: s for h, s in r.log.items() if h > low}
    r.prepared_certs = {h: c for h, c in r.prepared_certs.items() if h > low}
    r.next_height = max([r.delivered.height + 1, low + 1] + [h + 1 for h in r.log])
    for height, slot in r.log.items():
        if slot.pre_prepare is not None and height > r.delivered.height:
            for request in slot.pre_prepare.batch.requests:
                r.in_flight[request.digest] = height
    raise_transfer_target(r, low)
    effects: list[Effect] = []
    new_view = r.last_new_view
    if not r.active and new_view is not None and new_view.view == r.view:
        # The crash fell between persisting a NEW-VIEW and entering its
        # view: finish entering it (a new primary re-sends it too) rather
        # than build a second, different NEW-VIEW for the same view.
        if new_view.sender == r.me:
            effects.append(Broadcast(new_view))
        enter_view(r, new_view, highest_stable(new_view.view_changes), effects)
    elif not r.active and my_view_change is not None and my_view_change.new_view == r.view:
        r.view_changes[r.me] = my_view_change
        effects.append(Broadcast(my_view_change))
    elif not r.active:
        # The crash fell between recording the view and recording our
        # VIEW-CHANGE for it: none was sent, so sending one now is safe.
        send_view_change(r, effects)
    elif not view_of_this_epoch(r):
        # The crash fell between the stable checkpoint that moved the window
        # into a new epoch and the view change that starts its first view
        # (view_change.window_moved): start it now.
        if r.is_member:
            start_view_change(r, r.view + 1, Trigger.NEW_EPOCH, effects)
    elif r.is_primary:
        for height in sorted(r.log):
            slot = r.log[height]
            if slot.pre_prepare is not None and height > r.delivered.height:
                effects.append(Broadcast(slot.pre_prepare))
    return effects


def view_of_this_epoch(r: ReplicaState) -> bool:
    """Was our view started in the epoch our window is in (consensus.epochs)?
    View 0 starts with the genesis epoch; any other with its NEW-VIEW, which
    the records always keep for the latest view."""
    current = r.epochs.epoch_start(r.low_watermark + 1)
    new_view = r.last_new_view
    if new_view is not None and new_view.view == r.view:
        stable = highest_stable(new_view.view_changes).height
        return r.epochs.epoch_start(stable + 1) == current
    return r.view == 0 and current == 0
