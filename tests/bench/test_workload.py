"""The pre-signed workloads succeed on a ``net init`` genesis, in the orders they promise.

``mixed`` must succeed when executed in its own order; ``independent`` in
every interleaving that keeps each sender's order, which is what several
client processes sending one lane each produce.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest
from benchkit.workload import (
    INDEPENDENT,
    MIXED,
    TX_PER_INDEPENDENT_CHAIN,
    TX_PER_MIXED_CHAIN,
    Workload,
    build_workload,
    split_into_lanes,
)

from consensus.codec import Ed25519Signer, digest
from contracts.genesis import Genesis, GenesisOrg, genesis_state
from contracts.receipt import BlockContext
from contracts.runtime import execute
from contracts.state import MemoryState
from contracts.tx import Transaction
from node.ops import catalog

SIGNERS = {
    org_id: Ed25519Signer.from_seed(digest(b"workload test " + org_id.encode()))
    for org_id in catalog.ORGS
}
TX_PER_BLOCK = 40


def network_state() -> MemoryState:
    members = tuple(
        GenesisOrg(
            spec.org_id,
            spec.name,
            spec.country,
            spec.roles,
            (SIGNERS[spec.org_id].public_key,),
            spec.scopes,
        )
        for spec in catalog.ORGS.values()
    )
    genesis = Genesis(catalog.CHAIN_ID, members, kp_participants=catalog.KP_PARTICIPANTS)
    return MemoryState(genesis_state(genesis))


class Chain:
    """Executes transactions in blocks of TX_PER_BLOCK, collecting failures."""

    def __init__(self) -> None:
        self.state = network_state()
        self.height = 0

    def run(self, txs: Iterable[Transaction]) -> list[str]:
        failures = []
        pending = list(txs)
        for start in range(0, len(pending), TX_PER_BLOCK):
            self.height += 1
            block = BlockContext(self.height, 1_700_000_000_000 + self.height, "v0")
            for tx in pending[start : start + TX_PER_BLOCK]:
                receipt = execute(self.state, tx, block)
                if not receipt.ok:
                    failures.append(
                        f"{tx.method} nonce {tx.nonce}: {receipt.error} {receipt.message}"
                    )
        return failures


def build(mode: str, chains: int, run_tag: str, nonces: dict[str, int] | None = None) -> Workload:
    return build_workload(
        SIGNERS, catalog.CHAIN_ID, mode=mode, chains=chains, run_tag=run_tag, next_nonces=nonces
    )


def random_interleaving(lanes: list[list[Transaction]], rng: random.Random) -> list[Transaction]:
    """Merge lanes at random, each lane's own order kept."""
    cursors = [0] * len(lanes)
    merged: list[Transaction] = []
    while True:
        open_lanes = [n for n, lane in enumerate(lanes) if cursors[n] < len(lane)]
        if not open_lanes:
            return merged
        lane = rng.choice(open_lanes)
        merged.append(lanes[lane][cursors[lane]])
        cursors[lane] += 1


def test_mixed_succeeds_in_order_and_again_with_a_new_tag() -> None:
    chain = Chain()
    first = build(MIXED, 3, "run1")
    assert len(first.txs) == 3 * TX_PER_MIXED_CHAIN
    assert chain.run(first.ordered()) == []
    second = build(MIXED, 2, "run2", first.next_nonces)
    assert chain.run(second.ordered()) == []
    # The same tag again collides with the first run's ids: the contract
    # rejects, which is why every run needs its own tag.
    assert chain.run(build(MIXED, 1, "run1", second.next_nonces).ordered())


def test_mixed_in_one_lane_keeps_the_order_that_succeeds() -> None:
    workload = build(MIXED, 2, "lane")
    assert workload.lanes(1) == [workload.txs]


def test_independent_succeeds_in_any_interleaving_of_its_lanes() -> None:
    rng = random.Random(20240611)
    for trial in range(6):
        chain = Chain()
        workload = build(INDEPENDENT, 4, f"ind{trial}")
        assert len(workload.txs) == 4 * TX_PER_INDEPENDENT_CHAIN
        assert chain.run(workload.setup) == []
        # Lanes of one sender each, so every per-sender-order interleaving
        # of the whole workload is reachable.
        lanes = split_into_lanes(workload.by_sender, len(workload.by_sender))
        assert chain.run(random_interleaving(lanes, rng)) == []


def test_independent_and_mixed_share_a_chain_and_a_tag() -> None:
    chain = Chain()
    mixed = build(MIXED, 1, "both")
    assert chain.run(mixed.ordered()) == []
    independent = build(INDEPENDENT, 2, "both", mixed.next_nonces)
    assert chain.run(independent.ordered()) == []
    again = build(INDEPENDENT, 2, "both2", independent.next_nonces)
    assert chain.run(again.setup) == []
    assert chain.run(random_interleaving(again.lanes(2), random.Random(7))) == []


def test_nonces_start_where_told_and_count_up_per_sender() -> None:
    start = {"miner": 40, "kp-bw": 3}
    workload = build(MIXED, 2, "nonce", start)
    assert workload.setup[0].nonce == 3
    for org_id, txs in workload.by_sender.items():
        first = start.get(org_id, 0) + (1 if org_id == "kp-bw" else 0)
        assert [tx.nonce for tx in txs] == list(range(first, first + len(txs)))
        assert workload.next_nonces[org_id] == first + len(txs)
        assert {tx.sender for tx in txs} == {SIGNERS[org_id].public_key}


@pytest.mark.parametrize("count", [1, 2, 3, 5, 9])
def test_lanes_never_split_a_sender_and_keep_its_order(count: int) -> None:
    workload = build(INDEPENDENT, 3, "lanes")
    for lanes in (workload.lanes(count), split_into_lanes(workload.by_sender, count)):
        assert len(lanes) == count
        owner: dict[bytes, int] = {}
        for number, lane in enumerate(lanes):
            for tx in lane:
                assert owner.setdefault(tx.sender, number) == number
        for org_id, txs in workload.by_sender.items():
            lane = lanes[owner[SIGNERS[org_id].public_key]]
            assert [tx for tx in lane if tx.sender == txs[0].sender] == txs
        assert sum(len(lane) for lane in lanes) == len(workload.txs)
        # Five senders: lanes beyond that stay empty.
        assert sum(1 for lane in lanes if lane) == min(count, len(workload.by_sender))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        build(MIXED, 1, "has space")
    with pytest.raises(ValueError):
        build(MIXED, 1, "x" * 33)
    with pytest.raises(ValueError):
        build("parallel", 1, "t")
    with pytest.raises(KeyError):
        build_workload({"miner": SIGNERS["miner"]}, catalog.CHAIN_ID, chains=1)
    with pytest.raises(ValueError):
        split_into_lanes({}, 0)
