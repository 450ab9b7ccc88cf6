"""Building an asset's provenance bundle from a node's store and state.

Theory of operation
-------------------
:func:`build_bundle` collects every transaction of one diamond asset's
provenance, each with its proofs, and the proven state the verdict rests
on, so that the offline check (:mod:`node.sdk.bundle_verify`, which
documents the format, version 2) can replay and check it.  Which
transactions those are is the diamond pack's own answer, query
``diamonds.provenance_scope`` (contracts/diamond_scope.py), the same query
the offline check asks of the replayed state:

* every event of every asset in scope (the asset's whole upstream, plus
  every parcel that crossed a border under the same KP certificate as one
  of them and every input merged with one of them), each recording its
  transaction id;
* the transactions behind records that keep only a height (a mine's
  registration, a KP certificate's issuance, and what makes the verdict as
  it stands now: sanctions in force, revocations, a withdrawn
  accreditation), each found in the block at that height, or searched for
  from it on (bounded by ``MAX_SEARCH_BLOCKS``), by the event its
  transaction emitted.

Each transaction goes in with its signed block header fields, the block's
commit certificate, its Merkle path, and its receipt proof: the receipt
leaf, its audit path in the height's receipts tree and the
:class:`~node.sdk.results_proof.ResultsAnchor` that certifies that tree's
root (node/runtime/certified.py).

The as-of point: every state key the compliance verdict reads (recorded
with :class:`~contracts.recorded_reads.RecordingState`, as
node/api/proven.py does), plus the key record and organisation record of
every entry's sender, each with its state proof, and the anchor of the
height they are proven at.

A node can prove its current state only, so :func:`prepare_bundle` does
everything that reads the state in one synchronous step (no await: one
consistent height); then :func:`build_bundle` waits, bounded by the
request's ``timeout_ms``, for the block that certifies that height
(:func:`node.runtime.certified.anchor_state`, which on an idle chain picks
the highest certified height holding the same state), and adds the
anchors.  The result is a plain dict of codec values:
``consensus.codec.encode`` of it is the bundle file, served by
``GET /v1/bundle/{asset_id}`` (see :func:`bundle_route`).  The number of
proven reads is bounded by ``NodeLimits.max_proven_reads`` (beyond it:
``limit_exceeded``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consensus.blocks import BlockHeader
from consensus.merkle import inclusion_proof
from consensus.messages import Commit
from consensus.proofs import CommitCertificate
from contracts.config import CONFIG_KEY, load_config
from contracts.diamond_records import Diamond, asset_key
from contracts.diamond_scope import AT_HEIGHT, LAST_FROM
from contracts.orgs import KeyRecord, key_key, org_key
from contracts.queries import query
from contracts.receipt import STATUS_OK, Receipt
from contracts.records import load
from contracts.results import ReceiptLeaf, receipt_leaf_of
from contracts.state import MemoryState, ReadableState
from contracts.tx import decode_tx
from node.api.errors import ApiError
from node.api.proven import record_and_prove
from node.runtime.certified import anchor_state, results_anchor
from node.runtime.storage import Store, StoredBlock
from node.sdk.bundle_verify import FORMAT, VERSION
from node.sdk.genesis import NetworkGenesis
from node.sdk.results_proof import ResultsAnchor

if TYPE_CHECKING:
    from aiohttp import web

    from node.api.routes import ClientApi
    from node.runtime.chain import ChainHost


class BundleBuildError(ApiError):
    """The bundle cannot be built; ``code`` is the API error code to answer with."""

    code = "invalid_argument"

    def __init__(self, message: str) -> None:
        super().__init__(type(self).code, message)


class BundleTooCostly(BundleBuildError):
    """Building would read more blocks than one request may (413 ``too_large``)."""

    code = "too_large"


# Blocks one bundle request may read to find a revocation or accreditation change.
MAX_SEARCH_BLOCKS = 5_000


class UnknownAsset(BundleBuildError):
    """No diamond asset has this id (404 ``unknown_asset``)."""

    code = "unknown_asset"


class BundleTooLarge(BundleBuildError):
    """The provenance has more assets than the chain's ``max_trace_nodes``."""

    code = "too_large"


def signed_header(header: BlockHeader) -> dict[str, object]:
    """The header fields a commit certificate covers (see node/sdk/bundle_verify.py)."""
    return header.signed.to_dict()


def commit_fields(commit: Commit) -> dict[str, object]:
    return CommitCertificate((commit,)).to_fields()[0]


@dataclass(frozen=True)
class PreparedBundle:
    """What a bundle holds that is read from the state: taken at one height, not yet anchored."""

    asset_id: str
    height: int  # the executed height the state and reads are at
    state_root: bytes
    positions: tuple[tuple[int, int], ...]  # (height, index) of each entry, in chain order
    reads: tuple[dict[str, object], ...]  # {key, value, proof} in ascending key order


