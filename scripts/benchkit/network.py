"""A local network for a benchmark: made with ``net init``, started with ``net up``.

:func:`run_in_network_dir` runs a benchmark whose network lives in a
temporary directory and always stops it; :func:`start_local_network` makes
and starts it; the rest asks the running nodes what a benchmark needs
(links up, nonces, setup committed, agreement at the end).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit.children import run_loop
from benchkit.console import log
from benchkit.http import NodeHttp
from node.ops import netctl
from node.ops.netinit import init_network, network_ports
from node.sdk.keys import load_identity
from node.sdk.network_file import NETWORK_FILE, Network, NodeEntry

LOOPBACK = "127.0.0.1"
# How long one setup transaction may take to commit (the node's wait, in ms).
SETUP_COMMIT_TIMEOUT_MS = 20_000


@dataclass(frozen=True)
class LocalNetwork:
    """A started network: its directory's description and each node's pid."""

    network: Network
    pids: dict[str, int]

    @property
    def validators(self) -> list[NodeEntry]:
        return [e for e in self.network.nodes if e.role == "validator"]

    @property
    def observers(self) -> list[NodeEntry]:
        return [e for e in self.network.nodes if e.role == "observer"]

    @property
    def ca_file(self) -> str | None:
        """The CA file client processes trust (None without TLS)."""
        network = self.network
        return str(network.ca_file) if network.tls and network.ca_file else None

    def pids_of(self, entries: Sequence[NodeEntry]) -> dict[str, int]:
        return {e.name: self.pids[e.name] for e in entries}

    def http(self) -> NodeHttp:
        """The transport to every node of the network (use it with ``async with``)."""
        return NodeHttp([e.api_url for e in self.network.nodes], self.network.ssl_context())

    def signers(self) -> dict[str, Any]:
        """Each organisation's transaction signer, from its identity file."""
        return {org: load_identity(path).signer for org, path in self.network.orgs.items()}


def ports_in_use(host: str, ports: Sequence[int]) -> list[int]:
    """The ports of ``ports`` that cannot be bound on ``host`` now."""
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                busy.append(port)
    return busy


def start_network(netdir: Path, timeout_s: float) -> dict[str, int]:
    """``netctl.up``, tolerating its false "exited" verdict on a node that is just starting.

    ``netctl`` checks that a pid is the node by reading ``/proc/<pid>/cmdline``;
    right after the fork that file can still be empty, and ``up`` then gives up
    on a healthy node at once.  Polling the same nodes again settles it.
    Returns each node's pid.
    """
    try:
        netctl.up(netdir, timeout_s)
    except netctl.NetError as exc:
        network = netctl.load_network(netdir)
        failed = netctl.wait_healthy(network, timeout_s)
        if failed:
            raise
        log(
            f"net up reported a starting node as exited; all are healthy: {str(exc).splitlines()[0]}"
        )
    network = netctl.load_network(netdir)
    pids = {entry.name: netctl.running_pid(entry) for entry in network.nodes}
    missing = [name for name, pid in pids.items() if pid is None]
    if missing:
        raise RuntimeError(f"nodes {missing} are not running")
    return {name: pid for name, pid in pids.items() if pid is not None}


async def start_local_network(
    netdir: Path,
    validators: int,
    observers: int,
    *,
    tls: bool,
    base_port: int,
    timeout_s: float,
) -> LocalNetwork:
    """``net init`` a network in ``netdir`` and start it, each node its own process."""
    busy = ports_in_use(LOOPBACK, network_ports(base_port, validators + observers))
    if busy:
        raise RuntimeError(f"ports {busy} are in use; choose another --base-port")
    init_network(netdir, validators, tls=tls, base_port=base_port, observers=observers)
    log(f"starting {validators} validators and {observers} observers in {netdir}")
    pids = await asyncio.to_thread(start_network, netdir, timeout_s)
    return LocalNetwork(netctl.load_network(netdir), pids)


