"""A height's certified receipts, and the first receipt where two executions part (no I/O).

Theory of operation
-------------------
``GET /v1/results/{height}`` answers a height's
:class:`~contracts.results.HeightResults`, one receipt outcome per request
of the block (``tx_id``, ``status``, ``code``, ``writes_digest``: exactly
what a receipt leaf commits to, contracts.results) and the
:class:`~node.sdk.results_proof.ResultsAnchor` that certifies them.
:func:`verify_results` checks the anchor against the validator set, that
the answered results are the anchored ones, and that the receipt leaves
hash to their receipts root; only then are the receipts certified.  A
height below one already certified needs no anchor of its own: the results
chain links it (:func:`verify_linked_results`), which is how a node that
diverged walks back to the first height it got wrong.

:func:`first_difference` is the pure diff of two executions of one block
(this node's receipt leaves against the certified ones): the first
position where they differ, with both outcomes, so a diverged node can say
which transaction it executed differently and how.

Refusals raise :class:`~node.sdk.errors.ProofError` with the parts
``malformed``, ``anchor`` (no certificate yet), ``results`` (the answered
results are not the certified ones), ``receipts`` (the receipts do not hash
to the certified receipts root), and the anchor's own (``chain_id``,
``certificate``, ``results``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus.codec import FieldReader, ShapeError
from consensus.quorum import ValidatorSet
from contracts.results import HeightResults, ReceiptLeaf, receipts_root
from node.sdk.errors import ProofError
from node.sdk.results_proof import ResultsAnchor

_ANSWER_FIELDS = frozenset({"height", "results", "receipts", "anchor"})


@dataclass(frozen=True)
class Difference:
    """The first receipt at which two executions of one block differ.

    ``own`` is this node's outcome, ``certified`` the one under the
    certificate; either is None when one execution has fewer receipts.
    """

    index: int
    own: ReceiptLeaf | None
    certified: ReceiptLeaf | None

    @property
    def tx_id(self) -> bytes:
        chosen = self.certified if self.certified is not None else self.own
        assert chosen is not None, "a difference has at least one side"
        return chosen.tx_id

    def describe(self) -> str:
        """One line naming the transaction and both outcomes."""
        own, certified = self.own, self.certified
        where = f"transaction {self.tx_id.hex()} (position {self.index})"
        if own is None or certified is None:
            missing = "this node has no receipt" if own is None else "the certificate has none"
            return f"{where}: {missing}"
        if own.tx_id != certified.tx_id:
            return (
                f"position {self.index}: this node executed transaction {own.tx_id.hex()}, "
                f"the certified results have {certified.tx_id.hex()}"
            )
        if (own.status, own.code) == (certified.status, certified.code):
            return (
                f"{where}: {own.describe()} on both, but it wrote something else here "
                f"(writes digest {own.writes_digest.hex()[:16]}, certified "
                f"{certified.writes_digest.hex()[:16]})"
            )
        return f"{where}: this node {own.describe()}, certified {certified.describe()}"


def first_difference(own: Sequence[bytes], certified: Sequence[bytes]) -> Difference | None:
    """The first position where ``own`` and ``certified`` receipt leaves differ, or None.

    Leaves that do not decode are compared as bytes and read as no outcome.
    """
    for index in range(max(len(own), len(certified))):
        mine = own[index] if index < len(own) else None
        theirs = certified[index] if index < len(certified) else None
        if mine != theirs:
            return Difference(index, _outcome(mine), _outcome(theirs))
    return None


def _outcome(leaf: bytes | None) -> ReceiptLeaf | None:
    if leaf is None:
        return None
    try:
        return ReceiptLeaf.from_encoded(leaf)
    except ShapeError:
        return None


@dataclass(frozen=True)
class CertifiedResults:
    """A height's results and receipts, verified; ``anchor`` None when linked."""

    results: HeightResults
    receipts: tuple[ReceiptLeaf, ...]
    anchor: ResultsAnchor | None

    @property
    def height(self) -> int:
        return self.results.height

    def leaves(self) -> list[bytes]:
        return [receipt.encoded for receipt in self.receipts]


@dataclass(frozen=True)
class ResultsAnswer:
    """``GET /v1/results/{height}``'s answer, read but not yet verified."""

    height: int
    results: HeightResults
    receipts: tuple[ReceiptLeaf, ...]
    anchor: ResultsAnchor | None


def read_results(value: object, hex_bytes: bool = True) -> ResultsAnswer:
    """Read an answer; ProofError("malformed") if it is not one."""
    try:
        fields = FieldReader.of(value, _ANSWER_FIELDS, "results answer", hex_bytes)
        receipts = fields.values["receipts"]
        if not isinstance(receipts, list):
            raise ShapeError("results answer.receipts must be a list")
        anchor = fields.values["anchor"]
        return ResultsAnswer(
            height=fields.integer("height"),
            results=HeightResults.read(
                fields.values["results"], "results answer.results", hex_bytes
            ),
            receipts=tuple(
                ReceiptLeaf.read(r, f"receipts[{n}]", hex_bytes) for n, r in enumerate(receipts)
            ),
            anchor=None
            if anchor is None
            else (ResultsAnchor.from_json if hex_bytes else ResultsAnchor.from_dict)(anchor),
        )
    except ShapeError as exc:
        raise ProofError("malformed", str(exc)) from None


def _check_receipts(answer: ResultsAnswer, height: int) -> list[bytes]:
    if answer.height != height or answer.results.height != height:
        raise ProofError(
            "results", f"asked for height {height}, the answer is for {answer.results.height}"
        )
    leaves = [receipt.encoded for receipt in answer.receipts]
    if receipts_root(leaves) != answer.results.receipts_root:
        raise ProofError(
            "receipts", f"the receipts of height {height} do not hash to their receipts root"
        )
    return leaves


def verify_results(
    value: object,
    height: int,
    validators: ValidatorSet | Callable[[int], ValidatorSet],
    chain_id: str,
    hex_bytes: bool = True,
) -> CertifiedResults:
    """The certified results of ``height`` from an answer, or ProofError naming the part.

    ``validators`` is the set, or a function giving the set in force at a
    block's height (a governed chain's, node.sdk.client validators_at)."""
    answer = read_results(value, hex_bytes)
    if answer.anchor is None:
        raise ProofError("anchor", f"the results of height {height} are not certified yet")
    signers = (
        validators
        if isinstance(validators, ValidatorSet)
        else validators(answer.anchor.header.height)
    )
    certified = answer.anchor.verify(signers, chain_id)
    if certified != answer.results:
        raise ProofError("results", f"the answered results of height {height} are not anchored")
    _check_receipts(answer, height)
    return CertifiedResults(answer.results, answer.receipts, answer.anchor)


def verify_linked_results(
    value: object, height: int, successor: HeightResults, hex_bytes: bool = True
) -> CertifiedResults:
    """The results of ``height`` from an answer, certified by the certified
    results of ``height + 1`` (``successor``), which name their root."""
    answer = read_results(value, hex_bytes)
    if successor.height != height + 1 or (
        answer.results.results_root != successor.previous_results_root
    ):
        raise ProofError(
            "results",
            f"the results of height {height} are not the ones height {successor.height} names",
        )
    _check_receipts(answer, height)
    return CertifiedResults(answer.results, answer.receipts, None)
