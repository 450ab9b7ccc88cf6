"""Authenticated websocket links between validators.

Theory of operation
-------------------
Each validator dials every other validator once and uses that connection
only to send; it receives on the connections the others dial to it.  So a
pair of validators shares two one-way links, and neither side ever has to
decide which of two crossing connections wins.

Link handshake (on top of mutual TLS when it is on)::

    dialer                                   listener
      |  <-- {chain_id, replica_id, challenge}  |   32 fresh random bytes
      |  --> {replica_id, signature}        --> |   Ed25519 over
      |                                         |   ("peer-hello", chain_id, [challenge, dialer, listener])

The listener accepts the link only if the signature is the claimed
validator's (and, with TLS, the certificate's common name is that
validator's name).  A key that is not a validator, a bad handshake or a
malformed frame closes that connection only.  After the handshake every
frame is one message in consensus/wire.py's strict form; signed messages
have their signature checked here, against the signer named in the message
(checkpoint proofs and equivocation evidence are relayed), before they are
queued for the replica task.  A frame that decodes but fails its check is
a peer misbehaving: it is dropped and counted, and the link stays up.

Until its handshake is done a caller is a stranger who can make the node
buffer one frame, so pending handshakes are bounded (:class:`PendingHandshakes`):
per TLS identity (the certificate's name), per client address, and in all
for callers whose certificate does not name a validator, each within
``peer_handshake_timeout_ms``.  A full table closes a stranger's pending
handshake (the oldest from the address holding the most) to make room
rather than refuse the newcomer, and a validator's certificate counts only
against its own per-identity limit: a real validator's link is never
refused because others hold handshakes open.  Without TLS nobody is known
before the signed hello, so the per-address limit and that eviction are
all that stand for it (a validator is evicted only if strangers from as
many addresses as there are slots hold one each); run TLS between hosts
you do not control.

Sending never blocks the replica task: frames go into a bounded queue per
peer (the oldest is dropped and counted when it is full: consensus re-sends
what matters), and a task per peer reconnects with exponential back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import ssl
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import aiohttp
from aiohttp import web

from consensus.codec import DecodeError, Limits, Signer, Verifier, decode, encode, signing_bytes
from consensus.config import ReplicaConfig
from consensus.messages import ForwardedRequest, Message, StateResponse, signature_valid
from consensus.quorum import ValidatorSet
from consensus.wire import (
    GOVERNED_MAX_VALIDATOR_ID,
    frame_limits,
    honest_frame_bounds,
    message_from_wire,
)
from node.runtime.config import NodeLimits, PeerEntry
from node.runtime.listener.connections import ByAddress, address_key
from node.runtime.listener.port import mark_authenticated
from node.runtime.metrics import NodeMetrics

log = logging.getLogger("provenet.peers")

HELLO_DOMAIN = "peer-hello"
CHALLENGE_BYTES = 32
# Both hello messages are one flat map of at most three fields (7 values).
HELLO_LIMITS = Limits(
    max_size_bytes=1024,
    max_depth=1,
    max_collection_len=8,
    max_str_len=256,
    max_bytes_len=128,
    max_objects=16,
    max_containers=1,
)
# websocket close codes (RFC 6455): policy violation, bad data, unsupported data.
CLOSE_POLICY = 1008
CLOSE_BAD_DATA = 1007
CLOSE_UNSUPPORTED = 1003


class HandshakeError(Exception):
    pass


def hello_bytes(chain_id: str, challenge: bytes, dialer: int, listener: int) -> bytes:
    return signing_bytes(HELLO_DOMAIN, chain_id, [challenge, dialer, listener])


@dataclass(frozen=True)
class PeerIdentity:
    """Who this node is on the peer links, and whom it trusts."""

    chain_id: str
    me: int
    signer: Signer
    validators: ValidatorSet
    # Validator id -> node name, which is the CN of its TLS certificate.
    names: dict[int, str]


def read_challenge(data: bytes, chain_id: str, listener: int) -> bytes:
    """The challenge in a listener's first frame; :class:`HandshakeError` if
    it is malformed or comes from another chain or another validator."""
    try:
        hello = decode(data, HELLO_LIMITS)
    except DecodeError as exc:
        raise HandshakeError(f"malformed challenge: {exc}") from None
    if not isinstance(hello, dict) or hello.get("chain_id") != chain_id:
        raise HandshakeError("peer is on another chain")
    claimed = hello.get("replica_id")
    # Exact types: True == 1 in Python, and a listener is never a boolean.
    if type(claimed) is not int or claimed != listener:
        raise HandshakeError(f"peer claims to be {claimed!r}, expected {listener}")
    challenge = hello.get("challenge")
    if not isinstance(challenge, bytes) or len(challenge) != CHALLENGE_BYTES:
        raise HandshakeError("bad challenge")
    return challenge


def read_hello_reply(
    data: bytes, identity: PeerIdentity, challenge: bytes, verify: Verifier
) -> int:
    """The validator that answered ``challenge`` with the reply ``data``, or
    :class:`HandshakeError` with a stable code (a metrics label)."""
    try:
        hello = decode(data, HELLO_LIMITS)
    except DecodeError:
        raise HandshakeError("handshake_malformed") from None
    if not isinstance(hello, dict):
        raise HandshakeError("handshake_malformed")
    peer_id = hello.get("replica_id")
    signature = hello.get("signature")
    if (
        type(peer_id) is not int
        or not identity.validators.contains(peer_id)
        or peer_id == identity.me
    ):
        raise HandshakeError("not_a_validator")
    if not isinstance(signature, bytes) or not verify(
        identity.validators.key_of(peer_id),
        hello_bytes(identity.chain_id, challenge, peer_id, identity.me),
        signature,
    ):
        raise HandshakeError("bad_handshake_signature")
    return peer_id


class _Outbound:
    """One peer's send queue, bounded in frames and bytes, and its link state."""

    def __init__(self, peer: PeerEntry, limits: NodeLimits) -> None:
        self.peer = peer
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.max_frames = max(1, limits.peer_queue_max_frames)
        self.max_bytes = max(1, limits.peer_queue_max_bytes)
        self.ready = asyncio.Event()
        self.connected = False
        self.dropped = 0

    def push(self, frame: bytes) -> bool:
        """Queue ``frame``; False when older frames had to go to make room."""
        dropped_before = self.dropped
        while self.queue and (
            len(self.queue) >= self.max_frames or self.queued_bytes + len(frame) > self.max_bytes
        ):
            self.queued_bytes -= len(self.queue.popleft())
            self.dropped += 1
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        self.ready.set()
        return self.dropped == dropped_before

    def sent_one(self) -> None:
        self.queued_bytes -= len(self.queue.popleft())


