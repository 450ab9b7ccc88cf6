"""Divergence names the transaction: the pure diff of two executions, and the
check of a height's certified results (node/sdk/certified_results.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from consensus.blocks import derive_header
from consensus.codec import Ed25519Signer, digest
from consensus.messages import Batch, Commit, sign
from consensus.proofs import CommitCertificate
from consensus.quorum import ValidatorSet
from contracts.results import HeightResults, receipts_root
from node.runtime.views import to_json
from node.sdk.certified_results import (
    ReceiptOutcome,
    first_difference,
    verify_linked_results,
    verify_results,
)
from node.sdk.errors import ProofError
from node.sdk.results_proof import ResultsAnchor

CHAIN = "provenet-test"
SIGNERS = [Ed25519Signer.from_seed(digest(b"validator-%d" % i)) for i in range(4)]
VALIDATORS = ValidatorSet(tuple(signer.public_key for signer in SIGNERS))


def outcome(n: int, status: str = "ok", code: str | None = None) -> ReceiptOutcome:
    return ReceiptOutcome(digest(b"tx-%d" % n), status, code, digest(b"writes-%d" % n))


OUTCOMES = [outcome(n) for n in range(5)]
LEAVES = [o.leaf() for o in OUTCOMES]


# ---------------------------------------------------------------- first_difference


def test_identical_executions_have_no_difference() -> None:
    assert first_difference(LEAVES, list(LEAVES)) is None
    assert first_difference([], []) is None


def test_the_first_differing_receipt_is_named_with_both_outcomes() -> None:
    own = list(LEAVES)
    own[2] = outcome(2, "rejected", "insufficient_mass").leaf()
    own[4] = outcome(4, "rejected", "other").leaf()  # a later difference is not the first
    found = first_difference(own, LEAVES)
    assert found is not None
    assert found.index == 2 and found.tx_id == OUTCOMES[2].tx_id
    assert found.own == outcome(2, "rejected", "insufficient_mass")
    assert found.certified == OUTCOMES[2]
    line = found.describe()
    assert OUTCOMES[2].tx_id.hex() in line
    assert "rejected (insufficient_mass)" in line and "certified ok" in line


def test_a_difference_in_writes_alone_is_named() -> None:
    own = list(LEAVES)
    own[1] = ReceiptOutcome(OUTCOMES[1].tx_id, "ok", None, digest(b"else")).leaf()
    found = first_difference(own, LEAVES)
    assert found is not None and found.index == 1
    assert "wrote something else" in found.describe()


def test_a_missing_or_extra_receipt_is_named() -> None:
    shorter = first_difference(LEAVES[:3], LEAVES)
    assert shorter is not None and shorter.index == 3 and shorter.own is None
    assert shorter.tx_id == OUTCOMES[3].tx_id
    longer = first_difference(LEAVES, LEAVES[:4])
    assert longer is not None and longer.index == 4 and longer.certified is None
    assert longer.tx_id == OUTCOMES[4].tx_id


def test_a_leaf_that_is_not_a_receipt_still_counts_as_a_difference() -> None:
    found = first_difference([b"garbage", *LEAVES[1:]], LEAVES)
    assert found is not None and found.index == 0 and found.own is None


def test_receipt_outcomes_round_trip_through_their_leaf() -> None:
    rejected = outcome(9, "rejected", "bad_nonce")
    assert ReceiptOutcome.from_leaf(rejected.leaf()) == rejected
    stored = {
        "tx_id": rejected.tx_id,
        "status": "rejected",
        "error": "bad_nonce",
        "message": "m",
        "events": [],
        "writes": 0,
        "writes_digest": rejected.writes_digest,
    }
    assert ReceiptOutcome.from_stored(stored) == rejected


# ---------------------------------------------------------------- verify_results


def certified_answer(outcomes: list[ReceiptOutcome]) -> dict[str, Any]:
    """GET /v1/results/5's JSON for a chain whose block 6 carries height 5's results."""
    results = HeightResults(
        5, digest(b"state"), receipts_root([o.leaf() for o in outcomes]), digest(b"r4")
    )
    batch = Batch(6, (), 1_700_000_000_000, 5, results.results_root)
    header = derive_header(CHAIN, batch, b"p" * 32, 1_699_999_999_000)
    commits = tuple(
        sign(Commit(0, 6, header.batch_digest, n), SIGNERS[n], CHAIN) for n in (0, 1, 3)
    )
    anchor = ResultsAnchor(results, (), header.signed, CommitCertificate(commits))
    answer = {
        "height": 5,
        "results": results.to_dict(),
        "receipts": [o.to_dict() for o in outcomes],
        "anchor": anchor.to_dict(),
    }
    return dict(to_json(answer))  # type: ignore[arg-type]


def test_certified_results_verify_and_return_the_receipts() -> None:
    certified = verify_results(certified_answer(OUTCOMES), 5, VALIDATORS, CHAIN)
    assert certified.receipts == tuple(OUTCOMES)
    assert certified.leaves() == LEAVES


def test_certified_results_refuse_each_lie_by_name() -> None:
    answer = certified_answer(OUTCOMES)

    def refused(change: Any, part: str) -> None:
        lying = copy.deepcopy(answer)
        change(lying)
        with pytest.raises(ProofError) as raised:
            verify_results(lying, 5, VALIDATORS, CHAIN)
        assert raised.value.part == part

    # A receipt said ok that the certified root says was rejected (or any edit).
    refused(lambda a: a["receipts"][1].update(status="rejected", code="x"), "receipts")
    refused(lambda a: a["receipts"].pop(), "receipts")
    refused(lambda a: a["results"].update(state_root="00" * 32), "results")
    refused(lambda a: a.update(anchor=None), "anchor")
    refused(lambda a: a["anchor"]["certificate"].pop(), "certificate")
    refused(lambda a: a.pop("receipts"), "malformed")
    with pytest.raises(ProofError) as raised:
        verify_results(answer, 4, VALIDATORS, CHAIN)
    assert raised.value.part == "results"


def test_a_lower_height_is_certified_by_the_link_from_the_next() -> None:
    lower = HeightResults(4, digest(b"s4"), receipts_root(LEAVES), digest(b"r3"))
    upper = HeightResults(5, digest(b"s5"), receipts_root(()), lower.results_root)
    answer = to_json(
        {
            "height": 4,
            "results": lower.to_dict(),
            "receipts": [o.to_dict() for o in OUTCOMES],
            "anchor": None,
        }
    )
    assert verify_linked_results(answer, 4, upper).receipts == tuple(OUTCOMES)
    other = HeightResults(5, digest(b"s5"), receipts_root(()), digest(b"another"))
    with pytest.raises(ProofError) as raised:
        verify_linked_results(answer, 4, other)
    assert raised.value.part == "results"
