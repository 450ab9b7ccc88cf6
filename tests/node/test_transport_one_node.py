"""The transport's one-node pieces that netctl, the observer and a load generator share.

``fetch`` is one request to one node with no failover, whatever the status;
``websocket`` bounds its handshake and its close; :class:`RetryPolicy` is
the one rule for pauses between attempts.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest
from aiohttp import web
from netfixture import serving

from node.sdk.errors import Unavailable
from node.sdk.transport import (
    MSGPACK,
    NodeFailed,
    Reply,
    RetryPolicy,
    StreamRefused,
    Transport,
)

# Bounds every test here: nothing below may hang.
TEST_BOUND_S = 10


def test_pauses_start_at_the_first_double_and_stop_at_the_cap() -> None:
    policy = RetryPolicy(rounds=3, first_pause_s=0.05, max_pause_s=0.3)
    assert [policy.pause_s(k) for k in range(1, 6)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    assert policy.pause_s(10_000) == 0.3
    # A pause from zero still grows, or a retry loop would spin.
    assert RetryPolicy(first_pause_s=0.0, max_pause_s=1.0).pause_s(2) > 0
    with pytest.raises(ValueError):
        RetryPolicy(rounds=0)


@pytest.mark.asyncio
async def test_failover_makes_the_policys_rounds_and_no_more() -> None:
    asked = 0

    async def fail(request: web.Request) -> web.Response:
        nonlocal asked
        asked += 1
        return web.json_response({"error": {"code": "unavailable"}}, status=503)

    app = web.Application()
    app.router.add_get("/v1/status", fail)
    async with serving(app) as url:
        transport = Transport([url], retry=RetryPolicy(rounds=3, first_pause_s=0.01))
        try:
            with pytest.raises(Unavailable):
                await asyncio.wait_for(transport.call("GET", "/v1/status"), TEST_BOUND_S)
        finally:
            await transport.close()
    assert asked == 3


@pytest.mark.asyncio
async def test_fetch_is_one_request_to_one_node_whatever_the_status() -> None:
    seen: list[tuple[str, str | None, bytes]] = []

    async def txs(request: web.Request) -> web.Response:
        seen.append((request.headers["Accept"], request.content_type, await request.read()))
        return web.Response(body=b"\x81\xa5error\xc0", status=429, headers={"Retry-After": "1"})

    app = web.Application()
    app.router.add_post("/v1/txs", txs)
    async with serving(app) as url, serving(app) as other:
        transport = Transport([url, other], retry=RetryPolicy(rounds=1))
        try:
            reply = await asyncio.wait_for(
                transport.fetch(
                    url, "POST", "/v1/txs", body=b"\x90", content_type=MSGPACK, accept=MSGPACK
                ),
                TEST_BOUND_S,
            )
        finally:
            await transport.close()
    assert reply == Reply(429, b"\x81\xa5error\xc0", "1")
    assert seen == [(MSGPACK, MSGPACK, b"\x90")]  # one node, once: no failover, no retry


@pytest.mark.asyncio
async def test_fetch_refuses_an_answer_past_its_cap() -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 200_000)

    app = web.Application()
    app.router.add_get("/v1/chain", big)
    async with serving(app) as url:
        transport = Transport([url])
        try:
            whole = await transport.fetch(url, "GET", "/v1/chain", max_body_bytes=200_000)
            with pytest.raises(NodeFailed, match="exceeds 100000 bytes"):
                await transport.fetch(url, "GET", "/v1/chain", max_body_bytes=100_000)
        finally:
            await transport.close()
    assert len(whole.body) == 200_000


@pytest.mark.asyncio
async def test_a_node_without_a_stream_refuses_the_websocket() -> None:
    async def plain(request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "not_found"}}, status=404)

    app = web.Application()
    app.router.add_get("/v1/chain/stream", plain)
    async with serving(app) as url:
        transport = Transport([url])
        try:
            with pytest.raises(StreamRefused) as refused:
                async with transport.websocket(url, "/v1/chain/stream", max_msg_size=1024):
                    pass
        finally:
            await transport.close()
    assert refused.value.status == 404


@pytest.mark.asyncio
async def test_leaving_a_websocket_does_not_wait_on_a_peer_that_never_closes() -> None:
    """The peer never reads, so never answers our close frame: we drop it instead."""
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"tip")
        await release.wait()
        return ws

    app = web.Application()
    app.router.add_get("/v1/chain/stream", stream)
    async with serving(app) as url:
        transport = Transport([url])
        try:
            async with asyncio.timeout(TEST_BOUND_S):
                async with transport.websocket(
                    url, "/v1/chain/stream", max_msg_size=1024, close_timeout_s=0.2
                ) as ws:
                    message = await ws.receive()
        finally:
            release.set()
            await transport.close()
    assert (message.type, message.data) == (aiohttp.WSMsgType.BINARY, b"tip")


@pytest.mark.asyncio
async def test_a_failure_names_its_kind_for_counting() -> None:
    """A load generator tallies failures by kind: the network library's class, else NodeFailed."""

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 2_000)

    app = web.Application()
    app.router.add_get("/v1/chain", big)
    async with serving(app) as url:
        transport = Transport([url])
        try:
            with pytest.raises(NodeFailed) as too_large:
                await transport.fetch(url, "GET", "/v1/chain", max_body_bytes=1_000)
        finally:
            await transport.close()
    transport = Transport([url])  # the port is closed again
    try:
        with pytest.raises(NodeFailed) as unreachable:
            await asyncio.wait_for(transport.fetch(url, "GET", "/healthz"), TEST_BOUND_S)
        with pytest.raises(NodeFailed) as no_stream:
            async with transport.websocket(url, "/v1/chain/stream", max_msg_size=1024):
                pass
    finally:
        await transport.close()
    assert too_large.value.kind == "NodeFailed"
    assert unreachable.value.kind == "ClientConnectorError"
    assert no_stream.value.kind == "ClientConnectorError"


@pytest.mark.asyncio
async def test_a_task_told_to_stop_as_it_leaves_a_websocket_stops() -> None:
    """The node closes each stream after one frame; the reader reconnects until cancelled.

    The cancellation lands while the reader waits for its close to finish
    (Python 3.11's wait_for lost it there, and the reader went on forever).
    """

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"tip")
        await ws.close()
        return ws

    got_frame = asyncio.Event()

    async def follow(transport: Transport, url: str) -> None:
        while True:
            async with transport.websocket(url, "/v1/chain/stream", max_msg_size=1024) as ws:
                async for _ in ws:
                    got_frame.set()

    app = web.Application()
    app.router.add_get("/v1/chain/stream", stream)
    async with serving(app) as url:
        transport = Transport([url])
        reader = asyncio.create_task(follow(transport, url))
        try:
            await asyncio.wait_for(got_frame.wait(), TEST_BOUND_S)
            reader.cancel()
            await asyncio.wait([reader], timeout=TEST_BOUND_S)
            stopped = reader.cancelled()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await transport.close()
    assert stopped
