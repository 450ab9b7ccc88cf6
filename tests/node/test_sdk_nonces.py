"""How the SDK hands out a sender's nonces while it pipelines (no network).

Two defects found under faults: after an error the client fetched its nonce
again, and the nodes' answer (the (f+1)-th highest) did not count the
pipelined transactions waiting in the preferred node's mempool only, so
every later transaction collided with them.
"""

from __future__ import annotations

from typing import Any

import pytest

from consensus.codec import Ed25519Signer, digest
from consensus.quorum import ValidatorSet
from contracts.tx import MAX_NONCE, decode_tx
from node.sdk import ProvenetClient
from node.sdk.errors import ProvenetError
from node.sdk.keys import Identity
from node.sdk.nonces import NonceBook

CHAIN = "provenet-test"
VALIDATORS = ValidatorSet(
    tuple(Ed25519Signer.from_seed(digest(b"v%d" % i)).public_key for i in range(4))
)
NODES = [f"http://127.0.0.1:{9 + i}" for i in range(4)]
COMMITTED = 10
# The preferred node holds this client's pipelined transactions 10..49.
PREFERRED_PENDING = 50


class FakeNodes:
    """Four nodes' answers: the nonce counts, and one submission refused."""

    def __init__(self, refuse_nonce: int | None = None) -> None:
        self.refuse_nonce = refuse_nonce
        self.nonce_asks = 0
        self.posted: list[int] = []

    async def request(self, url: str, method: str, path: str, **options: Any) -> Any:
        if path.startswith("/v1/nonce/"):
            self.nonce_asks += 1
            pending = PREFERRED_PENDING if url == NODES[0] else COMMITTED
            return {"next_nonce": COMMITTED, "pending_next_nonce": pending}
        assert (method, path) == ("POST", "/v1/txs")
        nonce = decode_tx(options["body"]).nonce
        self.posted.append(nonce)
        if nonce == self.refuse_nonce:
            self.refuse_nonce = None
            raise ProvenetError("mempool_full", "full", 429, 1.0)
        return {"tx_id": "00", "status": "pending"}


def client_on(nodes: FakeNodes | GapNodes) -> ProvenetClient:
    identity = Identity("farm", Ed25519Signer.from_seed(digest(b"farm")))
    client = ProvenetClient(NODES, identity, CHAIN, VALIDATORS)
    client.transport.request = nodes.request  # type: ignore[method-assign,assignment]
    return client


@pytest.mark.asyncio
async def test_the_first_nonce_counts_the_pipelined_transactions_of_the_preferred_node() -> None:
    client = client_on(FakeNodes())
    assert await client.next_nonce() == PREFERRED_PENDING


@pytest.mark.asyncio
async def test_a_failed_call_leaves_no_gap_and_the_next_one_does_not_collide() -> None:
    nodes = FakeNodes(refuse_nonce=PREFERRED_PENDING + 1)
    client = client_on(nodes)
    harvest = {"lot_id": "L", "product": "wheat", "mass_grams": 1}
    await client.submit("food", "harvest", harvest, wait=False)
    with pytest.raises(ProvenetError) as refused:
        await client.submit("food", "harvest", harvest, wait=False)
    assert refused.value.code == "mempool_full"
    # The refused call's nonce goes to the next call, so no gap stalls the
    # sender; the network is not asked again (its answer would be too low).
    await client.submit("food", "harvest", harvest, wait=False)
    await client.submit("food", "harvest", harvest, wait=False)
    first = PREFERRED_PENDING
    assert nodes.posted == [first, first + 1, first + 1, first + 2]
    assert nodes.nonce_asks == len(NODES)


def test_a_given_back_nonce_is_handed_out_first_and_a_resync_never_goes_below_one_handed_out() -> (
    None
):
    book = NonceBook()
    book.resync(committed=5, pending=5)
    assert [book.take() for _ in range(4)] == [5, 6, 7, 8]
    book.give_back(6)
    assert book.take() == 6
    # The top nonce given back is simply not handed out yet.
    book.give_back(8)
    assert book.take() == 8
    # A lagging network answer cannot pull the count below what is in flight...
    book.give_back(7)
    book.resync(committed=5, pending=5)
    assert book.take() == 7
    assert book.take() == 9
    # ...and a higher one (another process used nonces) moves it up; nonces
    # below the committed one are no longer free.
    book.give_back(7)
    book.resync(committed=20, pending=22)
    assert book.free == frozenset()
    assert book.take() == 22


