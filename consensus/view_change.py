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

The two changes of mode live here (consensus.modes has the table):
``start_view_change`` is the only way into ``Mode.CHANGING`` and
``enter_view`` the only way into ``Mode.ACTIVE``.  So do the two inputs that
can lead to them from inside the normal case: a proposal that shows the
primary equivocating (``order_or_depose``), and buffered messages replayed
once a view starts or the window moves (``replay_buffer``).
"""

from __future__ import annotations

from consensus.checkpointing import stabilize
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
from consensus.modes import Route, Trigger, next_mode, route
from consensus.normal_case import Equivocation, accept_pre_prepare, hold, order
from consensus.proofs import (
    Checker,
    highest_stable,
    new_view_batches,
    view_change_problem,
)
from consensus.quorum import ValidatorSet
from consensus.state import ReplicaState, ViewMessage


def start_view_change(
    r: ReplicaState, new_view: int, trigger: Trigger, effects: list[Effect]
) -> None:
    """Leave our view for ``new_view``: the one way into ``Mode.CHANGING``."""
    if new_view <= r.view:
        return
    r.view = new_view
    r.mode = next_mode(r.mode, trigger)
    r.suspecting = False
    # The exponent is capped so the arithmetic stays small; the timeout
    # itself is capped by max_view_change_timeout_ms long before.
    doublings = min(r.view_change_attempts, 30)
    r.view_change_timeout_ms = min(
        r.config.view_change_timeout_ms * 2**doublings,
        r.config.max_view_change_timeout_ms,
    )
    r.view_change_attempts += 1
    r.view_change_deadline_ms = None
    r.log = {}
    effects.append(Persist(ViewRecord(new_view, False)))
    send_view_change(r, effects)


def send_view_change(r: ReplicaState, effects: list[Effect]) -> None:
    """Sign, persist and broadcast VIEW-CHANGE for the view we are changing
    to; a replica outside the set in force follows views but does not vote."""
    if not r.is_member:
        arm_view_change_timer(r)
        return
    prepared = tuple(r.prepared_certs[h] for h in sorted(r.prepared_certs) if h > r.low_watermark)
    view_change = ViewChange(r.view, r.stable, prepared, r.me)
    signed = sign(view_change, r.signer, r.config.chain_id)
    r.guard("view-change", r.view, 0, signed.ident)
    effects.append(Persist(VoteRecord(signed)))
    effects.append(Broadcast(signed))
    r.view_changes[r.me] = signed
    arm_view_change_timer(r)
    maybe_new_view(r, effects)


def arm_view_change_timer(r: ReplicaState) -> None:
    """Start the new-view timer once a quorum asks for this view (PBFT
    section 4.5.2): a replica alone in a view change waits rather than
    running off to ever higher views that nobody else will join."""
    if r.active or r.view_change_deadline_ms is not None:
        return
    # A peer asking for a later view has given up on this one too.
    validators = r.validators
    voters = sum(
        1
        for vc in r.view_changes.values()
        if vc.new_view >= r.view and validators.contains(vc.sender)
    )
    if voters >= validators.quorum:
        r.view_change_deadline_ms = r.now_ms + r.view_change_timeout_ms


def on_view_change_while_active(
    r: ReplicaState, view_change: ViewChange, effects: list[Effect]
) -> None:
    """Route VIEW_CHANGE_OR_ANSWER."""
    if view_change.new_view <= r.view:
        # The sender is behind: it missed the NEW-VIEW that started our view.
        resend_new_view(r, view_change.sender, effects)
        return
    count_view_change(r, view_change, effects)


def on_view_change_while_changing(
    r: ReplicaState, view_change: ViewChange, effects: list[Effect]
) -> None:
    """Route VIEW_CHANGE: one for an earlier view than ours is ignored."""
    if view_change.new_view >= r.view:
        count_view_change(r, view_change, effects)


def count_view_change(r: ReplicaState, view_change: ViewChange, effects: list[Effect]) -> None:
    """A VIEW-CHANGE for our view (while changing) or a later one."""
    sender = view_change.sender
    known = r.view_changes.get(sender)
    if known is not None and known.new_view >= view_change.new_view:
        r.dropped["duplicate" if known == view_change else "stale"] += 1
        return
    problem = checked_view_change_problem(r, view_change, roster_checker(r))
    if problem is not None:
        r.dropped["bad_view_change"] += 1
        return
    r.view_changes[sender] = view_change
    validators = r.validators
    higher = [
        vc.new_view
        for vc in r.view_changes.values()
        if vc.new_view > r.view and validators.contains(vc.sender)
    ]
    if len(higher) >= r.validators.weak:
        start_view_change(r, min(higher), Trigger.VIEW_CHANGES_ABOVE, effects)
    arm_view_change_timer(r)
    maybe_new_view(r, effects)


def roster_checker(r: ReplicaState) -> Checker:
    """Every validator this replica still knows, whatever its epoch: who may
    sign a VIEW-CHANGE (whose vote counts is decided where it is counted)."""
    members = r.epochs.members()
    ids = tuple(sorted(members))
    roster = ValidatorSet(tuple(members[i] for i in ids), ids)
    return Checker(roster, r.config.chain_id, r.verify)


def checked_view_change_problem(
    r: ReplicaState, view_change: ViewChange, voters: Checker
) -> str | None:
    """view_change_problem with the sets in force at the heights it covers,
    if this replica has settled them (else it cannot judge it yet)."""
    if view_change.stable.height >= r.settled_height:
        return "view change beyond the settled validator sets"
    return view_change_problem(view_change, r.config.window_size, voters, r.checker_at)


def new_view_set(r: ReplicaState, stable_height: int) -> ValidatorSet | None:
    """The set a NEW-VIEW whose V proves ``stable_height`` is judged by here:
    the one in force for the window this replica will have once it enters the
    view.  None when that is not settled yet (we are behind) or when the
    NEW-VIEW belongs to an earlier epoch than our window: each epoch's views
    start with a NEW-VIEW of its own set (Trigger.NEW_EPOCH)."""
    first = max(r.low_watermark, stable_height) + 1
    if first > r.settled_height:
        return None
    if r.epochs.epoch_start(stable_height + 1) != r.epochs.epoch_start(first):
        return None
    return r.epochs.set_at(first)


def maybe_new_view(r: ReplicaState, effects: list[Effect]) -> None:
    if r.active:
        return
    candidates = [vc for vc in r.view_changes.values() if vc.new_view == r.view]
    if not candidates:
        return
    top = max(vc.stable.height for vc in candidates)
    validators = new_view_set(r, top)
    if validators is None or validators.primary(r.view) != r.me:
        return
    # The view change proving the highest checkpoint goes first, so that V
    # proves it too and every replica judges V by the same set.
    voters = sorted(
        (vc for vc in candidates if validators.contains(vc.sender)),
        key=lambda vc: (vc.stable.height != top, vc.sender != r.me, vc.sender),
    )
    if len(voters) < validators.quorum or voters[0].stable.height != top:
        return
    chosen = tuple(voters[: validators.quorum])
    plan = new_view_batches(chosen)
    pre_prepares = tuple(
        sign(PrePrepare(r.view, b.height, b, r.me), r.signer, r.config.chain_id)
        for b in plan.batches
    )
    new_view = sign(NewView(r.view, chosen, pre_prepares, r.me), r.signer, r.config.chain_id)
    r.guard("new-view", r.view, 0, new_view.ident)
    for pre_prepare in pre_prepares:
        r.guard("pre-prepare", r.view, pre_prepare.height, pre_prepare.batch.digest)
    effects.append(Persist(VoteRecord(new_view)))
    effects.append(Broadcast(new_view))
    enter_view(r, new_view, plan.stable, effects)


def on_new_view_while_active(r: ReplicaState, new_view: NewView, effects: list[Effect]) -> None:
    """Route NEW_VIEW_ABOVE: only a later view's NEW-VIEW is news."""
    if new_view.view <= r.view:
        r.dropped["stale"] += 1
        return
    take_new_view(r, new_view, effects)


