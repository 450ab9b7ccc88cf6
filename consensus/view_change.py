"""View change and new view, as in PBFT section 4.4 (with signatures).

A replica that gives up on view v sends VIEW-CHANGE(v+1) with its stable
checkpoint proof and a prepared certificate for every height above it.  The
new primary, holding a quorum of them, sends NEW-VIEW with the set O that
``proofs.new_view_batches`` computes; every backup checks each view change
and recomputes O before it accepts.  Liveness rules: f+1 view changes for
higher views pull a replica along to the smallest of them; the new-view
timer is armed only once a quorum asks for the view (or a later one) and
doubles on consecutive failures; a peer found in an older view is sent the
NEW-VIEW that brought us to ours.
"""

from __future__ import annotations

from consensus.events import (
    Broadcast,
    Effect,
    Persist,
    Send,
    ViewRecord,
    VoteRecord,
)
from consensus.messages import (
    CheckpointProof,
    ForwardedRequest,
    NewView,
    PrePrepare,
    ViewChange,
    sign,
)
from consensus.proofs import (
    highest_stable,
    new_view_batches,
    view_change_problem,
)
from consensus.replica_base import ReplicaBase


class ViewChanging(ReplicaBase):
    def _start_view_change(self, new_view: int, effects: list[Effect]) -> None:
        if new_view <= self.view:
            return
        self.view = new_view
        self.active = False
        self.suspecting = False
        # The exponent is capped so the arithmetic stays small; the timeout
        # itself is capped by max_view_change_timeout_ms long before.
        doublings = min(self.view_change_attempts, 30)
        self.view_change_timeout_ms = min(
            self.config.view_change_timeout_ms * 2**doublings,
            self.config.max_view_change_timeout_ms,
        )
        self.view_change_attempts += 1
        self.view_change_deadline_ms = None
        self.log = {}
        effects.append(Persist(ViewRecord(new_view, False)))
        self._send_view_change(effects)

    def _send_view_change(self, effects: list[Effect]) -> None:
        """Sign, persist and broadcast VIEW-CHANGE for the view we are changing to."""
        prepared = tuple(
            self.prepared_certs[h] for h in sorted(self.prepared_certs) if h > self.low_watermark
        )
        view_change = ViewChange(self.view, self.stable, prepared, self.me)
        signed = sign(view_change, self._signer, self.config.chain_id)
        self._guard("view-change", self.view, 0, signed.ident)
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
        stable = highest_stable(new_view.view_changes)
        if new_view.view > self.view:
            # Jumping ahead: record the new view before any vote of it leaves,
            # so a restart can never land back in a view we have voted past.
            self.view = new_view.view
            effects.append(Persist(ViewRecord(self.view, False)))
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
            ) or pre_prepare.batch != batch:
                # Equal batches, not just equal digests: a digest covers the
                # requests' digests, and the payloads must be the certified ones.
                return "pre_prepares_differ"
            if not self._checker.signed_by_sender(pre_prepare):
                return "bad_pre_prepare_signature"
        return None

    def _enter_view(
        self, new_view: NewView, stable: CheckpointProof, effects: list[Effect]
    ) -> None:
        """Start operating in ``new_view.view``: O becomes the log's pre-prepares."""
        self.active = True
        self.suspecting = False
        self.progress_ms = self.now_ms
        self.view_change_deadline_ms = None
        self.last_new_view = new_view
        self.log = {}
        self.in_flight = {}
        if stable.height > self.low_watermark:
            self._stabilize(stable, effects, replay=False)
        for pre_prepare in new_view.pre_prepares:
            if pre_prepare.height > self.low_watermark:
                self._accept_pre_prepare(pre_prepare, effects)
        # Only now is the view recorded as active: a crash before this line
        # restarts in the view change, and restore re-enters from the NEW-VIEW
        # on disk with all of O, never with a log missing part of it.
        effects.append(Persist(ViewRecord(self.view, True)))
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
