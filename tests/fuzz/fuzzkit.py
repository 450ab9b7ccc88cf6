"""Valid inputs for every decoder, built offline, and the fuzzing harness.

Imported by the fuzz tests as ``from fuzzkit import ...`` (pytest's
``pythonpath`` holds this directory; tests/conftest.py builds the artefacts
once per session).

The fixture signs a short diamond history with the keys of a freshly
initialised network (no node runs) and turns it into every encoding a
decoder meets: transaction envelopes, blocks and a chain page, consensus
frames and records, the peer hello, a provenance bundle and the SDK's proof
JSON.  :func:`fuzz` runs one target over a hypothesis strategy and reports
inputs per second; its example count is small in the default suite and
``PROVENET_FUZZ_EXAMPLES`` (default 20,000) under ``PROVENET_FUZZ=1``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.blocks import GENESIS_PARENT_HASH, BlockHeader, ChainTip, derive_header
from consensus.codec import Ed25519Signer, digest, encode
from consensus.events import PreparedRecord, PrePrepareRecord, Record, ViewRecord, VoteRecord
from consensus.merkle import inclusion_proof
from consensus.messages import (
    Batch,
    CertifiedBatch,
    Checkpoint,
    CheckpointProof,
    Commit,
    ForwardedRequest,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    StateRequest,
    StateResponse,
    Status,
    ViewChange,
    sign,
)
from consensus.proofs import CommitCertificate
from consensus.quorum import ValidatorSet
from consensus.wire import message_to_wire, record_to_wire
from contracts.genesis import genesis_state
from contracts.receipt import BlockContext
from contracts.results import (
    HeightResults,
    ReceiptLeaf,
    genesis_results,
    receipt_leaf_of,
    receipts_root,
)
from contracts.runtime import execute
from contracts.state import MemoryState
from contracts.tx import Transaction, encode_tx, sign_tx
from node.api.bundle import commit_fields, prove_as_of, signed_header
from node.ops.netinit import init_network
from node.runtime.views import commit_view, to_json
from node.sdk.genesis import NetworkGenesis, load_genesis
from node.sdk.keys import load_identity
from node.sdk.results_proof import ResultsAnchor

FUZZ = bool(os.environ.get("PROVENET_FUZZ"))
LONG_EXAMPLES = int(os.environ.get("PROVENET_FUZZ_EXAMPLES", "20000"))
# Per target and strategy in the default suite: enough to exercise every
# branch of the harness, few enough that all targets take a few seconds.
DEFAULT_EXAMPLES = 25

STONE = "S-f1"
PARCEL = "P-f1"
MINE = "MINE-f1"
CERT = "BW-KP-f1"
# A stone's whole history, as (org, method, args): the bundle of STONE.
HISTORY: list[tuple[str, str, dict[str, Any]]] = [
    ("kp-bw", "register_mine", {"mine_id": MINE, "country": "BW", "operator": "miner"}),
    ("miner", "extract", {"mine_id": MINE, "parcel_id": PARCEL, "carats_points": 10_000}),
    ("kp-bw", "issue_kp_certificate", {
        "cert_id": CERT, "exporter": "miner", "importer": "cutter", "origin_country": "BW",
        "destination_country": "BE", "parcels": [PARCEL], "carats_points": 10_000,
        "value_cents": 5_000_000, "hs_code": "7102.31", "expiry_height": 1_000,
    }),
    ("miner", "ship", {"cert_id": CERT}),
    ("kp-be", "confirm_import", {"cert_id": CERT, "carats_points": 10_000}),
    ("cutter", "cut", {"asset_id": PARCEL, "stones": [{"asset_id": STONE, "carats_points": 3_000}]}),
    ("cutter", "transfer", {"asset_id": STONE, "to_org": "leadfirm"}),
]  # fmt: skip


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    batch: Batch
    certificate: tuple[Commit, ...]
    txs: tuple[Transaction, ...]
    receipts: tuple[dict[str, object], ...]  # as the ledger stores them
    results: HeightResults  # this height's results, carried by the next block


@dataclass(frozen=True)
class Artefacts:
    """Valid encodings of every kind a decoder reads, and what checks them."""

    network: NetworkGenesis
    validators: ValidatorSet
    validator_signers: tuple[Ed25519Signer, ...]
    chain_id: str
    blocks: tuple[Block, ...]
    envelopes: tuple[bytes, ...]
    frames: tuple[bytes, ...]
    records: tuple[bytes, ...]
    page: bytes
    bundle: bytes
    proofs: tuple[tuple[bytes, dict[str, Any]], ...]  # (tx id, proof JSON)
    block_answers: tuple[dict[str, Any], ...]  # GET /v1/blocks/{height} JSON


def _chain(
    chain_id: str,
    validators: tuple[Ed25519Signer, ...],
    orgs: dict[str, Ed25519Signer],
    state: MemoryState,
) -> tuple[list[Block], Block]:
    """One block per step of HISTORY, each committed by every validator and
    executed on ``state`` (the genesis state) as the ledger does; and an
    empty carrier block after them that carries the last height's results."""
    blocks: list[Block] = []
    nonces: dict[str, int] = {}
    prev_hash, prev_time = GENESIS_PARENT_HASH, 0
    previous = genesis_results(state.root())
    steps: list[tuple[str, str, dict[str, Any]] | None] = [*HISTORY, None]
    for height, step in enumerate(steps, start=1):
        txs: tuple[Transaction, ...] = ()
        if step is not None:
            org, method, args = step
            nonce = nonces.get(org, 0)
            nonces[org] = nonce + 1
            txs = (sign_tx(orgs[org], chain_id=chain_id, nonce=nonce, contract="diamonds",
                           method=method, args=args),)  # fmt: skip
        time_ms = 1_700_000_000_000 + height * 1_000
        requests = tuple(Request.of(encode_tx(tx)) for tx in txs)
        batch = Batch(height, requests, time_ms, height - 1, previous.results_root)
        header = derive_header(chain_id, batch, prev_hash, prev_time)
        certificate = tuple(
            sign(Commit(0, height, batch.digest, sender), signer, chain_id)
            for sender, signer in enumerate(validators)
        )
        context = BlockContext(height=height, time_ms=header.time_ms, proposer="")
        receipts = tuple(execute(state, tx, context).to_dict() for tx in txs)
        leaves = [receipt_leaf_of(receipt) for receipt in receipts]
        results = HeightResults(height, state.root(), receipts_root(leaves), previous.results_root)
        blocks.append(Block(header, batch, certificate, txs, receipts, results))
        prev_hash, prev_time, previous = header.hash, header.time_ms, results
    return blocks[:-1], blocks[-1]


