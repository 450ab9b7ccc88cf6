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
node never reads from the stream except to notice the client leaving.

Bounds
------
A stream is bounded like the rest of the client API (node/api/ratelimit.py):

* ``max_chain_streams`` in all and ``max_chain_streams_per_address`` from
  one client address (an IPv6 client's /64); beyond either the upgrade
  answers 503 ``too_many_subscribers``.
* Each message is charged to the client's connection and address budgets
  as a ``GET /v1/chain`` page is: a unit for the message, refused when the
  budget is empty, then a unit per KiB of it, into debt if need be.  A
  client out of budget has its stream closed with code 1013 (try again
  later) and a reason starting ``rate_limited:`` that says when to come
  back; it is closed rather than paused so that a paused stream never looks
  to its follower like a hung source, and an observer simply goes on to
  another validator or polls, as it does for any closed stream.  A stream
  from=1 therefore pays for the chain it replays, as polling would.
* Sending waits for the socket to drain, so a slow reader holds at most one
  message here, never a queue; each message (and a close) must drain within
  ``chain_stream_send_timeout_ms`` or the connection is dropped and its slot
  freed, so a client that never reads cannot hold a slot for ever.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from aiohttp import WSCloseCode, web

from consensus.codec import encode
from consensus.proofs import CommitCertificate
from node.api.errors import ApiError
from node.api.ratelimit import REQUEST_COST, Client, body_cost
from node.runtime.chain import ChainHost
from node.runtime.config import NodeLimits
from node.runtime.storage import Store
from node.runtime.views import full_block_view
from node.sdk.chain_page import CertifiedHeader

# aiohttp's websocket ping, so a client that vanished without a close is noticed.
_PING_INTERVAL_S = 10.0
# The longest close reason a websocket close frame carries (RFC 6455, 5.5).
_MAX_CLOSE_REASON_BYTES = 123


class StreamBudget(Protocol):
    """The client budgets a stream charges (node/api/routes.py's AdmissionBudget)."""

    def client(self, request: web.Request) -> Client: ...

    def charge_client(self, client: Client, cost: int) -> None:
        """Charge ``cost`` or raise ApiError ``rate_limited``."""

    def charge_incurred_client(self, client: Client, cost: int) -> None: ...


class _SlowReader(Exception):
    """The client did not take a message within chain_stream_send_timeout_ms."""


@dataclass(frozen=True)
class _Stream:
    request: web.Request
    ws: web.WebSocketResponse
    client: Client
    # Reads (and discards) what the client sends; done when the client leaves.
    reader: asyncio.Task[None]


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
    return CertifiedHeader(latest.header, CommitCertificate(latest.certificate)).to_dict()


def page(
    engine: ChainHost, height: int, blocks: list[dict[str, object]], last_sent: int
) -> dict[str, object]:
    """A page of ``blocks`` whose last is ``last_sent``, with the tip when it is higher."""
    tip = tip_view(engine, height) if height > last_sent else None
    return {"height": height, "blocks": blocks, "tip": tip}


class ChainStreams:
    """The ``GET /v1/chain/stream`` handler and its counts of open streams."""

    def __init__(self, engine: ChainHost, limits: NodeLimits, budget: StreamBudget) -> None:
        self.engine = engine
        self.limits = limits
        self.budget = budget
        self.open = 0
        # Open streams by client address; an address leaves when its count is 0.
        self.open_by_address: dict[str, int] = {}
        self._send_timeout_s = limits.chain_stream_send_timeout_ms / 1000

    async def handle(
        self, request: web.Request, start: int, limit: int, blocks: bool
    ) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=_PING_INTERVAL_S)
        if not ws.can_prepare(request).ok:
            raise ApiError("bad_request", "the chain stream is a websocket")
        client = self.budget.client(request)
        self._admit(client[0])
        try:
            await ws.prepare(request)
            stream = _Stream(request, ws, client, asyncio.create_task(_read_until_closed(ws)))
            try:
                await self._serve(stream, start, limit, blocks)
            finally:
                stream.reader.cancel()
        finally:
            self._leave(client[0])
        return ws

    def _admit(self, address: str) -> None:
        """Count a new stream from ``address``, or refuse it with 503."""
        if self.open >= self.limits.max_chain_streams:
            raise ApiError("too_many_subscribers", "this node serves its maximum of chain streams")
        held = self.open_by_address.get(address, 0)
        if held >= self.limits.max_chain_streams_per_address:
            raise ApiError(
                "too_many_subscribers",
                f"this address holds {held} chain streams, the most one address may",
            )
        self.open += 1
        self.open_by_address[address] = held + 1

    def _leave(self, address: str) -> None:
        self.open -= 1
        held = self.open_by_address.pop(address) - 1
        if held:
            self.open_by_address[address] = held

    async def _serve(self, stream: _Stream, start: int, limit: int, blocks: bool) -> None:
        try:
            if blocks:
                await self._blocks(stream, start, limit)
            else:
                await self._tips(stream)
        except ApiError as refusal:
            # Over budget: a close the client can read, saying when to come back.
            await self._close(
                stream, WSCloseCode.TRY_AGAIN_LATER, f"{refusal.code}: {refusal.message}"
            )
        except _SlowReader:
            # A close frame would wait behind what the client is not reading.
            _abort(stream.request)
        except ConnectionResetError:
            pass

    async def _send(self, stream: _Stream, message: dict[str, object]) -> None:
        """Charge the client for ``message`` as for a chain page, then send it in time."""
        data = encode(message)
        self.budget.charge_client(stream.client, REQUEST_COST)
        self.budget.charge_incurred_client(stream.client, body_cost(len(data)))
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await stream.ws.send_bytes(data)
        except TimeoutError:
            raise _SlowReader from None

    async def _close(self, stream: _Stream, code: int, reason: str) -> None:
        """Close with ``reason``; a client that will not take the close is dropped."""
        message = reason.encode()[:_MAX_CLOSE_REASON_BYTES]
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await stream.ws.close(code=code, message=message)
        except TimeoutError:
            _abort(stream.request)

    async def _blocks(self, stream: _Stream, start: int, limit: int) -> None:
        next_height = start
        while not stream.ws.closed and not stream.reader.done():
            height = self.engine.store.height()
            if next_height <= height:
                blocks = chain_blocks(
                    self.engine.store, next_height, limit, self.limits.chain_page_bytes
                )
                next_height += len(blocks)
                await self._send(stream, page(self.engine, height, blocks, next_height - 1))
                continue
            if not await self._wait_for_block(stream.reader, self.limits.chain_stream_heartbeat_ms):
                await self._send(stream, {"height": height, "blocks": [], "tip": None})

    async def _tips(self, stream: _Stream) -> None:
        sent_height = 0
        sent_at = time.monotonic()
        interval_s = self.limits.chain_stream_tip_interval_ms / 1000
        while not stream.ws.closed and not stream.reader.done():
            height = self.engine.store.height()
            wait_s = sent_at + interval_s - time.monotonic()
            if height > sent_height and wait_s <= 0:
                await self._send(stream, page(self.engine, height, [], 0))
                sent_height, sent_at = height, time.monotonic()
                continue
            if height > sent_height:
                await asyncio.wait({stream.reader}, timeout=wait_s)
                continue
            if not await self._wait_for_block(stream.reader, self.limits.chain_stream_heartbeat_ms):
                await self._send(stream, {"height": height, "blocks": [], "tip": None})
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


def _abort(request: web.Request) -> None:
    """Drop the connection now, whatever is still buffered for it."""
    if request.transport is not None:
        request.transport.abort()
