"""What goes into a replica (events), what comes out (effects), what it persists.

The host (the node, or the simulator) feeds events to ``Replica.step`` and
carries out the returned effects *in order*.  The order is the contract:
a ``Persist`` always comes before the ``Send``/``Broadcast`` of the vote it
records, so a host that stores each record before moving to the next
effect never lets a vote leave that a restart could forget (etcd raft's
rule: persist before send).

``Deliver`` hands over committed blocks strictly in height order; the host
executes each one and answers with ``Executed`` (its state root), in order.
``ServeBlocks`` asks the host to answer a peer's state request from its
block store with a ``StateResponse``.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.blocks import CommittedBlock
from consensus.messages import (
    Checkpoint,
    CheckpointProof,
    Commit,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    SignedMessage,
    ViewChange,
)
from consensus.quorum import ValidatorSet

# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Received:
    """A message from peer ``sender``, as authenticated by the transport."""

    sender: int
    message: Message


@dataclass(frozen=True)
class ClientRequest:
    """A request from a local client; the node has already checked it."""

    request: Request


@dataclass(frozen=True)
class Tick:
    now_ms: int


@dataclass(frozen=True)
class Executed:
    """The host executed the block at ``height``; this is its results root.

    ``validators`` is the validator set in state after that height, or None
    when the host does not track one (the set then never changes).  A set
    that differs from the latest known takes effect at the height
    consensus.epochs computes.
    """

    height: int
    results_root: bytes
    validators: ValidatorSet | None = None


Event = Received | ClientRequest | Tick | Executed

# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class ViewRecord:
    """The replica's current view and whether it is operating in it."""

    view: int
    active: bool


@dataclass(frozen=True)
class PrePrepareRecord:
    """A pre-prepare this replica accepted (or, as primary, sent)."""

    pre_prepare: PrePrepare


@dataclass(frozen=True)
class VoteRecord:
    """A vote this replica sent."""

    vote: Prepare | Commit | Checkpoint | ViewChange | NewView


@dataclass(frozen=True)
class PreparedRecord:
    """This replica became prepared: it must show this in a view change."""

    certificate: PreparedCertificate


@dataclass(frozen=True)
class StableCheckpointRecord:
    """A new stable checkpoint.  Records below its height may be compacted."""

    proof: CheckpointProof


Record = ViewRecord | PrePrepareRecord | VoteRecord | PreparedRecord | StableCheckpointRecord

# ---------------------------------------------------------------- effects


@dataclass(frozen=True)
class Persist:
    record: Record


@dataclass(frozen=True)
class Send:
    to: int
    message: Message


@dataclass(frozen=True)
class Broadcast:
    """Send to every other validator."""

    message: SignedMessage


@dataclass(frozen=True)
class Deliver:
    block: CommittedBlock


@dataclass(frozen=True)
class ServeBlocks:
    to: int
    from_height: int
    to_height: int


@dataclass(frozen=True)
class RequestDropped:
    """A client request the replica could not keep; the host tells the client."""

    digest: bytes
    reason: str


Effect = Persist | Send | Broadcast | Deliver | ServeBlocks | RequestDropped


def _record_height(record: Record) -> int | None:
    """The height a record is about, or None for records about views."""
    match record:
        case PrePrepareRecord(pre_prepare=pre_prepare):
            return pre_prepare.height
        case PreparedRecord(certificate=certificate):
            return certificate.height
        case VoteRecord(vote=Prepare() | Commit() | Checkpoint() as vote):
            return vote.height
    return None


def compact(records: list[Record]) -> list[Record]:
    """Drop records a restarted replica can no longer need.

    Everything at or below the latest stable checkpoint is settled, and only
    the latest view's view-change and new-view matter.  What is kept replays
    to the same replica state as the full list.
    """
    stable = 0
    view = 0
    for record in records:
        match record:
            case StableCheckpointRecord(proof=proof):
                stable = max(stable, proof.height)
            case ViewRecord(view=record_view):
                view = record_view
    kept: list[Record] = []
    for record in records:
        match record:
            case StableCheckpointRecord(proof=proof) if proof.height < stable:
                continue
            case ViewRecord(view=record_view) if record_view < view:
                continue
            case VoteRecord(vote=ViewChange(new_view=record_view)) if record_view < view:
                continue
            case VoteRecord(vote=NewView(view=record_view)) if record_view < view:
                continue
        height = _record_height(record)
        if height is not None and height <= stable:
            continue
        kept.append(record)
    return kept
