"""Byzantine behaviours: an honest replica's outgoing traffic, corrupted.

A Byzantine replica in the simulator runs the real :class:`Replica` (so it
holds a real key and produces validly signed messages) and then rewrites
what it sends.  Each behaviour is a function from one outgoing message to
the list of (destination, message) pairs actually sent; destination None
means every other replica.  The rewriting draws only from the run's seeded
generator, so Byzantine runs replay exactly too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from random import Random

from consensus.codec import Signer
from consensus.messages import (
    Batch,
    CertifiedBatch,
    Checkpoint,
    Commit,
    Message,
    NewView,
    Prepare,
    PrePrepare,
    StateResponse,
    ViewChange,
    sign,
)

Outgoing = list[tuple[int | None, Message]]

BEHAVIOURS = (
    "silent",
    "equivocate",
    "conflicting_votes",
    "forge",
    "bogus_state",
    "rewrite_new_view",
)


@dataclass
class Adversary:
    """What a Byzantine replica knows: its key, the cluster size, the seed's rng."""

    me: int
    n: int
    signer: Signer
    chain_id: str
    rng: Random

    def others(self) -> list[int]:
        return [r for r in range(self.n) if r != self.me]

    def halves(self) -> tuple[list[int], list[int]]:
        others = self.others()
        self.rng.shuffle(others)
        cut = max(1, len(others) // 2)
        return others[:cut], others[cut:]


def silent(adversary: Adversary, to: int | None, message: Message) -> Outgoing:
    return []


def equivocate(adversary: Adversary, to: int | None, message: Message) -> Outgoing:
    """As primary, propose a different batch for the same height to half the peers."""
    if not isinstance(message, PrePrepare) or to is not None or message.sender != adversary.me:
        return [(to, message)]
    batch = message.batch
    twin_batch = replace(batch, proposer_time_ms=batch.proposer_time_ms + 1)
    if len(batch.requests) > 1:
        twin_batch = replace(batch, requests=batch.requests[:-1])
    twin = sign(
        replace(message, batch=twin_batch, signature=b""), adversary.signer, adversary.chain_id
    )
    return _split_send(adversary, message, twin)


def _split_send(adversary: Adversary, honest: Message, other: Message) -> Outgoing:
    """One version to half the peers, the other to the rest; and, half the
    time, both to one peer, which then holds signed evidence of the lie."""
    first, second = adversary.halves()
    outgoing: Outgoing = [(r, honest) for r in first]
    outgoing.extend((r, other) for r in second)
    if adversary.rng.randrange(2):
        outgoing.append((adversary.rng.choice(first), other))
    return outgoing


def conflicting_votes(adversary: Adversary, to: int | None, message: Message) -> Outgoing:
    """Vote for the real digest to some peers and a made-up one to the others."""
    if isinstance(message, Prepare) and to is None:
        fake_prepare = replace(message, digest=adversary.rng.randbytes(32), signature=b"")
        return _split_send(
            adversary, message, sign(fake_prepare, adversary.signer, adversary.chain_id)
        )
    if isinstance(message, Commit) and to is None:
        fake_commit = replace(message, digest=adversary.rng.randbytes(32), signature=b"")
        return _split_send(
            adversary, message, sign(fake_commit, adversary.signer, adversary.chain_id)
        )
    if isinstance(message, Checkpoint) and to is None:
        fake_root = replace(message, results_root=adversary.rng.randbytes(32), signature=b"")
        return [(None, sign(fake_root, adversary.signer, adversary.chain_id))]
    return [(to, message)]


def forge(adversary: Adversary, to: int | None, message: Message) -> Outgoing:
    """Send its messages with broken signatures, or in another replica's name."""
    if isinstance(message, PrePrepare | Prepare | Commit | Checkpoint | ViewChange):
        if adversary.rng.randrange(2):
            impostor = adversary.rng.choice(adversary.others())
            return [(to, replace(message, sender=impostor))]
        broken = bytearray(message.signature)
        broken[adversary.rng.randrange(len(broken))] ^= 0xFF
        return [(to, replace(message, signature=bytes(broken)))]
    return [(to, message)]


def bogus_state(adversary: Adversary, to: int | None, message: Message) -> Outgoing:
    """Serve state-transfer responses whose blocks were tampered with."""
    if not isinstance(message, StateResponse) or not message.blocks:
        return [(to, message)]
    tampered: list[CertifiedBatch] = []
    for certified in message.blocks:
        choice = adversary.rng.randrange(3)
        if choice == 0:
            batch = replace(certified.batch, requests=certified.batch.requests[:-1])
            tampered.append(CertifiedBatch(batch, certified.certificate))
        elif choice == 1:
            tampered.append(CertifiedBatch(certified.batch, certified.certificate[:1]))
        else:
            null = Batch.null(certified.batch.height)
            tampered.append(CertifiedBatch(null, certified.certificate))
    return [(to, StateResponse(tuple(tampered), message.sender))]


def rewrite_new_view(adversary: Adversary, to: int | None, message: Message) -> Outgoing:
    """As a new primary, replace every batch of O by a null batch (validly
    signed): erasing what an earlier view prepared, perhaps committed."""
    if not isinstance(message, NewView) or message.sender != adversary.me:
        return [(to, message)]
    nulls = tuple(
        sign(
            replace(pp, batch=Batch.null(pp.height), signature=b""),
            adversary.signer,
            adversary.chain_id,
        )
        for pp in message.pre_prepares
    )
    if not nulls or all(pp.batch.is_null for pp in message.pre_prepares):
        return [(to, message)]
    forged = replace(message, pre_prepares=nulls, signature=b"")
    return [(to, sign(forged, adversary.signer, adversary.chain_id))]


Behaviour = Callable[[Adversary, int | None, Message], Outgoing]

BEHAVIOUR_TABLE: dict[str, Behaviour] = {
    "silent": silent,
    "equivocate": equivocate,
    "conflicting_votes": conflicting_votes,
    "forge": forge,
    "bogus_state": bogus_state,
    "rewrite_new_view": rewrite_new_view,
}
