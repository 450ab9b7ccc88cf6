"""A small harness for driving one ``Replica`` by hand.

* deterministic Ed25519 keys for validators 0..n-1 (``signer(i)``);
* ``make_config`` / ``make_replica``: a replica for id i with a given config;
* builders that sign any consensus message as any validator (``signed``,
  ``pre_prepare``, ``prepare``, ``commit``, ``checkpoint``, ``view_change``,
  ``new_view``, ``prepared_certificate``, ``checkpoint_proof``, ``certified``);
* ``Node``: a replica plus everything it persisted so far; every ``step``
  checks the persist-before-send contract of events.py on the way;
* pickers: ``of_type``, ``sent``, ``persisted``, ``delivered``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any, TypeVar

from consensus.blocks import ChainTip, CommittedBlock
from consensus.codec import Ed25519Signer, digest, ed25519_verify
from consensus.config import ReplicaConfig
from consensus.events import (
    Broadcast,
    ClientRequest,
    Deliver,
    Effect,
    Event,
    Executed,
    Persist,
    PrePrepareRecord,
    Received,
    Record,
    Send,
    Tick,
    VoteRecord,
)
from consensus.messages import (
    Batch,
    CertifiedBatch,
    Checkpoint,
    CheckpointProof,
    Commit,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    Status,
    ViewChange,
    sign,
)
from consensus.proofs import new_view_batches
from consensus.quorum import ValidatorSet
from consensus.replica import Replica

CHAIN_ID = "provenet-test"
GENESIS_ROOT = digest(b"genesis state")
GENESIS_TIP = ChainTip.genesis(GENESIS_ROOT)
GENESIS_PROOF = CheckpointProof(0, b"", ())
# Replicas start at this time, and proposals carry it unless told otherwise.
T0 = 1_000

T = TypeVar("T")
E = TypeVar("E")


# ---------------------------------------------------------------- keys, configs, replicas


@cache
def signer(i: int) -> Ed25519Signer:
    """Validator i's key: the same on every run."""
    return Ed25519Signer.from_seed(digest(b"test validator %d" % i))


@cache
def validator_set(n: int = 4) -> ValidatorSet:
    return ValidatorSet(tuple(signer(i).public_key for i in range(n)))


def make_config(i: int, n: int = 4, **overrides: Any) -> ReplicaConfig:
    # Tests tick when something should happen, seconds apart, where a host
    # ticks every few ms; so a gap between ticks is not a pause here unless
    # a test says so (the resume rule has tests of its own).
    overrides.setdefault("max_tick_gap_ms", 3_600_000)
    return ReplicaConfig(chain_id=CHAIN_ID, validators=validator_set(n), replica_id=i, **overrides)


def suspicion(view: int, sender: int, height: int = 0, active: bool = True) -> Status:
    """``sender``'s STATUS saying it suspects the primary of ``view`` (in it,
    or waiting for its NEW-VIEW when not ``active``)."""
    return signed(Status(view, active, height, 0, sender, suspect=True))


def always_valid(payload: bytes) -> bool:
    return True


def make_replica(
    i: int,
    config: ReplicaConfig | None = None,
    *,
    request_valid: Callable[[bytes], bool] = always_valid,
    tip: ChainTip = GENESIS_TIP,
    now_ms: int = T0,
    signer_of: Ed25519Signer | None = None,
) -> Replica:
    config = config if config is not None else make_config(i)
    key = signer_of if signer_of is not None else signer(i)
    return Replica(config, key, ed25519_verify, request_valid, tip, now_ms)


# ---------------------------------------------------------------- messages


def signed(message: T, by: int | None = None, chain_id: str = CHAIN_ID) -> T:
    """``message`` signed by validator ``by`` (its own sender by default)."""
    who = message.sender if by is None else by  # type: ignore[attr-defined]
    return sign(message, signer(who), chain_id)  # type: ignore[type-var]


def request(name: str | int) -> Request:
    return Request.of(b"tx:%s" % str(name).encode())


def results_root(height: int) -> bytes:
    return digest(b"state after %d" % height)


