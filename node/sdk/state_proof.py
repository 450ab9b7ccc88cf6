"""Checking one state key's value (or absence) served by one untrusted node (no I/O).

Theory of operation
-------------------
``GET /v1/state/{key}?prove=1`` answers (node/api/state_read.py)::

    {"key", "value" (hex, or null: absent), "height": h,
     "proof": <StateProof JSON>, "anchor": <ResultsAnchor JSON, or null>}

:func:`verify_state_answer` trusts none of it.  In order:

1. the answer must carry an anchor (part ``unproven`` if it is null: the
   certifying block had not come within the request's wait) and be about
   the key asked for (part ``malformed`` otherwise);
2. the anchor's certificate holds a quorum of the validator set in force at
   the certifying block and its results chain reaches ``h``
   (node.sdk.results_proof; parts ``chain_id``, ``certificate``,
   ``results``); ``height`` must be the anchor's;
3. the proof holds for the value (or, for null, for the key's absence)
   against the anchor's certified state root (part ``state``);
4. ``h`` is not below ``min_height`` (part ``stale``).  A node can answer
   with a proof that was true at an older height, certificate and all:
   nothing in it is false, only out of date.  The caller refuses it by
   naming the lowest height it accepts; the client passes the highest
   height it has already seen proven, so one node cannot take it back in
   time.

Any other malformed answer is part ``malformed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consensus.codec import ShapeError, Verifier, ed25519_verify, read_blob
from consensus.quorum import ValidatorSet
from contracts.stateroot import StateProof, verify_state_proof
from node.sdk.errors import ProofError
from node.sdk.results_proof import ResultsAnchor, read_anchor

_ANSWER_FIELDS = frozenset({"key", "value", "height", "proof", "anchor"})


@dataclass(frozen=True)
class ProvenState:
    """What ``key`` holds (None: absent) at ``height``, as a certificate proves."""

    key: bytes
    value: bytes | None
    height: int


@dataclass(frozen=True)
class _Answer:
    key: bytes
    value: bytes | None
    height: int
    proof: StateProof
    anchor: ResultsAnchor | None


def _read_answer(answer: object) -> _Answer:
    if not isinstance(answer, dict) or set(answer) != _ANSWER_FIELDS:
        raise ProofError("malformed", f"a proven state answer has exactly {sorted(_ANSWER_FIELDS)}")
    height = answer["height"]
    # Exact type: a JSON true equals 1 in Python but is no height.
    if type(height) is not int:
        raise ProofError("malformed", "height must be an integer")
    try:
        key = read_blob(answer["key"], "key", hex_bytes=True)
        raw = answer["value"]
        value = None if raw is None else read_blob(raw, "value", hex_bytes=True)
        proof = StateProof.from_json(answer["proof"])
    except ShapeError as exc:
        raise ProofError("malformed", str(exc)) from None
    anchor = None if answer["anchor"] is None else read_anchor(answer["anchor"])
    return _Answer(key, value, height, proof, anchor)


def verify_state_answer(
    answer: object,
    key: bytes,
    validators_at: Callable[[int], ValidatorSet],
    chain_id: str,
    min_height: int = 0,
    verify: Verifier = ed25519_verify,
) -> ProvenState:
    """Raise :class:`ProofError` unless ``answer`` proves what ``key`` holds; see the module doc.

    ``validators_at(height)`` is the validator set in force at a block's height.
    """
    served = _read_answer(answer)
    if served.key != key:
        raise ProofError("malformed", f"the answer is about key {served.key!r}, not {key!r}")
    anchor = served.anchor
    if anchor is None:
        raise ProofError(
            "unproven", f"the node sent no certificate for height {served.height} (yet)"
        )
    anchor.verify(validators_at(anchor.header.height), chain_id, verify)
    if served.height != anchor.height:
        raise ProofError(
            "malformed", f"the answer says height {served.height}, its anchor {anchor.height}"
        )
    if not verify_state_proof(anchor.state_root, key, served.value, served.proof):
        claim = "absence" if served.value is None else "value"
        raise ProofError(
            "state",
            f"the {claim} of key {key!r} does not verify against the certified state root "
            f"of height {served.height}",
        )
    if served.height < min_height:
        raise ProofError("stale", f"the answer is as of height {served.height}, below {min_height}")
    return ProvenState(key, served.value, served.height)
