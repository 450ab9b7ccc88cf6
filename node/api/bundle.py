"""Building an asset's provenance bundle from a node's store and state.

Theory of operation
-------------------
:func:`build_bundle` collects every transaction of one diamond asset's
provenance, each with its proofs, so that the offline check
(:mod:`node.sdk.bundle_verify`, which documents the format) can replay it.
Which transactions those are is the diamond pack's own answer, query
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
  transaction emitted;
* the header (its signed fields) and commit certificate of the tip block,
  so the bundle says how current it is.

Each transaction goes in with its signed block header fields, the block's
commit certificate and its Merkle path.  The result is a plain dict of
codec values: ``consensus.codec.encode`` of it is the bundle file, served by
``GET /v1/bundle/{asset_id}`` (see :func:`bundle_route`).

The build is synchronous and reads the store and the in-memory state
without awaiting, so on a node's event loop it sees one consistent height.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from consensus.blocks import BlockHeader
from consensus.merkle import inclusion_proof
from consensus.messages import Commit
from consensus.proofs import CommitCertificate
from contracts.config import CONFIG_KEY, load_config
from contracts.diamond_records import Diamond, asset_key
from contracts.diamond_scope import AT_HEIGHT, LAST_FROM
from contracts.queries import query
from contracts.receipt import STATUS_OK, Receipt
from contracts.records import load
from contracts.state import ReadableState
from node.api.errors import ApiError
from node.runtime.storage import Store, StoredBlock
from node.sdk.bundle_verify import FORMAT, VERSION
from node.sdk.genesis import NetworkGenesis

if TYPE_CHECKING:
    from aiohttp import web

    from node.api.routes import ClientApi


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


def build_bundle(
    store: Store, state: ReadableState, network: NetworkGenesis, asset_id: str
) -> dict[str, object]:
    """The provenance bundle of ``asset_id`` (a dict; encode it for the file).

    Raises :class:`UnknownAsset` when no diamond asset has that id, and
    :class:`BundleTooLarge` when its provenance exceeds the chain's trace limit.

    >>> data = encode(build_bundle(node.store, node.engine.ledger.state, node.network, "S-1"))
    """
    if not isinstance(asset_id, str) or load(state, asset_key(asset_id), Diamond) is None:
        raise UnknownAsset(f"no diamond asset {asset_id}")
    scope = _scope(state, asset_id)
    finder = _Finder(store)
    tx_ids = set(scope["tx_ids"]) | {finder.find(record) for record in scope["records"]}
    blocks = _Blocks(store)
    positions = []
    for tx_id in tx_ids:
        position = store.tx_position(tx_id)
        if position is None:
            raise RuntimeError(
                f"transaction {tx_id.hex()} of {asset_id}'s provenance is not stored"
            )
        positions.append(position)
    entries = [_entry(blocks.get(height), index) for height, index in sorted(positions)]
    tip = blocks.get(store.height())
    return {
        "format": FORMAT,
        "version": VERSION,
        "chain_id": network.chain_id,
        "asset_id": asset_id,
        "validators": [
            {
                "replica_id": entry.replica_id,
                "name": entry.name,
                "org_id": entry.org_id,
                "public_key": entry.public_key,
            }
            for entry in sorted(network.validators, key=lambda entry: entry.replica_id)
        ],
        "as_of": {
            "header": signed_header(tip.block.header),
            "certificate": CommitCertificate(tip.block.certificate).to_fields(),
        },
        "entries": entries,
    }


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


def _entry(stored: StoredBlock, index: int) -> dict[str, object]:
    block = stored.block
    digests = stored.digests
    receipt = stored.receipts[index]
    if receipt.get("status") != "ok":
        raise RuntimeError(f"transaction at {block.header.height}:{index} did not succeed")
    return {
        "tx": block.requests[index].payload,
        "tx_id": digests[index],
        "header": signed_header(block.header),
        "certificate": CommitCertificate(block.certificate).to_fields(),
        "index": index,
        "count": len(digests),
        "path": inclusion_proof(digests, index),
    }


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
    """``GET /v1/bundle/{asset_id}``: the bundle (msgpack with Accept: application/msgpack).

    Wire it as ``web.get("/v1/bundle/{asset_id}", lambda r: bundle_route(r, api, network))``
    or with :func:`bundle_routes`.
    """
    from node.api.routes import respond

    # A BundleBuildError is an ApiError: it leaves as its code's answer.
    document = build_bundle(
        api.store, api.engine.ledger.state, network, request.match_info["asset_id"]
    )
    return respond(request, document)


def bundle_routes(api: ClientApi, network: NetworkGenesis) -> list[web.RouteDef]:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return await bundle_route(request, api, network)

    return [web.get("/v1/bundle/{asset_id}", handler)]
