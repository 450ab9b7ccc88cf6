"""The node's TCP listeners: connection caps, timeouts and HTTP parser errors.

Theory of operation
-------------------
Both ports (client API and peer links) are served by :class:`GuardedSite`
instead of aiohttp's ``TCPSite``.  The site listens for plain TCP and
counts every accepted socket in its port's :class:`ConnectionTable`
*before* anything else happens, TLS handshake included: asyncio's
``create_server(ssl=...)`` reports a connection to its protocol only once
the handshake is done, so a counter there never sees the sockets an
attacker leaves half-way through a handshake.  An admitted socket is
upgraded with ``loop.start_tls`` (bounded by ``tls_handshake_timeout_ms``)
and then handed to aiohttp's HTTP protocol (:class:`NodeRequestHandler`).

How a closed connection is accounted for, whatever the loop: ``start_tls``
builds its ``SSLProtocol`` with ``call_connection_made=False`` (CPython's
``asyncio/base_events.py`` and uvloop's ``loop.pyx``), which starts its
application state at ``STATE_CON_MADE``; so once the handshake is done the
SSL protocol forwards ``connection_lost`` to our protocol, while a
connection lost during the handshake is not forwarded but fails the
``start_tls`` call instead.  :class:`_Connection` releases its slot on
either path (and releasing twice is harmless).

Limits (``NodeLimits``):

- ``max_connections_per_address``: connections from one address (an IPv6
  client's /64) on one port.  A new one over the cap is closed at once.
- ``max_connections_per_port``: on the API port, connections over the cap
  are closed at once.  On the peer port the cap applies to connections not
  known to be a validator's, and a new one evicts one of those instead:
  the oldest from the address holding the most (:class:`ByAddress`).  A
  validator's link needs a few round trips to identify itself; strangers,
  however many, then only churn each other, and a newcomer from an address
  holding few is evicted only if every address holds as few.  A connection is known to be a validator's once its TLS
  certificate names a validator (mutual TLS on the peer port), or, without
  TLS, once its signed link handshake succeeds (node/runtime/peers.py calls
  :func:`mark_authenticated`); from then on it counts against
  ``max_connections_per_validator`` for that validator only, where a newer
  link replaces the oldest (a restarted validator's old link may linger).
- ``connection_idle_timeout_ms``: aiohttp's keep-alive timer, armed when a
  connection is made and after every response, closes a connection still
  waiting for a complete request when it fires; a request in flight (an
  event stream, a peer link) is never cut by it.  So a slowloris caller
  that trickles a request's headers is closed too.
- ``tls_handshake_timeout_ms``: a handshake not done in time closes the
  connection.

When a port starts refusing or evicting, the node logs one WARNING line,
and one INFO line when it has shed nothing for ``SHED_QUIET_S`` (with the
count); ``provenet_connections_shed_total{port,reason}`` counts every one
and ``provenet_connections_open{port}`` shows the current load.

Memory: a TLS connection costs the process about 50 KiB of C heap under
uvloop (the SSL object and its buffers) and about 300 KiB under the
standard loop (which gives each a 256 KiB read buffer up front).  glibc
keeps that heap after the connection closes and, with bursts of
connections, fragments it, so RSS grew burst after burst (six bursts of
3,000 idle connections: 56 to 480 MiB, never returned; ``malloc_trim``
gives it all back, nothing stays alive).  On the standard loop before
CPython 3.11.8 a failed handshake also leaves its protocol in a reference
cycle until the next full collection (gh-109534).  The caps bound how
many connections exist at once, and :class:`_MemoryTrimmer` collects and
returns the freed heap to the system once a burst of closes is over
(``scripts/bench_connections.py`` measures it).

HTTP parser errors (a line too long, too many headers, conflicting
lengths, a bad method or version...) are answered in the API's error shape
``{"error": {"code": "malformed_http", ...}}`` with aiohttp's status, and
logged as one INFO line at most every ``CLIENT_ERROR_LOG_INTERVAL_S`` per
port (a stranger must not be able to fill the log); a server-side failure
is still logged with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import gc
import ipaddress
import json
import logging
import resource
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from aiohttp import web
from aiohttp.http import HttpProcessingError, RawRequestMessage
from aiohttp.web_request import BaseRequest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as MetricCounter

from node.runtime.config import NodeLimits

log = logging.getLogger("provenet.listener")

# Pending TCP connections the kernel queues for accept(); a burst of honest
# clients should not see SYN retries (Linux caps it at net.core.somaxconn).
LISTEN_BACKLOG = 1_024
# File descriptors kept for everything but client connections (the store,
# outbound peer links, logs, the loop's own) when the file limit caps the ports.
RESERVED_FILES = 256
# The node logs that a port stopped shedding after this long without shedding.
SHED_QUIET_S = 10.0
# At most one log line per port and interval for clients' malformed HTTP.
CLIENT_ERROR_LOG_INTERVAL_S = 10.0
# Freed heap is returned to the system after this many closed connections...
TRIM_AFTER_CLOSED = 512
# ...once the burst has been quiet this long, and at most this often.
TRIM_DELAY_S = 1.0
TRIM_MIN_INTERVAL_S = 5.0
# After accept() fails (out of files or buffers), wait this long before the next.
ACCEPT_RETRY_DELAY_S = 0.1
# A port found in use is tried again this often, for limits.bind_retry_ms.
BIND_RETRY_INTERVAL_S = 0.1
# Sockets taken from the accept queue per loop turn, after the one awaited.
ACCEPT_BATCH = 127
# The Server header, without versions: aiohttp's default names Python's and its
# own, which would tell a scanner which known bugs to try.
SERVER_HEADER = "provenet"
# Longest reason quoted from aiohttp's parser (it may quote the input itself).
MAX_ERROR_MESSAGE_CHARS = 120

Key = TypeVar("Key", bound=Hashable)


# ------------------------------------------------------------------ process


def raise_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return it.

    Why: the shipped default soft limit (1,024) is lower than what the
    connection caps allow, and the OS refusing accept() is exactly the
    outage the caps exist to prevent.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    log.info("open-file limit: %d (hard %s)", soft, "unlimited" if hard < 0 else hard)
    return soft


def connections_per_port(limits: NodeLimits, validators: int, ports: int = 2) -> int:
    """``max_connections_per_port``, lowered so every port's cap fits the file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limits.max_connections_per_port
    reserved = RESERVED_FILES + validators * limits.max_connections_per_validator
    fits = max(1, (soft - reserved) // ports)
    if fits < limits.max_connections_per_port:
        log.warning(
            "open-file limit %d allows %d connections per port: limits.max_connections_per_port "
            "(%d) lowered to it; raise LimitNOFILE to restore it",
            soft,
            fits,
            limits.max_connections_per_port,
        )
        return fits
    return limits.max_connections_per_port


def address_key(host: str | None) -> str:
    """The address a per-address cap counts: IPv4 as is, IPv6 by its /64."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


# ------------------------------------------------------------------ bookkeeping


@dataclass(frozen=True)
class PortLimits:
    """The caps of one port (see the module docstring)."""

    max_connections: int
    max_per_address: int
    max_per_identity: int
    # Peer port: a full port evicts an unidentified connection (ByAddress.victim).
    evict_when_full: bool
    # TLS certificate names whose connections count per identity (validators).
    trusted_names: frozenset[str]


@dataclass(frozen=True)
class Admission(Generic[Key]):
    refused: str | None
    evicted: tuple[Key, ...] = ()


class ByAddress(Generic[Key]):
    """Entries grouped by client address, each group in arrival order; no I/O.

    ``victim`` is the oldest entry of the address holding the most: when a
    full table must make room, the caller with the most entries pays, so a
    newcomer from an address holding few (a validator dialling in) is not
    evicted unless every address in the table holds as few.  Counts are
    kept in buckets, so every operation is O(1).
    """

    def __init__(self) -> None:
        self._address_of: dict[Key, str] = {}
        self._entries: dict[str, dict[Key, None]] = {}
        self._addresses_holding: dict[int, dict[str, None]] = {}
        self._most = 0

    def __len__(self) -> int:
        return len(self._address_of)

    def __contains__(self, key: object) -> bool:
        return key in self._address_of

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._address_of))

    def count(self, address: str) -> int:
        entries = self._entries.get(address)
        return 0 if entries is None else len(entries)

    def add(self, key: Key, address: str) -> None:
        held = self.count(address)
        self._address_of[key] = address
        self._entries.setdefault(address, {})[key] = None
        self._move(address, held, held + 1)
        self._most = max(self._most, held + 1)

    def remove(self, key: Key) -> bool:
        """Forget ``key``; False when it was not held."""
        address = self._address_of.pop(key, None)
        if address is None:
            return False
        entries = self._entries[address]
        del entries[key]
        if not entries:
            del self._entries[address]
        held = len(entries)
        self._move(address, held + 1, held)
        while self._most > 0 and not self._addresses_holding.get(self._most):
            self._most -= 1
        return True

    def victim(self) -> Key | None:
        if self._most == 0:
            return None
        address = next(iter(self._addresses_holding[self._most]))
        return next(iter(self._entries[address]))

    def _move(self, address: str, old: int, new: int) -> None:
        if old > 0:
            bucket = self._addresses_holding[old]
            del bucket[address]
            if not bucket:
                del self._addresses_holding[old]
        if new > 0:
            self._addresses_holding.setdefault(new, {})[address] = None


class ConnectionTable(Generic[Key]):
    """Which connections one port holds, by address and identity; no I/O."""

    def __init__(self, limits: PortLimits) -> None:
        self.limits = limits
        self._unidentified: ByAddress[Key] = ByAddress()
        self._identified: dict[str, dict[Key, None]] = {}
        self._identity_of: dict[Key, str] = {}

    def __len__(self) -> int:
        return len(self._unidentified) + len(self._identity_of)

    def __contains__(self, key: object) -> bool:
        return key in self._unidentified or key in self._identity_of

    def admit(self, key: Key, address: str) -> Admission[Key]:
        limits = self.limits
        if self._unidentified.count(address) >= limits.max_per_address:
            return Admission("per_address")
        evicted: tuple[Key, ...] = ()
        if len(self._unidentified) >= limits.max_connections:
            victim = self._unidentified.victim() if limits.evict_when_full else None
            if victim is None:
                return Admission("per_port")
            self.release(victim)
            evicted = (victim,)
        self._unidentified.add(key, address)
        return Admission(None, evicted)

    def identify(self, key: Key, identity: str) -> tuple[Key, ...]:
        """Count ``key`` as ``identity``'s from now on; return links it replaces."""
        if not self._unidentified.remove(key):
            return ()
        links = self._identified.setdefault(identity, {})
        replaced = []
        while len(links) >= max(1, self.limits.max_per_identity):
            oldest = next(iter(links))
            self.release(oldest)
            replaced.append(oldest)
        links[key] = None
        self._identity_of[key] = identity
        return tuple(replaced)

    def release(self, key: Key) -> bool:
        """Forget ``key``; False when it was not held (released already)."""
        if self._unidentified.remove(key):
            return True
        identity = self._identity_of.pop(key, None)
        if identity is None:
            return False
        links = self._identified[identity]
        del links[key]
        if not links:
            del self._identified[identity]
        return True

    def unidentified(self) -> list[Key]:
        return list(self._unidentified)


class ListenerMetrics:
    """The listeners' Prometheus series, registered in the node's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.shed = MetricCounter(
            "provenet_connections_shed",
            "Connections closed by a connection cap or timeout, by port and reason",
            ["port", "reason"],
            registry=registry,
        )
        self.open = Gauge(
            "provenet_connections_open",
            "Connections held, TLS handshakes included, by port",
            ["port"],
            registry=registry,
        )
        self.malformed_http = MetricCounter(
            "provenet_malformed_http_requests",
            "Requests aiohttp's HTTP parser refused, by port",
            ["port"],
            registry=registry,
        )


_SHED_REASONS = {
    "per_address": "the per-address cap is reached, by {address}",
    "per_port": "the per-port cap is reached, latest from {address}",
    "evicted": "the port is full: evicting strangers, first from {address}",
    "accept_failed": "accept() failed: {address}",
}


class _ShedLog:
    """One WARNING line when a port starts shedding, one INFO line when it stops."""

    def __init__(self, kind: str, label: str, metrics: ListenerMetrics) -> None:
        self.kind = kind
        self.label = label
        self._metrics = metrics
        self._shed_since: float | None = None
        self._last_shed = 0.0
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    def shed(self, reason: str, address: str) -> None:
        """Count one connection refused or closed for ``reason``; log if it is the first."""
        self._metrics.shed.labels(self.kind, reason).inc()
        now = time.monotonic()
        self._last_shed = now
        self._count += 1
        if self._shed_since is not None:
            return
        self._shed_since = now
        log.warning(
            "%s: shedding connections (%s); counted in "
            "provenet_connections_shed_total until it stops",
            self.label,
            _SHED_REASONS.get(reason, reason).format(address=address),
        )
        self._timer = asyncio.get_running_loop().call_later(SHED_QUIET_S, self._check_quiet)

    def _check_quiet(self) -> None:
        self._timer = None
        assert self._shed_since is not None
        now = time.monotonic()
        quiet_at = self._last_shed + SHED_QUIET_S
        if now < quiet_at:
            self._timer = asyncio.get_running_loop().call_later(quiet_at - now, self._check_quiet)
            return
        log.info(
            "%s: stopped shedding: %d connections shed over %.1f s",
            self.label,
            self._count,
            self._last_shed - self._shed_since,
        )
        self._shed_since = None
        self._count = 0

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _MemoryTrimmer:
    """Hands the C heap freed by closed connections back to the system (glibc only).

    Why: glibc keeps freed memory in its heap; after bursts of TLS
    connections the heap fragments and the process's RSS grows with every
    burst even though nothing is live.  ``malloc_trim(0)`` releases the free
    pages; it walks the heap (and a full garbage collection runs first), so
    it runs once a burst is over and at most every ``TRIM_MIN_INTERVAL_S``,
    not per close.
    """

    def __init__(self) -> None:
        self._malloc_trim = _load_malloc_trim()
        self._closed = 0
        self._last_closed_at = 0.0
        self._last_trim = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def closed_one(self) -> None:
        if self._malloc_trim is None:
            return
        self._closed += 1
        self._last_closed_at = time.monotonic()
        if self._closed >= TRIM_AFTER_CLOSED and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._maybe_trim)

    def _maybe_trim(self) -> None:
        self._timer = None
        now = time.monotonic()
        due = max(self._last_closed_at + TRIM_DELAY_S, self._last_trim + TRIM_MIN_INTERVAL_S)
        if now < due:
            self._timer = asyncio.get_running_loop().call_later(due - now, self._maybe_trim)
            return
        assert self._malloc_trim is not None
        started = time.perf_counter()
        # The standard loop's TLS protocol sits in a reference cycle once its
        # connection failed (CPython gh-109534, before 3.11.8), with a 256 KiB
        # buffer each: only a full collection frees them for the trim.  Under
        # uvloop (the node's loop) nothing is left in cycles, and a full
        # collection of a large heap would hold the loop for tens of ms at a
        # stranger's bidding, so it runs only on the standard loop.
        if _on_standard_loop():
            gc.collect()
        collected = time.perf_counter()
        self._malloc_trim(0)
        self._last_trim = time.monotonic()
        log.debug(
            "after %d closed connections: collected in %.1f ms, returned the freed heap in %.1f ms",
            self._closed,
            (collected - started) * 1000,
            (time.perf_counter() - collected) * 1000,
        )
        self._closed = 0

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _on_standard_loop() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("asyncio")


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


# ------------------------------------------------------------------ HTTP errors


class _RateLimitedLog:
    """At most one INFO line per interval; the lines in between are counted."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next_at = 0.0
        self._suppressed = 0

    def info(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next_at:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} more since the last such line)"
        log.info(message, *args)
        self._next_at = now + self._interval_s
        self._suppressed = 0


