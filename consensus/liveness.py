"""Timers, suspicion and STATUS heartbeats: when a replica votes to leave a view.

A VIEW-CHANGE is a promise: it lists everything the sender prepared, and a
new primary may build its NEW-VIEW from it at any time later.  So a replica
that has sent VIEW-CHANGE(w') must never prepare or commit in a view below
w' again, NEW-VIEW or not: if it went back to w < w' and helped commit x at
height h there, a NEW-VIEW(w') built from its stale VIEW-CHANGE, f faulty
ones and f honest ones that never prepared x would leave x out, and h would
be decided twice.  (With n = 3f+1 the prepared set of x is 2f+1 replicas;
take away the f faulty and the stale one and only f honest ones remain,
which one quorum of VIEW-CHANGEs can avoid.)  A replica alone in a higher
view can therefore not safely "rejoin" the others' lower view as a voter;
instead this replica never lets one timer of its own take it there:

* Suspicion is not a vote.  When the request timer expires the replica only
  *suspects* the primary: it says so in its STATUS (``suspect``), hands its
  oldest waiting requests to every peer (so their timers run too), and keeps
  working in view v.  It sends VIEW-CHANGE(v+1) once f+1 replicas, itself
  included, suspect v's primary (a peer already in a later view counts as
  one); a suspicion lapses when progress resumes.
  f+1 suspicions hold one honest one, so f faulty replicas cannot depose a
  primary, and a replica that alone lost touch (a partition, a pause, a slow
  catch-up) suspects alone and stays in the view the others work in.  Once
  f+1 honest replicas send VIEW-CHANGE the rest follow by the f+1 rule.
* A replica that is catching up does not suspect: while f+1 peers report a
  delivered height above ours (one of them honest), or a stable checkpoint
  is above it, the cluster is progressing and we are behind.  The starvation
  bound still applies (a request waiting max_request_wait_ms), so a primary
  cannot censor a replica by keeping it behind.
* A resumed replica (a tick more than max_tick_gap_ms after the last one:
  SIGSTOP and SIGCONT, a suspended VM) restarts its timers from the resume,
  all but the starvation bound, which counts from the request's arrival
  (a stall is no excuse for censorship).
* The new-view timer works the same way: when it expires the replica
  suspects the new primary and moves to the next view once f+1 replicas
  suspect it (or are past it).  If f+1 peers say they are active in its view
  it does not even suspect: the view started without it, and a peer re-sends
  the NEW-VIEW when our STATUS shows us changing.  So no timer of one replica
  takes it above the others; only f+1 replicas (one honest) can.
* The request timer measures the cluster's progress: any block committed in
  this view or delivered restarts it.  It doubles after each consecutive
  view change that made no progress, as the new-view timer does, so a new
  primary inheriting a backlog larger than one timer's worth of work is not
  deposed before its first commit; and it is at least twice the longest
  recent wait before progress, since under load a new primary fills its
  window at once and commits then come in waves a window's work apart.
  max_request_timeout_ms caps both, so a primary that is merely slow on
  purpose can stretch the timer that far and no further (and the starvation
  bound still holds).
"""

from __future__ import annotations

from itertools import islice

from consensus.checkpointing import (
    note_status,
    raise_transfer_target,
    rebroadcast_own_checkpoints,
    resend_stable_proof,
)
from consensus.events import Broadcast, Effect, Send
from consensus.messages import ForwardedRequest, Status, sign
from consensus.modes import Trigger
from consensus.normal_case import resend_stuck_votes
from consensus.state import ReplicaState
from consensus.view_change import resend_new_view, start_view_change


def on_tick_while_active(r: ReplicaState, effects: list[Effect]) -> None:
    """Route REQUEST_TIMER: suspect the primary when the request timer expires."""
    suspect = request_timer_expired(r)
    if suspect and not r.suspecting:
        r.dropped["request_timeout"] += 1
        share_waiting(r, effects)
    if suspect != r.suspecting:
        # Tell the others at once, a lapse too: a peer counting a
        # suspicion we no longer hold could move on without us.
        r.status_due_ms = r.now_ms
    r.suspecting = suspect
    maybe_depose(r, effects)
    heartbeat(r, effects)


def on_tick_while_changing(r: ReplicaState, effects: list[Effect]) -> None:
    """Route NEW_VIEW_TIMER: suspect the new primary when the new-view timer expires."""
    now = r.now_ms
    if r.view_change_deadline_ms is not None and now >= r.view_change_deadline_ms:
        if peers_active_in(r, r.view) >= r.validators.weak:
            # The view started without us (its NEW-VIEW was lost): a peer
            # re-sends it on our STATUS; moving on would leave us alone.
            r.view_change_deadline_ms = now + r.view_change_timeout_ms
        elif not r.suspecting:
            # The new primary did not deliver: suspect it, as above.
            r.dropped["new_view_timeout"] += 1
            r.suspecting = True
            r.status_due_ms = now
    maybe_depose(r, effects)
    heartbeat(r, effects)


