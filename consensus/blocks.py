"""Block headers derived at delivery, and the commit certificate check.

A block is a committed batch plus the header every replica derives for it:
the previous block's hash and a block time that never runs backwards are
filled in here, not by the proposer (chain links are derived, not
proposed, so a null batch filling a gap in a view change cannot break them).  The header repeats the batch's fields, so from a
header alone anyone can recompute the batch digest the validators voted on.

:func:`verify_commit_certificate` is what an observer, the SDK or an offline
auditor runs: it needs the header, the certificate and the validator set,
and nothing else.

Wire forms
----------
:class:`BlockHeader` is the one model of a header wherever it travels:
:meth:`BlockHeader.to_dict` is its msgpack form (the database, chain pages,
the API's msgpack answers; the block hash is the digest of it) and
:meth:`BlockHeader.to_json` its JSON form (the same map, bytes as hex);
:meth:`BlockHeader.from_dict` and :meth:`BlockHeader.from_json` read them
back and raise :class:`~consensus.codec.ShapeError` for anything else.
:class:`SignedHeader` is the part of a header a commit certificate covers,
which is all a provenance bundle carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from consensus.codec import (
    DIGEST_SIZE,
    FieldReader,
    Verifier,
    digest_of,
    ed25519_verify,
    hex_fields,
)
from consensus.messages import Batch, Commit, Request, batch_digest_of, signature_valid
from consensus.quorum import ValidatorSet

GENESIS_PARENT_HASH = b"\x00" * 32


# A null batch (a view change's filler) carries an empty executed state root.
_RESULTS_ROOT_SIZES = (0, DIGEST_SIZE)
_DIGEST_SIZES = (DIGEST_SIZE,)


@dataclass(frozen=True)
class SignedHeader:
    """The header fields a commit certificate covers: its batch's fields and
    the chain.  The previous block's hash and the derived block time are
    left out (chain links are derived by every replica, not signed)."""

    chain_id: str
    height: int
    proposer_time_ms: int
    requests_root: bytes
    request_count: int
    executed_height: int
    executed_results_root: bytes

    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "chain_id",
            "height",
            "proposer_time_ms",
            "requests_root",
            "request_count",
            "executed_height",
            "executed_results_root",
        }
    )

    @cached_property
    def batch_digest(self) -> bytes:
        return batch_digest_of(
            self.height,
            self.proposer_time_ms,
            self.requests_root,
            self.request_count,
            self.executed_height,
            self.executed_results_root,
        )

    def to_dict(self) -> dict[str, object]:
        """The msgpack form (a provenance bundle's ``header``)."""
        return {
            "chain_id": self.chain_id,
            "height": self.height,
            "proposer_time_ms": self.proposer_time_ms,
            "requests_root": self.requests_root,
            "request_count": self.request_count,
            "executed_height": self.executed_height,
            "executed_results_root": self.executed_results_root,
        }

    def to_json(self) -> dict[str, object]:
        """The JSON form: the msgpack form with bytes as lowercase hex."""
        return hex_fields(self.to_dict())

    @classmethod
    def from_dict(cls, value: object, what: str = "header") -> SignedHeader:
        """Read the msgpack form; :class:`~consensus.codec.ShapeError` if malformed."""
        return cls._read(FieldReader.of(value, cls.FIELDS, what))

    @classmethod
    def from_json(cls, value: object, what: str = "header") -> SignedHeader:
        """Read the JSON form; :class:`~consensus.codec.ShapeError` if malformed."""
        return cls._read(FieldReader.of(value, cls.FIELDS, what, hex_bytes=True))

    @classmethod
    def _read(cls, fields: FieldReader) -> SignedHeader:
        return cls(
            chain_id=fields.text("chain_id"),
            height=fields.integer("height"),
            proposer_time_ms=fields.integer("proposer_time_ms"),
            requests_root=fields.blob("requests_root", _DIGEST_SIZES),
            request_count=fields.integer("request_count"),
            executed_height=fields.integer("executed_height"),
            executed_results_root=fields.blob("executed_results_root", _RESULTS_ROOT_SIZES),
        )


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
    executed_results_root: bytes

    # Each field of the wire forms and its type (bytes travel as hex in JSON).
    FIELD_TYPES: ClassVar[dict[str, type]] = {
        "chain_id": str,
        "height": int,
        "prev_block_hash": bytes,
        "time_ms": int,
        "proposer_time_ms": int,
        "requests_root": bytes,
        "request_count": int,
        "executed_height": int,
        "executed_results_root": bytes,
    }
    FIELDS: ClassVar[frozenset[str]] = frozenset(FIELD_TYPES)

    @cached_property
    def signed(self) -> SignedHeader:
        """The fields of this header that a commit certificate covers."""
        return SignedHeader(
            chain_id=self.chain_id,
            height=self.height,
            proposer_time_ms=self.proposer_time_ms,
            requests_root=self.requests_root,
            request_count=self.request_count,
            executed_height=self.executed_height,
            executed_results_root=self.executed_results_root,
        )

    @cached_property
    def batch_digest(self) -> bytes:
        return self.signed.batch_digest

    def to_dict(self) -> dict[str, object]:
        """The msgpack form; the block hash is its digest."""
        return {
            "chain_id": self.chain_id,
            "height": self.height,
            "prev_block_hash": self.prev_block_hash,
            "time_ms": self.time_ms,
            "proposer_time_ms": self.proposer_time_ms,
            "requests_root": self.requests_root,
            "request_count": self.request_count,
            "executed_height": self.executed_height,
            "executed_results_root": self.executed_results_root,
        }

    def to_json(self) -> dict[str, object]:
        """The JSON form: the msgpack form with bytes as lowercase hex."""
        return hex_fields(self.to_dict())

    @classmethod
    def from_dict(cls, value: object, what: str = "header") -> BlockHeader:
        """Read the msgpack form; :class:`~consensus.codec.ShapeError` if malformed."""
        return cls._read(FieldReader.of(value, cls.FIELDS, what))

    @classmethod
    def from_json(cls, value: object, what: str = "header") -> BlockHeader:
        """Read the JSON form; :class:`~consensus.codec.ShapeError` if malformed."""
        return cls._read(FieldReader.of(value, cls.FIELDS, what, hex_bytes=True))

    @classmethod
    def _read(cls, fields: FieldReader) -> BlockHeader:
        return cls(
            chain_id=fields.text("chain_id"),
            height=fields.integer("height"),
            prev_block_hash=fields.blob("prev_block_hash", _DIGEST_SIZES),
            time_ms=fields.integer("time_ms"),
            proposer_time_ms=fields.integer("proposer_time_ms"),
            requests_root=fields.blob("requests_root", _DIGEST_SIZES),
            request_count=fields.integer("request_count"),
            executed_height=fields.integer("executed_height"),
            executed_results_root=fields.blob("executed_results_root", _RESULTS_ROOT_SIZES),
        )

    @cached_property
    def hash(self) -> bytes:
        return digest_of(self.to_dict())


@dataclass(frozen=True)
class ChainTip:
    """The last block a replica has delivered and executed."""

    height: int
    block_hash: bytes
    time_ms: int
    results_root: bytes

    @classmethod
    def genesis(cls, results_root: bytes, time_ms: int = 0) -> ChainTip:
        return cls(0, GENESIS_PARENT_HASH, time_ms, results_root)


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
        executed_results_root=batch.executed_results_root,
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
        header.executed_results_root,
    )