def run_in_network_dir(
    bench_coroutine: Callable[[], Coroutine[Any, Any, Any]],
    root: Path,
    report: dict[str, Any],
    keep: bool = False,
) -> int:
    """Run one benchmark whose network lives in ``root/net``; always stop the
    network, and remove ``root`` unless ``keep``.  Returns the exit status
    (1 when the benchmark failed, with the error in ``report``)."""
    status = 0
    try:
        run_loop(bench_coroutine())
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        log(f"failed: {report['error']}")
        status = 1
    finally:
        netdir = root / "net"
        if (netdir / NETWORK_FILE).exists():
            log("stopping the network")
            try:
                report["down"] = netctl.down(netdir)
            except netctl.NetError as exc:
                report["down_error"] = str(exc)
        if keep:
            report["network_dir"] = str(netdir)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


async def status_of(http: NodeHttp, entry: NodeEntry) -> Any:
    """A node's ``GET /v1/status``."""
    return await http.get_json(entry.api_url, "/v1/status")


async def wait_connected(http: NodeHttp, nodes: Sequence[NodeEntry], timeout_s: float) -> None:
    """Until every node reports every peer link connected."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = [await status_of(http, e) for e in nodes]
        if all(
            all(peer.get("connected") for peer in (s.get("peers") or {}).values()) for s in statuses
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"peer links not all connected after {timeout_s:g} s")
        await asyncio.sleep(0.1)


async def commit_setup(http: NodeHttp, api_url: str, envelopes: Sequence[bytes]) -> None:
    """Commit setup transactions one by one, waiting for each."""
    path = f"/v1/txs?wait=true&timeout_ms={SETUP_COMMIT_TIMEOUT_MS}"
    for envelope in envelopes:
        body = (await http.send("POST", api_url, path, envelope)).body
        receipt = (body or {}).get("receipt") or {}
        if body.get("status") != "committed" or receipt.get("status") != "ok":
            raise RuntimeError(f"setup transaction did not commit ok: {body}")


async def next_nonces(http: NodeHttp, api_url: str, signers: dict[str, Any]) -> dict[str, int]:
    """Each organisation's next nonce (``pending_next_nonce``) on the node."""
    nonces = {}
    for org, signer in signers.items():
        body = await http.get_json(api_url, f"/v1/nonce/{signer.public_key.hex()}")
        nonces[org] = int(body["pending_next_nonce"])
    return nonces


async def agreement(
    http: NodeHttp, nodes: Sequence[NodeEntry], timeout_s: float = 15.0
) -> dict[str, Any]:
    """Wait until every node is at one height, then compare hashes and state roots."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = {e.name: await status_of(http, e) for e in nodes}
        heights = {s["height"] for s in statuses.values()}
        if len(heights) == 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    roots = {s["state_root"] for s in statuses.values()}
    hashes = {s["block_hash"] for s in statuses.values()}
    dropped = {
        name: sum(int(p.get("dropped", 0)) for p in (s.get("peers") or {}).values())
        for name, s in statuses.items()
    }
    return {
        "all_agree": len(heights) == 1 and len(roots) == 1 and len(hashes) == 1,
        "heights": {name: s["height"] for name, s in statuses.items()},
        "state_root": next(iter(roots)) if len(roots) == 1 else sorted(roots),
        "views": sorted({s.get("view") for s in statuses.values()}),
        "mempool_sizes": {
            name: (s.get("mempool") or {}).get("size") for name, s in statuses.items()
        },
        "peer_frames_dropped": dropped,
    }


async def observers_agree(
    http: NodeHttp,
    observers: Sequence[NodeEntry],
    validators: dict[str, Any],
    timeout_s: float = 15.0,
) -> dict[str, Any]:
    """Each observer's height, and whether it holds the validators' state root there."""
    heights = set(validators["heights"].values())
    root = validators["state_root"]
    deadline = time.monotonic() + timeout_s
    result = {}
    for entry in observers:
        while True:
            status = await status_of(http, entry)
            if status["height"] in heights or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        result[entry.name] = {
            "height": status["height"],
            "agrees": len(heights) == 1
            and status["height"] in heights
            and isinstance(root, str)
            and status["state_root"] == root,
            "alerts": len(status.get("alerts") or []),
            "following": status.get("following"),
        }
    return result
