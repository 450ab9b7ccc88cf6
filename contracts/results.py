"""Execution results: receipt leaves, a height's results root, and the results chain.

Theory of operation
-------------------
A commit certificate signs a batch, and a batch carries the *results root*
of the latest height its proposer had executed (consensus calls it the
executed root and treats it as an opaque digest; backups refuse a proposal
whose carried root differs from their own).  This module defines that root.

For each executed height ``h``:

* each transaction's outcome is a *receipt leaf*: the canonical encoding of
  ``[tx_id, status, code, writes_digest]``, where ``code`` is the error
  code or ``""`` and ``writes_digest`` is the SHA-256 of the canonical
  encoding of the list of ``[key, value-or-None]`` writes the transaction
  made, in the order they were applied (the nonce write last);
* ``receipts_root(h)`` is the RFC 6962 Merkle root (consensus.merkle) of
  the height's receipt leaves in block order (an empty block has the
  empty tree's root);
* ``results_root(h) = SHA-256(encode([RESULTS_TAG, h, state_root(h),
  receipts_root(h), results_root(h - 1)]))``, with ``results_root(0)``
  computed the same way from the genesis state root, no receipts and 32
  zero bytes as its predecessor.

Because each results root names its predecessor, the root carried for
height ``e`` commits to the results and the state root of *every* height
up to ``e``.  That is what makes the answer to "which certificate
certifies height h" exact despite pipelining (a proposal carries whatever
height its proposer had executed, and may skip some): the results of
``h`` are certified by the certificate of any block whose header carries
``executed_height = e >= h``, together with the :class:`HeightResults`
links from ``h`` up to ``e``.  A node serves the lowest such block, and a
primary proposes an empty block to carry results that no proposal would
otherwise carry (consensus.normal_case), so ``e - h`` stays within the
pipeline's depth.

Nothing here is consensus-specific: it is pure hashing over values every
node computes identically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from consensus.codec import (
    DIGEST_SIZE,
    DecodeError,
    FieldReader,
    ShapeError,
    decode,
    digest,
    digest_of,
    encode,
)
from consensus.merkle import merkle_root

RESULTS_TAG = "provenet/results/v1"
NO_PREDECESSOR = bytes(DIGEST_SIZE)


def writes_digest(writes: Iterable[tuple[bytes, bytes | None]]) -> bytes:
    """SHA-256 of the canonical encoding of ``[[key, value-or-None], ...]``."""
    return digest(encode([[key, value] for key, value in writes]))


EMPTY_WRITES_DIGEST = writes_digest(())


def receipt_leaf(tx_id: bytes, status: str, code: str | None, writes: bytes) -> bytes:
    """The Merkle leaf of one transaction's outcome (``writes`` is its writes digest)."""
    return encode([tx_id, status, code or "", writes])


def receipt_leaf_of(receipt: dict[str, object]) -> bytes:
    """The leaf of a receipt in its stored form (``Receipt.to_dict``)."""
    tx_id = receipt["tx_id"]
    status = receipt["status"]
    code = receipt.get("error")
    writes = receipt.get("writes_digest", EMPTY_WRITES_DIGEST)
    assert isinstance(tx_id, bytes) and isinstance(status, str)
    assert code is None or isinstance(code, str)
    assert isinstance(writes, bytes)
    return receipt_leaf(tx_id, status, code, writes)


# A status or an error code is a short identifier; longer is not a receipt.
MAX_CODE_CHARS = 128


