"""Checking a compliance verdict served by one untrusted node (no I/O).

Theory of operation
-------------------
A diamond's verdict (contracts/diamond_compliance.py) is a pure function of
the state keys it reads: the asset records up the provenance DAG, their
mines, KP certificates and grading report, the organisations that acted on
them, and the sanction key of every mine, country and organisation on the
way (present or absent).  ``GET /v1/compliance/{id}?prove=1`` answers
(node/api/proven.py)::

    {"verdict": {...}, "height": h,
     "reads": [{"key", "value" (or null: absent), "proof"}, ...],
     "anchor": <the ResultsAnchor that certifies height h>}

:func:`verify_compliance` trusts none of it.  In order:

1. the anchor's certificate holds a quorum of the validator set in force at
   the certifying block, and its results chain reaches height ``h``
   (node.sdk.results_proof; parts ``chain_id``, ``certificate``,
   ``results``); ``height`` must be the anchor's;
2. every read's proof holds against that certified state root, for its
   value or, for a null value, for the key's absence (part ``state``): a
   node cannot swap a record or deny a sanction that is present;
3. the verdict is computed again, by the same contract code
   (:func:`contracts.queries.query`, chain limits from the proven chain
   configuration), over a :class:`~contracts.recorded_reads.ProvenState`
   holding only the proven reads.  A key the code reads that the node did
   not prove fails as part ``missing_read`` naming the key: leaving a
   sanction out of the reads is caught here, whatever the node claims;
4. the recomputed verdict must equal the served one (part ``verdict``).

``min_height`` (part ``stale``) lets a caller refuse an answer certified
below a height it already knows: a certified but old root is otherwise
valid, only out of date, and the answer says which height it is as of.

Any other malformed answer is part ``malformed``.  On success the result
is ``{"verdict", "height", "certified_by", "reads"}``: the verdict as of
``height``, verified against the certificate of block ``certified_by``,
and how many reads were proven.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from consensus.codec import ShapeError, Verifier, ed25519_verify, read_blob
from consensus.quorum import ValidatorSet
from contracts.queries import query
from contracts.recorded_reads import ProvenState, UnprovenRead
from contracts.stateroot import StateProof, verify_state_proof
from node.sdk.errors import ProofError
from node.sdk.results_proof import ResultsAnchor, read_anchor

_ANSWER_FIELDS = frozenset({"verdict", "height", "reads", "anchor"})
_READ_FIELDS = frozenset({"key", "value", "proof"})


@dataclass(frozen=True)
class ProvenRead:
    """One state read: ``value`` None means the key is absent."""

    key: bytes
    value: bytes | None
    proof: StateProof


@dataclass(frozen=True)
class ProvenVerdict:
    """A served verdict with its reads and anchor, read but not yet checked."""

    verdict: dict[str, object]
    height: int
    reads: tuple[ProvenRead, ...]
    anchor: ResultsAnchor

    @classmethod
    def from_json(cls, value: object) -> ProvenVerdict:
        """Read the JSON answer; ProofError("malformed") if it is not one."""
        if not isinstance(value, dict) or set(value) != _ANSWER_FIELDS:
            raise ProofError("malformed", f"a proven verdict has exactly {sorted(_ANSWER_FIELDS)}")
        verdict, height, reads = value["verdict"], value["height"], value["reads"]
        if not isinstance(verdict, dict):
            raise ProofError("malformed", "verdict must be an object")
        # Exact type: a JSON true equals 1 in Python but is no height.
        if type(height) is not int:
            raise ProofError("malformed", "height must be an integer")
        if not isinstance(reads, list):
            raise ProofError("malformed", "reads must be a list")
        return cls(
            verdict=verdict,
            height=height,
            reads=tuple(_read(item, f"reads[{n}]") for n, item in enumerate(reads)),
            anchor=read_anchor(value["anchor"]),
        )


def _read(value: object, what: str) -> ProvenRead:
    if not isinstance(value, dict) or set(value) != _READ_FIELDS:
        raise ProofError("malformed", f"{what} must have exactly {sorted(_READ_FIELDS)}")
    try:
        key = read_blob(value["key"], f"{what}.key", hex_bytes=True)
        raw = value["value"]
        stored = None if raw is None else read_blob(raw, f"{what}.value", hex_bytes=True)
        proof = StateProof.from_json(value["proof"])
    except (ShapeError, ValueError, TypeError) as exc:
        raise ProofError("malformed", f"{what}: {exc}") from None
    return ProvenRead(key, stored, proof)


def verify_compliance(
    answer: object,
    asset_id: str,
    validators_at: Callable[[int], ValidatorSet],
    chain_id: str,
    min_height: int | None = None,
    verify: Verifier = ed25519_verify,
) -> dict[str, object]:
    """Raise :class:`ProofError` unless ``answer`` proves its verdict; see the module doc.

    ``validators_at(height)`` is the validator set in force at a block's height.
    """
    served = ProvenVerdict.from_json(answer)
    anchor = served.anchor
    anchor.verify(validators_at(anchor.header.height), chain_id, verify)
    if served.height != anchor.height:
        raise ProofError(
            "malformed", f"the answer says height {served.height}, its anchor {anchor.height}"
        )
    if min_height is not None and served.height < min_height:
        raise ProofError(
            "stale", f"the verdict is as of height {served.height}, below {min_height}"
        )
    view = _proven_view(served.reads, anchor.state_root)
    recomputed = _recompute(view, asset_id)
    if _canonical(recomputed) != _canonical(served.verdict):
        raise ProofError(
            "verdict",
            f"the node's verdict differs from the one its proven reads give: {recomputed}",
        )
    return {
        "verdict": recomputed,
        "height": served.height,
        "certified_by": anchor.header.height,
        "reads": len(served.reads),
    }


def _proven_view(reads: tuple[ProvenRead, ...], state_root: bytes) -> ProvenState:
    for read in reads:
        if not verify_state_proof(state_root, read.key, read.value, read.proof):
            presence = "absence" if read.value is None else "value"
            raise ProofError(
                "state",
                f"the {presence} of key {read.key!r} does not verify against the "
                f"certified state root {state_root.hex()[:16]}",
            )
    try:
        return ProvenState((read.key, read.value) for read in reads)
    except ValueError as exc:
        raise ProofError("malformed", str(exc)) from None


def _recompute(view: ProvenState, asset_id: str) -> dict[str, object]:
    try:
        answer = query(view, "diamonds", "compliance", {"asset_id": asset_id})
    except UnprovenRead as exc:
        raise ProofError(
            "missing_read", f"the verdict depends on key {exc.key!r}, which the node did not prove"
        ) from None
    if not answer["ok"]:
        raise ProofError(
            "verdict", f"the proven reads give no verdict: {answer['error']}: {answer['message']}"
        )
    result = answer["result"]
    assert isinstance(result, dict), "a compliance answer is a map"
    return result


def _canonical(value: object) -> str:
    # JSON text compares exact types: a served 1 is not the recomputed true.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