def _frames(chain_id: str, signers: tuple[Ed25519Signer, ...], blocks: list[Block]) -> list[bytes]:
    first = blocks[0]
    pre_prepare = sign(PrePrepare(0, 1, first.batch, 0), signers[0], chain_id)
    prepares = tuple(
        sign(Prepare(0, 1, first.batch.digest, sender), signers[sender], chain_id)
        for sender in (1, 2)
    )
    checkpoints = tuple(
        sign(Checkpoint(2, b"\x01" * 32, sender), signers[sender], chain_id) for sender in range(3)
    )
    certificate = PreparedCertificate(pre_prepare, prepares)
    view_change = sign(
        ViewChange(1, CheckpointProof(0, b"", ()), (certificate,), 1), signers[1], chain_id
    )
    new_view = sign(NewView(1, (view_change,), (pre_prepare,), 1), signers[1], chain_id)
    messages: list[Message] = [
        pre_prepare,
        *prepares,
        first.certificate[0],
        checkpoints[0],
        view_change,
        new_view,
        sign(Status(1, True, 7, 4, 2), signers[2], chain_id),
        sign(StateRequest(1, 7, 3), signers[3], chain_id),
        StateResponse(tuple(CertifiedBatch(b.batch, b.certificate) for b in blocks[:3]), 0),
        ForwardedRequest(first.batch.requests[0], 2),
    ]
    return [message_to_wire(message) for message in messages]


