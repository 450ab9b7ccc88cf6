"""Block headers derived at delivery, and the commit certificate check.

A block is a committed batch plus the header every replica derives for it:
the previous block's hash and a block time that never runs backwards are
filled in here, not by the proposer (chain links are derived, not
proposed, so a null batch filling a gap in a view change cannot break them).  The header repeats the batch's fields, so from a
header alone anyone can recompute the batch digest the validators voted on.

:func:`verify_commit_certificate` is what an observer, the SDK or an offline
auditor runs: it needs the header, the certificate and the validator set,
and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from consensus.codec import Verifier, digest_of, ed25519_verify
from consensus.messages import Batch, Commit, Request, batch_digest_of, signature_valid
from consensus.quorum import ValidatorSet

GENESIS_PARENT_HASH = b"\x00" * 32


@dataclass(frozen=True)
class BlockHeader:
    chain_id: str
    height: int
    prev_block_hash: bytes
    time_ms: int
    proposer_time_ms: int
    requests_root: bytes
    request_count: int
    executed_height: int
    executed_state_root: bytes

    @cached_property
    def batch_digest(self) -> bytes:
        return batch_digest_of(
            self.height,
            self.proposer_time_ms,
            self.requests_root,
            self.request_count,
            self.executed_height,
            self.executed_state_root,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "chain_id": self.chain_id,
            "height": self.height,
            "prev_block_hash": self.prev_block_hash,
            "time_ms": self.time_ms,
            "proposer_time_ms": self.proposer_time_ms,
            "requests_root": self.requests_root,
            "request_count": self.request_count,
            "executed_height": self.executed_height,
            "executed_state_root": self.executed_state_root,
        }

    @cached_property
    def hash(self) -> bytes:
        return digest_of(self.to_dict())


@dataclass(frozen=True)
class ChainTip:
    """The last block a replica has delivered and executed."""

    height: int
    block_hash: bytes
    time_ms: int
    state_root: bytes

    @classmethod
    def genesis(cls, state_root: bytes, time_ms: int = 0) -> ChainTip:
        return cls(0, GENESIS_PARENT_HASH, time_ms, state_root)


@dataclass(frozen=True)
class CommittedBlock:
    header: BlockHeader
    requests: tuple[Request, ...]
    certificate: tuple[Commit, ...]


def derive_header(chain_id: str, batch: Batch, prev_hash: bytes, prev_time_ms: int) -> BlockHeader:
    """The header of ``batch`` when the previous block is (prev_hash, prev_time_ms)."""
    return BlockHeader(
        chain_id=chain_id,
        height=batch.height,
        prev_block_hash=prev_hash,
        time_ms=max(batch.proposer_time_ms, prev_time_ms),
        proposer_time_ms=batch.proposer_time_ms,
        requests_root=batch.requests_root,
        request_count=len(batch.requests),
        executed_height=batch.executed_height,
        executed_state_root=batch.executed_state_root,
    )


def certificate_problem(
    height: int,
    batch_digest: bytes,
    certificate: tuple[Commit, ...] | list[Commit],
    validators: ValidatorSet,
    chain_id: str,
    verify: Verifier = ed25519_verify,
) -> str | None:
    """Why ``certificate`` does not commit (height, batch_digest), or None if it does."""
    views = {commit.view for commit in certificate}
    if len(views) > 1:
        return "commits from more than one view"
    signers: set[int] = set()
    for commit in certificate:
        if commit.height != height or commit.digest != batch_digest:
            return f"commit from validator {commit.sender} is for another block"
        if not validators.contains(commit.sender):
            return f"commit from unknown validator {commit.sender}"
        if commit.sender in signers:
            return f"validator {commit.sender} signed twice"
        if not signature_valid(commit, validators.key_of(commit.sender), chain_id, verify):
            return f"bad signature from validator {commit.sender}"
        signers.add(commit.sender)
    if len(signers) < validators.quorum:
        return f"{len(signers)} commits, quorum is {validators.quorum}"
    return None


def verify_commit_certificate(
    header: BlockHeader,
    certificate: tuple[Commit, ...] | list[Commit],
    validator_set: ValidatorSet,
    verify: Verifier = ed25519_verify,
) -> bool:
    """True when a quorum of ``validator_set`` committed exactly this header's batch."""
    problem = certificate_problem(
        header.height, header.batch_digest, certificate, validator_set, header.chain_id, verify
    )
    return problem is None


def batch_of(block: CommittedBlock) -> Batch:
    """The batch a committed block was made from (for serving state transfer)."""
    header = block.header
    return Batch(
        header.height,
        block.requests,
        header.proposer_time_ms,
        header.executed_height,
        header.executed_state_root,
    )
