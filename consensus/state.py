"""What a replica remembers, and the small operations on it every part shares.

``ReplicaState`` holds the fields (each documented where it is set).  The
protocol lives in plain functions over it, one module per job: normal_case
(ordering and delivery), checkpointing (checkpoints, execution results and
state transfer), view_change (leaving a view and starting the next),
liveness (timers, suspicion and STATUS) and restore (rebuilding after a
crash).  consensus.modes says which of them runs for each input.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.blocks import ChainTip
from consensus.codec import Signer, Verifier
from consensus.config import ReplicaConfig
from consensus.epochs import ValidatorHistory
from consensus.messages import (
    CertifiedBatch,
    Checkpoint,
    CheckpointProof,
    Commit,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    ViewChange,
)
from consensus.modes import InvariantViolation, Mode
from consensus.proofs import Checker
from consensus.quorum import ValidatorSet

RequestValidator = Callable[[bytes], bool]
ViewMessage = PrePrepare | Prepare | Commit

GENESIS_PROOF_ROOT = b""


@dataclass
class Slot:
    """Everything the current view knows about one height."""

    pre_prepare: PrePrepare | None = None
    prepares: dict[int, Prepare] = field(default_factory=dict)
    commits: dict[int, Commit] = field(default_factory=dict)
    sent_commit: bool = False
    committed: bool = False


@dataclass(frozen=True)
class Sabotage:
    """Protocol rules the simulator breaks on purpose, to show that its
    checker notices each break.  A node never sets any of them."""

    # Prepare and commit on this many matching votes instead of a quorum.
    vote_quorum: int | None = None
    # Accept any NEW-VIEW without checking its view changes or recomputing O.
    skip_new_view_check: bool = False
    # Vote VIEW-CHANGE on this replica's own suspicion, without waiting for f
    # others: safe, but it can end up alone in a higher view.
    depose_alone: bool = False
    # Prepare and commit on the quorum of the configured (genesis) set even
    # after the validator set changed.
    stale_quorum: bool = False


class ReplicaState:
    """One validator's view of PBFT; see consensus.modes and consensus.replica."""

    def __init__(
        self,
        config: ReplicaConfig,
        signer: Signer,
        verify: Verifier,
        request_valid: RequestValidator,
        tip: ChainTip,
        now_ms: int = 0,
        sabotage: Sabotage | None = None,
        history: ValidatorHistory | None = None,
    ) -> None:
        # The validator set at every height this replica may still need
        # (consensus.epochs), as the host knew it through its tip.
        if history is None:
            history = ValidatorHistory.genesis(config.validators, tip.height)
        if history.through_height < tip.height:
            raise ValueError("the validator history ends below the tip")
        if history.members().get(config.replica_id) != signer.public_key:
            raise ValueError("the signer's key is not this replica's validator key")
        self.config = config
        self.epochs = history
        # (history, low watermark) -> (set of the window, next change): the
        # hot path asks for both on every message.
        self._window: tuple[ValidatorHistory, int, ValidatorSet, int | None] | None = None
        self.me = config.replica_id
        self.signer = signer
        self.verify = verify
        self.request_valid = request_valid
        self.sabotage = sabotage or Sabotage()
        self.now_ms = now_ms
        self.dropped: Counter[str] = Counter()
        # View state.
        self.view = 0
        self.mode = Mode.ACTIVE
        self.view_change_attempts = 0
        self.view_change_timeout_ms = config.view_change_timeout_ms
        self.view_change_deadline_ms: int | None = None
        self.view_changes: dict[int, ViewChange] = {}
        self.last_new_view: NewView | None = None
        # A stable checkpoint moved the window into a new epoch, and no
        # NEW-VIEW of that epoch has been entered since (view_change).
        self.entered_epoch_by_checkpoint = False
        self.new_view_sent_ms: dict[int, int] = {}
        # The log of the current view and what survives views.
        self.log: dict[int, Slot] = {}
        self.next_height = tip.height + 1
        self.prepared_certs: dict[int, PreparedCertificate] = {}
        self.committed: dict[int, CertifiedBatch] = {}
        # Every vote this replica sent, by (kind, view, height), until it can
        # no longer be contradicted: the guard refuses to sign a different one.
        self.sent: dict[tuple[str, int, int], bytes] = {}
        # Checkpoints.
        self.stable = CheckpointProof(0, GENESIS_PROOF_ROOT, ())
        self.checkpoint_votes: dict[int, dict[int, Checkpoint]] = {}
        # Chain: what has been delivered and what has been executed.
        self.delivered = tip
        self.executed_height = tip.height
        self.executed_roots: dict[int, bytes] = {tip.height: tip.results_root}
        # Carrier blocks: a height's results are certified only by a later
        # proposal carrying an executed height at or above it, so when the
        # chain goes idle the primary proposes one empty batch to carry the
        # last results (normal_case.maybe_carry).  What a replica needs for
        # that: the highest executed height a delivered block carried; the
        # delivered heights above it that held requests (oldest first, at
        # most ``2 * window_size``); and the first height it knows the
        # contents of (it forgets those below its restart tip, and below any
        # height it had to drop from ``request_heights``).
        self.carried_height = 0
        # The lowest undelivered height found uncommitted at the last
        # heartbeat (normal_case.resend_stuck_votes), or None.
        self.stuck_height: int | None = None
        self.request_heights: deque[int] = deque()
        self.heights_known_from = tip.height + 1
        # When the last height was executed: the carrier waits batch_timeout_ms
        # after it, as requests do, so that a request arriving just after a
        # block carries its results instead of an empty block.
        self.executed_ms = now_ms
        # Request digests delivered within the dedup horizon, by height.
        self.recent: deque[tuple[int, tuple[bytes, ...]]] = deque()
        self.recent_digests: dict[bytes, int] = {}
        # Requests: waiting (not yet delivered, with the time we saw them,
        # oldest first), those not yet in any pre-prepare of this view, and
        # those in flight (digest -> height in this view's log).
        self.waiting: dict[bytes, tuple[Request, int]] = {}
        # When the cluster last made progress that this replica saw: a block
        # committed in this view or delivered, or the view starting.  The
        # request timer measures time without progress (PBFT 4.5.2), not the
        # age of a backlog the primary is working through.
        self.progress_ms = now_ms
        # How long requests waited without progress before each recent
        # progress (as the request timer measured it): under load commits come
        # in waves a window of pre-prepares apart, and the timer allows twice
        # the longest recent wait, so a healthy saturated primary is not deposed.
        self.progress_gaps_ms: deque[int] = deque(maxlen=2 * config.window_size)
        # The last tick, and the last resume after the host was stopped:
        # nothing that happened before a resume counts against a timer.
        self.last_tick_ms = now_ms
        self.resumed_ms = now_ms
        # Whether this replica's request timer expired in this view (it
        # suspects the primary, a claim it announces in STATUS and that binds
        # it to nothing), and which view each peer last said it suspects.
        self.suspecting = False
        self.suspicions: dict[int, int] = {}
        # The highest (view, active) each peer reported in a STATUS; honest
        # replicas only ever move up in this order.
        self.peer_views: dict[int, tuple[int, bool]] = {}
        self.unproposed: dict[bytes, Request] = {}
        self.in_flight: dict[bytes, int] = {}
        # State transfer and peer heights.
        self.peer_heights: dict[int, int] = {}
        self.transfer_target = tip.height
        self.transfer_deadline_ms: int | None = None
        self.transfer_round = 0
        self.status_due_ms = now_ms
        self.proof_sent_ms: dict[int, int] = {}
        # View-stamped messages for a later view or beyond the window, per sender.
        self.buffer: dict[int, deque[tuple[int, ViewMessage]]] = {}

    def _window_epoch(self) -> tuple[ValidatorSet, int | None]:
        low = self.low_watermark
        cached = self._window
        if cached is None or cached[0] is not self.epochs or cached[1] != low:
            found = self.epochs.set_at(low + 1), self.epochs.next_change_after(low + 1)
            cached = self._window = (self.epochs, low, *found)
        return cached[2], cached[3]

    @property
    def validators(self) -> ValidatorSet:
        """The set in force for the whole window (low, low + W]: the one at
        low + 1 (consensus.epochs: no window spans a change)."""
        return self._window_epoch()[0]

    @property
    def checker(self) -> Checker:
        return Checker(self.validators, self.config.chain_id, self.verify)

    def checker_at(self, height: int) -> Checker:
        return Checker(self.epochs.set_at(height), self.config.chain_id, self.verify)

    @property
    def vote_quorum(self) -> int:
        """Votes that make a height prepared and committed."""
        if self.sabotage.vote_quorum is not None:
            return self.sabotage.vote_quorum
        if self.sabotage.stale_quorum:
            return self.config.validators.quorum
        return self.validators.quorum

    @property
    def settled_height(self) -> int:
        """The highest height whose validator set this replica knows for sure."""
        return self.epochs.settled_through(self.config.window_size)

    @property
    def is_member(self) -> bool:
        """Does this replica vote in the window's epoch?  A validator not yet
        joined, or removed, orders nothing and only catches up."""
        return self.validators.contains(self.me)

    def in_window_epoch(self, height: int) -> bool:
        """May ``height`` be ordered now: its set settled and the window's?
        Heights past a change wait until the checkpoint before it is stable."""
        if height > self.epochs.through_height + self.config.window_size + 1:
            return False
        change = self._window_epoch()[1]
        return change is None or height < change

    @property
    def active(self) -> bool:
        """Operating in its view (``Mode.ACTIVE``), not changing views."""
        return self.mode is Mode.ACTIVE

    @property
    def primary(self) -> int:
        return self.validators.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.me

    @property
    def low_watermark(self) -> int:
        return self.stable.height

    def buffer_message(self, sender: int, message: ViewMessage) -> None:
        queue = self.buffer.setdefault(sender, deque())
        if len(queue) >= self.config.max_buffered_per_sender:
            queue.popleft()
            self.dropped["buffer_full"] += 1
        queue.append((sender, message))

    def slot(self, height: int) -> Slot:
        slot = self.log.get(height)
        if slot is None:
            slot = self.log[height] = Slot()
        return slot

    def stalled_since_ms(self) -> int | None:
        """Since when the oldest waiting request, or results no block carries
        yet, have seen no progress (None: nothing waits).

        Executed results wait like a request: a primary that crashed (or
        stays silent) right after a block holding requests would otherwise
        never carry its results, and with no request waiting no timer would
        ever depose it (normal_case.maybe_carry)."""
        if self.waiting:
            _, oldest_ms = next(iter(self.waiting.values()))
            return max(oldest_ms, self.resumed_ms, self.progress_ms)
        if self.awaits_carrier():
            return max(self.resumed_ms, self.progress_ms)
        return None

    def awaits_carrier(self) -> bool:
        """Has this replica executed a height holding requests whose results
        no delivered block carries yet?  (``request_heights`` keeps exactly
        the delivered heights with requests above ``carried_height``.)"""
        return bool(self.request_heights) and self.request_heights[-1] <= self.executed_height

    def note_progress(self) -> None:
        """The cluster made progress: restart the request timer, and remember
        how long it had run."""
        since = self.stalled_since_ms()
        if since is not None and self.now_ms > since:
            self.progress_gaps_ms.append(self.now_ms - since)
        self.progress_ms = self.now_ms

    def prune_sent(self) -> None:
        """Forget own votes that can never be contradicted any more."""
        low = self.low_watermark
        self.sent = {
            key: value
            for key, value in self.sent.items()
            if (key[0] == "checkpoint" and key[2] > low)
            or (key[0] in {"view-change", "new-view"} and key[1] >= self.view)
            or (key[1] >= self.view and key[2] > low)
        }

    def guard(self, kind: str, view: int, height: int, value: bytes) -> None:
        """Remember a vote about to be sent, refusing one that contradicts an earlier one."""
        key = (kind, view, height)
        known = self.sent.get(key)
        if known is not None and known != value:
            raise InvariantViolation(
                f"replica {self.me} about to send a {kind} for view {view} height {height} "
                "that contradicts one it sent before"
            )
        self.sent[key] = value
