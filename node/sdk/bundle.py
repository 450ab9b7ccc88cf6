"""Provenance bundles in the SDK: fetch one from a node, check one offline.

A bundle is one file holding every transaction of a diamond's provenance
with its block header, Merkle inclusion proof and commit certificate (format
and checks: :mod:`node.sdk.bundle_verify`).  Fetching needs a node; checking
needs only the network's genesis file::

    async with ProvenetClient.from_network_dir("net") as client:
        data = await fetch_bundle(client, "S-1")
    verdict = verify_bundle(data, load_genesis(Path("net/genesis.json")))
    print(verdict.format())

    verdict = verify_bundle_file("S-1.bundle", "genesis.json")   # offline, no node
    verdict.conflict_free, [step.call for step in verdict.steps]

A bundle that does not verify raises :class:`BundleError`, whose ``kind``
names the proof that failed (``validator_set``, ``signature``, ``tx_id``,
``inclusion``, ``certificate``, ``receipt``, ``state``, ``missing_read``,
``signer``, ``missing_upstream_link``, ...).  ``verdict.as_of_height`` is
the height the verdict is proven as of.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from consensus.codec import DecodeError, decode
from node.sdk.bundle_verify import BUNDLE_LIMITS as BUNDLE_LIMITS
from node.sdk.bundle_verify import BundleError, Check, Step, Verdict, verify_bundle
from node.sdk.client import ProvenetClient
from node.sdk.genesis import NetworkGenesis, load_genesis
from node.sdk.transport import MSGPACK, NodeFailed, api_error

__all__ = [
    "BundleError",
    "Check",
    "Step",
    "Verdict",
    "fetch_bundle",
    "verify_bundle",
    "verify_bundle_file",
]


async def fetch_bundle(client: ProvenetClient, asset_id: str) -> bytes:
    """The bundle of ``asset_id`` as a node serves it: canonical msgpack bytes.

    Tries the client's nodes in turn like every SDK call.  The bytes are not
    verified here (the client holds no organisation list): pass them to
    :func:`verify_bundle` with the genesis.  An unknown asset raises
    ProvenetError ``unknown_asset``.
    """
    transport = client.transport
    path = f"/v1/bundle/{quote(asset_id, safe='')}"

    async def get(url: str) -> bytes:
        reply = await transport.fetch(
            url, "GET", path, accept=MSGPACK, max_body_bytes=BUNDLE_LIMITS.max_size_bytes
        )
        document = _decoded(reply.body)
        if reply.status >= 500:
            raise NodeFailed(f"HTTP {reply.status}")
        if reply.status >= 400:
            raise api_error(reply.status, document, reply.retry_after)
        if not isinstance(document, dict):
            raise NodeFailed("the bundle answer is not a canonical msgpack map")
        return reply.body

    return await transport.failover(get)


def _decoded(raw: bytes) -> object:
    try:
        return decode(raw, BUNDLE_LIMITS)
    except DecodeError:
        return None


def verify_bundle_file(path: Path | str, genesis: NetworkGenesis | Path | str) -> Verdict:
    """Check a bundle file offline against a genesis (loaded, or its genesis.json path).

    Returns the :class:`Verdict` (provenance steps, trace, compliance) or
    raises :class:`BundleError` naming the proof that failed.
    """
    network = genesis if isinstance(genesis, NetworkGenesis) else load_genesis(Path(genesis))
    return verify_bundle(Path(path).read_bytes(), network)
