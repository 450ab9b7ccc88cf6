"""The node's SQLite store: what goes in comes back, atomically, for one chain only."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.blocks import CommittedBlock, derive_header
from consensus.codec import digest
from consensus.events import ViewRecord
from consensus.messages import Batch, Commit, Request
from consensus.wire import record_from_wire, record_to_wire
from contracts.results import HeightResults, genesis_results
from node.runtime.storage import StorageError, Store

GENESIS = [(b"a", b"1"), (b"b", b"2")]


def block_at(height: int, prev_hash: bytes) -> CommittedBlock:
    requests = tuple(Request.of(b"payload-%d-%d" % (height, i)) for i in range(3))
    batch = Batch(height, requests, 1_000 + height, height - 1, digest(b"root"))
    header = derive_header("chain", batch, prev_hash, 0)
    certificate = tuple(Commit(0, height, batch.digest, sender, bytes(64)) for sender in range(3))
    return CommittedBlock(header, requests, certificate)


def test_a_database_is_bound_to_one_chain_with_its_genesis_state(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.bind_chain("chain", b"R" * 32, GENESIS)
    assert sorted(store.load_state()) == GENESIS
    store.bind_chain("chain", b"R" * 32, GENESIS)  # reopening the same chain is fine
    with pytest.raises(StorageError):
        store.bind_chain("other", b"R" * 32, GENESIS)
    with pytest.raises(StorageError):
        store.bind_chain("chain", b"S" * 32, GENESIS)


def test_a_committed_block_comes_back_whole_with_its_writes_and_index(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = Store(path)
    store.bind_chain("chain", b"R" * 32, GENESIS)
    block = block_at(1, bytes(32))
    receipts: list[dict[str, object]] = [
        {"tx_id": r.digest, "status": "ok"} for r in block.requests
    ]
    positions = [(r.digest, i) for i, r in enumerate(block.requests)]
    results = HeightResults(1, b"S" * 32, b"T" * 32, genesis_results(b"R" * 32).results_root)
    store.commit_block(block, receipts, positions, {b"a": None, b"c": b"3"}, results)
    store.close()

    reopened = Store(path)
    stored = reopened.block(1)
    assert stored is not None
    assert stored.block == block and stored.block_hash == block.header.hash
    assert list(stored.receipts) == receipts
    assert sorted(reopened.load_state()) == [(b"b", b"2"), (b"c", b"3")]
    assert reopened.tx_position(block.requests[2].digest) == (1, 2)
    assert reopened.state_root_at(1) == b"S" * 32 and reopened.state_root_at(2) is None
    assert reopened.results_at(1) == results and reopened.results_at(2) is None
    assert stored.digests == [r.digest for r in block.requests]
    tip = reopened.tip()
    assert tip is not None and (tip.height, tip.block_hash) == (1, block.header.hash)
    assert tip.results_root == results.results_root


def test_a_block_that_fails_to_store_leaves_nothing_behind(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.bind_chain("chain", b"R" * 32, GENESIS)
    block = block_at(1, bytes(32))
    positions = [(block.requests[0].digest, 0), (block.requests[0].digest, 1)]  # duplicate id
    with pytest.raises(Exception, match="UNIQUE"):
        store.commit_block(
            block, [], positions, {b"c": b"3"}, HeightResults(1, b"S" * 32, b"T" * 32, b"U" * 32)
        )
    assert store.block(1) is None and store.height() == 0
    assert sorted(store.load_state()) == GENESIS


def test_records_append_and_compact_atomically(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    records = [ViewRecord(view, active=True) for view in range(3)]
    store.append_records([record_to_wire(r) for r in records])
    assert [record_from_wire(raw) for raw in store.load_records()] == records
    store.replace_records([record_to_wire(records[-1])])
    assert [record_from_wire(raw) for raw in store.load_records()] == [records[-1]]
