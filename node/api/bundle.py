"""Building an asset's provenance bundle from a node's store and state.

Theory of operation
-------------------
:func:`build_bundle` collects every transaction the offline check
(:mod:`node.sdk.bundle_verify`, which documents the format) needs to rebuild the
provenance of one diamond asset and replay it, each with its proofs:

* every event of every asset in the provenance (extraction, split, merge,
  cut, transfers, shipment, import, grading, sale, freezes), read from the
  assets' event logs in state (each event records its transaction id); the
  assets are the asset's whole upstream, plus every parcel that crossed a
  border under the same KP certificate as one of them and every input
  merged with one of them, since replaying those transactions needs them;
* the issuance of every KP certificate those events name and the
  registration of every origin mine (not asset events: they are found in
  the block at the record's ``issued_height`` / ``registered_height`` by the
  event the transaction emitted);
* what makes the verdict as it stands now: every sanction in force on an
  origin mine, an organisation that acted or certified, or any of their
  countries; the revocation of a KP certificate or grading report that is
  revoked; the accreditation change of a mine that is no longer
  accredited.  Those records keep no transaction id, so the transaction is
  found through its receipt's event (sanctions keep their height; a
  revocation or accreditation change is searched for from the record's
  height on, which is rare and bounded by the chain's length);
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
from consensus.codec import decode
from consensus.merkle import inclusion_proof
from consensus.messages import Commit
from contracts.config import CONFIG_KEY, load_config
from contracts.diamond_records import (
    PACK,
    Diamond,
    GradingReport,
    KpCertificate,
    Mine,
    asset_key,
    grading_key,
    kp_key,
    mine_key,
)
from contracts.orgs import Org, org_key, sanction_of
from contracts.provenance import read_events
from contracts.records import load
from contracts.state import ReadableState
from node.runtime.storage import Store, StoredBlock
from node.sdk.bundle_verify import FORMAT, VERSION
from node.sdk.genesis import NetworkGenesis

if TYPE_CHECKING:
    from aiohttp import web

    from node.api.routes import ClientApi


class BundleBuildError(Exception):
    """The bundle cannot be built; ``code`` is the API error code to answer with."""

    code = "invalid_argument"


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
    return {
        "chain_id": header.chain_id,
        "height": header.height,
        "proposer_time_ms": header.proposer_time_ms,
        "requests_root": header.requests_root,
        "request_count": header.request_count,
        "executed_height": header.executed_height,
        "executed_state_root": header.executed_state_root,
    }


def commit_fields(commit: Commit) -> dict[str, object]:
    return {
        "view": commit.view,
        "height": commit.height,
        "digest": commit.digest,
        "sender": commit.sender,
        "signature": commit.signature,
    }


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
    limit = load_config(state.get(CONFIG_KEY)).limits.max_trace_nodes
    collector = _Collector(store, state, limit)
    collector.collect(asset_id)
    tx_ids = collector.tx_ids | collector.supporting_txs()
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
            "certificate": [commit_fields(commit) for commit in tip.block.certificate],
        },
        "entries": entries,
    }


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
        "certificate": [commit_fields(commit) for commit in block.certificate],
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


class _Collector:
    """The assets of a provenance (see the module docstring) and their transactions."""

    def __init__(self, store: Store, state: ReadableState, limit: int) -> None:
        self.store = store
        self.state = state
        self.limit = limit
        self.assets: dict[str, Diamond] = {}
        self.tx_ids: set[bytes] = set()
        self.certs: set[str] = set()
        self.mines: set[str] = set()
        self.reports: set[str] = set()
        self.orgs: set[str] = set()

    def _diamond(self, asset_id: str) -> Diamond:
        diamond = load(self.state, asset_key(asset_id), Diamond)
        if diamond is None:
            raise RuntimeError(f"asset {asset_id} is named in the provenance but not in state")
        return diamond

    def collect(self, asset_id: str) -> None:
        queue = [asset_id]
        while queue:
            current = queue.pop()
            if current in self.assets:
                continue
            if len(self.assets) >= self.limit:
                raise BundleTooLarge(
                    f"the provenance of {asset_id} has more than {self.limit} assets"
                )
            diamond = self._diamond(current)
            self.assets[current] = diamond
            queue.extend(diamond.parents)
            if diamond.mine_id:
                self.mines.add(diamond.mine_id)
            if diamond.grading_report:
                self.reports.add(diamond.grading_report)
            self.orgs.update(diamond.actors)
            certs = set(diamond.kp_certificates)
            events, _ = read_events(self.state, PACK, current, diamond.event_count + 1)
            for event in events:
                self.tx_ids.add(event.tx_id)
                attributes = decode(event.attributes)
                assert isinstance(attributes, dict)
                if isinstance(attributes.get("cert_id"), str):
                    certs.add(attributes["cert_id"])
                if event.kind == "merged":
                    # Replaying the merge needs every input merged with this one.
                    for output in attributes.get("outputs", []):
                        queue.extend(self._diamond(output).parents)
            for cert_id in certs - self.certs:
                self.certs.add(cert_id)
                cert = self._cert(cert_id)
                # A certificate is issued, shipped and confirmed for all its parcels.
                queue.extend(cert.parcels)
                self.orgs.update(org for org in (cert.issuer, cert.confirmed_by) if org)

    def _cert(self, cert_id: str) -> KpCertificate:
        cert = load(self.state, kp_key(cert_id), KpCertificate)
        if cert is None:
            raise RuntimeError(f"KP certificate {cert_id} is named by an event but not in state")
        return cert

    def supporting_txs(self) -> set[bytes]:
        """Registrations, issuances and what makes the verdict as it stands now."""
        found: set[bytes] = set()
        countries: set[str] = set()
        for mine_id in sorted(self.mines):
            mine = load(self.state, mine_key(mine_id), Mine)
            assert mine is not None, "an extracted parcel names a registered mine"
            countries.add(mine.country)
            found.add(self._find(mine.registered_height, "mine_registered", {"mine_id": mine_id}))
            if not mine.accredited:
                found.add(
                    self._search(mine.registered_height, "mine_accreditation",
                                 {"mine_id": mine_id, "accredited": False}, last=True)
                )  # fmt: skip
        for cert_id in sorted(self.certs):
            cert = self._cert(cert_id)
            countries.update((cert.origin_country, cert.destination_country))
            found.add(self._find(cert.issued_height, "kp_certificate_issued", {"cert_id": cert_id}))
            if cert.revoked:
                found.add(
                    self._search(
                        cert.issued_height,
                        "certificate_revoked",
                        {"kind": "kp", "cert_id": cert_id},
                    )
                )
        for report_id in sorted(self.reports):
            report = load(self.state, grading_key(report_id), GradingReport)
            assert report is not None, "a graded stone names its report"
            if report.revoked:
                found.add(
                    self._search(report.issued_height, "certificate_revoked",
                                 {"kind": "grading", "cert_id": report_id})
                )  # fmt: skip
        for org_id in sorted(self.orgs):
            org = load(self.state, org_key(org_id), Org)
            if org is not None:
                countries.add(org.country)
        targets = (
            [("mine", mine) for mine in sorted(self.mines)]
            + [("org", org) for org in sorted(self.orgs)]
            + [("country", country) for country in sorted(countries)]
        )
        for kind, target in targets:
            sanction = sanction_of(self.state, kind, target)
            if sanction is not None:
                found.add(
                    self._find(sanction.height, "sanctioned", {"kind": kind, "target": target})
                )
        return found

    def _events(self, height: int) -> Iterator[tuple[bytes, str, dict[str, Any]]]:
        stored = self.store.block(height)
        if stored is None:
            return
        for receipt in stored.receipts:
            if receipt.get("status") != "ok":
                continue
            tx_id = receipt["tx_id"]
            events = receipt.get("events")
            assert isinstance(tx_id, bytes) and isinstance(events, list)
            for event in events:
                if event.get("contract") == "diamonds":
                    yield tx_id, event["kind"], event["attributes"]

    def _find(self, height: int, kind: str, attributes: dict[str, object]) -> bytes:
        for tx_id, event_kind, event_attributes in self._events(height):
            if event_kind == kind and _matches(event_attributes, attributes):
                return tx_id
        raise RuntimeError(f"no {kind} event {attributes} in block {height}")

    def _search(
        self, start: int, kind: str, attributes: dict[str, object], last: bool = False
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
            for tx_id, event_kind, event_attributes in self._events(height):
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
    from node.api.errors import ApiError
    from node.api.routes import respond

    try:
        document = build_bundle(
            api.store, api.engine.ledger.state, network, request.match_info["asset_id"]
        )
    except BundleBuildError as exc:
        raise ApiError(exc.code, str(exc)) from None
    return respond(request, document)


def bundle_routes(api: ClientApi, network: NetworkGenesis) -> list[web.RouteDef]:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return await bundle_route(request, api, network)

    return [web.get("/v1/bundle/{asset_id}", handler)]
