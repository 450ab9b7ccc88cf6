"""When this node's execution diverged: find and name the first receipt it got wrong.

Theory of operation
-------------------
A node learns that it diverged when a block certified by a quorum carries,
for an executed height ``e``, a results root other than the one this node
computed (an observer in follower.check_block, a validator at delivery or
from a stable checkpoint, node/runtime/engine.py).  The certificate is
valid, so the fault is this node's own: it stops executing (it never
executes a block past the one that showed it) and keeps serving reads.

To say *what* went wrong it fetches ``GET /v1/results/{e}`` from a source
(a validator's client API), verifies the anchor against the validator set
and the receipts against the certified receipts root
(node/sdk/certified_results.py), and then walks back while the certified
results name a previous results root other than its own: each lower
height's results are certified by the link alone.  At the first height
whose predecessor agrees, :func:`~node.sdk.certified_results.first_difference`
names the first receipt that differs (transaction id, this node's status
and code against the certified ones); if the receipts agree, only the state
root differs, and the diagnosis says so.  A source that fails or answers
something that does not verify is left for the next; after
``divergence_fetch_rounds`` rounds the divergence stays reported without a
named transaction.  The walk is bounded by ``divergence_search_heights``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.quorum import ValidatorSet
from contracts.results import ReceiptLeaf, receipt_leaf_of
from node.runtime.config import NodeLimits
from node.runtime.storage import Store
from node.sdk.certified_results import (
    CertifiedResults,
    Difference,
    first_difference,
    verify_linked_results,
    verify_results,
)
from node.sdk.errors import ProvenetError
from node.sdk.transport import NodeFailed, Transport

log = logging.getLogger("provenet.divergence")

# What a diagnosis found.
RECEIPT = "receipt"  # a receipt differs: the transaction is named
STATE_ROOT = "state_root"  # the receipts agree, the state root does not
BEYOND_SEARCH = "beyond_search"  # it started below the searched heights
UNNAMED = "unnamed"  # no source served certified results that verify


class Diverged(Exception):
    """A quorum certified results at ``detected_height`` that this node did not compute."""

    def __init__(self, detected_height: int, reason: str) -> None:
        super().__init__(reason)
        self.detected_height = detected_height
        self.reason = reason


@dataclass(frozen=True)
class Source:
    """A node whose client API serves certified results."""

    name: str
    api_url: str


@dataclass(frozen=True)
class Divergence:
    """Why this node stopped executing.

    ``detected_height`` is the executed height whose certified results root
    differs from this node's; ``height`` the first height whose results
    differ (as far as the diagnosis got); ``difference`` the first differing
    receipt there, when ``kind`` is ``receipt``.
    """

    detected_height: int
    height: int
    kind: str
    source: str
    message: str
    difference: Difference | None = None

    @property
    def tx_id(self) -> bytes | None:
        return None if self.difference is None else self.difference.tx_id

    def to_dict(self) -> dict[str, object]:
        difference = self.difference
        return {
            "height": self.height,
            "detected_height": self.detected_height,
            "kind": self.kind,
            "source": self.source,
            "message": self.message,
            "tx_id": self.tx_id,
            "index": None if difference is None else difference.index,
            "own": _outcome(None if difference is None else difference.own),
            "certified": _outcome(None if difference is None else difference.certified),
        }


def _outcome(outcome: ReceiptLeaf | None) -> dict[str, object] | None:
    return None if outcome is None else outcome.to_dict()


def noticed(detected_height: int, why: str) -> Divergence:
    """The divergence as known before any diagnosis."""
    return Divergence(
        detected_height,
        detected_height,
        UNNAMED,
        "",
        f"this node's results at height {detected_height} differ from the certified ones "
        f"({why}); it stopped executing",
    )


async def diagnose(
    store: Store,
    transport: Transport,
    sources: Sequence[Source],
    validators: ValidatorSet,
    chain_id: str,
    detected_height: int,
    limits: NodeLimits,
) -> Divergence:
    """Name the first receipt this node executed differently (see the module docstring)."""
    failures: list[str] = []
    for round_index in range(limits.divergence_fetch_rounds):
        if round_index:
            await asyncio.sleep(limits.peer_backoff_max_ms / 1000)
        for source in sources:
            try:
                return await _diagnose_from(
                    store, transport, source, validators, chain_id, detected_height, limits
                )
            except (NodeFailed, ProvenetError, OSError, TimeoutError) as exc:
                log.warning("certified results from %s: %s", source.name, exc)
                failures.append(f"{source.name}: {exc}")
    return Divergence(
        detected_height,
        detected_height,
        UNNAMED,
        "",
        f"this node's results at height {detected_height} differ from the certified ones; "
        f"no source served certified results that verify ({'; '.join(failures[-3:])})",
    )


async def _fetch(transport: Transport, source: Source, height: int, limits: NodeLimits) -> object:
    wait_ms = min(limits.follow_request_timeout_ms, limits.max_wait_ms)
    return await transport.request(
        source.api_url,
        "GET",
        f"/v1/results/{height}",
        params={"wait": "1", "timeout_ms": str(wait_ms)},
        wait_s=wait_ms / 1000,
    )


async def _diagnose_from(
    store: Store,
    transport: Transport,
    source: Source,
    validators: ValidatorSet,
    chain_id: str,
    detected_height: int,
    limits: NodeLimits,
) -> Divergence:
    answer = await _fetch(transport, source, detected_height, limits)
    certified = verify_results(answer, detected_height, validators, chain_id)
    lowest = max(1, detected_height - limits.divergence_search_heights + 1)
    while True:
        height = certified.height
        own = store.results_at(height)
        assert own is not None, "a height this node noticed is one it executed"
        if own.previous_results_root == certified.results.previous_results_root:
            return _compare(store, certified, detected_height, source)
        if height <= lowest:
            return Divergence(
                detected_height,
                height,
                BEYOND_SEARCH,
                source.name,
                f"this node's results differ from the certified ones below height {height} "
                f"(searched {detected_height - height + 1} heights down from "
                f"{detected_height}); it stopped executing",
            )
        answer = await _fetch(transport, source, height - 1, limits)
        certified = verify_linked_results(answer, height - 1, certified.results)


def _compare(
    store: Store, certified: CertifiedResults, detected_height: int, source: Source
) -> Divergence:
    """The divergence at ``certified.height``, whose predecessor agrees."""
    height = certified.height
    stored = store.block(height)
    own = store.results_at(height)
    assert stored is not None and own is not None, "a height this node noticed is stored"
    own_leaves = [receipt_leaf_of(receipt) for receipt in stored.receipts]
    difference = first_difference(own_leaves, certified.leaves())
    if difference is not None:
        return Divergence(
            detected_height,
            height,
            RECEIPT,
            source.name,
            f"execution diverged at height {height}: {difference.describe()}",
            difference,
        )
    return Divergence(
        detected_height,
        height,
        STATE_ROOT,
        source.name,
        f"execution diverged at height {height}: every receipt matches the certified ones "
        f"but the state root differs (this node {own.state_root.hex()[:16]}, certified "
        f"{certified.results.state_root.hex()[:16]})",
    )
