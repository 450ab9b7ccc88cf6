"""Which certificate certifies a height's results, read from the node's store.

A height's results (contracts.results) are certified by the first later
block whose header carries an executed height at or above it (the
certificate that certifies it, node.sdk.results_proof).  This module
finds that block and assembles the :class:`ResultsAnchor` a light client
checks.  The search is bounded by ``search_heights``: a primary proposes an
empty block to carry results no proposal would otherwise carry
(consensus.normal_case), so the certifying block follows within the
pipeline's depth, and a height not yet carried answers None (not yet
certified) rather than a longer walk.
"""

from __future__ import annotations

import asyncio
import time

from node.runtime.chain import ChainHost
from node.runtime.storage import StorageError, Store
from node.sdk.results_proof import ResultsAnchor


def results_anchor(store: Store, height: int, search_heights: int) -> ResultsAnchor | None:
    """The anchor that certifies height ``height``'s results, or None if none is stored yet."""
    results = store.results_at(height)
    if results is None:
        return None
    for later in range(height + 1, height + 1 + search_heights):
        found = store.certified_header(later)
        if found is None:
            return None
        header, certificate = found
        if header.executed_height < height:
            continue
        links = []
        for linked in range(height + 1, header.executed_height + 1):
            link = store.results_at(linked)
            if link is None:
                raise StorageError(f"block {linked} is missing below stored block {later}")
            links.append((link.state_root, link.receipts_root))
        return ResultsAnchor(results, tuple(links), header.signed, certificate)
    return None


async def await_anchor(host: ChainHost, height: int, timeout_s: float) -> ResultsAnchor | None:
    """The anchor of ``height``, waiting up to ``timeout_s`` for the block that
    certifies it to be stored here; None if it has not come by then."""
    search = host.limits.results_anchor_search_heights
    deadline = time.monotonic() + timeout_s
    while True:
        stored = host.block_stored()
        anchor = results_anchor(host.store, height, search)
        remaining_s = deadline - time.monotonic()
        if anchor is not None or remaining_s <= 0:
            return anchor
        try:
            await asyncio.wait_for(stored.wait(), remaining_s)
        except TimeoutError:
            return results_anchor(host.store, height, search)


async def anchor_state(
    host: ChainHost, height: int, state_root: bytes, timeout_s: float
) -> ResultsAnchor | None:
    """The anchor of the highest height at or below ``height`` whose state root is
    ``state_root`` and which is certified already; else ``height``'s, waiting up
    to ``timeout_s`` for it.  None if it has not come by then.

    Why not always ``height``: an empty carrier block's own results are never
    carried by a later block (it has no receipts; consensus.normal_case), so
    on an idle chain whose last block is a carrier, ``height`` would never be
    certified.  But an empty block changes no state: every height just below
    with the same state root holds exactly the state a proof taken now is
    about, so a proof of the current state is anchored there.
    """
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
