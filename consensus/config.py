"""Every limit and timeout of a replica, named, with units last."""

from __future__ import annotations

from dataclasses import dataclass

from consensus.quorum import ValidatorSet


@dataclass(frozen=True)
class ReplicaConfig:
    chain_id: str
    validators: ValidatorSet
    replica_id: int
    # Checkpoint every K heights; the window admits heights h+1 .. h+L where
    # h is the last stable checkpoint.  L is a whole number of intervals.
    checkpoint_interval: int = 8
    window_size: int = 32
    # Batching at the primary.
    max_batch_size: int = 64
    # A batch's request payloads stop at this many bytes (at least one request),
    # so a block, and a view change carrying a window of them, fits in a frame.
    max_batch_bytes: int = 256 * 1024
    batch_timeout_ms: int = 5
    # A backup that waits on a request and sees no block committed for this
    # long suspects the primary (a view change starts once f+1 replicas do).
    # The timer measures the cluster's commit progress, not the age of the
    # oldest request, so a backlog does not depose a primary working through it.
    request_timeout_ms: int = 2_000
    # ...but a request waiting this long deposes the primary even while others
    # execute: a primary cannot censor one request by serving the rest.
    max_request_wait_ms: int = 30_000
    # A view change not completed in this long moves to the next view, with
    # the timeout doubled each consecutive time, up to the maximum.
    view_change_timeout_ms: int = 2_000
    max_view_change_timeout_ms: int = 32_000
    # The request timeout doubles with each consecutive view change that made
    # no progress (a new primary inherits the backlog the old view left), up to
    # this maximum, and is back to request_timeout_ms once a view commits.
    max_request_timeout_ms: int = 16_000
    # A tick this much later than the previous one means the host was stopped
    # (SIGSTOP, a suspended VM, a long stall): the replica watched nothing
    # meanwhile, so its timers restart from the resume instead of firing at once.
    max_tick_gap_ms: int = 1_000
    # How far a proposer's clock may be from ours.
    max_clock_skew_ms: int = 10_000
    # Requests held while waiting to be ordered (the node's mempool is the
    # real back-pressure; this bound keeps the core's memory finite).
    max_pending_requests: int = 100_000
    # Digests of requests delivered in this many recent heights are refused
    # if proposed again; older replays are the execution layer's to refuse.
    dedup_horizon_heights: int = 1_024
    # State transfer: blocks per request, and how long to wait for an answer.
    max_blocks_per_transfer: int = 64
    state_transfer_timeout_ms: int = 1_000
    # Heartbeat period; also paces re-sending a new view to a lagging peer.
    status_interval_ms: int = 500
    # Messages for views or heights beyond what we can use now are buffered
    # up to this many per sender.
    max_buffered_per_sender: int = 256

    def __post_init__(self) -> None:
        if not self.validators.contains(self.replica_id):
            raise ValueError(f"replica id {self.replica_id} is not in the validator set")
        if self.checkpoint_interval < 1 or self.window_size < self.checkpoint_interval:
            raise ValueError("window_size must be at least one checkpoint_interval")
        if self.window_size % self.checkpoint_interval:
            raise ValueError("window_size must be a multiple of checkpoint_interval")
        if self.max_batch_size < 1 or self.max_blocks_per_transfer < 1 or self.max_batch_bytes < 1:
            raise ValueError("batch and transfer sizes must be positive")
        for name in (
            "batch_timeout_ms",
            "request_timeout_ms",
            "max_request_wait_ms",
            "view_change_timeout_ms",
            "max_request_timeout_ms",
            "max_tick_gap_ms",
            "state_transfer_timeout_ms",
            "status_interval_ms",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
