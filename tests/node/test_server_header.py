"""Every response of a node, on the API and the peer port, says ``Server: provenet``.

Why: aiohttp's default header names the Python and aiohttp versions, which
tells a scanner which published bugs to try on this node.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from netfixture import free_base_port

from node.app import RunningNode, start_node
from node.ops.netinit import init_network
from node.runtime.config import load_node_config

pytestmark = [pytest.mark.asyncio, pytest.mark.network]


@pytest_asyncio.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    init_network(tmp_path, 1, tls=False, base_port=free_base_port(1))
    running = await start_node(load_node_config(tmp_path / "nodes" / "v0" / "config.json"))
    try:
        yield running
    finally:
        await running.stop()


@pytest.mark.parametrize(
    ("port_kind", "method", "path"),
    [
        ("api", "GET", "/v1/status"),  # a handler's answer
        ("api", "GET", "/no/such/route"),  # the router's 404
        ("api", "DELETE", "/v1/status"),  # the router's 405
        ("api", "POST", "/v1/txs"),  # an API error (no body)
        ("api", "GET", "/"),  # the dashboard's static page
        ("peer", "GET", "/peer"),  # a peer route without a websocket upgrade
        ("peer", "GET", "/elsewhere"),
    ],
)
async def test_server_header_names_no_version(
    node: RunningNode, port_kind: str, method: str, path: str
) -> None:
    port = node.config.api_port if port_kind == "api" else node.config.peer_port
    url = f"http://127.0.0.1:{port}{path}"
    async with aiohttp.ClientSession() as http, http.request(method, url) as response:
        server = response.headers.get("Server")
    assert server == "provenet"
    assert not re.search(r"\d", server)
