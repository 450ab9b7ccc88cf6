"""Answers with proofs: a query's verdict with every state read it depends on.

Theory of operation
-------------------
A node can prove things about its current state only (one in-memory
trie).  So a proven answer is built in one synchronous step, with no await
in between: run the query over a :class:`~contracts.recorded_reads.RecordingState`
wrapped around the ledger's state, then take a state proof of every key it
read (present or absent) at the current executed height ``h``.  Only then
does the handler wait for the certificate that certifies ``h``'s state root
(node/runtime/certified.py), which may take a block or two.

Which height: the current one, ``h``, or on a quiet chain the highest
certified height with the same state root
(:func:`node.runtime.certified.anchor_state` says why).

The client (node/sdk/compliance_proof.py) checks every proof against that
root and runs the same contract code over the proven reads; a read the node
left out fails there as ``missing_read``.  The number of distinct keys is
bounded by ``NodeLimits.max_proven_reads``: beyond it the answer is refused
with ``limit_exceeded`` rather than built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from contracts.recorded_reads import RecordingState, TooManyReads, UnprovableRead
from contracts.state import MemoryState, ReadableState
from node.api.errors import ApiError

T = TypeVar("T")


def record_and_prove(
    state: MemoryState, answer: Callable[[ReadableState], T], max_reads: int
) -> tuple[T, list[dict[str, object]]]:
    """``answer(view)`` and, for each key it read, ``{key, value, proof}`` (msgpack form).

    Call it with no await between it and reading the height it is proven at.
    """
    recorder = RecordingState(state, max_reads)
    try:
        result = answer(recorder)
    except TooManyReads as exc:
        raise ApiError("limit_exceeded", f"{exc}: too many to prove in one answer") from None
    except UnprovableRead as exc:
        # The proven routes serve only queries made of point reads.
        raise AssertionError(f"a proven query scanned: {exc}") from None
    reads: list[dict[str, object]] = [
        {"key": key, "value": value, "proof": state.prove(key).to_dict()}
        for key, value in recorder.reads()
    ]
    return result, reads
