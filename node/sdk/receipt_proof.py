"""Proof of a transaction's outcome under a commit certificate (no I/O).

Theory of operation
-------------------
A commit certificate orders a transaction; it says nothing by itself about
whether the transaction succeeded.  The outcome is certified one step
later: each height's receipts are the leaves of a Merkle tree whose root
(with the state root) is that height's results root, and a later block's
certificate covers that root (contracts.results, node.sdk.results_proof).
So ``GET /v1/txs/{id}`` answers a committed transaction with a
``receipt_proof``:

* ``leaf``: the receipt leaf of the transaction (``tx_id``, ``status``,
  ``code``, ``writes_digest``), the exact values the tree commits to;
* ``index``, ``count``, ``path``: the leaf's place among the height's
  receipts and its RFC 6962 audit path;
* ``anchor``: the :class:`~node.sdk.results_proof.ResultsAnchor` that
  certifies the height's receipts root, or null while no later block has
  carried the height's results yet.

:func:`check_receipt_proof` checks, against the validator set in force:
the anchor (its certificate, its chain id, and that its results chain
reaches the root the certified header carries), that it is the anchor of
the height the transaction committed at, that the leaf is this
transaction's and lies under the certified receipts root, and that the
receipt the node served (``status``, ``code``) is the proven leaf.  A
failure raises :class:`~node.sdk.errors.ProofError` naming the part:
``unproven`` (no proof or no anchor yet), ``malformed``, ``chain_id``,
``certificate``, ``results`` (from the anchor) or ``receipt`` (the leaf is
another transaction's, is not under the root, or differs from the receipt
served).  :func:`verify_receipt_proof` does the same for a whole status
answer, its inclusion proof included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from consensus.blocks import BlockHeader
from consensus.codec import (
    DIGEST_SIZE,
    FieldReader,
    ShapeError,
    Verifier,
    ed25519_verify,
    read_blob,
)
from consensus.merkle import verify_inclusion
from consensus.quorum import ValidatorSet
from contracts.results import ReceiptLeaf
from node.sdk.errors import ProofError
from node.sdk.proof import verify_tx_proof
from node.sdk.results_proof import ResultsAnchor, read_anchor


@dataclass(frozen=True)
class ReceiptProof:
    """A node's proof of one receipt (``TxStatus.receipt_proof``)."""

    leaf: ReceiptLeaf
    index: int
    count: int
    path: tuple[bytes, ...]
    anchor: ResultsAnchor | None

    FIELDS: ClassVar[frozenset[str]] = frozenset({"leaf", "index", "count", "path", "anchor"})

    def to_dict(self) -> dict[str, object]:
        """The msgpack form (bytes as bytes; the JSON answer turns them into hex)."""
        return {
            "leaf": self.leaf.to_dict(),
            "index": self.index,
            "count": self.count,
            "path": list(self.path),
            "anchor": None if self.anchor is None else self.anchor.to_dict(),
        }

    @classmethod
    def from_json(cls, value: object, what: str = "receipt_proof") -> ReceiptProof:
        fields = FieldReader.of(value, cls.FIELDS, what, hex_bytes=True)
        path = fields.values["path"]
        if not isinstance(path, list):
            raise ShapeError(f"{what}.path must be a list of digests")
        anchor = fields.values["anchor"]
        return cls(
            leaf=ReceiptLeaf.read(fields.values["leaf"], f"{what}.leaf", True),
            index=fields.integer("index"),
            count=fields.integer("count"),
            path=tuple(
                read_blob(item, f"{what}.path[{n}]", (DIGEST_SIZE,), True)
                for n, item in enumerate(path)
            ),
            anchor=None if anchor is None else read_anchor(anchor),
        )


@dataclass(frozen=True)
class ProvenReceipt:
    """A receipt leaf proven at ``height`` by the certificate of block ``certified_by``."""

    leaf: ReceiptLeaf
    height: int
    certified_by: int

    @property
    def status(self) -> str:
        return self.leaf.status

    @property
    def code(self) -> str | None:
        return self.leaf.code