@dataclass(frozen=True)
class ReceiptLeaf:
    """One transaction's outcome as its height's receipts tree commits to it:
    the one model of a receipt leaf (receipt proofs, /v1/results, bundles,
    divergence reports)."""

    tx_id: bytes
    status: str
    code: str | None
    writes_digest: bytes

    FIELDS: ClassVar[frozenset[str]] = frozenset({"tx_id", "status", "code", "writes_digest"})

    @property
    def encoded(self) -> bytes:
        """The Merkle leaf (:func:`receipt_leaf`)."""
        return receipt_leaf(self.tx_id, self.status, self.code, self.writes_digest)

    def to_dict(self) -> dict[str, object]:
        return {
            "tx_id": self.tx_id,
            "status": self.status,
            "code": self.code,
            "writes_digest": self.writes_digest,
        }

    def describe(self) -> str:
        """``ok`` or ``rejected (code)``: how the transaction ended."""
        return self.status if self.code is None else f"{self.status} ({self.code})"

    @classmethod
    def from_stored(cls, receipt: dict[str, object]) -> ReceiptLeaf:
        """The leaf of a receipt in its stored form (``Receipt.to_dict``)."""
        return cls.from_encoded(receipt_leaf_of(receipt))

    @classmethod
    def from_encoded(cls, leaf: bytes) -> ReceiptLeaf:
        """Read an encoded leaf back; ShapeError if it is not one."""
        try:
            value = decode(leaf)
        except DecodeError as exc:
            raise ShapeError(f"not a receipt leaf: {exc}") from None
        if not isinstance(value, list) or len(value) != 4:
            raise ShapeError("a receipt leaf is [tx_id, status, code, writes_digest]")
        tx_id, status, code, writes = value
        if not (isinstance(tx_id, bytes) and isinstance(status, str) and isinstance(code, str)):
            raise ShapeError("a receipt leaf is [tx_id, status, code, writes_digest]")
        if not isinstance(writes, bytes):
            raise ShapeError("a receipt leaf's writes digest is bytes")
        return cls(tx_id, status, code or None, writes)

    @classmethod
    def read(cls, value: object, what: str, hex_bytes: bool) -> ReceiptLeaf:
        """Read :meth:`to_dict`'s form (bytes as hex when ``hex_bytes``);
        ShapeError if malformed."""
        fields = FieldReader.of(value, cls.FIELDS, what, hex_bytes)
        code = fields.values["code"]
        if code is not None and (not isinstance(code, str) or not code):
            raise ShapeError(f"{what}.code must be null or a non-empty string")
        status = fields.text("status")
        if len(status) > MAX_CODE_CHARS or (code is not None and len(code) > MAX_CODE_CHARS):
            raise ShapeError(f"{what}: status and code are at most {MAX_CODE_CHARS} characters")
        return cls(
            tx_id=fields.blob("tx_id", (DIGEST_SIZE,)),
            status=status,
            code=code,
            writes_digest=fields.blob("writes_digest", (DIGEST_SIZE,)),
        )


def receipts_root(leaves: Sequence[bytes]) -> bytes:
    return merkle_root(list(leaves))


_HEIGHT_RESULTS_FIELDS = frozenset(
    {"height", "state_root", "receipts_root", "previous_results_root"}
)


@dataclass(frozen=True)
class HeightResults:
    """What the results root of one height is made of."""

    height: int
    state_root: bytes
    receipts_root: bytes
    previous_results_root: bytes

    @cached_property
    def results_root(self) -> bytes:
        return digest_of(
            [
                RESULTS_TAG,
                self.height,
                self.state_root,
                self.receipts_root,
                self.previous_results_root,
            ]
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "height": self.height,
            "state_root": self.state_root,
            "receipts_root": self.receipts_root,
            "previous_results_root": self.previous_results_root,
        }

    @classmethod
    def read(cls, value: object, what: str, hex_bytes: bool) -> HeightResults:
        """Read :meth:`to_dict`'s form (bytes as hex when ``hex_bytes``);
        ShapeError if malformed."""
        fields = FieldReader.of(value, _HEIGHT_RESULTS_FIELDS, what, hex_bytes)
        return cls(
            height=fields.integer("height"),
            state_root=fields.blob("state_root", (DIGEST_SIZE,)),
            receipts_root=fields.blob("receipts_root", (DIGEST_SIZE,)),
            previous_results_root=fields.blob("previous_results_root", (DIGEST_SIZE,)),
        )


def genesis_results(state_root: bytes) -> HeightResults:
    """The results of height 0: the genesis state, no receipts, no predecessor."""
    return HeightResults(0, state_root, receipts_root(()), NO_PREDECESSOR)


def roll_forward(start: HeightResults, links: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The results root at ``start.height + len(links)``.

    Each link is the ``(state_root, receipts_root)`` of the next height; the
    previous results root of each is the root the chain has reached.
    """
    root = start.results_root
    for offset, (state_root, receipts_root_) in enumerate(links, start=1):
        root = HeightResults(start.height + offset, state_root, receipts_root_, root).results_root
    return root
