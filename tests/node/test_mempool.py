"""The mempool's promises: nonce order, bounds, idempotence, no silent drops."""

from __future__ import annotations

import pytest

from consensus.codec import Ed25519Signer, digest
from contracts.tx import Transaction, encode_tx, sign_tx, tx_id
from node.runtime.config import NodeLimits
from node.runtime.mempool import Mempool, PoolEntry, Refused


def signer(name: str) -> Ed25519Signer:
    return Ed25519Signer.from_seed(digest(name.encode()))


def tx(
    nonce: int, who: str = "alice", expiry_height: int | None = None, tag: str = ""
) -> Transaction:
    return sign_tx(
        signer(who),
        chain_id="t",
        nonce=nonce,
        contract="food",
        method="harvest",
        args={"lot_id": f"L{nonce}{tag}"},
        expiry_height=expiry_height,
    )


def entry(transaction: Transaction, at_ms: int = 0) -> PoolEntry:
    return PoolEntry(transaction, tx_id(transaction), encode_tx(transaction), at_ms)


class Nonces:
    """Committed nonces, as the executed state would report them."""

    def __init__(self) -> None:
        self.committed: dict[bytes, int] = {}

    def __call__(self, sender: bytes) -> int:
        return self.committed.get(sender, 0)


def pool(**limits: int) -> tuple[Mempool, Nonces]:
    nonces = Nonces()
    return Mempool(NodeLimits(**limits), nonces), nonces


def released_nonces(mempool: Mempool, who: str = "alice") -> list[int]:
    return [e.tx.nonce for e in mempool.release(signer(who).public_key, 0)]


def test_out_of_order_nonces_are_held_until_the_gap_fills() -> None:
    mempool, _ = pool()
    for nonce in (2, 1):
        mempool.admit(entry(tx(nonce)))
    assert released_nonces(mempool) == []
    mempool.admit(entry(tx(0)))
    assert released_nonces(mempool) == [0, 1, 2]
    # Released once only.
    assert released_nonces(mempool) == []


def test_resubmitting_the_same_transaction_returns_the_held_entry() -> None:
    mempool, _ = pool()
    first = mempool.admit(entry(tx(0)))
    again = mempool.admit(entry(tx(0), at_ms=99))
    assert again is first
    assert len(mempool) == 1


def test_a_second_transaction_for_a_pending_nonce_is_a_conflict() -> None:
    mempool, _ = pool()
    mempool.admit(entry(tx(0)))
    with pytest.raises(Refused) as refused:
        mempool.admit(entry(tx(0, tag="other")))
    assert refused.value.code == "nonce_conflict"
    assert len(mempool) == 1


def test_used_nonces_and_far_future_nonces_are_refused() -> None:
    mempool, nonces = pool(max_nonce_gap=5)
    nonces.committed[signer("alice").public_key] = 3
    with pytest.raises(Refused) as used:
        mempool.admit(entry(tx(2)))
    assert used.value.code == "nonce_used"
    with pytest.raises(Refused) as gap:
        mempool.admit(entry(tx(9)))
    assert gap.value.code == "nonce_gap"
    assert len(mempool) == 0


def test_bounds_refuse_with_back_pressure_codes_and_change_nothing() -> None:
    mempool, _ = pool(mempool_max_txs=3, mempool_max_per_sender=2)
    mempool.admit(entry(tx(0)))
    mempool.admit(entry(tx(1)))
    with pytest.raises(Refused) as per_sender:
        mempool.admit(entry(tx(2)))
    assert per_sender.value.code == "sender_queue_full"
    mempool.admit(entry(tx(0, who="bob")))
    with pytest.raises(Refused) as full:
        mempool.admit(entry(tx(1, who="bob")))
    assert full.value.code == "mempool_full"
    assert len(mempool) == 3


def test_execution_removes_entries_and_drops_losers_of_a_nonce_with_a_reason() -> None:
    mempool, nonces = pool()
    alice = signer("alice").public_key
    mine = entry(tx(0))
    mempool.admit(mine)
    mempool.release(alice, 0)
    mempool.admit(entry(tx(1)))
    # Another node's transaction with nonce 0 and 1 committed instead of ours.
    nonces.committed[alice] = 2
    dropped = mempool.on_executed((), frozenset({alice}))
    assert sorted(d.code for d in dropped) == ["nonce_used", "nonce_used"]
    assert {d.tx_id for d in dropped} == {mine.tx_id, tx_id(tx(1))}
    assert len(mempool) == 0