ValidatorsAt = ValidatorSet | Callable[[int], ValidatorSet]


def receipt_proof_of(status: object) -> ReceiptProof:
    """The receipt proof of a status answer (JSON form); ProofError when it
    has none yet (``unproven``) or it is not one (``malformed``)."""
    proof = status.get("receipt_proof") if isinstance(status, dict) else None
    if proof is None:
        raise ProofError("unproven", "the answer holds no receipt proof")
    try:
        return ReceiptProof.from_json(proof)
    except ShapeError as exc:
        raise ProofError("malformed", str(exc)) from None


def is_anchored(status: object) -> bool:
    """Does this status answer carry a receipt proof with its anchor (shape unchecked)?"""
    proof = status.get("receipt_proof") if isinstance(status, dict) else None
    return isinstance(proof, dict) and proof.get("anchor") is not None


def check_receipt_proof(
    tx_id: bytes,
    status: object,
    header: BlockHeader,
    validators: ValidatorsAt,
    chain_id: str,
    verify: Verifier = ed25519_verify,
) -> ProvenReceipt:
    """Check the receipt proof of a committed status whose inclusion proof
    already verified to ``header``; return the proven receipt.
    ``validators`` is the set, or the set in force at a height (the
    anchor's certificate is checked against the set at its block)."""
    proof = receipt_proof_of(status)
    if proof.anchor is None:
        raise ProofError(
            "unproven",
            f"no block after height {header.height} carries its results yet: "
            "the receipt is not certified",
        )
    anchor = proof.anchor
    in_force = validators(anchor.header.height) if callable(validators) else validators
    results = anchor.verify(in_force, chain_id, verify)
    if results.height != header.height:
        raise ProofError(
            "results",
            f"the anchor certifies height {results.height}, "
            f"the transaction committed at {header.height}",
        )
    leaf = proof.leaf
    if leaf.tx_id != tx_id:
        raise ProofError("receipt", f"the proven receipt is transaction {leaf.tx_id.hex()}'s")
    if proof.count != header.request_count or not verify_inclusion(
        leaf.encoded, proof.index, proof.count, list(proof.path), results.receipts_root
    ):
        raise ProofError(
            "receipt",
            f"the receipt is not leaf {proof.index} of the certified receipts of "
            f"height {header.height}",
        )
    _check_served(leaf, status)
    return ProvenReceipt(leaf, header.height, anchor.header.height)


def _check_served(leaf: ReceiptLeaf, status: object) -> None:
    """The receipt the node served must say what the proven leaf says."""
    receipt = status.get("receipt") if isinstance(status, dict) else None
    if not isinstance(receipt, dict):
        raise ProofError("malformed", "a committed status needs its receipt")
    served = (
        receipt.get("tx_id", leaf.tx_id.hex()),
        receipt.get("status"),
        receipt.get("code") or None,
    )
    if served != (leaf.tx_id.hex(), leaf.status, leaf.code):
        raise ProofError(
            "receipt",
            f"the node served {served[1]!r} ({served[2]!r}) but the certified receipt "
            f"is {leaf.status!r} ({leaf.code!r})",
        )


def verify_receipt_proof(
    tx_id: bytes,
    status_json: object,
    validators: ValidatorSet,
    chain_id: str,
    verify: Verifier = ed25519_verify,
) -> ReceiptLeaf:
    """Check a committed ``GET /v1/txs/{id}`` answer whole: the transaction's
    inclusion under its block's certificate and its receipt under the
    certificate of its results; return the proven receipt leaf.

    >>> leaf = verify_receipt_proof(tx_id, status, validators, "provenet-local")
    >>> leaf.status, leaf.code
    ('rejected', 'not_conflict_free')
    """
    if not isinstance(status_json, dict):
        raise ProofError("malformed", "a transaction status is a map")
    header = verify_tx_proof(tx_id, status_json.get("proof"), validators, chain_id, verify)
    if status_json.get("height") != header.height or type(status_json.get("height")) is not int:
        raise ProofError("header", "the status names another height than its proof")
    return check_receipt_proof(tx_id, status_json, header, validators, chain_id, verify).leaf
