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
    active      everything of view v                        f+1 replicas suspect the
                                                            primary (us included),
                                                            f+1 VIEW-CHANGE above v,
                                                            primary equivocates      -> changing(v+1 or higher)
    changing    CHECKPOINT, VIEW-CHANGE, NEW-VIEW,          valid NEW-VIEW for v (or above)  -> active
                state transfer, STATUS                      view-change timer expires -> changing(v+1)

Messages for a view it has not reached (or heights beyond its window) are
buffered, a bounded number per sender, and replayed when it gets there.

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

Timers and when a replica votes to change the view
--------------------------------------------------
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

Failures are kept apart: a peer that misbehaves is dropped and counted in
``dropped``; a host that misuses the API gets ``ValueError``; a broken
invariant (this replica about to contradict its own vote, or its execution
diverging from a stable checkpoint) raises :class:`InvariantViolation` and
the host must stop.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from consensus.blocks import ChainTip
from consensus.checkpointing import Checkpointing
from consensus.codec import Signer, Verifier
from consensus.config import ReplicaConfig
from consensus.events import (
    Broadcast,
    ClientRequest,
    Effect,
    Event,
    Executed,
    Received,
    Record,
    Send,
    Tick,
)
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
    sign,
    signature_valid,
)
from consensus.normal_case import NormalCase
from consensus.replica_base import InvariantViolation, RequestValidator, Slot
from consensus.restore import Restoring
from consensus.view_change import ViewChanging

__all__ = ["InvariantViolation", "Replica", "RequestValidator", "Slot"]


