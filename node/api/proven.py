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

Which height: the current one, ``h``, unless the chain has gone quiet.  An
empty carrier block's own results are never carried by a later block (it
has no receipts; consensus.normal_case), so on an idle chain whose last
block is a carrier, ``h`` would never be certified.  But an empty block
changes no state: every height just below ``h`` with the same state root
holds exactly the state the proofs were taken from.  So the answer is
anchored at the highest such height already certified, and only when
there is none does the handler wait for ``h``'s certificate.

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
from node.runtime.certified import await_anchor, results_anchor
from node.runtime.chain import ChainHost
from node.sdk.results_proof import ResultsAnchor

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


async def anchor_state(
    host: ChainHost, height: int, state_root: bytes, timeout_s: float
) -> ResultsAnchor | None:
    """The anchor of the highest height at or below ``height`` whose state root is
    ``state_root`` and which is certified already; else ``height``'s, waiting up
    to ``timeout_s`` for it.  None if it has not come by then."""
    current = host.store.results_at(height)
    assert current is None or current.state_root == state_root, "the state is the stored height's"
    search = host.limits.results_anchor_search_heights
    for earlier in range(height, max(-1, height - search), -1):
        results = host.store.results_at(earlier)
        if results is None or results.state_root != state_root:
            break
        anchor = results_anchor(host.store, earlier, search)
        if anchor is not None:
            return anchor
    return await await_anchor(host, height, timeout_s)