def test_a_call_signed_again_at_its_nonce_gets_a_new_id_that_never_expires() -> None:
    from node.sdk.client import _resigned_expiry

    assert _resigned_expiry(None, 0) is None
    assert _resigned_expiry(None, 1) == MAX_NONCE
    assert _resigned_expiry(None, 2) == MAX_NONCE - 1
    assert _resigned_expiry(500, 0) == 500
    assert _resigned_expiry(500, 1) == 499


class GapNodes:
    """Nodes whose robust counts say nothing is pending at ``COMMITTED``; the
    preferred one may claim more.  A submission at any nonce but the
    committed one is dropped or refused as ``nonce_gap``."""

    def __init__(self, preferred_pending: int = COMMITTED, refuse: bool = False) -> None:
        self.preferred_pending = preferred_pending
        self.refuse = refuse
        self.posted: list[int] = []

    async def request(self, url: str, method: str, path: str, **options: Any) -> Any:
        if path.startswith("/v1/nonce/"):
            pending = self.preferred_pending if url == NODES[0] else COMMITTED
            return {"next_nonce": COMMITTED, "pending_next_nonce": pending}
        nonce = decode_tx(options["body"]).nonce
        self.posted.append(nonce)
        if nonce == COMMITTED:
            return {"tx_id": "00", "status": "pending"}
        if self.refuse:
            raise ProvenetError("nonce_gap", "too far past the next nonce", 409)
        receipt = {"code": "nonce_gap", "message": "an earlier nonce never arrived"}
        return {"tx_id": "00", "status": "dropped", "receipt": receipt}


HARVEST = {"lot_id": "L", "product": "wheat", "mass_grams": 1}


@pytest.mark.asyncio
async def test_a_nonce_whose_call_timed_out_and_whose_transaction_was_lost_is_offered_again() -> (
    None
):
    # The call at COMMITTED timed out (its nonce is kept: it may still be
    # pending), then its transaction was lost with the node holding it.  The
    # next call is dropped nonce_gap; the one after must fill the gap rather
    # than wait behind it for the client's lifetime.
    nodes = GapNodes()
    client = client_on(nodes)
    lost = await client.sign("food", "harvest", HARVEST)
    assert lost.nonce == COMMITTED
    client._settle(lost, "kept", "timeout")
    with pytest.raises(ProvenetError) as dropped:
        await client.submit("food", "harvest", HARVEST, wait=False)
    assert dropped.value.code == "nonce_gap"
    await client.submit("food", "harvest", HARVEST, wait=False)
    assert nodes.posted == [COMMITTED + 1, COMMITTED]


@pytest.mark.asyncio
async def test_a_preferred_node_inflating_the_pending_count_cannot_wedge_the_sender() -> None:
    nodes = GapNodes(preferred_pending=1_000_000, refuse=True)
    client = client_on(nodes)
    with pytest.raises(ProvenetError) as refused:
        await client.submit("food", "harvest", HARVEST, wait=False)
    assert refused.value.code == "nonce_gap"
    # The recount after the gap trusts only what a quorum vouches for.
    await client.submit("food", "harvest", HARVEST, wait=False)
    assert nodes.posted == [1_000_000, COMMITTED]


def test_a_rebase_reoffers_unheld_nonces_below_the_highest_held_one() -> None:
    book = NonceBook()
    book.resync(committed=5, pending=5)
    assert [book.take() for _ in range(4)] == [5, 6, 7, 8]
    book.settle(5)  # timed out: maybe pending, maybe lost
    book.settle(6)  # timed out too
    # 7 and 8 are still held by calls in flight; 5 and 6 are offered again,
    # the count goes on above the highest held nonce, never below it.
    book.gap = True
    book.rebase(committed=5, robust_pending=5)
    assert book.free == frozenset({5, 6})
    assert [book.take() for _ in range(3)] == [5, 6, 9]
