"""The benchmarks' HTTP layer over the SDK transport, against a fake node on 127.0.0.1:
answers decoded as asked, and a block stream that resumes where it stopped."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp import web
from benchkit.http import MSGPACK, NodeFailed, NodeHttp
from netfixture import serving

from consensus.codec import encode

pytestmark = pytest.mark.asyncio

# Bounds every test here: nothing below may hang.
TEST_BOUND_S = 10


async def test_an_answer_is_decoded_as_asked_whatever_its_status() -> None:
    async def status(request: web.Request) -> web.Response:
        if request.headers["Accept"] == MSGPACK:
            return web.Response(status=429, body=encode({"n": 1}), content_type=MSGPACK)
        return web.Response(status=503, body=b"not json")

    app = web.Application()
    app.router.add_get("/v1/status", status)
    async with serving(app) as url, NodeHttp([url]) as http:
        async with asyncio.timeout(TEST_BOUND_S):
            packed = await http.send("GET", url, "/v1/status", accept=MSGPACK)
            garbled = await http.send("GET", url, "/v1/status")
    assert (packed.status, packed.body) == (429, {"n": 1})
    assert (garbled.status, garbled.body) == (503, None)


async def test_a_block_stream_resumes_from_the_next_height_after_it_closes() -> None:
    asked: list[str] = []

    async def events(request: web.Request) -> web.WebSocketResponse:
        asked.append(request.query["from_height"])
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        height = int(request.query["from_height"])
        await ws.send_str(f'{{"height": {height}}}')
        await ws.close()  # the node drops the stream after one block
        return ws

    frames: list[str] = []
    drops: list[NodeFailed | None] = []
    two_frames = asyncio.Event()

    def on_frame(seen: float, frame: str) -> None:
        frames.append(frame)
        if len(frames) == 2:
            two_frames.set()

    app = web.Application()
    app.router.add_get("/v1/events", events)
    async with serving(app) as url, NodeHttp([url]) as http:
        follow = asyncio.create_task(
            http.follow_events(url, lambda: 5 + len(frames), on_frame, on_drop=drops.append)
        )
        try:
            await asyncio.wait_for(two_frames.wait(), TEST_BOUND_S)
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
    assert asked[:2] == ["5", "6"]
    assert frames[:2] == ['{"height": 5}', '{"height": 6}']
    assert drops[0] is None  # closed, not failed


async def test_an_unreachable_stream_is_reported_by_kind_and_tried_again() -> None:
    app = web.Application()
    async with serving(app) as url:
        pass  # the port is closed again
    drops: list[NodeFailed | None] = []
    tried_twice = asyncio.Event()

    def on_drop(error: NodeFailed | None) -> None:
        drops.append(error)
        if len(drops) == 2:
            tried_twice.set()

    async with NodeHttp([url]) as http:
        follow = asyncio.create_task(http.follow_events(url, lambda: 1, print, on_drop=on_drop))
        try:
            await asyncio.wait_for(tried_twice.wait(), TEST_BOUND_S)
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
    assert [d.kind if d else None for d in drops[:2]] == ["ClientConnectorError"] * 2
