"""The ports' sites: bind, accept and count each socket before anything else, serve the apps."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import ssl
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from node.runtime.config import NodeLimits
from node.runtime.listener.connections import PortLimits
from node.runtime.listener.http_errors import malformed_body_middleware
from node.runtime.listener.memory import MemoryTrimmer
from node.runtime.listener.port import Port
from node.runtime.listener.shedding import ListenerMetrics

log = logging.getLogger("provenet.listener")

# Pending TCP connections the kernel queues for accept(); a burst of honest
# clients should not see SYN retries (Linux caps it at net.core.somaxconn).
LISTEN_BACKLOG = 1_024
# File descriptors kept for everything but client connections (the store,
# outbound peer links, logs, the loop's own) when the file limit caps the ports.
RESERVED_FILES = 256
# After accept() fails (out of files or buffers), wait this long before the next.
ACCEPT_RETRY_DELAY_S = 0.1
# A port found in use is tried again this often, for limits.bind_retry_ms.
BIND_RETRY_INTERVAL_S = 0.1
# Sockets taken from the accept queue per loop turn, after the one awaited.
ACCEPT_BATCH = 127


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
        self, runner: web.BaseRunner, host: str, port: int, guard: Port, bind_retry_s: float = 0.0
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
    trimmer = MemoryTrimmer()
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
        guard = Port(spec.kind, label, port_caps, limits, spec.tls, metrics, trimmer)
        runner = web.AppRunner(spec.app, access_log=None, shutdown_timeout=shutdown_timeout_s)
        await runner.setup()
        bind_retry_s = limits.bind_retry_ms / 1000
        await GuardedSite(runner, host, spec.port, guard, bind_retry_s).start()
        runners.append(runner)
    return runners