def prepare_bundle(
    store: Store,
    state: MemoryState,
    network: NetworkGenesis,
    asset_id: str,
    max_reads: int,
) -> PreparedBundle:
    """Everything of ``asset_id``'s bundle that reads the state, in one synchronous step.

    Raises :class:`UnknownAsset` when no diamond asset has that id,
    :class:`BundleTooLarge` when its provenance exceeds the chain's trace
    limit, and ``limit_exceeded`` when the as-of point would prove more than
    ``max_reads`` keys.
    """
    if not isinstance(asset_id, str) or load(state, asset_key(asset_id), Diamond) is None:
        raise UnknownAsset(f"no diamond asset {asset_id}")
    scope = _scope(state, asset_id)
    finder = _Finder(store)
    tx_ids = set(scope["tx_ids"]) | {finder.find(record) for record in scope["records"]}
    positions = []
    for tx_id in tx_ids:
        position = store.tx_position(tx_id)
        if position is None:
            raise RuntimeError(
                f"transaction {tx_id.hex()} of {asset_id}'s provenance is not stored"
            )
        positions.append(position)
    positions.sort()
    blocks = _Blocks(store)
    senders = {
        decode_tx(blocks.get(height).block.requests[index].payload, network.genesis.limits).sender
        for height, index in positions
    }

    reads = prove_as_of(state, asset_id, senders, max_reads)
    return PreparedBundle(
        asset_id=asset_id,
        height=store.height(),
        state_root=state.root(),
        positions=tuple(positions),
        reads=tuple(reads),
    )


def prove_as_of(
    state: MemoryState, asset_id: str, senders: set[bytes], max_reads: int
) -> list[dict[str, object]]:
    """Every key the offline check reads of the as-of state, each with its
    value (None: absent) and proof: the compliance verdict's reads, and each
    sender's key record and organisation record.  Synchronous: the proofs
    are of ``state`` as it is now."""

    def read_all(view: ReadableState) -> None:
        verdict = query(view, "diamonds", "compliance", {"asset_id": asset_id})
        if not verdict["ok"]:
            raise BundleTooLarge(f"no verdict for {asset_id}: {verdict['message']}")
        for sender in sorted(senders):
            record = load(view, key_key(sender), KeyRecord)
            assert record is not None, "every committed sender has a key record"
            view.get(org_key(record.org_id))

    _, reads = record_and_prove(state, read_all, max_reads)
    return reads


def complete_bundle(
    prepared: PreparedBundle,
    store: Store,
    network: NetworkGenesis,
    as_of: ResultsAnchor,
    search_heights: int,
) -> dict[str, object]:
    """The bundle: ``prepared`` with its entries' proofs and the as-of ``anchor``
    (which certifies the state ``prepared`` was read from)."""
    assert as_of.state_root == prepared.state_root, "the anchor certifies the state read"
    blocks = _Blocks(store)
    entries = [
        _entry(blocks.get(height), index, _anchor_of(store, height, search_heights))
        for height, index in prepared.positions
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "chain_id": network.chain_id,
        "asset_id": prepared.asset_id,
        "validators": [
            {
                "replica_id": entry.replica_id,
                "name": entry.name,
                "org_id": entry.org_id,
                "public_key": entry.public_key,
            }
            for entry in sorted(network.validators, key=lambda entry: entry.replica_id)
        ],
        "as_of": {"height": as_of.height, "anchor": as_of.to_dict(), "reads": list(prepared.reads)},
        "entries": entries,
    }


async def build_bundle(
    host: ChainHost, network: NetworkGenesis, asset_id: str, timeout_s: float
) -> dict[str, object]:
    """The provenance bundle of ``asset_id`` (a dict; encode it for the file).

    Waits up to ``timeout_s`` for the block that certifies the state it was
    read from; ``unavailable`` if it does not come by then.

    >>> data = encode(await build_bundle(node.engine, node.network, "S-1", 10.0))
    """
    prepared = prepare_bundle(
        host.store, host.ledger.state, network, asset_id, host.limits.max_proven_reads
    )
    anchor = await anchor_state(host, prepared.height, prepared.state_root, timeout_s)
    if anchor is None:
        raise ApiError("unavailable", f"height {prepared.height} is not certified yet; retry")
    return complete_bundle(
        prepared, host.store, network, anchor, host.limits.results_anchor_search_heights
    )


def _anchor_of(store: Store, height: int, search_heights: int) -> ResultsAnchor:
    # An entry is at or below the certified as-of height, so the block that
    # certifies its results is stored.
    anchor = results_anchor(store, height, search_heights)
    if anchor is None:
        raise ApiError("unavailable", f"the results of block {height} are not certified yet")
    return anchor


def _scope(state: ReadableState, asset_id: str) -> dict[str, Any]:
    """The pack's answer: which transactions the asset's provenance is made of."""
    answer = query(state, "diamonds", "provenance_scope", {"asset_id": asset_id})
    if not answer["ok"]:
        # The asset exists, so only the query's step budget can refuse.
        raise BundleTooLarge(f"the provenance of {asset_id} is too large: {answer['message']}")
    scope = answer["result"]
    assert isinstance(scope, dict)
    if scope["truncated"]:
        limit = load_config(state.get(CONFIG_KEY)).limits.max_trace_nodes
        raise BundleTooLarge(f"the provenance of {asset_id} has more than {limit} assets")
    return scope