def test_expired_and_gapped_transactions_leave_with_a_receipt_code() -> None:
    mempool, _ = pool(nonce_gap_timeout_ms=1_000)
    soon = entry(tx(1, expiry_height=5), at_ms=0)
    late = entry(tx(2), at_ms=0)
    mempool.admit(soon)
    mempool.admit(late)
    assert mempool.expire(next_height=5, now_ms=10) == []
    dropped = {d.tx_id: d.code for d in mempool.expire(next_height=6, now_ms=10)}
    assert dropped == {soon.tx_id: "expired"}
    dropped = {d.tx_id: d.code for d in mempool.expire(next_height=6, now_ms=1_000)}
    assert dropped == {late.tx_id: "nonce_gap"}
    assert len(mempool) == 0


def test_released_transactions_are_offered_again_after_the_resubmit_delay() -> None:
    mempool, _ = pool(resubmit_after_ms=100)
    held = entry(tx(0))
    mempool.admit(held)
    mempool.release(signer("alice").public_key, 0)
    assert mempool.due_for_resubmit(99) == []
    assert mempool.due_for_resubmit(100) == [held]
    # The delay restarts, so a stuck transaction is not re-sent on every tick.
    assert mempool.due_for_resubmit(150) == []


def test_pending_next_nonce_counts_held_transactions() -> None:
    mempool, nonces = pool()
    alice = signer("alice").public_key
    nonces.committed[alice] = 4
    assert mempool.pending_next_nonce(alice) == 4
    mempool.admit(entry(tx(4)))
    mempool.admit(entry(tx(5)))
    assert mempool.pending_next_nonce(alice) == 6


def test_only_each_senders_oldest_transaction_is_retransmitted_and_turns_are_capped() -> None:
    mempool, nonces = pool(resubmit_after_ms=10, max_resubmit_per_turn=2)
    for who in ("alice", "bob", "carol"):
        for nonce in (1, 0, 2):
            mempool.admit(entry(tx(nonce, who=who)))
        mempool.release(signer(who).public_key, 0)
    due = mempool.due_for_resubmit(10)
    assert [e.tx.nonce for e in due] == [0, 0]
    later = mempool.due_for_resubmit(11)
    assert [e.tx.nonce for e in later] == [0]
    # Once a sender's head executes, its next transaction becomes the head.
    alice = signer("alice").public_key
    nonces.committed[alice] = 1
    mempool.on_executed((tx_id(tx(0, who="alice")),), frozenset({alice}))
    heads = {(e.tx.sender, e.tx.nonce) for e in mempool.due_for_resubmit(30)}
    assert (alice, 1) in heads


def test_a_hole_left_by_nonces_executed_out_of_order_is_refilled_at_once() -> None:
    """The wedge found under faults: a view change executed 723-727 before 715-722.

    723-727 executed as ``rejected bad_nonce`` (not consuming their nonces)
    while the pool had released the sender past 753.  A new transaction for
    nonce 723 must be released at once, not held until ``nonce_gap_timeout_ms``
    and dropped, and what follows it must flow again.
    """
    mempool, nonces = pool(nonce_gap_timeout_ms=1_000)
    alice = signer("alice").public_key
    nonces.committed[alice] = 715
    for nonce in range(715, 754):
        mempool.admit(entry(tx(nonce)))
    assert [e.tx.nonce for e in mempool.release(alice, 0)] == list(range(715, 754))
    # Height 631: 723-727 execute first and are refused; the nonce stays 715.
    early = tuple(tx_id(tx(n)) for n in range(723, 728))
    assert mempool.on_executed(early, frozenset({alice})) == []
    assert mempool.release(alice, 0) == []
    # Height 635: 715-722 execute; the sender's next nonce is 723, a hole.
    nonces.committed[alice] = 723
    assert (
        mempool.on_executed(tuple(tx_id(tx(n)) for n in range(715, 723)), frozenset({alice})) == []
    )
    # The sender signs 723 again: it goes to the replica now.
    mempool.admit(entry(tx(723, tag="again"), at_ms=20))
    assert [e.tx.nonce for e in mempool.release(alice, 20)] == [723]
    # A later transaction arriving while 724-727 are open waits for them.
    mempool.admit(entry(tx(754), at_ms=900))
    assert mempool.release(alice, 900) == []
    # Released, so it is never dropped as a gap (it used to be, after 1 s here).
    assert mempool.expire(next_height=636, now_ms=1_500) == []
    # Filling the rest of the hole releases the held 754 too, and nothing twice.
    for nonce in range(724, 728):
        mempool.admit(entry(tx(nonce, tag="again"), at_ms=1_500))
    assert [e.tx.nonce for e in mempool.release(alice, 1_500)] == [724, 725, 726, 727, 754]
    assert mempool.release(alice, 1_500) == []