@dataclass(eq=False)
class PendingHandshake:
    """One inbound link between its websocket upgrade and its signed hello."""

    address: str
    # The TLS certificate's common name, when the peer port runs TLS.
    identity: str | None
    # The certificate names a validator: exempt from the stranger limits.
    validator: bool
    close: Callable[[], None] = field(repr=False)
    evicted: bool = False


class PendingHandshakes:
    """Pending link handshakes, bounded per identity, per address and for strangers; no I/O."""

    def __init__(self, max_strangers: int, per_identity: int, per_address: int) -> None:
        self.max_strangers = max(1, max_strangers)
        self.per_identity = max(1, per_identity)
        self.per_address = max(1, per_address)
        self._strangers: ByAddress[PendingHandshake] = ByAddress()
        self._validators: set[PendingHandshake] = set()
        self._by_identity: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._strangers) + len(self._validators)

    def admit(self, entry: PendingHandshake) -> str | None:
        """Hold ``entry``; the refusal reason when a limit says no.

        A full stranger table closes (``close()``) one of its entries
        instead of refusing: the oldest from the address holding the most
        (``ByAddress.victim``).  The newcomer may be a validator that needs
        one round trip, and strangers then only churn each other.
        """
        if entry.identity is not None and self._by_identity[entry.identity] >= self.per_identity:
            return "handshakes_per_identity"
        if entry.validator:
            self._validators.add(entry)
        else:
            if self._strangers.count(entry.address) >= self.per_address:
                return "handshakes_per_address"
            if len(self._strangers) >= self.max_strangers:
                victim = self._strangers.victim()
                assert victim is not None
                self.done(victim)
                victim.evicted = True
                victim.close()
            self._strangers.add(entry, entry.address)
        if entry.identity is not None:
            self._by_identity[entry.identity] += 1
        return None

    def done(self, entry: PendingHandshake) -> None:
        """Forget ``entry`` (finished, failed or evicted); calling twice is harmless."""
        if entry in self._validators:
            self._validators.discard(entry)
        elif not self._strangers.remove(entry):
            return
        if entry.identity is not None:
            self._by_identity[entry.identity] -= 1
            if self._by_identity[entry.identity] <= 0:
                del self._by_identity[entry.identity]


