#!/usr/bin/env python3
"""Benchmark: a node's memory across bursts of idle connections.

Prints one JSON object per line on stdout: the node's RSS before the first
burst, then one line per burst, then a summary.  Progress goes to stderr.

What it does
------------
1. Creates a one-validator network in a temporary directory with
   ``node.ops.netinit.init_network`` (TLS on, as ``provenet net init`` makes
   it, unless ``--no-tls``) and starts the node as its own process, the way
   ``provenet node run`` does (``--loop asyncio`` runs it on the standard
   library's event loop instead of uvloop, to tell the two apart).
2. ``--bursts`` times: opens ``--connections`` TCP connections to the
   node's API port (``--port peer``: the peer port) from 127.0.0.1, or from
   ``--sources`` loopback addresses 127.0.0.2... in turn, sends nothing on
   them (``--hello``: sends a TLS ClientHello and then nothing, so each sits
   in the middle of a handshake), holds them ``--hold-s`` seconds, closes
   them all, waits ``--settle-s`` seconds and reads the node's RSS from
   ``/proc/<pid>/status`` (also read just before closing them).  Each line also says how many of the burst's
   connections the node had already closed when the burst ended (a node
   that caps connections closes the excess at once).
3. At the end checks that the node still answers ``/healthz`` and stops it.

Usage: .venv/bin/python scripts/bench_connections.py [--connections N] [--bursts B]
           [--port api|peer] [--sources K] [--hello] [--no-tls] [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchkit.procstat import open_files, rss_mib  # noqa: E402

from node.ops.netinit import PEER_PORT_OFFSET, ephemeral_port_range, init_network  # noqa: E402
from node.sdk.transport import NodeFailed, RetryPolicy, Transport  # noqa: E402

START_TIMEOUT_S = 60
# One /healthz request's bound, and the pause between polls while the node starts.
HEALTHZ_TIMEOUT_S = 2.0
HEALTHZ_POLL_S = 0.2
# The node runs in its own process; this launcher lets the bench choose its loop.
_RUN_NODE = (
    "import sys, pathlib, node.app as app\n"
    "if sys.argv[2] == 'asyncio':\n"
    "    app._install_event_loop = lambda: None\n"
    "sys.exit(app.run_node(pathlib.Path(sys.argv[1])))\n"
)


def _free_port_pair() -> int:
    """A base port whose api (base) and peer (base + 100) ports are free on 127.0.0.1,
    below the kernel's ephemeral range (a port in it may be taken by any outgoing
    connection while the node restarts)."""
    low, _ = ephemeral_port_range()
    band = max(1, low - PEER_PORT_OFFSET - 10_000)
    for attempt in range(200):
        base = 10_000 + (os.getpid() * 13 + attempt * 211) % band
        try:
            for port in (base, base + PEER_PORT_OFFSET):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports on 127.0.0.1")


def _transport(url: str, context: ssl.SSLContext | None) -> Transport:
    """The SDK transport to the node (plain HTTP without a context), one try per request."""
    return Transport(
        [url],
        context if context is not None else False,
        timeout_s=HEALTHZ_TIMEOUT_S,
        connect_timeout_s=HEALTHZ_TIMEOUT_S,
        retry=RetryPolicy(rounds=1),
    )


async def _healthz(transport: Transport, url: str) -> bool:
    try:
        reply = await transport.fetch(url, "GET", "/healthz")
    except NodeFailed:
        return False
    return reply.status == 200


async def _healthy_now(url: str, context: ssl.SSLContext | None) -> bool:
    transport = _transport(url, context)
    try:
        return await _healthz(transport, url)
    finally:
        await transport.close()


def _client_hello() -> bytes:
    """The first flight of a TLS handshake, as a client would send it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=False)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _connect(port: int, source: str | None) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if source is not None:
            sock.bind((source, 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def burst(
    pid: int, port: int, count: int, sources: int, hello: bytes | None, hold_s: float
) -> dict[str, float]:
    sockets: list[socket.socket] = []
    failed = 0
    for index in range(count):
        source = None if sources == 0 else f"127.0.0.{2 + index % sources}"
        sock = _connect(port, source)
        if sock is None:
            failed += 1
            continue
        if hello is not None:
            with contextlib.suppress(OSError):
                sock.sendall(hello)
        sockets.append(sock)
    time.sleep(hold_s)
    held_rss = rss_mib(pid)
    closed = sum(1 for sock in sockets if _closed_by_peer(sock))
    for sock in sockets:
        sock.close()
    return {
        "connected": len(sockets),
        "connect_failed": failed,
        "closed_by_node": closed,
        "rss_mib_while_held": held_rss,
    }


def _start_node(config: Path, loop: str, log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-c", _RUN_NODE, str(config), loop],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def _wait_healthy(
    process: subprocess.Popen[bytes], url: str, context: ssl.SSLContext | None
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    transport = _transport(url, context)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"node exited with {process.returncode}")
            if await _healthz(transport, url):
                return
            await asyncio.sleep(HEALTHZ_POLL_S)
    finally:
        await transport.close()
    raise RuntimeError("node did not answer /healthz in time")


def _raise_own_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3_000)
    parser.add_argument("--bursts", type=int, default=6)
    parser.add_argument("--port", choices=("api", "peer"), default="api")
    parser.add_argument("--sources", type=int, default=0, help="source addresses 127.0.0.2...")
    parser.add_argument("--hello", action="store_true", help="send a TLS ClientHello, then idle")
    parser.add_argument("--no-tls", action="store_true")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--hold-s", type=float, default=2.0)
    parser.add_argument("--settle-s", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="keep the network directory")
    args = parser.parse_args()
    _raise_own_file_limit(args.connections + 256)

    directory = Path(tempfile.mkdtemp(prefix="provenet-bench-conn-"))
    base = _free_port_pair()
    tls = not args.no_tls
    init_network(directory / "net", 1, tls=tls, base_port=base)
    config = directory / "net" / "nodes" / "v0" / "config.json"
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{base}"
    context = (
        ssl.create_default_context(cafile=str(directory / "net" / "ca" / "ca.pem")) if tls else None
    )
    port = base if args.port == "api" else base + 100
    hello = _client_hello() if args.hello else None
    process = _start_node(config, args.loop, directory / "node.log")
    try:
        asyncio.run(_wait_healthy(process, url, context))
        settings = {k: v for k, v in vars(args).items() if k != "keep"}
        first = rss_mib(process.pid)
        print(json.dumps({"burst": 0, "rss_mib": first, "settings": settings}), flush=True)
        rss = [first]
        for number in range(1, args.bursts + 1):
            outcome = burst(process.pid, port, args.connections, args.sources, hello, args.hold_s)
            time.sleep(args.settle_s)
            rss.append(rss_mib(process.pid))
            line = {"burst": number, "rss_mib": rss[-1], "open_fds": open_files(process.pid)}
            print(json.dumps({**line, **outcome}), flush=True)
        healthy = asyncio.run(_healthy_now(url, context))
        summary = {
            "rss_mib_first": rss[0],
            "rss_mib_last": rss[-1],
            "rss_mib_max": max(rss),
            "healthy_after": healthy,
            "node_log": str(directory / "node.log") if args.keep else None,
        }
        print(json.dumps({"summary": summary}), flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(directory)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