def heartbeat(r: ReplicaState, effects: list[Effect]) -> None:
    """Every status_interval_ms: our STATUS, and what peers may have lost."""
    now = r.now_ms
    if now < r.status_due_ms:
        return
    r.status_due_ms = now + r.config.status_interval_ms
    status = Status(
        r.view, r.active, r.delivered.height, r.low_watermark, r.me, suspect=r.suspecting
    )
    effects.append(Broadcast(sign(status, r.signer, r.config.chain_id)))
    rebroadcast_own_checkpoints(r, effects)
    if r.active and r.is_primary and r.delivered.height < r.low_watermark:
        # A primary that cannot propose (it is still catching up to the
        # stable checkpoint) hands its waiting requests to the backups, so
        # their request timers depose it if it never catches up.
        share_waiting(r, effects)
    if r.active:
        resend_stuck_votes(r, effects)
    own_view_change = r.view_changes.get(r.me)
    resend = Broadcast(own_view_change) if own_view_change is not None else None
    if not r.active and resend is not None and resend not in effects:
        # Messages get lost: keep offering our view change until the view starts.
        effects.append(resend)


def on_status(r: ReplicaState, status: Status, effects: list[Effect]) -> None:
    """Route STATUS: note the peer's claims, then answer what it lacks."""
    note_status(r, status)
    maybe_depose(r, effects)
    raise_transfer_target(r, status.delivered_height)
    if status.stable_height < r.low_watermark:
        resend_stable_proof(r, status.sender, effects)
    if status.view < r.view or (status.view == r.view and not status.view_active):
        resend_new_view(r, status.sender, effects)


def resume(r: ReplicaState) -> None:
    """The host was stopped and runs again: the replica watched nothing
    meanwhile, so every timer gets a full timeout from now."""
    now = r.now_ms
    r.resumed_ms = now
    r.progress_ms = max(r.progress_ms, now)
    r.suspecting = False
    if r.view_change_deadline_ms is not None:
        r.view_change_deadline_ms = now + r.view_change_timeout_ms
    r.dropped["resumed_after_pause"] += 1


def request_timeout_ms(r: ReplicaState) -> int:
    """The request timeout: doubled for each consecutive view change
    without progress (the exponent capped so the arithmetic stays small),
    at least twice the longest recent wait before progress, and at most
    max_request_timeout_ms."""
    doublings = min(r.view_change_attempts, 30)
    ceiling = max(r.config.request_timeout_ms, r.config.max_request_timeout_ms)
    backed_off_ms: int = r.config.request_timeout_ms << doublings
    measured_ms = 2 * max(r.progress_gaps_ms, default=0)
    return min(max(backed_off_ms, measured_ms), ceiling)


def request_timer_expired(r: ReplicaState) -> bool:
    """Does this backup suspect the primary of its view?"""
    stalled_since_ms = r.stalled_since_ms()
    if not r.active or r.is_primary or not r.is_member or stalled_since_ms is None:
        return False
    if r.waiting:
        _, oldest_ms = next(iter(r.waiting.values()))
        waited_ms = r.now_ms - oldest_ms
        # A primary that executes others' requests but never this one is
        # censoring it: progress elsewhere (or our lag) does not save it
        # forever.  Nor does a pause: it is not restarted on resume, or a
        # host stalled for max_tick_gap_ms once per bound would never
        # suspect (and a lone suspicion after a resume is no vote).
        if waited_ms >= r.config.max_request_wait_ms:
            return True
    if catching_up(r):
        return False
    return r.now_ms - stalled_since_ms >= request_timeout_ms(r)


def catching_up(r: ReplicaState) -> bool:
    """Is the cluster ahead of us?  A stable checkpoint above our delivered
    height, or f+1 peers (one of them honest) reporting heights above it."""
    if r.low_watermark > r.delivered.height:
        return True
    weak = r.validators.weak
    heights = sorted(r.peer_heights.values(), reverse=True)
    return len(heights) >= weak and heights[weak - 1] > r.delivered.height


def peers_active_in(r: ReplicaState, view: int) -> int:
    return sum(1 for seen in r.peer_views.values() if seen == (view, True))


def maybe_depose(r: ReplicaState, effects: list[Effect]) -> None:
    """Move to the next view once f+1 replicas, we among them, suspect
    the primary of ours (active in it, or waiting for its NEW-VIEW)."""
    if not r.suspecting:
        return
    # A peer that has moved past our view (its VIEW-CHANGE, or its STATUS)
    # gave up on this primary too: that is more than a suspicion.
    others = {peer for peer, view in r.suspicions.items() if view == r.view}
    others.update(p for p, vc in r.view_changes.items() if vc.new_view > r.view)
    others.update(p for p, (view, _) in r.peer_views.items() if view > r.view)
    others.discard(r.me)
    others = {p for p in others if r.validators.contains(p)}
    if r.sabotage.depose_alone or 1 + len(others) >= r.validators.weak:
        start_view_change(r, r.view + 1, Trigger.SUSPECTED, effects)


def share_waiting(r: ReplicaState, effects: list[Effect]) -> None:
    """Hand our oldest waiting requests to every peer, as a PBFT client
    multicasts on retry: a request that entered the cluster here alone
    then runs the other backups' timers too, and f+1 of them can suspect."""
    for request, _ in islice(r.waiting.values(), r.config.max_batch_size):
        for peer in r.validators.ids:
            if peer != r.me:
                effects.append(Send(peer, ForwardedRequest(request, r.me)))
