"""A man in the middle between an observer and one validator.

:class:`MitmProxy` listens on 127.0.0.1 and relays everything to one
validator's client API, and forges every block it relays in one of the ways
of :data:`FORGERIES`.  The observer is configured with the proxy's URL as
that validator's ``api_url``, exactly as if the network path to it were
hostile, and must refuse every forged block while it follows the chain from
its honest sources.

What it relays, and where it forges:

* plain HTTP (``GET /v1/chain`` pages and anything else): a msgpack or JSON
  body is decoded, every block in it is forged, and it is encoded again (the
  canonical encoder, so a forged page is well-formed and only the checks on
  the block itself can catch it);
* a websocket (a pushed block stream): each text (JSON) or binary (msgpack)
  frame from the validator is forged the same way; frames the other way
  pass untouched;
* a streamed HTTP body with no length (one JSON or msgpack document per
  line): forged line by line.

A "block" is any map holding ``header`` and ``certificate`` (a full block
with its ``payloads``, or a tip without), wherever it sits in a document, with bytes as raw bytes (msgpack) or hex
strings (JSON); commits in a certificate as wire bytes, hex, or maps with a
``signature``.  Anything else passes untouched.

The proxy runs its own event loop in a thread (:func:`running_proxy`), so a
test's loop, the nodes and the proxy cannot stall one another.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import aiohttp
import msgpack
from aiohttp import web

from consensus.codec import encode
from consensus.messages import Commit
from consensus.wire import message_from_wire, message_to_wire

log = logging.getLogger("faults.mitm")

MSGPACK = "application/msgpack"
# Hop-by-hop headers and those the relay recomputes.
_DROPPED_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "content-encoding",
}
PROXY_TIMEOUT_S = 30
STARTUP_TIMEOUT_S = 10
# What a relay meets when its upstream is gone (stopped, killed, not yet
# listening) or leaves mid-stream: the client gets a 502 or a closed stream
# and the proxy one log line, never a traceback.
_UPSTREAM_GONE = (aiohttp.ClientError, OSError, TimeoutError)
# A forged time: an hour away from the real one, so no clock skew explains it.
TIME_SHIFT_MS = 3_600_000

Block = dict[str, object]


# ---------------------------------------------------------------- bytes as either form


def _raw(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return bytes.fromhex(value)
    raise TypeError(f"not bytes: {type(value).__name__}")


def _like(original: object, new: bytes) -> object:
    """``new`` in the form ``original`` had (hex for JSON, bytes for msgpack)."""
    return new.hex() if isinstance(original, str) else new


def _flip_last(value: object) -> object:
    data = bytearray(_raw(value))
    data[-1] ^= 0x01
    return _like(value, bytes(data))


# ---------------------------------------------------------------- commits in any form


def _commit_of(item: object) -> Commit:
    if isinstance(item, dict):
        return Commit(
            int(item["view"]),
            int(item["height"]),
            _raw(item["digest"]),
            int(item["sender"]),
            _raw(item["signature"]),
        )
    message = message_from_wire(_raw(item))
    assert isinstance(message, Commit), "a certificate holds commits"
    return message


def _commit_like(item: object, commit: Commit) -> object:
    if isinstance(item, dict):
        return {**item, "signature": _like(item["signature"], commit.signature)}
    return _like(item, message_to_wire(commit))


# ---------------------------------------------------------------- the forgeries


def drop_signature(block: Block, quorum: int) -> bool:
    """A certificate one signature short of a quorum (a validator's commit left out)."""
    certificate = list(block["certificate"])  # type: ignore[call-overload]
    block["certificate"] = certificate[: quorum - 1]
    return True


def duplicate_signature(block: Block, quorum: int) -> bool:
    """Quorum-many commits, but one validator's twice (only quorum-1 signers)."""
    certificate = list(block["certificate"])  # type: ignore[call-overload]
    block["certificate"] = [*certificate[: quorum - 1], certificate[0]]
    return True


def flip_byte(block: Block, quorum: int) -> bool:
    """One bit of one commit's signature flipped on the wire."""
    certificate = list(block["certificate"])  # type: ignore[call-overload]
    first = _commit_of(certificate[0])
    forged = dataclasses.replace(first, signature=_raw(_flip_last(first.signature)))
    certificate[0] = _commit_like(certificate[0], forged)
    block["certificate"] = certificate
    return True


def alter_payload(block: Block, quorum: int) -> bool:
    """One transaction changed (or, in an empty block, one slipped in).

    A tip (a header and certificate without payloads) has none to change.
    """
    if "payloads" not in block:
        return False
    payloads = list(block["payloads"])  # type: ignore[call-overload]
    if payloads:
        data = bytearray(_raw(payloads[0]))
        data[len(data) // 2] ^= 0x01
        payloads[0] = _like(payloads[0], bytes(data))
    else:
        payloads.append(b"a transaction nobody committed")
    block["payloads"] = payloads
    return True


def alter_state_root(block: Block, quorum: int) -> bool:
    """The state root the block certifies for an earlier height, changed."""
    header = dict(block["header"])  # type: ignore[call-overload]
    header["executed_results_root"] = _flip_last(header["executed_results_root"])
    block["header"] = header
    return True


def alter_time(block: Block, quorum: int) -> bool:
    """The block's time moved an hour, consistently (proposer time and block time)."""
    header = dict(block["header"])  # type: ignore[call-overload]
    header["proposer_time_ms"] = int(header["proposer_time_ms"]) + TIME_SHIFT_MS
    header["time_ms"] = int(header["time_ms"]) + TIME_SHIFT_MS
    block["header"] = header
    return True


# Forges a block in place; False when this forgery does not apply to it.
Forgery = Callable[[Block, int], bool]
FORGERIES: dict[str, Forgery] = {
    "drop_signature": drop_signature,
    "duplicate_signature": duplicate_signature,
    "flip_byte": flip_byte,
    "alter_payload": alter_payload,
    "alter_state_root": alter_state_root,
    "alter_time": alter_time,
}
# The observer's alert kind for each (node/runtime/follower.py): the header is kept
# self-consistent where the forger can, so the certificate is what catches
# all but a changed transaction, which the header's requests root catches.
EXPECTED_ALERT = {
    "drop_signature": "bad_certificate",
    "duplicate_signature": "bad_certificate",
    "flip_byte": "bad_certificate",
    "alter_payload": "tampered_transaction",
    "alter_state_root": "bad_certificate",
    "alter_time": "bad_certificate",
}


def _is_block(value: object) -> bool:
    """A full block, or a tip (its header and certificate, no payloads)."""
    return isinstance(value, dict) and {"header", "certificate"} <= set(value)


def forge_document(document: object, forge: Forgery, quorum: int) -> int:
    """Forge every block inside ``document`` in place; return how many."""
    if _is_block(document):
        assert isinstance(document, dict)
        return 1 if forge(document, quorum) else 0
    children: list[object] = []
    if isinstance(document, dict):
        children = list(document.values())
    elif isinstance(document, list):
        children = document
    return sum(forge_document(child, forge, quorum) for child in children)


# ---------------------------------------------------------------- the proxy


@dataclass
class MitmProxy:
    """Relay to ``upstream`` (a validator's API URL), forging blocks by ``mode``.

    ``mode`` may be changed while it runs (None relays honestly).  Counters
    say what it did, for the test's report: ``forged_tips`` and
    ``tip_streams`` are the part of ``forged_blocks`` and ``streams`` that
    went through tips-only chain streams (``blocks=0``), so the rest are
    full blocks an observer was served to store.
    """

    upstream: str
    quorum: int
    mode: str | None = None
    upstream_ssl: ssl.SSLContext | bool = False
    forged_blocks: int = 0
    forged_tips: int = 0
    relayed_requests: int = 0
    streams: int = 0
    tip_streams: int = 0
    upstream_failures: int = 0
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    def _forge(self, document: object, tips: bool) -> object:
        if self.mode is not None:
            forged = forge_document(document, FORGERIES[self.mode], self.quorum)
            self.forged_blocks += forged
            if tips:
                self.forged_tips += forged
        return document

    def forge_bytes(self, body: bytes, content_type: str, tips: bool = False) -> bytes:
        """A whole body forged (msgpack or JSON); anything else as it came.

        ``tips``: the body came through a tips-only stream (counted apart)."""
        if self.mode is None or not body:
            return body
        if content_type == MSGPACK:
            document = msgpack.unpackb(body, raw=False, strict_map_key=False)
            return encode(self._forge(document, tips))
        if content_type.endswith("json"):
            return json.dumps(self._forge(json.loads(body), tips)).encode()
        return body

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app: web.Application) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=PROXY_TIMEOUT_S)
        # Bodies arrive decompressed (the relay must read them to forge them),
        # so Content-Encoding is never passed on (_DROPPED_HEADERS).
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def _upstream_gone(self, request: web.Request, exc: BaseException) -> None:
        self.upstream_failures += 1
        log.info("relay of %s %s: upstream gone: %r", request.method, request.rel_url, exc)

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        self.relayed_requests += 1
        url = f"{self.upstream}{request.rel_url}"
        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._relay_websocket(request, url)
            return await self._relay_http(request, url)
        except aiohttp.WSServerHandshakeError as exc:
            # The validator refused the stream (503 too_many_subscribers, say):
            # the client sees its status, as it would without the proxy.
            return web.Response(status=exc.status, text=exc.message)
        except _UPSTREAM_GONE as exc:
            self._upstream_gone(request, exc)
            return web.Response(status=502, text="upstream unavailable")

    async def _relay_http(self, request: web.Request, url: str) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS}
        body = await request.read()
        async with self._session.request(
            request.method, url, headers=headers, data=body or None, ssl=self.upstream_ssl
        ) as upstream:
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROPPED_HEADERS}
            if upstream.content_length is None and upstream.headers.get("Transfer-Encoding"):
                return await self._relay_stream(request, upstream, kept)
            payload = await upstream.read()
            forged = self.forge_bytes(payload, upstream.content_type)
            return web.Response(status=upstream.status, body=forged, headers=kept)

    async def _relay_stream(
        self, request: web.Request, upstream: aiohttp.ClientResponse, headers: dict[str, str]
    ) -> web.StreamResponse:
        """A body with no length: one document per line, each forged as it passes."""
        self.streams += 1
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        kind = upstream.content_type
        try:
            async for line in upstream.content:
                stripped = line.rstrip(b"\n")
                try:
                    forged = self.forge_bytes(stripped, MSGPACK if kind == MSGPACK else "json")
                except ValueError:
                    forged = stripped  # not one document per line: relay as it came
                await response.write(forged + line[len(stripped) :])
        except _UPSTREAM_GONE as exc:
            # Too late for a 502: the client sees the body end short.
            self._upstream_gone(request, exc)
            return response
        await response.write_eof()
        return response

    async def _relay_websocket(self, request: web.Request, url: str) -> web.StreamResponse:
        """Both directions of a websocket, the validator's frames forged.

        The upstream is connected first, so a validator that is gone or
        refuses the stream answers the handshake (502, or its own status)
        instead of a stream that opens and closes at once."""
        assert self._session is not None
        tips = request.query.get("blocks") == "0"
        ws_url = url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        async with self._session.ws_connect(ws_url, ssl=self.upstream_ssl) as upstream:
            self.streams += 1
            self.tip_streams += int(tips)
            downstream = web.WebSocketResponse()
            await downstream.prepare(request)
            pumps = {
                asyncio.create_task(self._pump_down(upstream, downstream, tips)),
                asyncio.create_task(self._pump_up(downstream, upstream)),
            }
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pumps:
                task.cancel()
            # Retrieved, so a side that left mid-frame is one log line, not an
            # unretrieved task exception.
            for outcome in await asyncio.gather(*pumps, return_exceptions=True):
                if isinstance(outcome, _UPSTREAM_GONE):
                    self._upstream_gone(request, outcome)
        with contextlib.suppress(*_UPSTREAM_GONE):
            await downstream.close()
        return downstream

    async def _pump_down(
        self,
        upstream: aiohttp.ClientWebSocketResponse,
        downstream: web.WebSocketResponse,
        tips: bool,
    ) -> None:
        async for message in upstream:
            if message.type == aiohttp.WSMsgType.TEXT:
                forged = self.forge_bytes(message.data.encode(), "json", tips)
                await downstream.send_str(forged.decode())
            elif message.type == aiohttp.WSMsgType.BINARY:
                await downstream.send_bytes(self.forge_bytes(message.data, MSGPACK, tips))
            else:
                break

    @staticmethod
    async def _pump_up(
        downstream: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
    ) -> None:
        async for message in downstream:
            if message.type == aiohttp.WSMsgType.TEXT:
                await upstream.send_str(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                await upstream.send_bytes(message.data)
            else:
                break


@contextlib.contextmanager
def running_proxy(proxy: MitmProxy, port: int) -> Iterator[str]:
    """Serve ``proxy`` on 127.0.0.1:``port`` from a thread of its own; yield its URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(proxy.app())
    started = threading.Event()
    failure: list[BaseException] = []

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="mitm-proxy", daemon=True)
    thread.start()
    if not started.wait(STARTUP_TIMEOUT_S) or failure:
        loop.call_soon_threadsafe(loop.stop)
        raise RuntimeError(f"the proxy did not start: {failure}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STARTUP_TIMEOUT_S)