def on_new_view_while_changing(r: ReplicaState, new_view: NewView, effects: list[Effect]) -> None:
    """Route NEW_VIEW: the NEW-VIEW of our view or a later one."""
    if new_view.view < r.view:
        r.dropped["stale"] += 1
        return
    take_new_view(r, new_view, effects)


def take_new_view(r: ReplicaState, new_view: NewView, effects: list[Effect]) -> None:
    """Check a NEW-VIEW for our view or a later one, and enter its view."""
    problem = None if r.sabotage.skip_new_view_check else new_view_problem(r, new_view)
    if problem is not None:
        r.dropped[f"bad_new_view:{problem}"] += 1
        return
    stable = highest_stable(new_view.view_changes)
    if new_view.view > r.view:
        # Jumping ahead: record the new view before any vote of it leaves,
        # so a restart can never land back in a view we have voted past.
        r.view = new_view.view
        effects.append(Persist(ViewRecord(r.view, False)))
    effects.append(Persist(VoteRecord(new_view)))
    enter_view(r, new_view, stable, effects)


def new_view_problem(r: ReplicaState, new_view: NewView) -> str | None:
    """Check V and recompute O, as PBFT requires of every backup."""
    view = new_view.view
    if not new_view.view_changes:
        return "view_change_quorum"
    validators = new_view_set(r, highest_stable(new_view.view_changes).height)
    if validators is None:
        return "not_of_this_epoch_or_beyond_settled"
    if new_view.sender != validators.primary(view):
        return "not_from_primary"
    senders = {vc.sender for vc in new_view.view_changes}
    if (
        len(senders) != len(new_view.view_changes)
        or len(senders) < validators.quorum
        or not all(validators.contains(sender) for sender in senders)
    ):
        return "view_change_quorum"
    voters = Checker(validators, r.config.chain_id, r.verify)
    for view_change in new_view.view_changes:
        if view_change.new_view != view:
            return "view_change_for_other_view"
        if checked_view_change_problem(r, view_change, voters):
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
        if not voters.signed_by_sender(pre_prepare):
            return "bad_pre_prepare_signature"
    return None


