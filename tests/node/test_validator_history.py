"""node.sdk.validator_history refuses a history answer it cannot check
(the proven path, forged and hidden changes: tests/node/test_reconfigure.py)."""

from __future__ import annotations

import pytest

from consensus.codec import Ed25519Signer
from consensus.epochs import EpochRules, ValidatorHistory
from consensus.quorum import ValidatorSet
from node.sdk.errors import ProofError
from node.sdk.validator_history import apply_changes

RULES = EpochRules(4, 8)
GENESIS = ValidatorHistory.genesis(
    ValidatorSet(tuple(Ed25519Signer.from_seed(bytes([n]) * 32).public_key for n in range(4)))
)


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        {"changes": []},
        {"changes": [], "more": 1},
        {"changes": {}, "more": False},
        {"changes": [], "more": False, "extra": 1},
    ],
)
def test_a_malformed_answer_is_refused(answer: object) -> None:
    with pytest.raises(ProofError) as refused:
        apply_changes(GENESIS, 0, answer, RULES, "c")
    assert refused.value.part == "malformed"


def test_a_change_without_its_anchor_is_unproven() -> None:
    change = {"key": "6d2f76616c696461746f7273", "value": "80", "height": 3}
    change |= {"proof": {"levels": [], "other_leaf": None}, "anchor": None}
    with pytest.raises(ProofError) as refused:
        apply_changes(GENESIS, 0, {"changes": [change], "more": False}, RULES, "c")
    assert refused.value.part == "unproven"


def test_no_change_leaves_the_history_as_it_was() -> None:
    followed = apply_changes(GENESIS, 0, {"changes": [], "more": True}, RULES, "c")
    assert (followed.history, followed.last_change_height, followed.more) == (GENESIS, 0, False)
