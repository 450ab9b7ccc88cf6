"""``GET /v1/chain/stream``: the chain pushed to observers over a websocket.

An observer that polls ``GET /v1/chain`` learns of a block one poll late and
pays a round trip per page; at tens of blocks a second it trails by several
blocks.  This stream pushes each block the moment the node has stored it.

Protocol
--------
``GET /v1/chain/stream?from=H&limit=N&blocks=1`` upgrades to a websocket.
The node sends binary messages only, each one canonical msgpack map of the
same shape as a ``GET /v1/chain`` page::

    {"height": <this node's height, a bare claim>,
     "blocks": [<full block>, ...],        # exactly GET /v1/chain's blocks
     "tip":    {"header": ..., "certificate": [...]} or nil}

* ``blocks=1`` (the default): stored blocks from ``from`` in height order,
  at most ``limit`` (capped by ``max_blocks_per_page``) and about
  ``chain_page_bytes`` of payloads per message, then each new block as soon
  as it is stored.
* ``blocks=0``: tips only.  ``blocks`` is always empty; a message carries
  ``tip`` when the node's height has grown, at most one per
  ``chain_stream_tip_interval_ms``.

``tip`` is the header and commit certificate of the node's latest block
(a full block without its payloads), present when that block is above the
message's last block.  A follower believes a height only when its
certificate verifies, so a tip is how it learns, cheaply and without
trusting anyone, how far the chain has got.  A stream that has sent nothing
for ``chain_stream_heartbeat_ms`` sends ``{"height": H, "blocks": [],
"tip": nil}``, so a follower tells a quiet chain from a hung source.  The
node never reads from the stream except to notice the client leaving;
``max_chain_streams`` bound how many it serves (503 ``too_many_subscribers``
beyond).  Sending waits for the socket to drain, so a slow reader holds at
most one message here, never a queue.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from consensus.codec import encode
from consensus.wire import message_to_wire
from node.api_errors import ApiError
from node.chain import ChainHost
from node.config import NodeLimits
from node.storage import Store
from node.views import full_block_view, header_view

STREAM_PATH = "/v1/chain/stream"
# aiohttp's websocket ping, so a client that vanished without a close is noticed.
_PING_INTERVAL_S = 10.0


def chain_blocks(
    store: Store, start: int, limit: int, budget_bytes: int
) -> list[dict[str, object]]:
    """Full blocks from ``start`` while they exist, at most ``limit`` of them, until
    their payloads would pass ``budget_bytes`` (the first block always)."""
    blocks: list[dict[str, object]] = []
    for height in range(start, start + limit):
        stored = store.block(height)
        if stored is None:
            break
        budget_bytes -= sum(len(r.payload) for r in stored.block.requests)
        if blocks and budget_bytes < 0:
            break
        blocks.append(full_block_view(stored))
    return blocks


def tip_view(engine: ChainHost, height: int) -> dict[str, object] | None:
    """The header and certificate of the block at ``height`` (the node's latest)."""
    latest = engine.latest_block
    if latest is None or latest.header.height != height:
        stored = engine.store.block(height)
        if stored is None:
            return None
        latest = stored.block
    return {
        "header": header_view(latest.header),
        "certificate": [message_to_wire(commit) for commit in latest.certificate],
    }


def page(
    engine: ChainHost, height: int, blocks: list[dict[str, object]], last_sent: int
) -> dict[str, object]:
    """A page of ``blocks`` whose last is ``last_sent``, with the tip when it is higher."""
    tip = tip_view(engine, height) if height > last_sent else None
    return {"height": height, "blocks": blocks, "tip": tip}


class ChainStreams:
    """The ``GET /v1/chain/stream`` handler and its count of open streams."""

    def __init__(self, engine: ChainHost, limits: NodeLimits) -> None:
        self.engine = engine
        self.limits = limits
        self.open = 0

    async def handle(
        self, request: web.Request, start: int, limit: int, blocks: bool
    ) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=_PING_INTERVAL_S)
        if not ws.can_prepare(request).ok:
            raise ApiError("bad_request", "the chain stream is a websocket")
        if self.open >= self.limits.max_chain_streams:
            raise ApiError("too_many_subscribers", "this node serves its maximum of chain streams")
        self.open += 1
        try:
            await ws.prepare(request)
            reader = asyncio.create_task(_read_until_closed(ws))
            try:
                if blocks:
                    await self._blocks(ws, reader, start, limit)
                else:
                    await self._tips(ws, reader)
            except ConnectionResetError:
                pass
            finally:
                reader.cancel()
        finally:
            self.open -= 1
        return ws

    async def _blocks(
        self, ws: web.WebSocketResponse, reader: asyncio.Task[None], start: int, limit: int
    ) -> None:
        next_height = start
        while not ws.closed and not reader.done():
            height = self.engine.store.height()
            if next_height <= height:
                blocks = chain_blocks(
                    self.engine.store, next_height, limit, self.limits.chain_page_bytes
                )
                next_height += len(blocks)
                await ws.send_bytes(encode(page(self.engine, height, blocks, next_height - 1)))
                continue
            if not await self._wait_for_block(reader, self.limits.chain_stream_heartbeat_ms):
                await ws.send_bytes(encode({"height": height, "blocks": [], "tip": None}))

    async def _tips(self, ws: web.WebSocketResponse, reader: asyncio.Task[None]) -> None:
        sent_height = 0
        sent_at = time.monotonic()
        interval_s = self.limits.chain_stream_tip_interval_ms / 1000
        while not ws.closed and not reader.done():
            height = self.engine.store.height()
            wait_s = sent_at + interval_s - time.monotonic()
            if height > sent_height and wait_s <= 0:
                await ws.send_bytes(encode(page(self.engine, height, [], 0)))
                sent_height, sent_at = height, time.monotonic()
                continue
            if height > sent_height:
                await asyncio.wait({reader}, timeout=wait_s)
                continue
            if not await self._wait_for_block(reader, self.limits.chain_stream_heartbeat_ms):
                await ws.send_bytes(encode({"height": height, "blocks": [], "tip": None}))
                sent_at = time.monotonic()

    async def _wait_for_block(self, reader: asyncio.Task[None], timeout_ms: int) -> bool:
        """Until the node stores a block (True), ``timeout_ms`` passes or the client leaves."""
        # Taken before any await, so a block stored from here on wakes this wait.
        stored = asyncio.ensure_future(self.engine.block_stored().wait())
        try:
            await asyncio.wait(
                {stored, reader}, timeout=timeout_ms / 1000, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stored.cancel()
        return stored.done() and not stored.cancelled()


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass
