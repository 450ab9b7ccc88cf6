"""The transaction buffer: reads see pending writes, scans merge, budgets bite."""

from __future__ import annotations

import pytest
from snapshot_root import pairs

from contracts.buffer import TxBuffer
from contracts.errors import Rejected
from contracts.state import MemoryState


def base() -> MemoryState:
    return MemoryState([(b"a/1", b"1"), (b"a/3", b"3"), (b"a/5", b"5"), (b"b/1", b"x")])


def test_reads_and_scans_see_pending_writes_in_key_order() -> None:
    state = base()
    buffer = TxBuffer(state, max_steps=100, max_writes=10)
    buffer.put(b"a/2", b"2")
    buffer.put(b"a/3", b"three")
    buffer.delete(b"a/5")
    buffer.put(b"a/9", b"9")
    assert buffer.get(b"a/3") == b"three" and buffer.get(b"a/5") is None
    assert list(buffer.scan(b"a/")) == [
        (b"a/1", b"1"),
        (b"a/2", b"2"),
        (b"a/3", b"three"),
        (b"a/9", b"9"),
    ]
    assert buffer.writes() == [(b"a/2", b"2"), (b"a/3", b"three"), (b"a/5", None), (b"a/9", b"9")]
    assert pairs(state) == pairs(base()), "the buffer never writes through"


def test_step_budget_counts_reads_and_scanned_items() -> None:
    buffer = TxBuffer(base(), max_steps=3, max_writes=10)
    with pytest.raises(Rejected) as refusal:
        list(buffer.scan(b""))
    assert refusal.value.code == "budget_exceeded"


def test_write_budget_counts_distinct_keys() -> None:
    buffer = TxBuffer(base(), max_steps=100, max_writes=2)
    buffer.put(b"k1", b"")
    buffer.put(b"k1", b"again")
    buffer.put(b"k2", b"")
    with pytest.raises(Rejected) as refusal:
        buffer.put(b"k3", b"")
    assert refusal.value.code == "budget_exceeded"