class PeerLinks:
    def __init__(
        self,
        identity: PeerIdentity,
        peers: tuple[PeerEntry, ...],
        limits: NodeLimits,
        verify: Verifier,
        sink: Callable[[int, Message], bool],
        metrics: NodeMetrics,
        client_ssl: ssl.SSLContext | None,
        tls_required: bool,
        consensus: ReplicaConfig,
        max_validators: int = 0,
    ) -> None:
        self.identity = identity
        self.limits = limits
        self._verify = verify
        self._sink = sink
        self.metrics = metrics
        self._client_ssl = client_ssl
        self._tls_required = tls_required
        # Frames are bounded by what the largest honest frame under this
        # network's consensus configuration needs (consensus/wire.py
        # honest_frame_bounds: a NEW-VIEW), in bytes, values and containers,
        # so a peer's frame costs at most about what an honest one does.
        # On a governed chain (max_validators > 0) they are sized for the
        # largest set governance may make, and any validator id.
        self._wire_limits = frame_limits(
            consensus,
            limits.max_frame_bytes,
            max_validators=max_validators,
            max_validator_id=GOVERNED_MAX_VALIDATOR_ID if max_validators else 0,
        )
        self.max_frame_bytes = self._wire_limits.codec.max_size_bytes
        # The warning is about the set configured now: a governed chain's
        # largest set (64) would always exceed the default frame.
        honest_bytes = honest_frame_bounds(
            consensus, self._wire_limits.max_payload_bytes
        ).size_bytes
        if honest_bytes > limits.max_frame_bytes:
            log.warning(
                "a full NEW-VIEW may take %d bytes, over limits.max_frame_bytes (%d): "
                "raise it or lower consensus.window_size or max_batch_bytes",
                honest_bytes,
                limits.max_frame_bytes,
            )
        self._pending = PendingHandshakes(
            limits.max_pending_handshakes,
            limits.max_pending_handshakes_per_identity,
            limits.max_pending_handshakes_per_address,
        )
        self._outbound = {peer.replica_id: _Outbound(peer, limits) for peer in peers}
        self._link_tasks: dict[int, asyncio.Task[None]] = {}
        # Authenticated inbound links by validator, to close when it leaves.
        self._inbound: dict[int, set[web.WebSocketResponse]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._stopped = False

    # ------------------------------------------------------------ sending

    def send(self, to: int, frame: bytes) -> None:
        link = self._outbound.get(to)
        if link is None:
            return
        if len(frame) > self.max_frame_bytes:
            # The peer would close the link on it; consensus recovers the content.
            self.metrics.peer_frames.labels("out", "too_large").inc()
            return
        if not link.push(frame):
            self.metrics.peer_frames.labels("out", "queue_full").inc()

    def backlog_bytes(self, to: int) -> int:
        """Bytes waiting to go to peer ``to`` (state transfer waits while it is large)."""
        link = self._outbound.get(to)
        return 0 if link is None else link.queued_bytes

    def broadcast(self, frame: bytes) -> None:
        for peer_id in self._outbound:
            self.send(peer_id, frame)

    def status(self) -> dict[str, dict[str, object]]:
        return {
            link.peer.name: {
                "connected": link.connected,
                "queued": len(link.queue),
                "dropped": link.dropped,
            }
            for link in self._outbound.values()
        }

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_connect=5)
        self._session = aiohttp.ClientSession(timeout=timeout)
        for link in self._outbound.values():
            self._dial(link)

    def _dial(self, link: _Outbound) -> None:
        task = asyncio.create_task(self._keep_linked(link), name=f"peer-{link.peer.name}")
        self._link_tasks[link.peer.replica_id] = task

    def peer_entries(self) -> dict[int, PeerEntry]:
        """Every validator this node links to, by id."""
        return {peer_id: link.peer for peer_id, link in self._outbound.items()}

    def set_members(self, validators: ValidatorSet, peers: dict[int, PeerEntry]) -> None:
        """The validators of every epoch still kept (consensus.epochs) and where
        to reach each other one: dial the new ones, close every link to the
        ones no longer kept, trust only these keys from now on."""
        names = {**self.identity.names, **{i: peer.name for i, peer in peers.items()}}
        self.identity = replace(
            self.identity,
            validators=validators,
            names={i: names[i] for i in validators.ids if i in names},
        )
        for peer_id in list(self._outbound):
            if peer_id not in peers:
                del self._outbound[peer_id]
                task = self._link_tasks.pop(peer_id, None)
                if task is not None:
                    task.cancel()
                log.info("validator %d left the validator set: link closed", peer_id)
        for peer_id in list(self._inbound):
            if not validators.contains(peer_id):
                for ws in self._inbound.pop(peer_id):
                    self._tasks.append(asyncio.create_task(_close_leaver(ws)))
        for peer_id, peer in peers.items():
            if peer_id == self.identity.me or peer_id in self._outbound:
                continue
            link = self._outbound[peer_id] = _Outbound(peer, self.limits)
            log.info("validator %d (%s) joined the validator set: dialling", peer_id, peer.name)
            if self._session is not None and not self._stopped:
                self._dial(link)

    async def stop(self) -> None:
        self._stopped = True
        tasks = [*self._tasks, *self._link_tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _keep_linked(self, link: _Outbound) -> None:
        backoff_ms = self.limits.peer_backoff_min_ms
        while not self._stopped:
            try:
                await self._run_link(link)
                backoff_ms = self.limits.peer_backoff_min_ms
            except (aiohttp.ClientError, OSError, TimeoutError, HandshakeError, DecodeError) as exc:
                log.debug("link to %s: %s", link.peer.name, exc)
            finally:
                link.connected = False
                self.metrics.peer_connected.labels(link.peer.name).set(0)
            # Jitter spreads reconnects so restarted peers are not hit all at once.
            await asyncio.sleep(backoff_ms * random.uniform(0.5, 1.0) / 1000)
            backoff_ms = min(self.limits.peer_backoff_max_ms, backoff_ms * 2)

    async def _run_link(self, link: _Outbound) -> None:
        assert self._session is not None
        async with self._session.ws_connect(
            link.peer.peer_url,
            ssl=self._client_ssl if self._client_ssl is not None else False,
            max_msg_size=self.max_frame_bytes,
            heartbeat=5.0,
        ) as ws:
            await self._dial_handshake(ws, link.peer.replica_id)
            link.connected = True
            self.metrics.peer_connected.labels(link.peer.name).set(1)
            reader = asyncio.create_task(_drain(ws))
            try:
                await self._pump(ws, link, reader)
            finally:
                reader.cancel()

    async def _pump(
        self, ws: aiohttp.ClientWebSocketResponse, link: _Outbound, reader: asyncio.Task[None]
    ) -> None:
        while not ws.closed and not reader.done():
            while link.queue:
                await ws.send_bytes(link.queue[0])
                link.sent_one()
                self.metrics.peer_frames.labels("out", "sent").inc()
            link.ready.clear()
            if link.queue:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.ready.wait(), 1.0)

    async def _dial_handshake(self, ws: aiohttp.ClientWebSocketResponse, listener: int) -> None:
        timeout_s = self.limits.peer_handshake_timeout_ms / 1000
        message = await ws.receive(timeout=timeout_s)
        if message.type != aiohttp.WSMsgType.BINARY:
            raise HandshakeError(f"expected a challenge, got {message.type!r}")
        challenge = read_challenge(message.data, self.identity.chain_id, listener)
        me = self.identity.me
        signature = self.identity.signer.sign(
            hello_bytes(self.identity.chain_id, challenge, me, listener)
        )
        await ws.send_bytes(encode({"replica_id": me, "signature": signature}))

    # ------------------------------------------------------------ receiving

    async def handle_inbound(self, request: web.Request) -> web.StreamResponse:
        pending = self._pending_entry(request)
        refusal = self._pending.admit(pending)
        if refusal is not None:
            self.metrics.peer_rejected.labels(refusal).inc()
            raise web.HTTPServiceUnavailable(reason="too many pending peer handshakes")
        ws = web.WebSocketResponse(max_msg_size=self.max_frame_bytes, heartbeat=5.0)
        try:
            async with asyncio.timeout(self.limits.peer_handshake_timeout_ms / 1000):
                await ws.prepare(request)
                peer_id = await self._accept_handshake(ws, request)
        except (HandshakeError, TimeoutError, ConnectionError) as exc:
            reason = _handshake_failure(exc, pending)
            self.metrics.peer_rejected.labels(reason).inc()
            log.info("refused peer link from %s: %s", request.remote, reason)
            if not pending.evicted:
                await ws.close(code=CLOSE_POLICY, message=reason.encode()[:120])
            return ws
        finally:
            self._pending.done(pending)
        # From now on strangers cannot evict this link (node/runtime/listener/).
        mark_authenticated(request, self.identity.names.get(peer_id, f"validator-{peer_id}"))
        inbound = self._inbound.setdefault(peer_id, set())
        inbound.add(ws)
        try:
            await self._receive_frames(ws, peer_id)
        finally:
            inbound.discard(ws)
        return ws

    def _pending_entry(self, request: web.Request) -> PendingHandshake:
        transport = request.transport
        name = None
        if self._tls_required and transport is not None:
            from node.runtime.tls import peer_common_name

            name = peer_common_name(transport.get_extra_info("ssl_object"))

        def close() -> None:
            # Evicted: strangers get no close frame, just the end of the stream.
            if transport is not None:
                transport.abort()

        return PendingHandshake(
            address=address_key(request.remote),
            identity=name,
            validator=name is not None and name in self.identity.names.values(),
            close=close,
        )

    async def _accept_handshake(self, ws: web.WebSocketResponse, request: web.Request) -> int:
        identity = self.identity
        challenge = os.urandom(CHALLENGE_BYTES)
        await ws.send_bytes(
            encode(
                {"chain_id": identity.chain_id, "replica_id": identity.me, "challenge": challenge}
            )
        )
        message = await ws.receive()
        if message.type != aiohttp.WSMsgType.BINARY:
            raise HandshakeError("handshake_not_binary")
        peer_id = read_hello_reply(message.data, identity, challenge, self._verify)
        self._check_certificate(request, peer_id)
        return peer_id

    def _check_certificate(self, request: web.Request, peer_id: int) -> None:
        if not self._tls_required:
            return
        from node.runtime.tls import peer_common_name

        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        if ssl_object is None:
            raise HandshakeError("tls_required")
        if peer_common_name(ssl_object) != self.identity.names.get(peer_id):
            raise HandshakeError("certificate_name_mismatch")

    async def _receive_frames(self, ws: web.WebSocketResponse, peer_id: int) -> None:
        """Feed the link's frames to the replica until it ends, however it ends.

        A peer that is killed, or resumed after a SIGSTOP and reset, is
        routine: aiohttp answers a ping from inside ``receive`` and that pong
        then fails with ``ClientConnectionResetError`` (a ``ConnectionError``)
        on the closing transport.  It must not escape as a request-handler
        traceback: one line says the link is gone, and the peer redials.
        """
        try:
            await self._read_frames(ws, peer_id)
        except ConnectionError as exc:
            log.info("link from validator %d lost: %s", peer_id, exc or type(exc).__name__)

    async def _read_frames(self, ws: web.WebSocketResponse, peer_id: int) -> None:
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.ERROR:
                self.metrics.peer_rejected.labels("frame_error").inc()
                log.info("link from validator %d failed: %s", peer_id, ws.exception())
                return
            if frame.type != aiohttp.WSMsgType.BINARY:
                self.metrics.peer_rejected.labels("not_binary").inc()
                await ws.close(code=CLOSE_UNSUPPORTED, message=b"binary frames only")
                return
            try:
                message = message_from_wire(frame.data, self._wire_limits)
            except DecodeError as exc:
                self.metrics.peer_rejected.labels("malformed_frame").inc()
                log.info("closing link from validator %d: malformed frame (%s)", peer_id, exc)
                await ws.close(code=CLOSE_BAD_DATA, message=b"malformed frame")
                return
            outcome = self._admit(peer_id, message)
            self.metrics.peer_frames.labels("in", outcome).inc()

    def _admit(self, peer_id: int, message: Message) -> str:
        validators = self.identity.validators
        match message:
            case StateResponse() | ForwardedRequest():
                if message.sender != peer_id:
                    return "wrong_sender"
            case _:
                if not validators.contains(message.sender):
                    return "unknown_signer"
                key = validators.key_of(message.sender)
                if not signature_valid(message, key, self.identity.chain_id, self._verify):
                    return "bad_signature"
        return "accepted" if self._sink(peer_id, message) else "inbound_queue_full"


def _handshake_failure(exc: Exception, pending: PendingHandshake) -> str:
    if pending.evicted:
        return "handshake_evicted"
    if isinstance(exc, TimeoutError):
        return "handshake_timeout"
    if isinstance(exc, ConnectionError):
        return "handshake_connection_lost"
    return str(exc)


async def _close_leaver(ws: web.WebSocketResponse) -> None:
    await ws.close(code=CLOSE_POLICY, message=b"not a validator")


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read (and ignore) anything the listener sends, so pings and close are seen.

    The automatic pong to a listener that just went away fails with a
    ``ConnectionError``; the link ends quietly and ``_keep_linked`` redials
    (an exception left in this task would be logged as never retrieved).
    """
    with contextlib.suppress(ConnectionError):
        async for _ in ws:
            pass
