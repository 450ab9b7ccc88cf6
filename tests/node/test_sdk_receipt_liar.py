"""A node that says a rejected transaction succeeded is caught.

The SDK used to check only that a transaction was included under a commit
certificate; the receipt (ok or rejected) was one node's word.  Now every
outcome it reports is proven under the certificate of a later block, so a
node rewriting "rejected" into "ok" is refused with ProofError ``receipt``,
whether it rewrites the receipt it serves or the proven leaf too.  The same
run checks the honest path on one real node: an ok and a rejected outcome,
each proven, the last one by the empty block that carries the results of
the last block when the chain goes idle.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from netfixture import Single, serving, single_node

from node.sdk import ProvenetClient
from node.sdk.errors import ProofError, TransactionRejected
from node.sdk.genesis import load_genesis
from node.sdk.keys import load_identity
from node.sdk.receipt_proof import verify_receipt_proof

pytestmark = [pytest.mark.asyncio, pytest.mark.network]


class LyingFront:
    """Forwards everything to a real node; every transaction status it
    passes back that says "rejected" it rewrites to "ok" (the receipt it
    serves, and with ``leaf`` the proven leaf too)."""

    def __init__(self) -> None:
        self.target = ""
        self.leaf = False
        self.lies = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k in ("Content-Type", "Accept")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.target + request.path_qs, data=body, headers=headers
            ) as answer,
        ):
            raw = await answer.read()
            status, kind = answer.status, answer.content_type
        if request.path.startswith("/v1/txs") and kind == "application/json":
            raw = self._lie(raw)
        return web.Response(body=raw, status=status, content_type=kind)

    def _lie(self, raw: bytes) -> bytes:
        answer: Any = json.loads(raw)
        receipt = answer.get("receipt") if isinstance(answer, dict) else None
        if not isinstance(receipt, dict) or receipt.get("status") != "rejected":
            return raw
        self.lies += 1
        receipt["status"], receipt["code"], receipt["message"] = "ok", None, ""
        proof = answer.get("receipt_proof")
        if self.leaf and isinstance(proof, dict):
            proof["leaf"]["status"], proof["leaf"]["code"] = "ok", None
        return json.dumps(answer).encode()


@pytest_asyncio.fixture
async def front() -> AsyncIterator[tuple[LyingFront, str]]:
    liar = LyingFront()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", liar.handle)
    async with serving(app) as url:
        yield liar, url


def client_of(single: Single, url: str) -> ProvenetClient:
    genesis = load_genesis(single.dir / "genesis.json")
    return ProvenetClient(
        [url],
        load_identity(single.dir / "orgs" / "farm.key"),
        genesis.chain_id,
        genesis.validator_set(),
        proof_wait_s=5.0,
    )


async def test_a_rejected_transaction_reported_ok_is_refused_and_honest_outcomes_are_proven(
    tmp_path: Path, front: tuple[LyingFront, str]
) -> None:
    liar, front_url = front
    async with single_node(tmp_path, {}) as single:
        liar.target = single.url
        lot = {"lot_id": "L1", "product": "wheat", "mass_grams": 1_000}
        async with client_of(single, single.url) as honest:
            ok = await honest.submit("food", "harvest", lot, timeout_s=10.0)
            # Proven by a later block: the chain went idle after this one,
            # so the block that certifies it is the empty carrier.
            assert ok["status"] == "ok" and ok["certified_by"] > ok["height"]
            carrier = await honest.block(ok["certified_by"])
            assert carrier["txs"] == []
            with pytest.raises(TransactionRejected) as refused:
                await honest.submit("food", "harvest", lot, timeout_s=10.0)
            rejected: dict[str, Any] = refused.value.result
            assert rejected["status"] == "rejected" and rejected["code"] == "duplicate"
            assert rejected["certified_by"] > rejected["height"]
            # One node's whole answer, checked with the SDK's one call.
            status = await honest.tx_status(rejected["tx_id"])
            leaf = verify_receipt_proof(
                bytes.fromhex(rejected["tx_id"]), status, honest.validators, honest.chain_id
            )
            assert (leaf.status, leaf.code) == ("rejected", "duplicate")

        for rewrite_leaf in (False, True):
            liar.leaf = rewrite_leaf
            async with client_of(single, front_url) as lied_to:
                with pytest.raises(ProofError) as caught:
                    await lied_to.submit("food", "harvest", lot, timeout_s=10.0)
                assert caught.value.part == "receipt", caught.value
                with pytest.raises(ProofError) as caught:
                    await lied_to.tx_status(rejected["tx_id"])
                assert caught.value.part == "receipt", caught.value
        assert liar.lies >= 4
