"""All of the benchmarks' HTTP: one request to one node, and a node's block stream.

A thin layer over the SDK's transport (:mod:`node.sdk.transport`), the one
HTTP client of the project: :meth:`NodeHttp.send` is the transport's
``fetch`` (one request to one node, no failover, the answer whatever its
status) with the body decoded as asked, and :meth:`NodeHttp.follow_events`
keeps a transport websocket on ``GET /v1/events`` open.  A benchmark sends
msgpack to one chosen node, reads msgpack back (the node encodes less) and
counts every refusal itself.

Failures to reach a node come out as the transport's
:class:`~node.sdk.transport.NodeFailed`, whose ``kind`` (the network
library's exception class) the benchmarks count; an answer that is not in
the format asked for has the body None.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

# Only for the stream's message types and the errors a stream may raise once
# open, which the transport passes through; every connection is the transport's.
import aiohttp

from consensus.codec import decode
from node.sdk.transport import (
    JSON,
    MAX_CONNECTIONS_PER_NODE,
    MSGPACK,
    NodeFailed,
    RetryPolicy,
    Transport,
    describe_failure,
)

__all__ = ["JSON", "MSGPACK", "Answer", "NodeFailed", "NodeHttp", "ssl_for_ca_file"]

# A request's whole time, and a block stream's handshake.
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 30.0
# Pause before subscribing again after a block stream closed or failed.
RECONNECT_DELAY_S = 0.05
EVENTS_PATH = "/v1/events"


@dataclass(frozen=True)
class Answer:
    """A node's answer: its HTTP status and body decoded as asked (None if it was not)."""

    status: int
    body: Any


def ssl_for_ca_file(ca_file: str | None) -> ssl.SSLContext | None:
    """The client TLS context for a network's CA file; None for plain HTTP."""
    if ca_file is None:
        return None
    from node.sdk.tls import client_context

    return client_context(Path(ca_file))


def _msgpack_or_none(raw: bytes) -> Any:
    try:
        return decode(raw)
    except ValueError:
        return None


class NodeHttp:
    """The transport to the nodes of a network; use it as an async context manager.

    ``nodes`` are the API URLs it will talk to.  At most
    ``max_connections_per_node`` requests are on the wire to one node at
    once; a request fails after ``timeout_s`` (counted once it has its
    connection), or after ``connect_timeout_s`` without one; a block
    stream's handshake fails after ``handshake_timeout_s``.
    """

    def __init__(
        self,
        nodes: Sequence[str],
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_connections_per_node: int = MAX_CONNECTIONS_PER_NODE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        handshake_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._nodes = list(nodes)
        # Plain HTTP without a CA; a benchmark never relies on the system's CAs.
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else False
        self._max_connections_per_node = max_connections_per_node
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._handshake_timeout_s = handshake_timeout_s
        self._transport: Transport | None = None

    async def __aenter__(self) -> NodeHttp:
        self._transport = Transport(
            self._nodes,
            self._ssl,
            timeout_s=self._timeout_s,
            connect_timeout_s=self._connect_timeout_s,
            max_connections_per_node=self._max_connections_per_node,
            retry=RetryPolicy(rounds=1),
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    def _open(self) -> Transport:
        if self._transport is None:
            raise RuntimeError("NodeHttp is used outside its 'async with'")
        return self._transport

    async def send(
        self,
        method: str,
        api_url: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str = MSGPACK,
        accept: str = JSON,
    ) -> Answer:
        """One request to one node; the answer whatever its status, or NodeFailed."""
        reply = await self._open().fetch(
            api_url,
            method,
            path,
            body=body,
            content_type=content_type if body is not None else None,
            accept=accept,
        )
        decoded = _msgpack_or_none(reply.body) if accept == MSGPACK else reply.json()
        return Answer(reply.status, decoded)

    async def get_json(self, api_url: str, path: str) -> Any:
        """The JSON body of a GET, whatever its status."""
        return (await self.send("GET", api_url, path)).body

    async def follow_events(
        self,
        api_url: str,
        next_height: Callable[[], int],
        on_frame: Callable[[float, str], None],
        *,
        on_open: Callable[[], None] = lambda: None,
        on_drop: Callable[[NodeFailed | None], None] = lambda error: None,
        heartbeat_s: float | None = None,
    ) -> None:
        """Follow a node's ``GET /v1/events`` until cancelled.

        Each text frame goes to ``on_frame`` with its arrival time
        (``time.monotonic()``, taken before anything parses it).  When the
        stream closes or fails, ``on_drop`` hears why (None: it closed) and
        the subscription starts again from ``next_height()``.
        """
        transport = self._open()
        while True:
            error: NodeFailed | None = None
            try:
                async with transport.websocket(
                    api_url,
                    f"{EVENTS_PATH}?from_height={next_height()}",
                    max_msg_size=0,
                    handshake_timeout_s=self._handshake_timeout_s,
                    heartbeat_s=heartbeat_s,
                ) as ws:
                    on_open()
                    async for message in ws:
                        seen = time.monotonic()
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        on_frame(seen, message.data)
            except NodeFailed as failure:
                error = failure
            except (aiohttp.ClientError, OSError) as exc:  # the open stream broke
                error = NodeFailed(describe_failure(exc), type(exc).__name__)
            on_drop(error)
            await asyncio.sleep(RECONNECT_DELAY_S)
