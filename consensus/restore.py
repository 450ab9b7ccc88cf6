"""Rebuilding a replica from its persisted records after a crash.

Records are replayed in the order they were persisted: the last view record
gives the view and mode, pre-prepares and own votes of that view rebuild the
log, prepared certificates and the stable checkpoint come back, and every
own vote is entered in the guard, so the restarted replica can never sign a
vote that contradicts one it sent before the crash.
"""

from __future__ import annotations

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
from consensus.proofs import highest_stable
from consensus.replica_base import ReplicaBase


class Restoring(ReplicaBase):
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
                        slot.prepares[self.me] = vote
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
                    for pre_prepare in vote.pre_prepares:
                        self._guard(
                            "pre-prepare", vote.view, pre_prepare.height, pre_prepare.batch.digest
                        )
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
        new_view = self.last_new_view
        if not self.active and new_view is not None and new_view.view == self.view:
            # The crash fell between persisting a NEW-VIEW and entering its
            # view: finish entering it (a new primary re-sends it too) rather
            # than build a second, different NEW-VIEW for the same view.
            if new_view.sender == self.me:
                effects.append(Broadcast(new_view))
            self._enter_view(new_view, highest_stable(new_view.view_changes), effects)
        elif (
            not self.active and my_view_change is not None and my_view_change.new_view == self.view
        ):
            self.view_changes[self.me] = my_view_change
            effects.append(Broadcast(my_view_change))
        elif not self.active:
            # The crash fell between recording the view and recording our
            # VIEW-CHANGE for it: none was sent, so sending one now is safe.
            self._send_view_change(effects)
        elif self.is_primary:
            for height in sorted(self.log):
                slot = self.log[height]
                if slot.pre_prepare is not None and height > self.delivered.height:
                    effects.append(Broadcast(slot.pre_prepare))
        return effects
