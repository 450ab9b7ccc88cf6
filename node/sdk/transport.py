"""HTTP to a list of nodes with failover: the SDK's only network code.

Theory of operation
-------------------
Every call tries the nodes in order, starting from the last one that
answered (so a healthy node keeps the traffic and a dead one costs one
failed attempt, not one per call).  A node *failed* when the connection
fails or times out, when it answers 5xx (503 while starting or when it
cannot serve), when its answer is not JSON, or when it refuses a write
because it is a read-only observer: the call moves to the next node.  Any
other 4xx is the caller's mistake, the same on every node, so it is raised
at once as :class:`~node.sdk.errors.ProvenetError` with the node's code.
After a full pass with no answer the transport pauses and makes one more
pass (bounded: ``retry_rounds``), then raises
:class:`~node.sdk.errors.Unavailable` listing what each node said.

Only idempotent operations go through failover; submitting a transaction
is idempotent because the same signed bytes are sent again (see client.py).

Concurrency.  One client (one Transport) serves any number of concurrent
calls.  At most ``max_connections_per_node`` of them talk to one node at a
time (each holds one connection); the others wait their turn in the client,
and a call's ``timeout_s`` starts only when it has its connection, so a
queue of calls behind a slow but healthy node is not mistaken for a dead
node.  The wait in that queue is bounded by the calls ahead of it, each
bounded by its own timeout.  Set ``max_connections_per_node`` to the number
of calls you run at once (the default, 32, suits up to 32 concurrent calls
per node with no queueing), but keep it below the node's
``max_connections_per_address`` (64 by default): a node closes connections
past that cap at accept, and the client would see a dead node.
Event streams (websockets) hold a connection of their own outside this
count.

One client for every part of Provenet
-------------------------------------
This module is the only HTTP and websocket client code in node/: the SDK
(with failover, above), ``net up/status`` (:mod:`node.ops.netctl`: one
``GET`` to one node, run with ``asyncio.run``), the observer
(:mod:`node.runtime.follower`: msgpack pages with a size cap, and chain
streams) and load generators all use it (tests/test_one_http_client.py
fails on any other client code in node/, bar the validators' peer links).
The pieces they share:

* :meth:`Transport.fetch`: one request to one node, no failover, no
  retry; the :class:`Reply` (status, body bytes, Retry-After) whatever the
  status, or :class:`NodeFailed` when the node could not be reached, timed
  out, or sent more than ``max_body_bytes``.  :meth:`Transport.request`
  is ``fetch`` plus the SDK's reading of the answer (JSON, ProvenetError
  for a 4xx, NodeFailed for a 5xx).
* :meth:`Transport.websocket`: a websocket to one node, its handshake
  bounded, :class:`StreamRefused` when the node answers with plain HTTP,
  and a close that cannot hang on a silent peer.
* :class:`RetryPolicy`: how many passes and how long to pause between
  attempts, the one back-off rule (the failover's passes, the observer's
  reconnects, the health polls of ``net up``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from node.sdk.errors import ProvenetError, Unavailable

T = TypeVar("T")

MSGPACK = "application/msgpack"
JSON = "application/json"
# Where a node pushes its chain to observers over a websocket (node/api/chain_stream.py).
STREAM_PATH = "/v1/chain/stream"
# An observer refuses writes; another node may accept the same request.
_MOVE_ON_CODES = frozenset({"read_only"})


class NodeFailed(Exception):
    """One node did not answer usefully; the caller tries the next one.

    ``kind`` names the failure for counting (a load generator tallies them):
    the class of the network library's exception when there was one
    ("ClientConnectorError", "TimeoutError"), else this exception's class.
    """

    def __init__(self, reason: str, kind: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind or type(self).__name__


class StreamRefused(NodeFailed):
    """The node answered a websocket upgrade with plain HTTP (it has no stream there)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.message = message


# A pause that grows from zero would stay zero; growth starts from at least this.
_MIN_GROWING_PAUSE_S = 0.001
# Enough doublings to reach any pause a caller may cap at (and no float overflow).
_MAX_GROWTH_STEPS = 64


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try again and how long to pause before each retry.

    ``rounds`` bounds the attempts where a caller stops (the failover's full
    passes over the nodes; 1 means no retry); a caller that never gives up
    (the observer reconnecting to a validator) ignores it.  The pause before
    retry ``k`` (1 = the first) is ``first_pause_s``, then ``factor`` times
    the previous one up to ``max_pause_s`` (a first pause from zero grows
    from 1 ms).
    """

    rounds: int = 2
    first_pause_s: float = 0.25
    max_pause_s: float = 2.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError("a retry policy needs at least one round")
        if self.first_pause_s < 0 or self.max_pause_s < 0 or self.factor < 1:
            raise ValueError("pauses must not be negative, and factor must be at least 1")

    def pause_s(self, retry: int) -> float:
        """The pause before retry number ``retry`` (1 = the first retry)."""
        if retry <= 1:
            return self.first_pause_s
        start = max(self.first_pause_s, _MIN_GROWING_PAUSE_S)
        grown = start * self.factor ** min(retry - 1, _MAX_GROWTH_STEPS)
        return min(self.max_pause_s, grown)


@dataclass(frozen=True)
class Reply:
    """One node's answer to one request, whatever its status."""

    status: int
    body: bytes
    retry_after: str | None = None

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except (ValueError, UnicodeDecodeError):
            return None


