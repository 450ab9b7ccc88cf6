"""All of the benchmarks' HTTP: one request to one node, and a node's block stream.

This module is the only place in benchkit that imports an HTTP library, so
its body can move onto the SDK's transport (node/sdk/transport.py) without
touching the benchmarks.  The SDK transport does not serve the load
generator yet: it always asks for JSON answers and fails over between
nodes, while a benchmark sends msgpack to one chosen node, reads msgpack
back (the node encodes less) and counts every refusal itself.

Failures to reach a node come out as :class:`TransportError`, whatever the
library underneath; an answer that is not in the format asked for has the
body None.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from consensus.codec import decode

JSON = "application/json"
MSGPACK = "application/msgpack"
# aiohttp's own defaults, written out so each benchmark says what it changes.
DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 30.0
# Pause before subscribing again after a block stream closed or failed.
RECONNECT_DELAY_S = 0.05


class TransportError(Exception):
    """A node could not be reached or did not answer in time."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}" if message else kind)
        # The failure's kind (the underlying exception's class name), for counting.
        self.kind = kind


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


def ws_url(api_url: str) -> str:
    """The websocket URL of a node's API URL (http -> ws, https -> wss)."""
    return api_url.replace("http", "ws", 1)


def _decode(raw: bytes, accept: str) -> Any:
    try:
        if accept == MSGPACK:
            return decode(raw)
        return json.loads(raw) if raw else None
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


class NodeHttp:
    """One connection pool to the nodes of a network; use it as an async context manager.

    At most ``max_connections`` requests are on the wire at once (0: no
    limit); a request fails after ``timeout_s`` (None: never), or after
    ``connect_timeout_s`` without a connection.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float | None = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else False
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> NodeHttp:
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("NodeHttp is used outside its 'async with'")
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        *,
        content_type: str = MSGPACK,
        accept: str = JSON,
        timeout_s: float | None = None,
    ) -> Answer:
        """One request; the answer whatever its status, or TransportError."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s is not None else None
        try:
            async with self._open().request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as response:
                raw = await response.read()
                return Answer(response.status, _decode(raw, accept))
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            raise TransportError(type(exc).__name__, str(exc)) from exc

    async def get_json(self, url: str, timeout_s: float | None = None) -> Any:
        """The JSON body of a GET, whatever its status."""
        return (await self.send("GET", url, timeout_s=timeout_s)).body

    async def follow_events(
        self,
        api_url: str,
        next_height: Callable[[], int],
        on_frame: Callable[[float, str], None],
        *,
        on_open: Callable[[], None] = lambda: None,
        on_drop: Callable[[TransportError | None], None] = lambda error: None,
        heartbeat_s: float | None = None,
    ) -> None:
        """Follow a node's ``GET /v1/events`` until cancelled.

        Each text frame goes to ``on_frame`` with its arrival time
        (``time.monotonic()``, taken before anything parses it).  When the
        stream closes or fails, ``on_drop`` hears why (None: it closed) and
        the subscription starts again from ``next_height()``.
        """
        base = ws_url(api_url) + "/v1/events"
        while True:
            error: TransportError | None = None
            try:
                async with self._open().ws_connect(
                    f"{base}?from_height={next_height()}",
                    max_msg_size=0,
                    heartbeat=heartbeat_s,
                ) as ws:
                    on_open()
                    async for message in ws:
                        seen = time.monotonic()
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        on_frame(seen, message.data)
            except (aiohttp.ClientError, OSError) as exc:
                error = TransportError(type(exc).__name__, str(exc))
            on_drop(error)
            await asyncio.sleep(RECONNECT_DELAY_S)
