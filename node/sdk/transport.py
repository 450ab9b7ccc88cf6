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
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from node.sdk.errors import ProvenetError, Unavailable

T = TypeVar("T")

MSGPACK = "application/msgpack"
# Where a node pushes its chain to observers over a websocket (node/api/chain_stream.py).
STREAM_PATH = "/v1/chain/stream"
# An observer refuses writes; another node may accept the same request.
_MOVE_ON_CODES = frozenset({"read_only"})


class NodeFailed(Exception):
    """One node did not answer usefully; the caller tries the next one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        retry_rounds: int = 2,
        retry_pause_s: float = 0.25,
        max_connections_per_node: int = MAX_CONNECTIONS_PER_NODE,
    ) -> None:
        if not nodes:
            raise ValueError("a client needs at least one node URL")
        if max_connections_per_node < 1:
            raise ValueError("max_connections_per_node must be at least 1")
        self.nodes = [_strip(url) for url in nodes]
        self.max_connections_per_node = max_connections_per_node
        # One slot per connection a call may hold to a node, taken before the
        # call's timeout starts (created with the session, on its loop).
        self._slots: dict[str, asyncio.Semaphore] = {}
        self.preferred = 0
        self.timeout_s = timeout_s
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._connect_timeout_s = connect_timeout_s
        self._retry_rounds = max(1, retry_rounds)
        self._retry_pause_s = retry_pause_s
        self._session: aiohttp.ClientSession | None = None

    # ---------------------------------------------------------------- session

    def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use inside the running loop."""
        if self._session is None or self._session.closed:
            # No pool limit in aiohttp itself: its wait for a free connection
            # would count against the request's timeout.  The slots below cap
            # requests per node instead, and event streams come on top.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
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
            total=self.timeout_s + wait_s, sock_connect=self._connect_timeout_s
        )

    # ---------------------------------------------------------------- one node

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
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        data = body if body is not None else None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
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
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeFailed(describe_failure(exc)) from None
        return _interpret(status, raw, retry_after)

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
        for round_index in range(self._retry_rounds):
            if round_index:
                await asyncio.sleep(self._retry_pause_s * round_index)
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
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


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