def entry_of(stored: StoredBlock, index: int, anchor: ResultsAnchor) -> dict[str, object]:
    """Transaction ``index`` of a stored block as a bundle entry, with all its
    proofs, whatever its outcome (the builder includes only successes)."""
    block = stored.block
    digests = stored.digests
    leaves = [receipt_leaf_of(receipt) for receipt in stored.receipts]
    return {
        "tx": block.requests[index].payload,
        "tx_id": digests[index],
        "header": signed_header(block.header),
        "certificate": CommitCertificate(block.certificate).to_fields(),
        "index": index,
        "count": len(digests),
        "path": inclusion_proof(digests, index),
        "receipt": {
            "leaf": ReceiptLeaf.from_stored(stored.receipts[index]).to_dict(),
            "index": index,
            "count": len(leaves),
            "path": inclusion_proof(leaves, index),
            "anchor": anchor.to_dict(),
        },
    }


def _entry(stored: StoredBlock, index: int, anchor: ResultsAnchor) -> dict[str, object]:
    if stored.receipts[index].get("status") != STATUS_OK:
        raise RuntimeError(f"transaction at {stored.block.header.height}:{index} did not succeed")
    return entry_of(stored, index, anchor)


class _Blocks:
    """Stored blocks by height, each read once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cache: dict[int, StoredBlock] = {}

    def get(self, height: int) -> StoredBlock:
        if height not in self.cache:
            stored = self.store.block(height)
            if stored is None:
                raise RuntimeError(f"block {height} is not stored")
            self.cache[height] = stored
        return self.cache[height]


class _Finder:
    """Transactions found in stored blocks by the events their receipts hold."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def find(self, record: dict[str, Any]) -> bytes:
        """The transaction behind one record of a provenance scope."""
        contract, kind, height = record["contract"], record["kind"], record["height"]
        attributes = record["attributes"]
        if record["at"] == AT_HEIGHT:
            return self._find(height, contract, kind, attributes)
        return self._search(height, contract, kind, attributes, last=record["at"] == LAST_FROM)

    def _events(self, height: int, contract: str) -> Iterator[tuple[bytes, str, dict[str, Any]]]:
        stored = self.store.block(height)
        if stored is None:
            return
        for stored_receipt in stored.receipts:
            if stored_receipt.get("status") != STATUS_OK:
                continue
            receipt = Receipt.from_dict(stored_receipt)
            for event in receipt.events:
                if event.contract == contract:
                    yield receipt.tx_id, event.kind, event.attributes

    def _find(self, height: int, contract: str, kind: str, attributes: dict[str, object]) -> bytes:
        for tx_id, event_kind, event_attributes in self._events(height, contract):
            if event_kind == kind and _matches(event_attributes, attributes):
                return tx_id
        raise RuntimeError(f"no {kind} event {attributes} in block {height}")

    def _search(
        self, start: int, contract: str, kind: str, attributes: dict[str, object], last: bool
    ) -> bytes:
        found: bytes | None = None
        # A revocation or accreditation change is found by reading blocks on
        # the node's event loop: the search is bounded so that one request
        # cannot stall the node on a long chain.
        end = min(self.store.height(), start + MAX_SEARCH_BLOCKS - 1)
        if end < self.store.height() and last:
            raise BundleTooCostly(
                f"finding the latest {kind} would read more than {MAX_SEARCH_BLOCKS} blocks"
            )
        for height in range(start, end + 1):
            for tx_id, event_kind, event_attributes in self._events(height, contract):
                if event_kind == kind and _matches(event_attributes, attributes):
                    if not last:
                        return tx_id
                    found = tx_id
        if found is None:
            raise BundleTooCostly(
                f"no {kind} event {attributes} within {MAX_SEARCH_BLOCKS} blocks of {start}"
            )
        return found


def _matches(event_attributes: dict[str, Any], wanted: dict[str, object]) -> bool:
    return all(event_attributes.get(name) == value for name, value in wanted.items())


# ------------------------------------------------------------------ the API route


async def bundle_route(
    request: web.Request, api: ClientApi, network: NetworkGenesis
) -> web.Response:
    """``GET /v1/bundle/{asset_id}[?timeout_ms=N]``: the bundle (msgpack with
    Accept: application/msgpack), waiting up to ``timeout_ms`` for the
    certificate of the height it is read at.

    Wire it as ``web.get("/v1/bundle/{asset_id}", lambda r: bundle_route(r, api, network))``
    or with :func:`bundle_routes`.
    """
    from node.api.routes import respond

    # A BundleBuildError is an ApiError: it leaves as its code's answer.
    timeout_s = api._timeout_ms(request) / 1000
    document = await build_bundle(api.engine, network, request.match_info["asset_id"], timeout_s)
    return respond(request, document)


def bundle_routes(api: ClientApi, network: NetworkGenesis) -> list[web.RouteDef]:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return await bundle_route(request, api, network)

    return [web.get("/v1/bundle/{asset_id}", handler)]