def enter_view(
    r: ReplicaState, new_view: NewView, stable: CheckpointProof, effects: list[Effect]
) -> None:
    """Start operating in ``new_view.view``: O becomes the log's pre-prepares.
    The one way into ``Mode.ACTIVE`` (but for a restart, see restore.py)."""
    r.mode = next_mode(r.mode, Trigger.NEW_VIEW)
    r.suspecting = False
    r.progress_ms = r.now_ms
    r.view_change_deadline_ms = None
    r.last_new_view = new_view
    r.log = {}
    r.in_flight = {}
    if stable.height > r.low_watermark:
        stabilize(r, stable, effects)
    # This NEW-VIEW is of the epoch our window is in (new_view_set).
    r.entered_epoch_by_checkpoint = False
    for pre_prepare in new_view.pre_prepares:
        if (
            r.is_member
            and pre_prepare.height > r.low_watermark
            and r.in_window_epoch(pre_prepare.height)
        ):
            accept_pre_prepare(r, pre_prepare, effects)
    # Only now is the view recorded as active: a crash before this line
    # restarts in the view change, and restore re-enters from the NEW-VIEW
    # on disk with all of O, never with a log missing part of it.
    effects.append(Persist(ViewRecord(r.view, True)))
    r.next_height = max([r.low_watermark + 1] + [p.height + 1 for p in new_view.pre_prepares])
    # Every request not yet delivered gets a full timeout in the new view,
    # and the new primary hears of every one that is not already in O.
    now = r.now_ms
    r.waiting = {d: (request, now) for d, (request, _) in r.waiting.items()}
    r.unproposed = {d: request for d, (request, _) in r.waiting.items() if d not in r.in_flight}
    if not r.is_primary:
        for request in r.unproposed.values():
            effects.append(Send(r.primary, ForwardedRequest(request, r.me)))
    r.view_changes = {s: vc for s, vc in r.view_changes.items() if vc.new_view > r.view}
    r.prune_sent()
    replay_buffer(r, effects)


def resend_new_view(r: ReplicaState, peer: int, effects: list[Effect]) -> None:
    """A peer is behind our view: give it the NEW-VIEW that got us here."""
    new_view = r.last_new_view
    if not r.active or new_view is None or new_view.view != r.view:
        return
    last_ms = r.new_view_sent_ms.get(peer)
    if last_ms is not None and r.now_ms - last_ms < r.config.status_interval_ms:
        return
    r.new_view_sent_ms[peer] = r.now_ms
    effects.append(Send(peer, new_view))


def order_or_depose(
    r: ReplicaState, sender: int, message: ViewMessage, effects: list[Effect]
) -> None:
    """Route ORDER (normal_case.order), deposing a primary caught equivocating."""
    evidence = order(r, sender, message, effects)
    if evidence is not None:
        depose_equivocating_primary(r, evidence, effects)


def depose_equivocating_primary(
    r: ReplicaState, evidence: Equivocation, effects: list[Effect]
) -> None:
    """Two signed proposals for one (view, height): relay the evidence, depose."""
    r.dropped["equivocation"] += 1
    effects.append(Broadcast(evidence.first))
    effects.append(Broadcast(evidence.second))
    start_view_change(r, r.view + 1, Trigger.EQUIVOCATION, effects)


def window_moved(r: ReplicaState, effects: list[Effect]) -> None:
    """A stable checkpoint moved the window.  If it moved into a new epoch,
    start that epoch's first view (a validator of the set does); then offer
    the buffered messages again."""
    if r.entered_epoch_by_checkpoint:
        r.entered_epoch_by_checkpoint = False
        # A replica changing views already waits for a NEW-VIEW, which it
        # now judges by the new epoch's set (new_view_set); one that has just
        # joined the set votes for that view now.
        own = r.view_changes.get(r.me)
        if r.is_member and r.active:
            start_view_change(r, r.view + 1, Trigger.NEW_EPOCH, effects)
        elif r.is_member and (own is None or own.new_view != r.view):
            send_view_change(r, effects)
    replay_buffer(r, effects)


def replay_buffer(r: ReplicaState, effects: list[Effect]) -> None:
    """Offer buffered messages again (their signatures were checked on
    arrival), each by the route of the mode we are in when it comes up."""
    buffered = r.buffer
    r.buffer = {}
    for queue in buffered.values():
        for sender, message in queue:
            match route(r.mode, type(message)):
                case Route.ORDER:
                    order_or_depose(r, sender, message, effects)
                case Route.BUFFER:
                    hold(r, sender, message)
                case other:
                    raise AssertionError(f"a buffered message routed to {other}")
