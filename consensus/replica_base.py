"""The state a replica keeps, and the helpers every part of it shares.

``ReplicaBase`` holds the fields (documented where they are set) and the
small operations several parts use: buffering messages for later views or
heights, the log's slots, and the guard that refuses to sign a vote
contradicting one already sent.  The protocol itself lives in the mixins
that ``consensus.replica.Replica`` combines: normal_case, checkpointing,
view_change and restore.  Calls from one mixin into another go through the
stubs at the end of this class, so each mixin type-checks on its own.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from consensus.blocks import ChainTip
from consensus.codec import Signer, Verifier
from consensus.config import ReplicaConfig
from consensus.events import (
    Effect,
)
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
from consensus.proofs import (
    Checker,
)

RequestValidator = Callable[[bytes], bool]
V = TypeVar("V", Prepare, Commit)


class InvariantViolation(AssertionError):
    """The replica's own state is inconsistent: the host must stop it."""


@dataclass
class Slot:
    """Everything the current view knows about one height."""

    pre_prepare: PrePrepare | None = None
    prepares: dict[int, Prepare] = field(default_factory=dict)
    commits: dict[int, Commit] = field(default_factory=dict)
    sent_commit: bool = False
    committed: bool = False


GENESIS_PROOF_ROOT = b""


class ReplicaBase:
    """Fields and shared helpers of a replica; see consensus.replica."""

    def __init__(
        self,
        config: ReplicaConfig,
        signer: Signer,
        verify: Verifier,
        request_valid: RequestValidator,
        tip: ChainTip,
        now_ms: int = 0,
    ) -> None:
        if config.validators.key_of(config.replica_id) != signer.public_key:
            raise ValueError("the signer's key is not this replica's validator key")
        self.config = config
        self.validators = config.validators
        self.me = config.replica_id
        self._signer = signer
        self._request_valid = request_valid
        self._checker = Checker(config.validators, config.chain_id, verify)
        self.now_ms = now_ms
        self.dropped: Counter[str] = Counter()
        # View state.
        self.view = 0
        self.active = True
        self.view_change_attempts = 0
        self.view_change_timeout_ms = config.view_change_timeout_ms
        self.view_change_deadline_ms: int | None = None
        self.view_changes: dict[int, ViewChange] = {}
        self.last_new_view: NewView | None = None
        self._new_view_sent_ms: dict[int, int] = {}
        # The log of the current view and what survives views.
        self.log: dict[int, Slot] = {}
        self.next_height = tip.height + 1
        self.prepared_certs: dict[int, PreparedCertificate] = {}
        self.committed: dict[int, CertifiedBatch] = {}
        self._sent: dict[tuple[str, int, int], bytes] = {}
        # Checkpoints.
        self.stable = CheckpointProof(0, GENESIS_PROOF_ROOT, ())
        self.checkpoint_votes: dict[int, dict[int, Checkpoint]] = {}
        # Chain: what has been delivered and what has been executed.
        self.delivered = tip
        self.executed_height = tip.height
        self.executed_roots: dict[int, bytes] = {tip.height: tip.state_root}
        self._recent: deque[tuple[int, tuple[bytes, ...]]] = deque()
        self._recent_digests: dict[bytes, int] = {}
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
        self._transfer_round = 0
        self._status_due_ms = now_ms
        self._proof_sent_ms: dict[int, int] = {}
        self._buffer: dict[int, deque[tuple[int, PrePrepare | Prepare | Commit]]] = {}

    @property
    def primary(self) -> int:
        return self.validators.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.me

    @property
    def vote_quorum(self) -> int:
        """Votes that make a height prepared and committed (a hook for the
        simulator's deliberately broken replica; never override it otherwise)."""
        return self.validators.quorum

    @property
    def low_watermark(self) -> int:
        return self.stable.height

    def _buffer_message(self, sender: int, message: PrePrepare | Prepare | Commit) -> None:
        queue = self._buffer.setdefault(sender, deque())
        if len(queue) >= self.config.max_buffered_per_sender:
            queue.popleft()
            self.dropped["buffer_full"] += 1
        queue.append((sender, message))

    def _replay_buffer(self, effects: list[Effect]) -> None:
        """Offer buffered messages again (their signatures were checked on arrival)."""
        buffered = self._buffer
        self._buffer = {}
        for queue in buffered.values():
            for sender, message in queue:
                self._on_view_message(sender, message, effects)

    def _stalled_since_ms(self) -> int | None:
        """Since when the oldest waiting request has seen no progress (None:
        nothing waits)."""
        if not self.waiting:
            return None
        _, oldest_ms = next(iter(self.waiting.values()))
        return max(oldest_ms, self.resumed_ms, self.progress_ms)

    def _note_progress(self) -> None:
        """The cluster made progress: restart the request timer, and remember
        how long it had run."""
        since = self._stalled_since_ms()
        if since is not None and self.now_ms > since:
            self.progress_gaps_ms.append(self.now_ms - since)
        self.progress_ms = self.now_ms

    def _slot(self, height: int) -> Slot:
        slot = self.log.get(height)
        if slot is None:
            slot = self.log[height] = Slot()
        return slot

    def _prune_sent(self) -> None:
        """Forget own votes that can never be contradicted any more."""
        low = self.low_watermark
        self._sent = {
            key: value
            for key, value in self._sent.items()
            if (key[0] == "checkpoint" and key[2] > low)
            or (key[0] in {"view-change", "new-view"} and key[1] >= self.view)
            or (key[1] >= self.view and key[2] > low)
        }

    def _guard(self, kind: str, view: int, height: int, value: bytes) -> None:
        key = (kind, view, height)
        known = self._sent.get(key)
        if known is not None and known != value:
            raise InvariantViolation(
                f"replica {self.me} about to send a {kind} for view {view} height {height} "
                "that contradicts one it sent before"
            )
        self._sent[key] = value

    # ------------------------------------------------------------ provided by the mixins

    def _accept_pre_prepare(self, pre_prepare: PrePrepare, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _add_checkpoint(self, checkpoint: Checkpoint, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _check_against_stable(self) -> None:
        raise NotImplementedError

    def _deliver_ready(self, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _on_view_message(
        self, sender: int, message: PrePrepare | Prepare | Commit, effects: list[Effect]
    ) -> None:
        raise NotImplementedError

    def _raise_transfer_target(self, height: int) -> None:
        raise NotImplementedError

    def _maybe_depose(self, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _resend_new_view(self, peer: int, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _stabilize(
        self, proof: CheckpointProof, effects: list[Effect], replay: bool = True
    ) -> None:
        raise NotImplementedError

    def _start_view_change(self, new_view: int, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _send_view_change(self, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _enter_view(
        self, new_view: NewView, stable: CheckpointProof, effects: list[Effect]
    ) -> None:
        raise NotImplementedError
