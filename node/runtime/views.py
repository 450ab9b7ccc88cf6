"""The API's JSON shapes of blocks, receipts, transactions and proofs.

Values are built as plain dicts holding ``bytes``; :func:`to_json` turns
every ``bytes`` into lowercase hex for JSON responses, while msgpack
responses carry the raw bytes.  The shapes are documented in the README's
API section and checked by the SDK (node/sdk/proof.py).
"""

from __future__ import annotations

from consensus.blocks import BlockHeader
from consensus.merkle import inclusion_proof
from consensus.messages import Commit
from consensus.proofs import CommitCertificate
from contracts.results import ReceiptLeaf, receipt_leaf_of
from node.runtime.storage import StoredBlock
from node.sdk.chain_page import FullBlock
from node.sdk.proof import TxProof
from node.sdk.receipt_proof import ReceiptProof
from node.sdk.results_proof import ResultsAnchor


def to_json(value: object) -> object:
    """``value`` with bytes as hex, recursively (dict keys stay as they are)."""
    match value:
        case bytes():
            return value.hex()
        case dict():
            return {key: to_json(item) for key, item in value.items()}
        case list() | tuple():
            return [to_json(item) for item in value]
    return value


def header_view(header: BlockHeader) -> dict[str, object]:
    return header.to_dict()


def commit_view(commit: Commit) -> dict[str, object]:
    return CommitCertificate((commit,)).to_fields()[0]


def receipt_view(receipt: dict[str, object]) -> dict[str, object]:
    """The API's form of a stored receipt (:meth:`Receipt.to_dict`'s, with
    the error code as ``code``); blocks and events show parts of it."""
    return {
        "tx_id": receipt["tx_id"],
        "status": receipt["status"],
        "code": receipt["error"],
        "message": receipt["message"],
        "events": receipt["events"],
        "writes": receipt["writes"],
    }


# What a block answer and an event-stream frame show of each receipt.
BLOCK_TX_FIELDS = ("tx_id", "status", "code")
EVENT_TX_FIELDS = ("tx_id", "status", "code", "events")


def _part(view: dict[str, object], names: tuple[str, ...]) -> dict[str, object]:
    return {name: view[name] for name in names}


def block_view(stored: StoredBlock) -> dict[str, object]:
    block = stored.block
    return {
        "height": block.header.height,
        "hash": stored.block_hash,
        "header": header_view(block.header),
        "certificate": CommitCertificate(block.certificate).to_fields(),
        "txs": [_part(receipt_view(receipt), BLOCK_TX_FIELDS) for receipt in stored.receipts],
    }


def event_view(stored: StoredBlock) -> dict[str, object]:
    """One frame of the event stream: a committed block and what its transactions did."""
    header = stored.block.header
    return {
        "type": "block",
        "height": header.height,
        "hash": stored.block_hash,
        "time_ms": header.time_ms,
        "txs": [_part(receipt_view(receipt), EVENT_TX_FIELDS) for receipt in stored.receipts],
    }


def proof_view(stored: StoredBlock, index: int) -> dict[str, object]:
    digests = stored.digests
    return TxProof(
        header=stored.block.header,
        block_hash=stored.block_hash,
        certificate=CommitCertificate(stored.block.certificate),
        index=index,
        count=len(digests),
        path=tuple(inclusion_proof(digests, index)),
    ).to_dict()


def receipt_proof_view(
    stored: StoredBlock, index: int, anchor: ResultsAnchor | None
) -> dict[str, object]:
    """Receipt ``index`` of a block as its height's receipts tree commits to
    it, with its audit path and the anchor that certifies the tree's root
    (None while no later block carries the height's results)."""
    leaves = [receipt_leaf_of(receipt) for receipt in stored.receipts]
    return ReceiptProof(
        leaf=ReceiptLeaf.from_stored(stored.receipts[index]),
        index=index,
        count=len(leaves),
        path=tuple(inclusion_proof(leaves, index)),
        anchor=anchor,
    ).to_dict()


def full_block_view(stored: StoredBlock) -> dict[str, object]:
    """Everything an observer needs to check and re-execute a block (msgpack only)."""
    return FullBlock.of(stored.block).to_dict()
