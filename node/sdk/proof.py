"""Checking a node's commit proofs knowing only the validator set (no I/O).

Theory of operation
-------------------
A participant should not have to trust the one node it talks to.  With a
committed transaction a node returns a proof: the block header, the commit
certificate (a quorum of validators' signed COMMIT votes over the header's
batch digest) and the Merkle path of the transaction id under the header's
``requests_root``.  :func:`verify_tx_proof` rebuilds the header from JSON and
checks, in order:

1. the header names this chain and hashes to the ``block_hash`` given;
2. the certificate holds a quorum of distinct validators of the genesis set,
   each signature valid over (view, height, batch digest) on this chain;
3. the transaction id is leaf ``index`` of ``count`` under ``requests_root``,
   and ``count`` is the header's request count.

A failure raises :class:`~node.sdk.errors.ProofError` naming the part.

What a certificate covers: the batch digest binds the height, the requests
root and count, the proposer's time and the executed state root.  The
previous block's hash and the derived block time are *not* signed (chain
links are derived by every replica, not proposed), so a single proof shows
*that* the transaction committed at that height, not the chain before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from consensus.blocks import BlockHeader, certificate_problem
from consensus.codec import (
    DIGEST_SIZE,
    FieldReader,
    ShapeError,
    Verifier,
    ed25519_verify,
    hex_fields,
    read_blob,
)
from consensus.merkle import merkle_root, verify_inclusion
from consensus.messages import Commit
from consensus.proofs import CommitCertificate
from consensus.quorum import ValidatorSet
from node.sdk.errors import ProofError
from node.sdk.genesis import load_genesis

T = TypeVar("T")


def validator_set_from_genesis(path: Path | str) -> ValidatorSet:
    """The validator set declared in a network's genesis.json."""
    return load_genesis(Path(path)).validator_set()


# ------------------------------------------------------------------ the proof model


@dataclass(frozen=True)
class TxProof:
    """A node's proof that a transaction committed (``TxStatus.proof``).

    ``to_dict`` is the form the API serves (bytes as bytes: msgpack answers
    carry it as is, JSON answers with bytes as hex, which is ``to_json``);
    ``from_dict`` and ``from_json`` read it back and raise
    :class:`~consensus.codec.ShapeError` for anything malformed."""

    header: BlockHeader
    block_hash: bytes
    certificate: CommitCertificate
    index: int
    count: int
    path: tuple[bytes, ...]

    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"block", "block_hash", "certificate", "index", "count", "path"}
    )

    def to_dict(self) -> dict[str, object]:
        return {
            "block": self.header.to_dict(),
            "block_hash": self.block_hash,
            "certificate": self.certificate.to_fields(),
            "index": self.index,
            "count": self.count,
            "path": list(self.path),
        }

    def to_json(self) -> dict[str, object]:
        return {
            **hex_fields(self.to_dict()),
            "block": self.header.to_json(),
            "certificate": self.certificate.to_json(),
            "path": [digest.hex() for digest in self.path],
        }

    @classmethod
    def from_dict(cls, value: object, what: str = "proof") -> TxProof:
        return cls._read(FieldReader.of(value, cls.FIELDS, what))

    @classmethod
    def from_json(cls, value: object, what: str = "proof") -> TxProof:
        return cls._read(FieldReader.of(value, cls.FIELDS, what, hex_bytes=True))

    @classmethod
    def _read(cls, fields: FieldReader) -> TxProof:
        what, as_hex = fields.what, fields.hex_bytes
        block, certificate = fields.values["block"], fields.values["certificate"]
        path = fields.values["path"]
        if not isinstance(path, list):
            raise ShapeError(f"{what}.path must be a list of digests")
        return cls(
            header=(BlockHeader.from_json if as_hex else BlockHeader.from_dict)(
                block, f"{what}.block"
            ),
            block_hash=fields.blob("block_hash", (DIGEST_SIZE,)),
            certificate=(CommitCertificate.from_json if as_hex else CommitCertificate.from_fields)(
                certificate, f"{what}.certificate"
            ),
            index=fields.integer("index"),
            count=fields.integer("count"),
            path=tuple(
                read_blob(item, f"{what}.path[{n}]", (DIGEST_SIZE,), as_hex)
                for n, item in enumerate(path)
            ),
        )


# ------------------------------------------------------------------ JSON reading


def _malformed(read: Callable[[], T]) -> T:
    """``read()``, with a malformed value refused as ProofError("malformed")."""
    try:
        return read()
    except ShapeError as exc:
        raise ProofError("malformed", str(exc)) from None


def _field(data: object, name: str, what: str) -> object:
    if not isinstance(data, dict) or name not in data:
        raise ProofError("malformed", f"{what} has no field {name!r}")
    return data[name]


