"""The node-side models (a transaction's proof, a chain page's blocks) read
back from their wire forms, and the API, store and bundle write exactly the
bytes they wrote before there was one model per shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.blocks import BlockHeader, CommittedBlock, derive_header
from consensus.codec import Ed25519Signer, ShapeError, decode, digest, encode
from consensus.merkle import inclusion_proof
from consensus.messages import Batch, Commit, Request, sign
from consensus.proofs import CommitCertificate
from consensus.wire import message_to_wire
from contracts.results import HeightResults
from node.api.bundle import signed_header
from node.runtime.storage import Store, StoredBlock
from node.runtime.views import block_view, event_view, full_block_view, proof_view, to_json
from node.sdk.chain_page import CertifiedHeader, FullBlock
from node.sdk.proof import TxProof

CHAIN = "provenet-models"
SIGNERS = [Ed25519Signer.from_seed(digest(b"model validator %d" % i)) for i in range(4)]


def _block(payloads: list[bytes]) -> CommittedBlock:
    requests = tuple(Request.of(payload) for payload in payloads)
    batch = Batch(1, requests, 1_700_000_000_000, 0, b"")
    header = derive_header(CHAIN, batch, b"\x00" * 32, 0)
    certificate = tuple(
        sign(Commit(0, 1, header.batch_digest, sender), signer, CHAIN)
        for sender, signer in enumerate(SIGNERS[:3])
    )
    return CommittedBlock(header, requests, certificate)


BLOCK = _block([b"tx one", b"tx two", b"tx three"])
RECEIPTS: tuple[dict[str, object], ...] = tuple(
    {
        "tx_id": request.digest,
        "status": "ok",
        "error": None,
        "message": "",
        "events": [{"contract": "diamonds", "kind": "k", "attributes": {"n": n}}],
        "writes": 1,
    }
    for n, request in enumerate(BLOCK.requests)
)
STORED = StoredBlock(BLOCK, BLOCK.header.hash, RECEIPTS)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=5), st.integers(min_value=0, max_value=4))
def test_a_page_block_and_tip_read_back_from_their_wire_form(
    payloads: list[bytes], index: int
) -> None:
    block = _block(payloads)
    full = FullBlock.of(block)
    assert FullBlock.from_dict(decode(encode(full.to_dict()))) == full
    assert full.requests() == block.requests
    tip = CertifiedHeader(block.header, CommitCertificate(block.certificate))
    assert CertifiedHeader.from_dict(decode(encode(tip.to_dict()))) == tip
    if index < len(payloads):
        digests = [request.digest for request in block.requests]
        proof = TxProof(
            block.header,
            block.header.hash,
            CommitCertificate(block.certificate),
            index,
            len(digests),
            tuple(inclusion_proof(digests, index)),
        )
        assert TxProof.from_dict(decode(encode(proof.to_dict()))) == proof
        assert TxProof.from_json(json.loads(json.dumps(proof.to_json()))) == proof
        # The JSON form is the API's: the msgpack form with bytes as hex.
        assert proof.to_json() == to_json(proof.to_dict())


def test_malformed_page_blocks_and_proofs_are_shape_errors() -> None:
    full = FullBlock.of(BLOCK).to_dict()
    for bad in (
        None,
        {**full, "payloads": "x"},
        {**full, "header": {}},
        {**full, "certificate": 1},
    ):
        with pytest.raises(ShapeError):
            FullBlock.from_dict(bad)
    proof = to_json(proof_view(STORED, 1))
    assert isinstance(proof, dict)
    for change in ({"path": "00"}, {"index": True}, {"block": None}, {"block_hash": "00"}):
        with pytest.raises(ShapeError):
            TxProof.from_json({**proof, **change})


# ---------------------------------------------------------------- byte for byte


def _commit_map(commit: Commit) -> dict[str, object]:
    return {
        "view": commit.view,
        "height": commit.height,
        "digest": commit.digest,
        "sender": commit.sender,
        "signature": commit.signature,
    }


def _header_map(header: BlockHeader) -> dict[str, object]:
    return {
        "chain_id": header.chain_id,
        "height": header.height,
        "prev_block_hash": header.prev_block_hash,
        "time_ms": header.time_ms,
        "proposer_time_ms": header.proposer_time_ms,
        "requests_root": header.requests_root,
        "request_count": header.request_count,
        "executed_height": header.executed_height,
        "executed_results_root": header.executed_results_root,
    }


def test_the_api_views_are_byte_for_byte_the_hand_built_shapes() -> None:
    """What the views built by hand before the models, in both forms."""
    header, certificate = BLOCK.header, BLOCK.certificate
    digests = [request.digest for request in BLOCK.requests]
    expected_proof = {
        "block": _header_map(header),
        "block_hash": header.hash,
        "certificate": [_commit_map(c) for c in certificate],
        "index": 1,
        "count": 3,
        "path": inclusion_proof(digests, 1),
    }
    expected_block = {
        "height": 1,
        "hash": header.hash,
        "header": _header_map(header),
        "certificate": [_commit_map(c) for c in certificate],
        "txs": [{"tx_id": r["tx_id"], "status": "ok", "code": None} for r in RECEIPTS],
    }
    expected_event = {
        "type": "block",
        "height": 1,
        "hash": header.hash,
        "time_ms": header.time_ms,
        "txs": [
            {"tx_id": r["tx_id"], "status": "ok", "code": None, "events": r["events"]}
            for r in RECEIPTS
        ],
    }
    expected_full = {
        "header": _header_map(header),
        "certificate": [message_to_wire(c) for c in certificate],
        "payloads": [r.payload for r in BLOCK.requests],
    }
    for built, expected in (
        (proof_view(STORED, 1), expected_proof),
        (block_view(STORED), expected_block),
        (event_view(STORED), expected_event),
        (full_block_view(STORED), expected_full),
    ):
        assert encode(built) == encode(expected)
        assert json.dumps(to_json(built)) == json.dumps(to_json(expected))


def test_a_bundle_header_is_byte_for_byte_the_signed_fields() -> None:
    header = BLOCK.header
    expected = {
        "chain_id": header.chain_id,
        "height": header.height,
        "proposer_time_ms": header.proposer_time_ms,
        "requests_root": header.requests_root,
        "request_count": header.request_count,
        "executed_height": header.executed_height,
        "executed_results_root": header.executed_results_root,
    }
    assert encode(signed_header(header)) == encode(expected)


def test_the_stored_block_is_byte_for_byte_the_old_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.bind_chain(CHAIN, b"R" * 32, [])
    store.commit_block(
        BLOCK, list(RECEIPTS), [], {}, HeightResults(1, b"S" * 32, b"T" * 32, b"U" * 32)
    )
    row = store._db.execute("SELECT header, certificate FROM blocks").fetchone()
    assert row[0] == encode(_header_map(BLOCK.header))
    assert row[1] == encode([message_to_wire(c) for c in BLOCK.certificate])
    stored = store.block(1)
    assert stored is not None and stored.block == BLOCK
    store.close()