def batch(
    height: int,
    *requests: Request,
    time_ms: int = T0,
    executed_height: int = 0,
    executed_root: bytes = GENESIS_ROOT,
) -> Batch:
    if not requests:
        requests = (request(f"h{height}"),)
    return Batch(height, tuple(requests), time_ms, executed_height, executed_root)


def primary_of(view: int, n: int = 4) -> int:
    return view % n


def pre_prepare(view: int, b: Batch, n: int = 4, sender: int | None = None) -> PrePrepare:
    who = primary_of(view, n) if sender is None else sender
    return signed(PrePrepare(view, b.height, b, who))


def prepare(view: int, height: int, d: bytes, sender: int) -> Prepare:
    return signed(Prepare(view, height, d, sender))


def commit(view: int, height: int, d: bytes, sender: int) -> Commit:
    return signed(Commit(view, height, d, sender))


def checkpoint(height: int, root: bytes, sender: int) -> Checkpoint:
    return signed(Checkpoint(height, root, sender))


def quorum(n: int = 4) -> int:
    return validator_set(n).quorum


def checkpoint_proof(height: int, root: bytes, senders: Iterable[int]) -> CheckpointProof:
    return CheckpointProof(
        height, root, tuple(checkpoint(height, root, s) for s in sorted(senders))
    )


def prepared_certificate(view: int, b: Batch, n: int = 4) -> PreparedCertificate:
    """A valid prepared certificate: the primary's pre-prepare and quorum-1 backups' prepares."""
    pp = pre_prepare(view, b, n)
    backups = [i for i in range(n) if i != primary_of(view, n)][: quorum(n) - 1]
    return PreparedCertificate(pp, tuple(prepare(view, b.height, b.digest, s) for s in backups))


def view_change(
    new_view: int,
    sender: int,
    stable: CheckpointProof = GENESIS_PROOF,
    prepared: Sequence[PreparedCertificate] = (),
) -> ViewChange:
    return signed(ViewChange(new_view, stable, tuple(prepared), sender))


def new_view(
    view: int,
    view_changes: Sequence[ViewChange],
    n: int = 4,
    pre_prepares: Sequence[PrePrepare] | None = None,
) -> NewView:
    """A NEW-VIEW from the primary of ``view``; O is computed honestly unless given."""
    primary = primary_of(view, n)
    if pre_prepares is None:
        plan = new_view_batches(list(view_changes))
        pre_prepares = [signed(PrePrepare(view, b.height, b, primary)) for b in plan.batches]
    return signed(NewView(view, tuple(view_changes), tuple(pre_prepares), primary))


def certified(view: int, b: Batch, senders: Iterable[int]) -> CertifiedBatch:
    return CertifiedBatch(b, tuple(commit(view, b.height, b.digest, s) for s in senders))


# ---------------------------------------------------------------- pickers


def of_type(effects: Iterable[E], cls: type[T]) -> list[T]:
    """The effects (or anything) of one type, in order."""
    return [e for e in effects if isinstance(e, cls)]


def sent(effects: Iterable[Effect], cls: type[T] | tuple[type[T], ...]) -> list[T]:
    """Messages of one type that leave in a Broadcast or a Send, in order."""
    return [
        e.message for e in effects if isinstance(e, Broadcast | Send) and isinstance(e.message, cls)
    ]


def broadcasts(effects: Iterable[Effect], cls: type[T]) -> list[T]:
    return [e.message for e in effects if isinstance(e, Broadcast) and isinstance(e.message, cls)]


def persisted(effects: Iterable[Effect], cls: type[T]) -> list[T]:
    """Records of one type that the step persists, in order."""
    return [e.record for e in effects if isinstance(e, Persist) and isinstance(e.record, cls)]


def persisted_votes(effects: Iterable[Effect], cls: type[T]) -> list[T]:
    return [
        e.record.vote
        for e in effects
        if isinstance(e, Persist)
        and isinstance(e.record, VoteRecord)
        and isinstance(e.record.vote, cls)
    ]


