"""``ProvenetClient.events()``: committed blocks in order, across reconnects and node failures.

The README promises that ``client.events()`` yields every block once, in
height order, resumes after a reconnect from the last height seen, and
moves on from a node that cannot serve the stream.  The nodes here are
stand-ins serving ``/v1/events`` (what a real node sends: one JSON frame per
block), so each failure is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from aiohttp import web
from netfixture import serving

from consensus.quorum import ValidatorSet
from node.sdk import ProvenetClient
from node.sdk.errors import ProvenetError

pytestmark = pytest.mark.asyncio

# Every wait in these tests is bounded by this; the client's own timeout is shorter.
TEST_TIMEOUT_S = 10.0
CLIENT_TIMEOUT_S = 1.0


@dataclass
class EventNode:
    """Serves ``frames_per_connection`` block frames from the asked height, then closes."""

    frames_per_connection: int
    asked: list[int] = field(default_factory=list)


def _events_app(node: EventNode) -> web.Application:
    async def events(request: web.Request) -> web.WebSocketResponse:
        start = int(request.query["from_height"])
        node.asked.append(start)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        # A frame of another type, and one already seen, are skipped by the client.
        await ws.send_str(json.dumps({"type": "hello"}))
        if start > 1:
            await ws.send_str(json.dumps({"type": "block", "height": start - 1, "txs": []}))
        for height in range(start, start + node.frames_per_connection):
            await ws.send_str(json.dumps({"type": "block", "height": height, "txs": []}))
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/v1/events", events)
    return app


def _refusing_app(status: int) -> web.Application:
    async def events(request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "x", "message": "no"}}, status=status)

    app = web.Application()
    app.router.add_get("/v1/events", events)
    return app


def _client(urls: list[str]) -> ProvenetClient:
    validators = ValidatorSet((bytes(32),))
    return ProvenetClient(urls, None, "provenet-local", validators, timeout_s=CLIENT_TIMEOUT_S)


async def _heights(client: ProvenetClient, count: int, max_backoff_s: float = 0.2) -> list[int]:
    heights: list[int] = []
    async with asyncio.timeout(TEST_TIMEOUT_S):
        async with aclosing(client.events(from_height=1, max_backoff_s=max_backoff_s)) as frames:
            async for frame in frames:
                heights.append(int(frame["height"]))
                if len(heights) == count:
                    break
    return heights


@pytest_asyncio.fixture
async def silent_url() -> AsyncIterator[str]:
    """A node that accepts connections and never answers the upgrade."""

    done = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), TEST_TIMEOUT_S)
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_events_resume_after_each_close_from_the_next_height_without_repeats() -> None:
    node = EventNode(frames_per_connection=2)
    async with serving(_events_app(node)) as url:
        client = _client([url])
        try:
            heights = await _heights(client, 5)
        finally:
            await client.close()
    assert heights == [1, 2, 3, 4, 5]
    assert node.asked[:3] == [1, 3, 5]


async def test_events_move_on_from_a_node_that_cannot_serve_the_stream() -> None:
    node = EventNode(frames_per_connection=3)
    async with serving(_refusing_app(503)) as broken, serving(_events_app(node)) as good:
        client = _client([broken, good])
        try:
            heights = await _heights(client, 3)
        finally:
            await client.close()
    assert heights == [1, 2, 3]
    assert node.asked[0] == 1


async def test_events_move_on_from_a_node_that_never_answers_the_upgrade(silent_url: str) -> None:
    node = EventNode(frames_per_connection=2)
    async with serving(_events_app(node)) as good:
        client = _client([silent_url, good])
        try:
            heights = await _heights(client, 2)
        finally:
            await client.close()
    assert heights == [1, 2]


async def test_events_refused_as_a_bad_request_raise_the_callers_mistake() -> None:
    async with serving(_refusing_app(400)) as url:
        client = _client([url])
        try:
            with pytest.raises(ProvenetError) as refused:
                await _heights(client, 1)
        finally:
            await client.close()
    assert refused.value.code == "bad_request"
    assert refused.value.status == 400
