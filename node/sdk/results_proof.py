"""Proof that one height's results are certified: the results anchor (no I/O).

Theory of operation
-------------------
The results of height ``h`` (its state root and receipts root, see
contracts.results) are certified by the commit certificate of a later
block whose header carries ``executed_height = e >= h`` and the results
root of ``e``.  A :class:`ResultsAnchor` is what a node sends to show it:

* ``results``: the :class:`~contracts.results.HeightResults` of ``h``
  (state root, receipts root and the results root before ``h``);
* ``links``: the ``(state_root, receipts_root)`` of each height
  ``h + 1 .. e``, which roll the results chain forward to ``e``;
* ``header`` and ``certificate``: the certifying block's signed header and
  its commit certificate.

:meth:`ResultsAnchor.verify` checks, against the validator set in force,
that the certificate commits the header, that the header carries
``executed_height = h + len(links)``, and that rolling the chain forward
from ``h`` gives exactly the results root the header carries.  Then, and
only then, the state root and receipts root of ``h`` are certified, and a
receipt or state proof checked against them (node.sdk.proof) is as good
as the certificate.  A failure raises :class:`~node.sdk.errors.ProofError`
naming the part: ``malformed``, ``chain_id``, ``certificate`` or
``results``.

Which certificate: a node serves the lowest block above ``h`` that carries
a height ``e >= h``, so ``links`` is as short as the pipeline was deep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from consensus.blocks import SignedHeader, certificate_problem
from consensus.codec import (
    DIGEST_SIZE,
    FieldReader,
    ShapeError,
    Verifier,
    ed25519_verify,
    hex_fields,
    read_blob,
)
from consensus.proofs import CommitCertificate
from consensus.quorum import ValidatorSet
from contracts.results import HeightResults, roll_forward
from node.sdk.errors import ProofError

T = TypeVar("T")


@dataclass(frozen=True)
class ResultsAnchor:
    """The certificate that certifies ``results`` and the chain that reaches it."""

    results: HeightResults
    links: tuple[tuple[bytes, bytes], ...]
    header: SignedHeader
    certificate: CommitCertificate

    FIELDS: ClassVar[frozenset[str]] = frozenset({"results", "links", "header", "certificate"})

    @property
    def height(self) -> int:
        return self.results.height

    @property
    def state_root(self) -> bytes:
        return self.results.state_root

    @property
    def receipts_root(self) -> bytes:
        return self.results.receipts_root

    def to_dict(self) -> dict[str, object]:
        """The msgpack form (bytes as bytes)."""
        return {
            "results": self.results.to_dict(),
            "links": [[state_root, receipts] for state_root, receipts in self.links],
            "header": self.header.to_dict(),
            "certificate": self.certificate.to_fields(),
        }

    def to_json(self) -> dict[str, object]:
        """The JSON form: bytes as lowercase hex."""
        return {
            "results": hex_fields(self.results.to_dict()),
            "links": [[state_root.hex(), receipts.hex()] for state_root, receipts in self.links],
            "header": self.header.to_json(),
            "certificate": self.certificate.to_json(),
        }

    @classmethod
    def from_dict(cls, value: object, what: str = "anchor") -> ResultsAnchor:
        return cls._read(FieldReader.of(value, cls.FIELDS, what))

    @classmethod
    def from_json(cls, value: object, what: str = "anchor") -> ResultsAnchor:
        return cls._read(FieldReader.of(value, cls.FIELDS, what, hex_bytes=True))

    @classmethod
    def _read(cls, fields: FieldReader) -> ResultsAnchor:
        what, as_hex = fields.what, fields.hex_bytes
        links = fields.values["links"]
        if not isinstance(links, list):
            raise ShapeError(f"{what}.links must be a list")
        certificate = fields.values["certificate"]
        return cls(
            results=HeightResults.read(fields.values["results"], f"{what}.results", as_hex),
            links=tuple(_link(link, f"{what}.links[{n}]", as_hex) for n, link in enumerate(links)),
            header=(SignedHeader.from_json if as_hex else SignedHeader.from_dict)(
                fields.values["header"], f"{what}.header"
            ),
            certificate=(CommitCertificate.from_json if as_hex else CommitCertificate.from_fields)(
                certificate, f"{what}.certificate"
            ),
        )

    def verify(
        self,
        validators: ValidatorSet,
        chain_id: str,
        verify: Verifier = ed25519_verify,
    ) -> HeightResults:
        """Raise :class:`ProofError` unless these results are certified; return them."""
        header = self.header
        if header.chain_id != chain_id:
            raise ProofError("chain_id", f"block is on chain {header.chain_id!r}, not {chain_id!r}")
        problem = certificate_problem(
            header.height,
            header.batch_digest,
            list(self.certificate.commits),
            validators,
            chain_id,
            verify,
        )
        if problem is not None:
            raise ProofError("certificate", problem)
        reached = self.results.height + len(self.links)
        if header.executed_height != reached or header.height <= reached:
            raise ProofError(
                "results",
                f"block {header.height} certifies height {header.executed_height}, "
                f"the proof reaches {reached}",
            )
        if roll_forward(self.results, self.links) != header.executed_results_root:
            raise ProofError(
                "results",
                f"the results of height {self.results.height} do not lead to the "
                f"results root block {header.height} certifies",
            )
        return self.results


def _link(value: object, what: str, hex_bytes: bool) -> tuple[bytes, bytes]:
    if not isinstance(value, list) or len(value) != 2:
        raise ShapeError(f"{what} must be [state_root, receipts_root]")
    return (
        read_blob(value[0], f"{what}[0]", (DIGEST_SIZE,), hex_bytes),
        read_blob(value[1], f"{what}[1]", (DIGEST_SIZE,), hex_bytes),
    )


def read_anchor(value: object, hex_bytes: bool = True) -> ResultsAnchor:
    """An anchor from an answer; ProofError("malformed") if it is not one."""
    return _malformed(
        lambda: (ResultsAnchor.from_json if hex_bytes else ResultsAnchor.from_dict)(value)
    )


def _malformed(read: Callable[[], T]) -> T:
    try:
        return read()
    except ShapeError as exc:
        raise ProofError("malformed", str(exc)) from None
