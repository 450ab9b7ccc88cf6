"""One listening port: its connection table, and each accepted connection from accept to close.

How a closed connection is accounted for, whatever the loop: ``start_tls``
builds its ``SSLProtocol`` with ``call_connection_made=False`` (CPython's
``asyncio/base_events.py`` and uvloop's ``loop.pyx``), which starts its
application state at ``STATE_CON_MADE``; so once the handshake is done the
SSL protocol forwards ``connection_lost`` to our protocol, while a
connection lost during the handshake is not forwarded but fails the
``start_tls`` call instead.  :class:`Connection` releases its slot on
either path (and releasing twice is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any, cast

from aiohttp import web

from node.runtime.config import NodeLimits
from node.runtime.listener.connections import ConnectionTable, PortLimits, address_key
from node.runtime.listener.http_errors import (
    CLIENT_ERROR_LOG_INTERVAL_S,
    NodeRequestHandler,
    RateLimitedLog,
)
from node.runtime.listener.memory import MemoryTrimmer
from node.runtime.listener.shedding import ListenerMetrics, ShedLog

log = logging.getLogger("provenet.listener")


class Port:
    """One listening port: its table, logging, and what each connection needs."""

    def __init__(
        self,
        kind: str,
        label: str,
        limits: PortLimits,
        node_limits: NodeLimits,
        tls: ssl.SSLContext | None,
        metrics: ListenerMetrics,
        trimmer: MemoryTrimmer,
    ) -> None:
        self.kind = kind
        self.label = label
        self.table: ConnectionTable[Connection] = ConnectionTable(limits)
        self.tls = tls
        self.idle_timeout_s = node_limits.connection_idle_timeout_ms / 1000
        self.tls_handshake_timeout_s = max(0.001, node_limits.tls_handshake_timeout_ms / 1000)
        self.linger_s = node_limits.unread_body_linger_ms / 1000
        self.metrics = metrics
        self.shedding = ShedLog(kind, label, metrics)
        self.client_errors = RateLimitedLog(CLIENT_ERROR_LOG_INTERVAL_S)
        self.trimmer = trimmer
        self.server: web.Server | None = None
        metrics.open.labels(kind).set_function(lambda: len(self.table))

    def make_handler(self) -> NodeRequestHandler:
        assert self.server is not None
        return NodeRequestHandler(
            self.server,
            loop=asyncio.get_running_loop(),
            client_errors=self.client_errors,
            on_malformed=self.metrics.malformed_http.labels(self.kind).inc,
            keepalive_timeout=self.idle_timeout_s,
            lingering_time=self.linger_s,
            access_log=None,
        )

    def admit(self, connection: Connection) -> bool:
        admission = self.table.admit(connection, connection.address)
        if admission.refused is not None:
            self.shedding.shed(admission.refused, connection.address)
            return False
        for victim in admission.evicted:
            self.shedding.shed("evicted", victim.address)
            victim.abort()
        return True

    def identify(self, connection: Connection, identity: str) -> None:
        for replaced in self.table.identify(connection, identity):
            self.metrics.shed.labels(self.kind, "replaced").inc()
            replaced.abort()

    def release(self, connection: Connection) -> None:
        if self.table.release(connection):
            self.trimmer.closed_one()

    def accepted(self, sock: socket.socket, peer: Any) -> None:
        """Count a socket just accepted; close it at once if a cap says so."""
        address = address_key(peer[0] if isinstance(peer, tuple) else None)
        connection = Connection(self, address)
        if not self.admit(connection):
            sock.close()
            return
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            # As create_server's transports do: small responses go out at once.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sock = sock
        connection.setup = asyncio.get_running_loop().create_task(connection.serve(sock))

    async def abort_unattached(self) -> None:
        """Close connections aiohttp does not know yet (still in their TLS handshake)."""
        setups = []
        for connection in self.table.unidentified():
            if connection.handler is None and connection.setup is not None:
                setups.append(connection.setup)
                connection.abort()
        await asyncio.gather(*setups, return_exceptions=True)

    def close(self) -> None:
        self.shedding.close()
        self.trimmer.close()
        with contextlib.suppress(KeyError):
            self.metrics.open.remove(self.kind)


class Connection(asyncio.Protocol):
    """One accepted TCP connection, from accept to close.

    ``loop.connect_accepted_socket`` makes its transport (and does the TLS
    handshake first); this object is the application protocol, so it sees
    ``connection_made`` once the handshake is done and forwards the stream
    to aiohttp's handler from then on.
    """

    def __init__(self, port: Port, address: str) -> None:
        self.port = port
        self.address = address
        self.handler: NodeRequestHandler | None = None
        self.setup: asyncio.Task[None] | None = None
        # The accepted socket until serve() hands it to the loop.
        self.sock: socket.socket | None = None
        self._transport: asyncio.Transport | None = None
        self._closed = False

    async def serve(self, sock: socket.socket) -> None:
        """Make the transport (TLS handshake included); on failure, free the slot."""
        self.sock = None  # the loop owns it from here
        port = self.port
        loop = asyncio.get_running_loop()
        try:
            if port.tls is None:
                await loop.connect_accepted_socket(lambda: self, sock)
            else:
                await loop.connect_accepted_socket(
                    lambda: self,
                    sock,
                    ssl=port.tls,
                    ssl_handshake_timeout=port.tls_handshake_timeout_s,
                )
        except asyncio.CancelledError:
            self._lost()  # evicted, or the node is stopping
            sock.close()
        except Exception as exc:  # the handshake failed or timed out, or the peer left
            log.debug("%s: TLS handshake with %s failed: %r", port.label, self.address, exc)
            self._lost()
            sock.close()
        finally:
            self.setup = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if self._closed:  # evicted while the handshake finished
            transport.abort()
            return
        trusted = self.port.table.limits.trusted_names
        name = _certificate_name(transport) if trusted else None
        if name is not None and name in trusted:
            self.port.identify(self, name)
        handler = self.port.make_handler()
        handler.connection = self
        self.handler = handler
        handler.connection_made(transport)

    def identify(self, identity: str) -> None:
        if not self._closed:
            self.port.identify(self, identity)

    def abort(self) -> None:
        """Close now (a cap evicted or replaced this connection)."""
        self._closed = True
        self.port.release(self)
        if self._transport is not None:
            self._transport.abort()
            return
        if self.setup is not None:
            # In its TLS handshake: cancelling the setup aborts it.  A setup
            # not started yet never runs, so its socket is closed here.
            self.setup.cancel()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- the stream, forwarded to aiohttp's handler

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self.handler is not None:
            self.handler.eof_received()
        return None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def _lost(self) -> None:
        self._closed = True
        self.port.release(self)


def _certificate_name(transport: asyncio.BaseTransport) -> str | None:
    from node.runtime.tls import peer_common_name

    ssl_object = transport.get_extra_info("ssl_object")
    return peer_common_name(ssl_object) if ssl_object is not None else None


def mark_authenticated(request: web.Request, identity: str) -> None:
    """Count the request's connection as ``identity``'s (a validator's) from now on.

    For node/runtime/peers.py: without TLS a validator is known only once its signed
    link handshake checks out, and from then on strangers cannot evict it.
    """
    handler = request.protocol
    if isinstance(handler, NodeRequestHandler) and handler.connection is not None:
        handler.connection.identify(identity)