def _records(frames_source: list[Block], signer: Ed25519Signer, chain_id: str) -> list[bytes]:
    first = frames_source[0]
    pre_prepare = sign(PrePrepare(0, 1, first.batch, 0), signer, chain_id)
    records: list[Record] = [
        ViewRecord(3, True),
        PrePrepareRecord(pre_prepare),
        VoteRecord(first.certificate[0]),
        PreparedRecord(PreparedCertificate(pre_prepare, ())),
    ]
    return [record_to_wire(record) for record in records]


def _anchor(block: Block, carrier: Block) -> ResultsAnchor:
    """The anchor of ``block``'s height: the next block carries its results."""
    return ResultsAnchor(
        block.results, (), carrier.header.signed, CommitCertificate(carrier.certificate)
    )


def _bundle(
    network: NetworkGenesis, blocks: list[Block], carrier: Block, state: MemoryState
) -> bytes:
    """The stone's bundle (format: node/sdk/bundle_verify.py), as a node builds it."""

    def entry(block: Block, carried_by: Block) -> dict[str, object]:
        payload = block.batch.requests[0].payload
        leaf = ReceiptLeaf.from_stored(block.receipts[0])
        return {
            "tx": payload,
            "tx_id": digest(payload),
            "header": signed_header(block.header),
            "certificate": [commit_fields(commit) for commit in block.certificate],
            "index": 0,
            "count": 1,
            "path": inclusion_proof([digest(payload)], 0),
            "receipt": {
                "leaf": leaf.to_dict(),
                "index": 0,
                "count": 1,
                "path": inclusion_proof([leaf.encoded], 0),
                "anchor": _anchor(block, carried_by).to_dict(),
            },
        }

    senders = {tx.sender for block in blocks for tx in block.txs}
    last = blocks[-1]
    return encode(
        {
            "format": "provenet-bundle",
            "version": 2,
            "chain_id": network.chain_id,
            "asset_id": STONE,
            "validators": [
                {
                    "replica_id": v.replica_id,
                    "name": v.name,
                    "org_id": v.org_id,
                    "public_key": v.public_key,
                }
                for v in sorted(network.validators, key=lambda v: v.replica_id)
            ],
            "as_of": {
                "height": last.results.height,
                "anchor": _anchor(last, carrier).to_dict(),
                "reads": prove_as_of(state, STONE, senders, 4_096),
            },
            "entries": [
                entry(block, carried_by)
                for block, carried_by in zip(blocks, [*blocks[1:], carrier], strict=True)
            ],
        }
    )


def _proof(block: Block) -> tuple[bytes, dict[str, Any]]:
    tx_id = block.batch.requests[0].digest
    proof = {
        "block": block.header.to_dict(),
        "block_hash": block.header.hash,
        "certificate": [commit_view(commit) for commit in block.certificate],
        "index": 0,
        "count": 1,
        "path": inclusion_proof([tx_id], 0),
    }
    return tx_id, to_json(proof)  # type: ignore[return-value]


def _block_answer(block: Block) -> dict[str, Any]:
    answer = {
        "height": block.header.height,
        "hash": block.header.hash,
        "header": block.header.to_dict(),
        "certificate": [commit_view(commit) for commit in block.certificate],
        "txs": [{"tx_id": r.digest, "status": "ok", "code": None} for r in block.batch.requests],
    }
    return to_json(answer)  # type: ignore[return-value]