def _hex_digest(value: object, what: str) -> bytes:
    try:
        return read_blob(value, what, (DIGEST_SIZE,), hex_bytes=True)
    except ShapeError as exc:
        raise ProofError("malformed", str(exc)) from None


def _answer_map(data: object) -> dict[str, object]:
    for name in ("hash", "height"):
        _field(data, name, "block answer")
    assert isinstance(data, dict)
    return data


def header_from_json(data: object) -> BlockHeader:
    """Rebuild a :class:`BlockHeader` from its JSON form (bytes as hex)."""
    return _malformed(lambda: BlockHeader.from_json(data, "block"))


def commits_from_json(data: object) -> list[Commit]:
    """Rebuild a commit certificate (a list of signed COMMIT votes) from JSON."""
    return list(_malformed(lambda: CommitCertificate.from_json(data)).commits)


# ------------------------------------------------------------------ checks


def check_header(header: BlockHeader, chain_id: str, block_hash: bytes | None = None) -> None:
    """Raise ProofError unless the header is on ``chain_id`` (and hashes to ``block_hash``)."""
    if header.chain_id != chain_id:
        raise ProofError("chain_id", f"block is on chain {header.chain_id!r}, not {chain_id!r}")
    if block_hash is not None and header.hash != block_hash:
        raise ProofError("block_hash", "the header does not hash to the block hash given")
    # Block time is the larger of the proposer's time and the previous block's.
    if header.time_ms < header.proposer_time_ms:
        raise ProofError("header", "block time is earlier than the proposer's time")


def check_certificate(
    header: BlockHeader,
    certificate: list[Commit],
    validators: ValidatorSet,
    chain_id: str,
    verify: Verifier = ed25519_verify,
) -> None:
    """Raise ProofError unless a quorum of ``validators`` committed this header's batch."""
    problem = certificate_problem(
        header.height, header.batch_digest, certificate, validators, chain_id, verify
    )
    if problem is not None:
        raise ProofError("certificate", problem)


def check_inclusion(
    tx_id: bytes, header: BlockHeader, index: int, count: int, path: list[bytes]
) -> None:
    """Raise ProofError unless ``tx_id`` is leaf ``index`` of the header's requests."""
    if count != header.request_count:
        raise ProofError(
            "inclusion", f"proof counts {count} requests, the block holds {header.request_count}"
        )
    if not verify_inclusion(tx_id, index, count, path, header.requests_root):
        raise ProofError(
            "inclusion", f"transaction {tx_id.hex()} is not request {index} of this block"
        )


def verify_tx_proof(
    tx_id: bytes,
    proof_json: object,
    validators: ValidatorSet,
    chain_id: str,
    verify: Verifier = ed25519_verify,
) -> BlockHeader:
    """Check a node's proof that ``tx_id`` committed; return the verified header.

    >>> header = verify_tx_proof(tx_id, status["proof"], validators, "provenet-local")
    >>> header.height
    42
    """
    proof = _malformed(lambda: TxProof.from_json(proof_json))
    header = proof.header
    check_header(header, chain_id, proof.block_hash)
    check_certificate(header, list(proof.certificate.commits), validators, chain_id, verify)
    check_inclusion(tx_id, header, proof.index, proof.count, list(proof.path))
    return header


def verify_block(
    block_json: object,
    validators: ValidatorSet,
    chain_id: str,
    verify: Verifier = ed25519_verify,
) -> BlockHeader:
    """Check a block answer (GET /v1/blocks/...) the same way; return its header.

    Beyond the header and certificate, the listed transaction ids must be
    exactly the block's requests (their Merkle root is the requests root),
    so a node cannot hide or invent a transaction in a block it serves.
    """
    header = header_from_json(_field(block_json, "header", "block answer"))
    answer = _malformed(lambda: FieldReader(_answer_map(block_json), "block answer", True))
    check_header(header, chain_id, _hex_digest(answer.values["hash"], "block answer.hash"))
    if _malformed(lambda: answer.integer("height")) != header.height:
        raise ProofError("header", "block answer height differs from its header's")
    certificate = commits_from_json(_field(block_json, "certificate", "block answer"))
    check_certificate(header, certificate, validators, chain_id, verify)
    _check_listed_txs(header, _field(block_json, "txs", "block answer"))
    return header


def _check_listed_txs(header: BlockHeader, txs: object) -> None:
    if not isinstance(txs, list):
        raise ProofError("malformed", "block answer txs must be a list")
    ids = [
        _hex_digest(_field(item, "tx_id", "txs"), f"txs[{n}].tx_id") for n, item in enumerate(txs)
    ]
    if len(ids) != header.request_count or merkle_root(ids) != header.requests_root:
        raise ProofError("transactions", "the listed transactions are not the block's requests")
