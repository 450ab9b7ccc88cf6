"""The blocks of a chain page: what ``GET /v1/chain`` and the chain stream carry.

Theory of operation
-------------------
A page (``{"height", "blocks", "tip"}``, built by :mod:`node.api.chain_stream`)
carries each block whole, so that a follower can check it knowing only the
validator set and re-execute it: :class:`FullBlock` is its header, its
commit certificate as the COMMITs' signed wire bytes, and its request
payloads.  The page's tip is :class:`CertifiedHeader`: the header and
certificate of the source's latest block, without payloads, which shows how
far the chain has gone.  Both are msgpack only; each has one encoder
(``to_dict``) and one decoder (``from_dict``), which raises
:class:`~consensus.codec.ShapeError` for anything malformed (and lets the
wire decoder's :class:`~consensus.codec.DecodeError` through for a COMMIT
whose bytes do not decode).
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.blocks import BlockHeader, CommittedBlock
from consensus.codec import ShapeError
from consensus.messages import Request
from consensus.proofs import CommitCertificate
from consensus.wire import DEFAULT_WIRE_LIMITS, WireLimits


@dataclass(frozen=True)
class CertifiedHeader:
    """A block's header and commit certificate (a chain page's ``tip``)."""

    header: BlockHeader
    certificate: CommitCertificate

    def to_dict(self) -> dict[str, object]:
        return {"header": self.header.to_dict(), "certificate": self.certificate.to_wire()}

    @classmethod
    def from_dict(
        cls, value: object, limits: WireLimits = DEFAULT_WIRE_LIMITS, what: str = "tip"
    ) -> CertifiedHeader:
        if not isinstance(value, dict):
            raise ShapeError(f"{what} is not a map")
        return cls(
            BlockHeader.from_dict(value.get("header"), f"{what}.header"),
            CommitCertificate.from_wire(value.get("certificate"), limits, f"{what}.certificate"),
        )


@dataclass(frozen=True)
class FullBlock:
    """A committed block as a page carries it: header, certificate and payloads."""

    header: BlockHeader
    certificate: CommitCertificate
    payloads: tuple[bytes, ...]

    @classmethod
    def of(cls, block: CommittedBlock) -> FullBlock:
        return cls(
            block.header,
            CommitCertificate(block.certificate),
            tuple(request.payload for request in block.requests),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "header": self.header.to_dict(),
            "certificate": self.certificate.to_wire(),
            "payloads": list(self.payloads),
        }

    @classmethod
    def from_dict(
        cls, value: object, limits: WireLimits = DEFAULT_WIRE_LIMITS, what: str = "block"
    ) -> FullBlock:
        """Read a page's block: the header, then the payloads, then the certificate."""
        if not isinstance(value, dict):
            raise ShapeError(f"{what} is not a map")
        header = BlockHeader.from_dict(value.get("header"), f"{what}.header")
        payloads = value.get("payloads")
        if not isinstance(payloads, list) or not all(isinstance(p, bytes) for p in payloads):
            raise ShapeError(f"{what}.payloads are not a list of bytes")
        certificate = CommitCertificate.from_wire(
            value.get("certificate"), limits, f"{what}.certificate"
        )
        return cls(header, certificate, tuple(payloads))

    def requests(self) -> tuple[Request, ...]:
        """The block's requests, each with the digest of its payload."""
        return tuple(Request.of(payload) for payload in self.payloads)
