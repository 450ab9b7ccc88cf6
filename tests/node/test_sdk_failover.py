"""A waiting call moves on from a node that keeps its transaction pending.

The defect: a validator cut off from its peers (or stranded in a view of its
own) still accepts transactions and answers "pending" for them, and the SDK
kept asking it: the sender waited out the whole outage (38 s of a 30 s
partition).  Here the client's preferred node is a stand-in that accepts
everything and never commits; the second node is a real validator.  The
call must end committed through the second node within its own timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from netfixture import serving, single_node

from node.sdk import ProvenetClient
from node.sdk.genesis import load_genesis
from node.sdk.keys import load_identity

pytestmark = [pytest.mark.asyncio, pytest.mark.network]

PENDING_FAILOVER_S = 0.5
# The call's whole budget: far less than one of the old 30 s waits on one node.
CALL_TIMEOUT_S = 8.0


@dataclass
class StuckNode:
    """Accepts every transaction and never commits one."""

    url: str = ""
    seen: list[str] = field(default_factory=list)


async def _hold(request: web.Request) -> None:
    """Hold a long poll as a node would, for the wait the client asked for."""
    if request.query.get("wait") == "true":
        wait_ms = min(int(request.query.get("timeout_ms", "0")), 60_000)
        await asyncio.sleep(wait_ms / 1000)


@pytest_asyncio.fixture
async def stuck_node() -> AsyncIterator[StuckNode]:
    node = StuckNode()

    async def post_tx(request: web.Request) -> web.Response:
        await request.read()
        node.seen.append("POST")
        await _hold(request)
        return web.json_response({"status": "pending"})

    async def get_tx(request: web.Request) -> web.Response:
        node.seen.append("GET")
        await _hold(request)
        return web.json_response({"tx_id": request.match_info["tx_id"], "status": "pending"})

    app = web.Application()
    app.router.add_post("/v1/txs", post_tx)
    app.router.add_get("/v1/txs/{tx_id}", get_tx)
    async with serving(app) as url:
        node.url = url
        yield node


async def test_a_call_pending_on_a_stuck_node_commits_through_the_next(
    tmp_path: Path, stuck_node: StuckNode
) -> None:
    async with single_node(tmp_path, {}) as single:
        genesis = load_genesis(single.dir / "genesis.json")
        client = ProvenetClient(
            [stuck_node.url, single.url],
            load_identity(single.dir / "orgs" / "farm.key"),
            genesis.chain_id,
            genesis.validator_set(),
            pending_failover_s=PENDING_FAILOVER_S,
        )
        async with client:
            args = {"lot_id": "failover-1", "product": "wheat", "mass_grams": 1_000}
            receipt = await client.submit("food", "harvest", args, timeout_s=CALL_TIMEOUT_S)
            assert receipt["status"] == "ok"
            # The stuck node was asked first, and the real one committed it.
            assert stuck_node.seen[0] == "POST"
            # The stuck node still has not seen the commit, so the client
            # leaves it (checked off the call's path, so wait for it).
            for _ in range(100):
                if client.transport.preferred == 1:
                    break
                await asyncio.sleep(0.02)
            assert client.transport.preferred == 1
            lot = await client.query("food", "lot", {"lot_id": "failover-1"})
            assert lot["lot_id"] == "failover-1"


async def test_pending_failover_must_be_positive(tmp_path: Path) -> None:
    async with single_node(tmp_path, {}) as single:
        genesis = load_genesis(single.dir / "genesis.json")
        with pytest.raises(ValueError, match="pending_failover_s"):
            ProvenetClient(
                [single.url], None, genesis.chain_id, genesis.validator_set(), pending_failover_s=0
            )