def _strip(url: str) -> str:
    return url.rstrip("/")


def api_error(status: int, document: object, retry_after: str | None) -> ProvenetError:
    """The ProvenetError for a node's error answer (falls back to the HTTP status)."""
    error = document.get("error") if isinstance(document, dict) else None
    code = str(error.get("code", f"http_{status}")) if isinstance(error, dict) else f"http_{status}"
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    try:
        retry_after_s = float(retry_after) if retry_after is not None else None
    except ValueError:
        retry_after_s = None
    return ProvenetError(code, message or f"HTTP {status}", status, retry_after_s)


# Requests one client runs at once against one node, by default (see
# "Concurrency" above).  A node closes connections past its per-address cap
# (limits.max_connections_per_address, 64 by default) at accept, which a client
# would see as a dead node; so one client stays well under it, leaving room for
# other processes at its address.
MAX_CONNECTIONS_PER_NODE = 32


class Transport:
    """A list of node API URLs, one aiohttp session, and the failover rule."""

    def __init__(
        self,
        nodes: list[str],
        ssl_context: ssl.SSLContext | bool | None = None,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        retry_rounds: int = 2,
        retry_pause_s: float = 0.25,
        max_connections_per_node: int = MAX_CONNECTIONS_PER_NODE,
        read_timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``ssl_context``: the network CA's context; None verifies against
        the system's CAs; False encrypts without verifying (for a caller
        that checks every answer by its signatures, as the observer does).
        ``read_timeout_s`` bounds each read from a node (and a websocket
        handshake), beside ``timeout_s`` for the whole request.  ``retry``
        replaces ``retry_rounds`` and ``retry_pause_s`` when given.
        """
        if not nodes:
            raise ValueError("a client needs at least one node URL")
        if max_connections_per_node < 1:
            raise ValueError("max_connections_per_node must be at least 1")
        if retry is None:
            retry = RetryPolicy(
                rounds=max(1, retry_rounds),
                first_pause_s=retry_pause_s,
                max_pause_s=max(retry_pause_s, RetryPolicy.max_pause_s),
            )
        self.nodes = [_strip(url) for url in nodes]
        self.max_connections_per_node = max_connections_per_node
        # One slot per connection a call may hold to a node, taken before the
        # call's timeout starts (created with the session, on its loop).
        self._slots: dict[str, asyncio.Semaphore] = {}
        self.preferred = 0
        self.timeout_s = timeout_s
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self.retry = retry
        self._session: aiohttp.ClientSession | None = None

    # ---------------------------------------------------------------- session

    def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use inside the running loop."""
        if self._session is None or self._session.closed:
            # No pool limit in aiohttp itself: its wait for a free connection
            # would count against the request's timeout.  The slots below cap
            # requests per node instead, and event streams come on top.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            # Requests pass their own timeout; this one bounds websocket handshakes.
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=self._connect_timeout_s, sock_read=self._read_timeout_s
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, raise_for_status=False
            )
            self._slots = {}
        return self._session

    def _slot(self, base_url: str) -> asyncio.Semaphore:
        slot = self._slots.get(base_url)
        if slot is None:
            slot = self._slots[base_url] = asyncio.Semaphore(self.max_connections_per_node)
        return slot

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    @property
    def ssl(self) -> ssl.SSLContext | bool:
        return self._ssl

    def timeout(self, wait_s: float = 0.0) -> aiohttp.ClientTimeout:
        """A request may take its own timeout plus however long it asked the node to wait.

        The clock starts when the request has its connection slot (see
        "Concurrency" in the module docstring), not when it is queued.
        """
        return aiohttp.ClientTimeout(
            total=self.timeout_s + wait_s,
            sock_connect=self._connect_timeout_s,
            sock_read=self._read_timeout_s,
        )

    # ---------------------------------------------------------------- one node

    async def fetch(
        self,
        base_url: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: object = None,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str = JSON,
        wait_s: float = 0.0,
        max_body_bytes: int | None = None,
    ) -> Reply:
        """One request to one node, no failover: its :class:`Reply` whatever the
        status, or NodeFailed when it could not be reached, timed out or sent
        more than ``max_body_bytes``."""
        headers = {"Accept": accept}
        if content_type is not None:
            headers["Content-Type"] = content_type
        data = body
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = JSON
        session = self.session()
        try:
            async with (
                self._slot(base_url),
                session.request(
                    method,
                    base_url + path,
                    params=params,
                    data=data,
                    headers=headers,
                    ssl=self._ssl,
                    timeout=self.timeout(wait_s),
                ) as response,
            ):
                raw = await _read_body(response, max_body_bytes)
                return Reply(response.status, raw, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeFailed(describe_failure(exc), type(exc).__name__) from None

    async def request(
        self,
        base_url: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: object = None,
        body: bytes | None = None,
        content_type: str | None = None,
        wait_s: float = 0.0,
    ) -> Any:
        """One request to one node: its JSON answer, ProvenetError, or NodeFailed."""
        reply = await self.fetch(
            base_url,
            method,
            path,
            params=params,
            json_body=json_body,
            body=body,
            content_type=content_type,
            wait_s=wait_s,
        )
        return _interpret(reply.status, reply.body, reply.retry_after)

    @contextlib.asynccontextmanager
    async def websocket(
        self,
        base_url: str,
        path: str,
        *,
        max_msg_size: int,
        handshake_timeout_s: float | None = None,
        close_timeout_s: float | None = None,
        heartbeat_s: float | None = None,
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """A websocket to ``path`` on one node (not counted in the connection slots).

        The handshake is bounded by ``handshake_timeout_s`` (default: the
        request timeout); a node that answers it with plain HTTP raises
        :class:`StreamRefused`, one that cannot be reached NodeFailed.  On
        leaving, a clean close waits for the node's close frame at most
        ``close_timeout_s`` (default: the read timeout, else the request
        timeout): a hung or lying node may never send it, or put it off
        with more messages, and then the connection is dropped instead.
        Errors inside the ``async with`` body pass through unchanged.
        """
        handshake_s = self.timeout_s if handshake_timeout_s is None else handshake_timeout_s
        try:
            async with asyncio.timeout(handshake_s):
                ws = await self.session().ws_connect(
                    self.ws_url(base_url, path),
                    ssl=self._ssl,
                    max_msg_size=max_msg_size,
                    heartbeat=heartbeat_s,
                )
        except aiohttp.WSServerHandshakeError as exc:
            raise StreamRefused(exc.status, exc.message) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeFailed(describe_failure(exc), type(exc).__name__) from None
        if close_timeout_s is None:
            close_timeout_s = self._read_timeout_s or self.timeout_s
        try:
            yield ws
        finally:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a
            # cancellation that arrives as the close completes, and the task
            # that was told to stop would carry on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(close_timeout_s):
                    await ws.close()

    # ---------------------------------------------------------------- failover

    def rotation(self, start: int | None = None) -> list[int]:
        """Node indices in the order to try them: ``start`` (by default the
        last good one) first."""
        count = len(self.nodes)
        first = self.preferred if start is None else start
        return [(first + step) % count for step in range(count)]

    async def failover(
        self, operation: Callable[[str], Awaitable[T]], start: int | None = None
    ) -> T:
        """Run ``operation(base_url)`` on each node in turn until one answers.

        ``start`` asks a given node first (one call's own choice, which
        leaves the client's preferred node as it was); by default the
        rotation starts at the preferred node and moves it to whichever
        answered.
        """
        errors: list[tuple[str, str]] = []
        for round_index in range(self.retry.rounds):
            if round_index:
                await asyncio.sleep(self.retry.pause_s(round_index))
            for index in self.rotation(start):
                url = self.nodes[index]
                try:
                    result = await operation(url)
                except NodeFailed as failure:
                    errors.append((url, failure.reason))
                    continue
                except ProvenetError as error:
                    if error.code not in _MOVE_ON_CODES:
                        raise
                    errors.append((url, error.code))
                    continue
                if start is None:
                    self.preferred = index
                return result
        raise Unavailable(errors)

    async def call(self, method: str, path: str, start: int | None = None, **options: Any) -> Any:
        """``request`` on the first node that answers (from ``start``, see failover)."""
        return await self.failover(
            lambda url: self.request(url, method, path, **options), start=start
        )

    def ws_url(self, base_url: str, path: str) -> str:
        """The websocket URL for ``path`` on a node (http -> ws, https -> wss)."""
        if base_url.startswith("https://"):
            return "wss://" + base_url[len("https://") :] + path
        if base_url.startswith("http://"):
            return "ws://" + base_url[len("http://") :] + path
        return base_url + path


def describe_failure(exc: BaseException) -> str:
    """One line on why a node could not be reached."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "its TLS certificate is not trusted (is this the network's CA file?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _os_reason(error: OSError) -> str:
    """The operating system's words for a failed connection ("Connection refused")."""
    if isinstance(error, socket.gaierror) or not error.errno or error.errno < 0:
        return str(error.strerror or error)
    return os.strerror(error.errno)


async def _read_body(response: aiohttp.ClientResponse, max_body_bytes: int | None) -> bytes:
    """The whole body, refused as soon as it passes ``max_body_bytes`` (if given)."""
    if max_body_bytes is None:
        return await response.read()
    body = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > max_body_bytes:
            raise NodeFailed(f"the answer exceeds {max_body_bytes} bytes")
    return bytes(body)


def _interpret(status: int, raw: bytes, retry_after: str | None) -> Any:
    try:
        document = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        document = None
        # A success that is not JSON is a broken node; an error keeps its status.
        if status < 400:
            raise NodeFailed(f"HTTP {status} with a body that is not JSON") from None
    if status >= 500:
        error = api_error(status, document, retry_after)
        raise NodeFailed(f"HTTP {status} {error.code}")
    if status >= 400:
        raise api_error(status, document, retry_after)
    return document
