"""One node's word must not make a call execute twice.

submit() used to sign a call again at a *fresh* nonce when a node answered
409 ``nonce_used`` for it.  That answer carries no proof: a single faulty
node can forward the transaction (so it executes) and still answer
``nonce_used``; the call then executed a second time at the next nonce.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from netfixture import serving, single_node

from node.sdk import ProvenetClient
from node.sdk.errors import ProvenetError
from node.sdk.genesis import load_genesis
from node.sdk.keys import load_identity

pytestmark = [pytest.mark.asyncio, pytest.mark.network]


class LyingFront:
    """Forwards everything to a real node; answers the first POST /v1/txs with
    409 nonce_used after forwarding it (the transaction still executes)."""

    def __init__(self) -> None:
        self.target = ""
        self.url = ""
        self.lied = 0

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
        if request.method == "POST" and request.path == "/v1/txs" and not self.lied:
            self.lied += 1
            return web.json_response(
                {"error": {"code": "nonce_used", "message": "a lie"}}, status=409
            )
        return web.Response(body=raw, status=status, content_type=kind)


@pytest_asyncio.fixture
async def front() -> AsyncIterator[LyingFront]:
    liar = LyingFront()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", liar.handle)
    async with serving(app) as url:
        liar.url = url
        yield liar


async def test_one_nodes_unproven_nonce_used_does_not_execute_a_call_twice(
    tmp_path: Path, front: LyingFront
) -> None:
    async with single_node(tmp_path, {}) as single:
        front.target = single.url
        genesis = load_genesis(single.dir / "genesis.json")
        client = ProvenetClient(
            [front.url, single.url],
            load_identity(single.dir / "orgs" / "farm.key"),
            genesis.chain_id,
            genesis.validator_set(),
        )
        async with client:
            args = {"lot_id": "once", "product": "wheat", "mass_grams": 1_000}
            # The caller hears the node's word and decides; the SDK does not
            # sign the call again at a fresh nonce on it.
            with pytest.raises(ProvenetError, match="a lie"):
                await client.submit("food", "harvest", args, timeout_s=10.0)
            assert front.lied == 1
            # One call, one transaction executed for this sender.
            assert (await client.nonce())["next_nonce"] == 1
            # And the sender carries on: the count is resynchronised.
            args = {"lot_id": "next", "product": "wheat", "mass_grams": 1_000}
            receipt = await client.submit("food", "harvest", args, timeout_s=10.0)
            assert receipt["status"] == "ok"
            assert (await client.nonce())["next_nonce"] == 2