class Replica(NormalCase, Checkpointing, ViewChanging, Restoring):
    """One validator's view of PBFT.  See the module docstring."""

    def step(self, event: Event) -> list[Effect]:
        """Feed one event; return the effects to carry out, in order."""
        effects: list[Effect] = []
        match event:
            case Tick(now_ms=now_ms):
                resumed = now_ms - self.last_tick_ms > self.config.max_tick_gap_ms
                self.now_ms = max(self.now_ms, now_ms)
                self.last_tick_ms = max(self.last_tick_ms, now_ms)
                if resumed:
                    self._resume()
                self._on_tick(effects)
            case Received(sender=sender, message=message):
                if not self.validators.contains(sender):
                    self.dropped["not_a_validator"] += 1
                elif sender == self.me:
                    self.dropped["from_self"] += 1
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
        if self._holds_already(message):
            self.dropped["duplicate"] += 1
            return
        if message.sender == self.me:
            # Our own message relayed back to us (evidence, or a replay).
            self.dropped["from_self"] += 1
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
        if not self.validators.contains(message.sender):
            self.dropped["not_a_validator"] += 1
            return False
        key = self.validators.key_of(message.sender)
        if not signature_valid(message, key, self.config.chain_id, self._checker.verify):
            self.dropped["bad_signature"] += 1
            return False
        return True

    def _on_tick(self, effects: list[Effect]) -> None:
        now = self.now_ms
        if self.active:
            suspect = self._request_timer_expired()
            if suspect and not self.suspecting:
                self.dropped["request_timeout"] += 1
                self._share_waiting(effects)
            if suspect != self.suspecting:
                # Tell the others at once, a lapse too: a peer counting a
                # suspicion we no longer hold could move on without us.
                self._status_due_ms = now
            self.suspecting = suspect
        elif self.view_change_deadline_ms is not None and now >= self.view_change_deadline_ms:
            if self._peers_active_in(self.view) >= self.validators.weak:
                # The view started without us (its NEW-VIEW was lost): a peer
                # re-sends it on our STATUS; moving on would leave us alone.
                self.view_change_deadline_ms = now + self.view_change_timeout_ms
            elif not self.suspecting:
                # The new primary did not deliver: suspect it, as above.
                self.dropped["new_view_timeout"] += 1
                self.suspecting = True
                self._status_due_ms = now
        self._maybe_depose(effects)
        if now >= self._status_due_ms:
            self._status_due_ms = now + self.config.status_interval_ms
            status = Status(
                self.view,
                self.active,
                self.delivered.height,
                self.low_watermark,
                self.me,
                suspect=self.suspecting,
            )
            effects.append(Broadcast(sign(status, self._signer, self.config.chain_id)))
            self._rebroadcast_own_checkpoints(effects)
            self._share_waiting_while_lagging(effects)
            own_view_change = self.view_changes.get(self.me)
            resend = Broadcast(own_view_change) if own_view_change is not None else None
            if not self.active and resend is not None and resend not in effects:
                # Messages get lost: keep offering our view change until the view starts.
                effects.append(resend)

    def _resume(self) -> None:
        """The host was stopped and runs again: the replica watched nothing
        meanwhile, so every timer gets a full timeout from now."""
        now = self.now_ms
        self.resumed_ms = now
        self.progress_ms = max(self.progress_ms, now)
        self.suspecting = False
        if self.view_change_deadline_ms is not None:
            self.view_change_deadline_ms = now + self.view_change_timeout_ms
        self.dropped["resumed_after_pause"] += 1

    def _request_timeout_ms(self) -> int:
        """The request timeout: doubled for each consecutive view change
        without progress (the exponent capped so the arithmetic stays small),
        at least twice the longest recent wait before progress, and at most
        max_request_timeout_ms."""
        doublings = min(self.view_change_attempts, 30)
        ceiling = max(self.config.request_timeout_ms, self.config.max_request_timeout_ms)
        backed_off_ms: int = self.config.request_timeout_ms << doublings
        measured_ms = 2 * max(self.progress_gaps_ms, default=0)
        return min(max(backed_off_ms, measured_ms), ceiling)

    def _request_timer_expired(self) -> bool:
        """Does this backup suspect the primary of its view?"""
        stalled_since_ms = self._stalled_since_ms()
        if not self.active or self.is_primary or stalled_since_ms is None:
            return False
        _, oldest_ms = next(iter(self.waiting.values()))
        waited_ms = self.now_ms - oldest_ms
        # A primary that executes others' requests but never this one is
        # censoring it: progress elsewhere (or our lag) does not save it forever.
        # Nor does a pause: it is not restarted on resume, or a host stalled
        # for max_tick_gap_ms once per bound would never suspect (and a lone
        # suspicion after a resume is no vote).
        if waited_ms >= self.config.max_request_wait_ms:
            return True
        if self._catching_up():
            return False
        return self.now_ms - stalled_since_ms >= self._request_timeout_ms()

    def _catching_up(self) -> bool:
        """Is the cluster ahead of us?  A stable checkpoint above our delivered
        height, or f+1 peers (one of them honest) reporting heights above it."""
        if self.low_watermark > self.delivered.height:
            return True
        weak = self.validators.weak
        heights = sorted(self.peer_heights.values(), reverse=True)
        return len(heights) >= weak and heights[weak - 1] > self.delivered.height

    def _peers_active_in(self, view: int) -> int:
        return sum(1 for seen in self.peer_views.values() if seen == (view, True))

    def _maybe_depose(self, effects: list[Effect]) -> None:
        """Move to the next view once f+1 replicas, we among them, suspect
        the primary of ours (active in it, or waiting for its NEW-VIEW)."""
        if not self.suspecting:
            return
        # A peer that has moved past our view (its VIEW-CHANGE, or its STATUS)
        # gave up on this primary too: that is more than a suspicion.
        others = {peer for peer, view in self.suspicions.items() if view == self.view}
        others.update(p for p, vc in self.view_changes.items() if vc.new_view > self.view)
        others.update(p for p, (view, _) in self.peer_views.items() if view > self.view)
        others.discard(self.me)
        if 1 + len(others) >= self.validators.weak:
            self._start_view_change(self.view + 1, effects)

    def _share_waiting(self, effects: list[Effect]) -> None:
        """Hand our oldest waiting requests to every peer, as a PBFT client
        multicasts on retry: a request that entered the cluster here alone
        then runs the other backups' timers too, and f+1 of them can suspect."""
        for request, _ in islice(self.waiting.values(), self.config.max_batch_size):
            for peer in range(self.validators.n):
                if peer != self.me:
                    effects.append(Send(peer, ForwardedRequest(request, self.me)))

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