def delivered(effects: Iterable[Effect]) -> list[CommittedBlock]:
    return [e.block for e in effects if isinstance(e, Deliver)]


def without_status(effects: Iterable[Effect]) -> list[Effect]:
    """The effects but the periodic STATUS heartbeat a Tick may carry."""
    return [e for e in effects if not (isinstance(e, Broadcast) and isinstance(e.message, Status))]


# ---------------------------------------------------------------- persist before send

_VOTE_TYPES = (PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView)


def _record_ident(record: Record) -> bytes | None:
    if isinstance(record, VoteRecord):
        return record.vote.ident
    if isinstance(record, PrePrepareRecord):
        return record.pre_prepare.ident
    return None


def check_persist_before_send(me: int, effects: Sequence[Effect], stored: set[bytes]) -> None:
    """Every vote of ours that leaves was persisted earlier (in this step or before).

    ``stored`` holds the idents persisted by earlier steps and is updated.
    """
    for index, effect in enumerate(effects):
        if isinstance(effect, Persist):
            ident = _record_ident(effect.record)
            if ident is not None:
                stored.add(ident)
        elif isinstance(effect, Broadcast | Send):
            message: Message = effect.message
            if isinstance(message, _VOTE_TYPES) and message.sender == me:
                assert message.ident in stored, (
                    f"effect {index} sends {type(message).__name__} before persisting it: {effects}"
                )


class Node:
    """A replica and the idents of what it persisted; ``step`` checks persist-before-send."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.stored: set[bytes] = set()

    @property
    def me(self) -> int:
        return self.replica.me

    def step(self, event: Event) -> list[Effect]:
        effects = self.replica.step(event)
        check_persist_before_send(self.replica.me, effects, self.stored)
        return effects

    def receive(self, *messages: Message) -> list[Effect]:
        """Each message as sent by its own sender; the effects of all of them."""
        effects: list[Effect] = []
        for message in messages:
            effects += self.step(Received(message.sender, message))
        return effects

    def receive_from(self, transport_sender: int, message: Message) -> list[Effect]:
        """A message arriving on ``transport_sender``'s link (a relay, perhaps)."""
        return self.step(Received(transport_sender, message))

    def request(self, r: Request) -> list[Effect]:
        return self.step(ClientRequest(r))

    def tick(self, now_ms: int) -> list[Effect]:
        return self.step(Tick(now_ms))

    def executed(self, height: int, root: bytes | None = None) -> list[Effect]:
        return self.step(Executed(height, results_root(height) if root is None else root))


def node(i: int, config: ReplicaConfig | None = None, **kwargs: Any) -> Node:
    return Node(make_replica(i, config, **kwargs))


# ---------------------------------------------------------------- driving the normal case


def others(me: int, n: int, *exclude: int) -> list[int]:
    return [i for i in range(n) if i != me and i not in exclude]


def prepare_votes(target: Node, view: int, b: Batch) -> list[Prepare]:
    """Just enough prepares from other backups to make ``target`` prepared."""
    n = target.replica.validators.n
    primary = primary_of(view, n)
    needed = quorum(n) - 1 - (0 if target.me == primary else 1)
    senders = others(target.me, n, primary)[:needed]
    return [prepare(view, b.height, b.digest, s) for s in senders]


def commit_votes(target: Node, view: int, b: Batch) -> list[Commit]:
    """Just enough commits from others to make a prepared ``target`` committed."""
    n = target.replica.validators.n
    senders = others(target.me, n)[: quorum(n) - 1]
    return [commit(view, b.height, b.digest, s) for s in senders]


def drive_prepared(target: Node, view: int, b: Batch) -> list[Effect]:
    n = target.replica.validators.n
    effects: list[Effect] = []
    if target.me != primary_of(view, n):
        effects += target.receive(pre_prepare(view, b, n))
    return effects + target.receive(*prepare_votes(target, view, b))


def drive_committed(target: Node, view: int, b: Batch) -> list[Effect]:
    effects = drive_prepared(target, view, b)
    return effects + target.receive(*commit_votes(target, view, b))
