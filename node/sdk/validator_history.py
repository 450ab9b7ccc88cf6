"""Following a governed chain's validator sets from genesis, trusting no node (no I/O).

Theory of operation
-------------------
On a chain whose genesis puts the validator set under governance, the set
changes when a block writes the record ``m/validators``
(contracts/validators.py); consensus.epochs places the height from which
the new set orders blocks, by the chain-wide epoch rules in genesis.json.
A light client follows those changes the way CometBFT's light client
follows validator-set hashes: it starts from the genesis set it trusts and
accepts each change only under a certificate of a set it already trusts.

``GET /v1/validators/history?after=h`` answers ``{"changes", "more"}``:
each change is a proven state answer (node.sdk.state_proof) of the record
at the height ``d`` whose block wrote it, with the state proof the node
took when it executed ``d`` and the anchor certifying ``d``'s state root.
:func:`apply_changes` checks them in order:

1. heights strictly increase, each above the history so far (part
   ``validator_history``);
2. the anchor's certificate holds a quorum of the set in force at the
   certifying block's height *under the history built so far*, and the
   state proof holds for the value against the certified state root
   (:func:`node.sdk.state_proof.verify_state_answer`: parts
   ``certificate``, ``results``, ``state``, ``unproven`` ...);
3. the value decodes as a validator-set record (part ``validator_history``);
   its set is then observed at ``d`` with the genesis epoch rules.

A node cannot forge a change (step 2), and one that leaves a change out is
caught later: a certificate of the set it hid does not verify against the
set the client believes (ProofError ``certificate``).  The client then
asks again, perhaps another node (node.sdk.client).
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.codec import DecodeError, Verifier, decode, ed25519_verify
from consensus.epochs import EpochRules, ValidatorHistory
from consensus.quorum import ValidatorSet
from contracts.records import record_from_bytes
from contracts.validators import VALIDATORS_KEY, ValidatorSetRecord
from node.sdk.errors import ProofError
from node.sdk.state_proof import verify_state_answer


@dataclass(frozen=True)
class FollowedHistory:
    """The sets followed so far, the height of the last change proven, and
    whether the node said there are more changes to ask for."""

    history: ValidatorHistory
    last_change_height: int
    more: bool


def apply_changes(
    history: ValidatorHistory,
    last_change_height: int,
    answer: object,
    rules: EpochRules,
    chain_id: str,
    verify: Verifier = ed25519_verify,
) -> FollowedHistory:
    """``history`` (through ``last_change_height``) extended by the changes
    ``answer`` proves; see the module doc.  Raises :class:`ProofError`."""
    if not isinstance(answer, dict) or set(answer) != {"changes", "more"}:
        raise ProofError("malformed", "a validator history answer has exactly changes and more")
    changes, more = answer["changes"], answer["more"]
    if not isinstance(changes, list) or type(more) is not bool:
        raise ProofError("malformed", "changes must be a list and more a boolean")
    for change in changes:
        built = history
        proven = verify_state_answer(change, VALIDATORS_KEY, built.set_at, chain_id, verify=verify)
        if proven.height <= last_change_height:
            raise ProofError(
                "validator_history",
                f"a change at height {proven.height} is not above the last one "
                f"({last_change_height})",
            )
        history = history.observe(
            proven.height,
            _validator_set(proven.value, proven.height),
            rules.checkpoint_interval,
            rules.window_size,
        )
        last_change_height = proven.height
    return FollowedHistory(history, last_change_height, more and bool(changes))


def _validator_set(value: bytes | None, height: int) -> ValidatorSet:
    if value is None:
        raise ProofError("validator_history", f"the validator set is absent at height {height}")
    try:
        # The value is certified (the chain wrote it), so this guards only
        # against a chain of another software version: one clear error.
        if not isinstance(decode(value), dict):
            raise ValueError("not a map")
        record = record_from_bytes(ValidatorSetRecord, value)
    except (DecodeError, ValueError, TypeError) as exc:
        raise ProofError(
            "validator_history", f"the validator set at height {height} is malformed: {exc}"
        ) from None
    try:
        return ValidatorSet(record.public_keys, record.ids)
    except ValueError as exc:
        raise ProofError(
            "validator_history", f"the validator set at height {height} is impossible: {exc}"
        ) from None
