"""A sender's pipelined transactions executed out of nonce order: it recovers.

The defect: under kill -9 of the primary, a view change committed
one sender's nonces 723-727 before 715-722; 723-727 executed as
``rejected bad_nonce``, the mempool had released that sender far past them,
and the sender wedged.  Here one in-process validator is made to execute a
pipelining client's nonces 3 and 4 before 0-2, with 5-7 still pending when
the client signs 3 again (a wrapper around its mempool hands them to the
replica in that order), which is the incident's sequence for the node and
the SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from netfixture import single_node

from node.runtime.engine import Engine
from node.runtime.mempool import PoolEntry
from node.sdk import ProvenetClient

pytestmark = [pytest.mark.asyncio, pytest.mark.network]

CALLS = 8
# As in the incident: 715-722 (A) were proposed again after the view change,
# 723-727 (B) had been prepared and committed first, and 728-753 (C) were
# still pending when the client signed 723 again.
FIRST_A = frozenset({0, 1, 2})
FIRST_B = frozenset({3, 4})
THEN_C = frozenset({5, 6, 7})
WAIT_S = 20.0


class ReorderingRelease:
    """Wraps the mempool of one validator so that one sender's transactions
    reach its replica in the incident's order: B first (they execute as
    ``rejected bad_nonce``), then A once B has executed, and C only once the
    client has signed a B nonce again."""

    def __init__(self, engine: Engine, sender: bytes) -> None:
        self._engine = engine
        self._sender = sender
        self._release: Callable[[bytes, int], list[PoolEntry]] = engine.mempool.release
        self._admit: Callable[[PoolEntry], PoolEntry] = engine.mempool.admit
        self._held_a: list[PoolEntry] = []
        self._held_c: list[PoolEntry] = []
        self._first_b: dict[int, bytes] = {}
        self.a_released = False
        self.resigned_b = False
        self.c_released = False

    def admit(self, entry: PoolEntry) -> PoolEntry:
        nonce = entry.tx.nonce
        ours = entry.tx.sender == self._sender and nonce in FIRST_B
        if ours and self._first_b.setdefault(nonce, entry.tx_id) != entry.tx_id:
            self.resigned_b = True
        return self._admit(entry)

    def release(self, sender: bytes, now_ms: int) -> list[PoolEntry]:
        released = self._release(sender, now_ms)
        if sender != self._sender:
            return released
        if not self.a_released:
            self._held_a += [entry for entry in released if entry.tx.nonce in FIRST_A]
            released = [entry for entry in released if entry.tx.nonce not in FIRST_A]
        if not self.c_released:
            self._held_c += [entry for entry in released if entry.tx.nonce in THEN_C]
            released = [entry for entry in released if entry.tx.nonce not in THEN_C]
        b_ran = len(self._first_b) == len(FIRST_B) and all(
            map(self._engine.store.has_tx, self._first_b.values())
        )
        if b_ran and not self.a_released:
            self.a_released = True
            released = self._held_a + released
        if self.resigned_b and not self.c_released:
            # C went to the replica before the new signature reached the node.
            self.c_released = True
            released = self._held_c + released
        return released


def harvest(index: int) -> dict[str, object]:
    return {"lot_id": f"wedge-{index}", "product": "wheat", "mass_grams": 1_000 + index}


async def test_a_sender_whose_later_nonces_executed_first_recovers(tmp_path: Path) -> None:
    # No gap timeout or retransmission can rescue the sender within the test.
    limits = {"nonce_gap_timeout_ms": 600_000, "resubmit_after_ms": 600_000}
    async with single_node(tmp_path, limits) as single:
        engine = single.node.engine
        assert isinstance(engine, Engine)
        reorder = ReorderingRelease(engine, single.farm.public_key)
        engine.mempool.release = reorder.release  # type: ignore[method-assign]
        engine.mempool.admit = reorder.admit  # type: ignore[method-assign]
        async with ProvenetClient.from_network_dir(single.dir, org_id="farm") as client:
            receipts = await asyncio.gather(
                *(
                    client.submit("food", "harvest", harvest(i), timeout_s=WAIT_S)
                    for i in range(CALLS)
                )
            )
            assert reorder.a_released and reorder.c_released
            assert [receipt["status"] for receipt in receipts] == ["ok"] * CALLS
            # B executed first and C after A, and both were refused.
            first_blocks = await client.blocks(1, limit=100)
            refused = [
                tx for block in first_blocks for tx in block["txs"] if tx.get("code") == "bad_nonce"
            ]
            assert len(refused) >= len(FIRST_B | THEN_C)
            # Every call's lot exists once, and the sender carries on in order.
            for index in range(CALLS):
                lot = await client.query("food", "lot", {"lot_id": f"wedge-{index}"})
                assert lot["lot_id"] == f"wedge-{index}"
            later = await client.submit("food", "harvest", harvest(CALLS), timeout_s=WAIT_S)
            assert later["status"] == "ok"
            assert (await client.nonce())["next_nonce"] == CALLS + 1
