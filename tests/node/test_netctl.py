"""``net status`` and ``net up``'s health polls against fake nodes, through the SDK transport.

netctl used urllib with its own timeouts; it now asks each node through
:class:`node.sdk.transport.Transport`, one request to one node.  Its
commands stay synchronous (they run their own event loop), so these tests
call them in a thread while the fake nodes serve on the test's loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from netfixture import serving

from node.ops import netctl
from node.sdk.network_file import Network, NodeEntry, write_network

pytestmark = pytest.mark.asyncio
TIMEOUT_S = 10


def _app(name_in_healthz: str, status: int, body: dict[str, object]) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"node": name_in_healthz})

    async def node_status(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/status", node_status)
    return app


def _network(root: Path, urls: list[str]) -> Network:
    nodes = tuple(
        NodeEntry(
            name=f"v{i}",
            role="validator",
            replica_id=i,
            org_id="leadfirm",
            api_url=url,
            peer_url=f"ws://127.0.0.1:1/peer{i}",
            config=root / "nodes" / f"v{i}" / "config.json",
        )
        for i, url in enumerate(urls)
    )
    network = Network(root, "provenet-local", False, None, nodes, {})
    write_network(network)
    return network


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: connections are refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


async def test_status_asks_each_node_and_says_why_one_is_down(
    tmp_path: Path, refused_url: str
) -> None:
    answer = {"role": "validator", "view": 2, "height": 7, "state_root": "ab" * 32, "peers": {}}
    async with (
        serving(_app("v0", 200, answer)) as up,
        serving(_app("v1", 503, {"error": {"code": "unavailable"}})) as starting,
    ):
        _network(tmp_path, [up, starting, refused_url])
        rows = await asyncio.wait_for(asyncio.to_thread(netctl.status, tmp_path), TIMEOUT_S)
    assert [(r["name"], r["up"], r["status"]) for r in rows] == [
        ("v0", True, answer),
        ("v1", False, None),
        ("v2", False, None),
    ]
    assert rows[1]["error"] == "HTTP 503"
    assert rows[2]["error"].endswith(": Connection refused")
    table = netctl.format_status(rows).splitlines()
    assert table[1].split()[:4] == ["v0", "validator", "2", "7"]
    assert "down (HTTP 503)" in table[2]


async def test_up_waits_for_each_node_by_its_own_name(tmp_path: Path) -> None:
    """A port answered by another node (a stranger) is not this node being healthy."""
    async with serving(_app("v0", 200, {})) as v0, serving(_app("stranger", 200, {})) as v1:
        network = _network(tmp_path, [v0, v1])
        failed = await asyncio.wait_for(
            asyncio.to_thread(netctl.wait_healthy, network, 0.5), TIMEOUT_S
        )
    assert failed == ["v1"]


async def test_a_node_that_becomes_healthy_is_waited_for(tmp_path: Path) -> None:
    asked = 0

    async def healthz(request: web.Request) -> web.Response:
        nonlocal asked
        asked += 1
        if asked < 3:
            return web.json_response({"error": {"code": "unavailable"}}, status=503)
        return web.json_response({"node": "v0"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    async with serving(app) as url:
        network = _network(tmp_path, [url])
        failed = await asyncio.wait_for(
            asyncio.to_thread(netctl.wait_healthy, network, TIMEOUT_S / 2), TIMEOUT_S
        )
    assert (failed, asked) == ([], 3)
