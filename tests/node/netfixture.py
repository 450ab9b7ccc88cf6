"""A local network started the way a user starts it, for the multi-process tests.

``provenet net init`` and ``provenet net up`` run as subprocesses of the
test, exactly the commands the README gives; ``net down`` always runs at
the end.  Everything listens on 127.0.0.1 only, on ports probed free first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from ssl import SSLContext
from typing import Any

import aiohttp
from aiohttp import web

from contracts.tx import Transaction, sign_tx
from node.app import RunningNode, start_node
from node.ops.netinit import PEER_PORT_OFFSET, ephemeral_port_range, init_network, network_ports
from node.runtime.config import load_node_config
from node.sdk import ProvenetClient
from node.sdk.keys import load_identity
from node.sdk.network_file import NodeEntry, read_network

REPO = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S = 60


def provenet(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would; fail the test with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "node.ops.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert result.returncode == 0, f"provenet {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


# Test networks listen below the kernel's ephemeral range (or above it), never
# inside: a port in it can be taken as the source port of any outgoing
# connection on the host, and a node restarted by a test would then find its
# own port in use.  Below the floor live well-known services and `net init`'s
# default (7100) that a developer may be running.
TEST_PORT_FLOOR = 10_000


def port_bands(nodes: int) -> list[tuple[int, int]]:
    """Ranges [start, stop) of base ports whose whole network lies outside the ephemeral range."""
    span = PEER_PORT_OFFSET + nodes
    low, high = ephemeral_port_range()
    bands = [(TEST_PORT_FLOOR, low - span + 1), (high + 1, 65_536 - span)]
    return [(start, stop) for start, stop in bands if stop > start]


def free_base_port(nodes: int) -> int:
    """A base port whose api (base+i) and peer (base+100+i) ports are all free,
    and all outside the kernel's ephemeral port range."""
    bands = port_bands(nodes)
    total = sum(stop - start for start, stop in bands)
    seed = os.getpid() * 7919 + time.time_ns() // 1_000_000
    for attempt in range(50):
        offset = (seed + attempt * 211) % total
        for start, stop in bands:
            if offset < stop - start:
                base = start + offset
                break
            offset -= stop - start
        if _ports_free(network_ports(base, nodes)):
            return base
    raise RuntimeError("no free ports on 127.0.0.1")


class LocalNetwork:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        # network.json through the one typed reader every tool uses.
        self.network = read_network(directory)

    @property
    def nodes(self) -> tuple[NodeEntry, ...]:
        return self.network.nodes

    def api_url(self, name: str) -> str:
        return self.network.node(name).api_url

    def pid(self, name: str) -> int:
        return int(self.network.node(name).pid_file.read_text())

    def kill(self, name: str) -> None:
        os.kill(self.pid(name), signal.SIGKILL)

    def up(self) -> None:
        provenet("net", "up", str(self.dir), "--timeout-s", str(UP_TIMEOUT_S))

    def client(self, org_id: str | None = None, node: str | None = None) -> ProvenetClient:
        return ProvenetClient.from_network_dir(self.dir, org_id=org_id, node=node)

    def ssl(self) -> SSLContext | bool:
        context = self.network.ssl_context()
        return context if context is not None else False

    async def status(self, http: aiohttp.ClientSession, name: str) -> dict[str, Any] | None:
        try:
            async with http.get(f"{self.api_url(name)}/v1/status", ssl=self.ssl()) as response:
                return dict(await response.json())
        except (aiohttp.ClientError, OSError):
            return None


CHAIN = "provenet-local"


class Single:
    """One in-process validator without TLS (a network of one commits alone)."""

    def __init__(self, node: RunningNode, directory: Path) -> None:
        self.node = node
        self.dir = directory
        self.url = f"http://127.0.0.1:{node.config.api_port}"
        self.farm = load_identity(directory / "orgs" / "farm.key").signer

    def harvest(self, nonce: int, lot: str, expiry_height: int | None = None) -> Transaction:
        args: dict[str, object] = {"lot_id": lot, "product": "wheat", "mass_grams": 1_000}
        return sign_tx(
            self.farm,
            chain_id=CHAIN,
            nonce=nonce,
            contract="food",
            method="harvest",
            args=args,
            expiry_height=expiry_height,
        )


@asynccontextmanager
async def single_node(parent: Path, limits: dict[str, int]) -> AsyncIterator[Single]:
    """Start one validator in this process with ``limits`` overriding NodeLimits."""
    init_network(parent / "net", 1, tls=False, base_port=free_base_port(1))
    config_path = parent / "net" / "nodes" / "v0" / "config.json"
    config = json.loads(config_path.read_text())
    config["limits"] = limits
    config_path.write_text(json.dumps(config))
    node = await start_node(load_node_config(config_path))
    try:
        yield Single(node, parent / "net")
    finally:
        await node.stop()


def init_local_network(parent: Path, validators: int, observers: int, tls: bool) -> Path:
    """``provenet net init`` a network in ``parent/net`` on free ports outside
    the ephemeral range; returns its directory."""
    directory = parent / "net"
    args = ["net", "init", str(directory), "--validators", str(validators)]
    args += ["--observers", str(observers)]
    args += ["--base-port", str(free_base_port(validators + observers))]
    if not tls:
        args.append("--no-tls")
    provenet(*args)
    return directory


@contextmanager
def local_network(
    parent: Path, validators: int = 4, tls: bool = True, observers: int = 0
) -> Iterator[LocalNetwork]:
    directory = init_local_network(parent, validators, observers, tls)
    network = LocalNetwork(directory)
    try:
        network.up()
        yield network
    finally:
        subprocess.run(
            [sys.executable, "-m", "node.ops.cli", "net", "down", str(directory)],
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 at a port the kernel picks (so nothing can
    collide); yields its base URL and cleans up on exit."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