def build_artefacts(directory: Path) -> Artefacts:
    init_network(directory, 4, tls=False)
    network = load_genesis(directory / "genesis.json")
    signers = tuple(
        load_identity(directory / "nodes" / f"v{index}" / "node.key").signer for index in range(4)
    )
    orgs = {
        path.stem: load_identity(path).signer for path in sorted((directory / "orgs").glob("*.key"))
    }
    chain_id = network.chain_id
    state = MemoryState(genesis_state(network.genesis))
    blocks, carrier = _chain(chain_id, signers, orgs, state)
    # GET /v1/chain's answer, as node/runtime/views.py full_block_view builds each block.
    page = encode(
        {
            "height": len(blocks),
            "blocks": [
                {
                    "header": b.header.to_dict(),
                    "certificate": [message_to_wire(commit) for commit in b.certificate],
                    "payloads": [request.payload for request in b.batch.requests],
                }
                for b in blocks
            ],
        }
    )
    return Artefacts(
        network=network,
        validators=network.validator_set(),
        validator_signers=signers,
        chain_id=chain_id,
        blocks=tuple(blocks),
        envelopes=tuple(b.batch.requests[0].payload for b in blocks),
        frames=tuple(_frames(chain_id, signers, blocks)),
        records=tuple(_records(blocks, signers[0], chain_id)),
        page=page,
        bundle=_bundle(network, blocks, carrier, state),
        proofs=tuple(_proof(b) for b in blocks),
        block_answers=tuple(_block_answer(b) for b in blocks),
    )


GENESIS_TIP = ChainTip(0, GENESIS_PARENT_HASH, 0, b"")


# ------------------------------------------------------------------ strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=12)
    | st.binary(max_size=40)
)


# Named functions rather than lambdas: hypothesis reads an extend function's
# source to check that it recurses, and a multi-line lambda's source is the
# one it can fail to find (a spurious HypothesisDeprecationWarning, an error
# under filterwarnings=error: seen once in a full CI run, not reproduced
# alone).
def _codec_containers(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(children, max_size=5) | st.dictionaries(
        st.text(max_size=8), children, max_size=5
    )


def _json_containers(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=12), children, max_size=4
    )


codec_values = st.recursive(scalars, _codec_containers, max_leaves=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=70),
    _json_containers,
    max_leaves=12,
)


@st.composite
def byte_mutations(draw: st.DrawFn, valid: tuple[bytes, ...]) -> bytes:
    """A valid encoding with bytes flipped, cut, inserted or removed."""
    data = bytearray(draw(st.sampled_from(valid)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not data:
            break
        position = draw(st.integers(min_value=0, max_value=len(data) - 1))
        match draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"])):
            case "flip":
                data[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
            case "set":
                data[position] = draw(st.integers(min_value=0, max_value=255))
            case "cut":
                del data[position:]
            case "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=8))
            case "delete":
                del data[position : position + draw(st.integers(min_value=1, max_value=8))]
    return bytes(data)


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replaced(value: object, path: tuple[object, ...], new: object) -> object:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    assert isinstance(value, list) and isinstance(head, int)
    return [*value[:head], _replaced(value[head], rest, new), *value[head + 1 :]]


@st.composite
def value_mutations(
    draw: st.DrawFn, valid: tuple[object, ...], values: st.SearchStrategy[object]
) -> object:
    """A valid decoded value with one part (a field, an item, the whole)
    replaced by another value: wrong types, sizes, booleans for integers..."""
    value = draw(st.sampled_from(valid))
    paths = _paths(value)
    path = draw(st.sampled_from(paths))
    return _replaced(value, path, draw(values))


def codec_inputs(valid: tuple[bytes, ...]) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, canonical values, and byte- and value-level mutations of ``valid``."""
    from consensus.codec import decode

    decoded = tuple(decode(data, _LOOSE) for data in valid)
    return st.one_of(
        st.binary(max_size=200),
        codec_values.map(encode),
        byte_mutations(valid),
        value_mutations(decoded, codec_values).map(encode),
        value_mutations(decoded, scalars).map(encode),
    )


def _loose_limits() -> Any:
    from consensus.codec import Limits

    return Limits(max_size_bytes=1 << 30)


_LOOSE = _loose_limits()


# ------------------------------------------------------------------ harness


def fuzz(
    name: str,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], None],
    examples: int = DEFAULT_EXAMPLES,
) -> None:
    """Run ``check`` on ``examples`` inputs from ``strategy``; print inputs per second."""
    count = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def run(data: Any) -> None:
        nonlocal count
        count += 1
        check(data)

    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    rate = count / elapsed if elapsed else float("inf")
    print(f"fuzz {name}: {count} inputs in {elapsed:.1f} s, {rate:,.0f} inputs/s", file=sys.stderr)