def _error_body(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))


class NodeRequestHandler(web.RequestHandler):
    """aiohttp's HTTP protocol, with errors in the API's shape and bounded logging.

    ``handle_error`` is where aiohttp answers what its own parser refused
    (and a handler's unhandled exception or timeout): it answers
    ``text/plain`` and logs a traceback for each by default.
    """

    def __init__(
        self,
        manager: web.Server,
        *,
        client_errors: _RateLimitedLog,
        on_malformed: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self.client_errors = client_errors
        self.on_malformed = on_malformed
        self.connection: _Connection | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._fail_body_on_parser_error()

    def _fail_body_on_parser_error(self) -> None:
        """Fail the body a handler is reading when the parser gave up on it.

        aiohttp 3.14's C parser, on a framing error inside a request body
        (an invalid chunk size after the headers), queues a 400 for after
        the request but leaves the body the handler is reading without data,
        end or error, and the request hangs for good (its Python parser
        fails the body with RequestPayloadError: this does the same).
        """
        request = getattr(self, "_current_request", None)
        queued = getattr(self, "_messages", None)
        if request is None or not queued or isinstance(queued[-1][0], RawRequestMessage):
            return
        body = request.content
        if not body.is_eof() and body.exception() is None:
            failure = getattr(queued[-1][0], "exc", None)
            reason = _parser_reason(None, failure if isinstance(failure, Exception) else None)
            body.set_exception(web.RequestPayloadError(reason))

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """A traceback for our bugs; one rate-limited line for what a client sent."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, _CLIENT_FAULTS):
            self.on_malformed()
            self.client_errors.info(
                "malformed HTTP from %s: %s", self._peer(), _parser_reason(None, exc)
            )
            return
        super().log_exception(*args, **kwargs)

    def _peer(self) -> str:
        peer = self.peername
        return str(peer[0]) if isinstance(peer, tuple) else "unknown"

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            code, text = _server_error(self, request, status, exc)
        else:
            self.on_malformed()
            code = "malformed_http"
            text = f"malformed HTTP request: {_parser_reason(message, exc)}"
            self.client_errors.info("malformed HTTP from %s: %s", request.remote, text)
        if request.writer.output_size > 0:
            # Part of a response went out already: the connection is broken.
            raise ConnectionError("response already started; cannot send an error")
        response = web.Response(
            status=status, text=_error_body(code, text), content_type="application/json"
        )
        # These answers skip the app's on_response_prepare, which sets the
        # same header on all others (node/app.py).
        response.headers["Server"] = SERVER_HEADER
        response.force_close()
        return response


# Exceptions that come from what a client sent, not from the node.
_CLIENT_FAULTS = (web.RequestPayloadError, HttpProcessingError, ConnectionError)


def _parser_reason(message: str | None, exc: BaseException | None) -> str:
    """aiohttp's reason on one short line, without the input it quotes below it."""
    if message is None and isinstance(exc, HttpProcessingError):
        message = exc.message
    text = message or (str(exc) if exc is not None else "") or "bad request"
    text = text.removeprefix("400, message:")
    first_paragraph = text.split("\n\n", 1)[0]
    reason = " ".join(first_paragraph.split()).rstrip(":")
    if len(reason) > MAX_ERROR_MESSAGE_CHARS:
        reason = reason[:MAX_ERROR_MESSAGE_CHARS] + "..."
    return reason


@web.middleware
async def malformed_body_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A body aiohttp's parser refused half-way (bad chunk framing): 400 ``malformed_http``.

    Innermost, so the app's own error handling sees a response, not an
    exception it would take for the node's bug.
    """
    try:
        return await handler(request)
    except (web.RequestPayloadError, HttpProcessingError) as exc:
        # The C parser's error arrives as RequestPayloadError, the Python
        # parser's as the TransferEncodingError it raised.
        response = web.Response(
            status=400,
            text=_error_body(
                "malformed_http", f"malformed HTTP request body: {_parser_reason(None, exc)}"
            ),
            content_type="application/json",
        )
        response.headers["Server"] = SERVER_HEADER
        response.force_close()
        return response


def _server_error(
    handler: NodeRequestHandler, request: BaseRequest, status: int, exc: BaseException | None
) -> tuple[str, str]:
    if status == 504:
        handler.logger.warning("request handler for %s timed out", request.path)
        return "unavailable", "the request timed out"
    # Our bug, not the client's: the traceback is what fixes it.
    handler.logger.error("error handling request from %s", request.remote, exc_info=exc)
    return "internal", "internal error"


# ------------------------------------------------------------------ connections


class _Port:
    """One listening port: its table, logging, and what each connection needs."""

    def __init__(
        self,
        kind: str,
        label: str,
        limits: PortLimits,
        node_limits: NodeLimits,
        tls: ssl.SSLContext | None,
        metrics: ListenerMetrics,
        trimmer: _MemoryTrimmer,
    ) -> None:
        self.kind = kind
        self.label = label
        self.table: ConnectionTable[_Connection] = ConnectionTable(limits)
        self.tls = tls
        self.idle_timeout_s = node_limits.connection_idle_timeout_ms / 1000
        self.tls_handshake_timeout_s = max(0.001, node_limits.tls_handshake_timeout_ms / 1000)
        self.linger_s = node_limits.unread_body_linger_ms / 1000
        self.metrics = metrics
        self.shedding = _ShedLog(kind, label, metrics)
        self.client_errors = _RateLimitedLog(CLIENT_ERROR_LOG_INTERVAL_S)
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

    def admit(self, connection: _Connection) -> bool:
        admission = self.table.admit(connection, connection.address)
        if admission.refused is not None:
            self.shedding.shed(admission.refused, connection.address)
            return False
        for victim in admission.evicted:
            self.shedding.shed("evicted", victim.address)
            victim.abort()
        return True

    def identify(self, connection: _Connection, identity: str) -> None:
        for replaced in self.table.identify(connection, identity):
            self.metrics.shed.labels(self.kind, "replaced").inc()
            replaced.abort()

    def release(self, connection: _Connection) -> None:
        if self.table.release(connection):
            self.trimmer.closed_one()

    def accepted(self, sock: socket.socket, peer: Any) -> None:
        """Count a socket just accepted; close it at once if a cap says so."""
        address = address_key(peer[0] if isinstance(peer, tuple) else None)
        connection = _Connection(self, address)
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


class _Connection(asyncio.Protocol):
    """One accepted TCP connection, from accept to close.

    ``loop.connect_accepted_socket`` makes its transport (and does the TLS
    handshake first); this object is the application protocol, so it sees
    ``connection_made`` once the handshake is done and forwards the stream
    to aiohttp's handler from then on.
    """

    def __init__(self, port: _Port, address: str) -> None:
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


# ------------------------------------------------------------------ the site


class GuardedSite(web.BaseSite):
    """A TCP site that counts and caps connections as it accepts them, before any TLS.

    It accepts in its own loop (``sock_accept``, then the rest of the
    queue without waiting) rather than through ``loop.create_server``: a
    server made with ``ssl=`` reports a connection only after its TLS
    handshake, and one made without TLS starts reading before a
    ``start_tls`` can take the socket over (uvloop does, right after
    ``connection_made``), so bytes of the handshake could be lost.  A
    refused socket is closed before any transport or TLS state exists.
    """

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: _Port, bind_retry_s: float = 0.0
    ) -> None:
        super().__init__(runner, backlog=LISTEN_BACKLOG)
        self._host = host
        self._port = port
        self._guard = guard
        self._bind_retry_s = bind_retry_s
        self._sockets: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []

    @property
    def name(self) -> str:
        scheme = "https" if self._guard.tls is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._guard.server = server
        loop = asyncio.get_running_loop()
        self._sockets = await _bind_with_retry(
            self._guard.label, self._host, self._port, self._backlog, self._bind_retry_s
        )
        self._accepting = [
            loop.create_task(self._accept(sock), name=f"accept-{self._guard.label}")
            for sock in self._sockets
        ]

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listening)
            except OSError as exc:
                # Out of files or buffers: the caps should make this rare;
                # retrying at once would spin on the same error.
                self._guard.shedding.shed("accept_failed", str(exc.strerror))
                await asyncio.sleep(ACCEPT_RETRY_DELAY_S)
                continue
            self._guard.accepted(sock, peer)
            # Take what else is queued without a loop turn per socket.
            for _ in range(ACCEPT_BATCH):
                try:
                    sock, peer = listening.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # sock_accept reports it next turn
                self._guard.accepted(sock, peer)

    async def stop(self) -> None:
        await super().stop()
        for task in self._accepting:
            task.cancel()
        await asyncio.gather(*self._accepting, return_exceptions=True)
        for sock in self._sockets:
            sock.close()
        # aiohttp closes the connections it knows (runner.cleanup); these it does not.
        await self._guard.abort_unattached()
        self._guard.close()


async def _bind_with_retry(
    label: str, host: str, port: int, backlog: int, retry_s: float
) -> list[socket.socket]:
    """Listen on ``port``, trying again for ``retry_s`` while it is in use.

    A restarted node can find its port briefly held: by its previous
    process's sockets while the kernel tears them down, or as the source port
    of some outgoing connection when the port lies in the ephemeral range.
    Exiting at once would turn that moment into an outage; waiting forever
    would hide a real conflict (another node on the port), which after the
    retry time fails with a message that says so.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_s
    announced = False
    while True:
        try:
            return await _listening_sockets(host, port, backlog)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            if loop.time() >= deadline:
                raise OSError(
                    errno.EADDRINUSE,
                    f"{label} on {host} is in use, still after {round(retry_s * 1000)} ms "
                    "(limits.bind_retry_ms): is another node or program listening on it?",
                ) from None
            if not announced:
                log.info(
                    "%s on %s is in use; retrying for up to %d ms",
                    label,
                    host,
                    round(retry_s * 1000),
                )
                announced = True
        await asyncio.sleep(BIND_RETRY_INTERVAL_S)


async def _listening_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """One listening socket per address ``host`` resolves to, like ``create_server``."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # As asyncio does: "::" and "0.0.0.0" can then both be listened on.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@dataclass(frozen=True)
class PortSpec:
    """One port to serve: ``kind`` ("api" or "peer") labels its metrics and log lines."""

    kind: str
    app: web.Application
    port: int
    tls: ssl.SSLContext | None


async def listen(
    host: str,
    specs: list[PortSpec],
    limits: NodeLimits,
    validator_names: frozenset[str],
    registry: CollectorRegistry,
    shutdown_timeout_s: float,
) -> list[web.AppRunner]:
    """Serve each spec's app on its port behind the caps; return the runners to clean up."""
    metrics = ListenerMetrics(registry)
    trimmer = _MemoryTrimmer()
    per_port = connections_per_port(limits, len(validator_names), len(specs))
    runners = []
    for spec in specs:
        peer = spec.kind == "peer"
        port_caps = PortLimits(
            max_connections=per_port,
            max_per_address=limits.max_connections_per_address,
            max_per_identity=limits.max_connections_per_validator,
            evict_when_full=peer,
            trusted_names=validator_names if peer else frozenset(),
        )
        spec.app.middlewares.append(malformed_body_middleware)
        label = f"{spec.kind} port {spec.port}"
        guard = _Port(spec.kind, label, port_caps, limits, spec.tls, metrics, trimmer)
        runner = web.AppRunner(spec.app, access_log=None, shutdown_timeout=shutdown_timeout_s)
        await runner.setup()
        bind_retry_s = limits.bind_retry_ms / 1000
        await GuardedSite(runner, host, spec.port, guard, bind_retry_s).start()
        runners.append(runner)
    return runners
