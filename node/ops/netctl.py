"""Run a local network: start, watch and stop the nodes ``net init`` wrote.

Theory of operation
-------------------
``network.json`` (:mod:`node.sdk.network_file`, written by
:mod:`node.ops.netinit`, read here by :func:`load_network`) lists every
node with its config file and URLs.
:func:`up` starts each node as its own background process, exactly as an
operator would (``python -m node.ops.cli node run --config FILE``), in a new
session so that closing the terminal that ran ``net up`` does not kill the
network.  A node's output goes to ``nodes/<name>/node.log`` and its process
id to ``nodes/<name>/node.pid``; :func:`down` and :func:`status` need
nothing else, so they work from any later shell.

A pid file can outlive its process, and the kernel can give that pid to an
unrelated program; before signalling a pid we check (where ``/proc`` exists)
that the process is still this node's ``node run --config FILE``.

Nodes are asked over HTTP through the SDK's transport
(:mod:`node.sdk.transport`), one request to one node; the commands are
synchronous for the CLI and run the transport on an event loop of their own
(``asyncio.run``), so call them from synchronous code or a thread.

Nothing here prints: functions return data or text and raise
:class:`NetError` with the whole operator-facing message; the CLI prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from node.sdk.errors import ProvenetError
from node.sdk.network_file import (
    LOG_NAME,
    NETWORK_FILE,
    ConfigError,
    Network,
    NodeEntry,
    read_network,
)
from node.sdk.transport import NodeFailed, RetryPolicy, Transport

DEFAULT_UP_TIMEOUT_S = 30.0
DOWN_GRACE_S = 10.0
POLL_INTERVAL_S = 0.2
REQUEST_TIMEOUT_S = 2.0
LOG_TAIL_LINES = 20

# Children started by this process, so a node that died is reaped and seen
# as dead (a zombie still answers kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class NetError(ProvenetError):
    """An operator-facing failure of a network command; the message says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__("net_failed", message, text=message)


# ------------------------------------------------------------ network.json


def load_network(directory: Path) -> Network:
    """Read DIR/network.json (:func:`node.sdk.network_file.read_network`); a
    missing or malformed file is a :class:`NetError`."""
    root = Path(directory).resolve()
    if not (root / NETWORK_FILE).exists():
        raise NetError(
            f"{root} is not a network directory (no {NETWORK_FILE}); "
            f"create one with: provenet net init {directory} --validators 4"
        )
    try:
        return read_network(root)
    except ConfigError as exc:
        raise NetError(str(exc)) from None


# ------------------------------------------------------------ processes


def node_command(entry: NodeEntry) -> list[str]:
    """The command line that runs one node, the one deploy/ artefacts use too."""
    return [sys.executable, "-m", "node.ops.cli", "node", "run", "--config", str(entry.config)]


def running_pid(entry: NodeEntry) -> int | None:
    """The pid in the node's pid file if that process is alive and is this node."""
    try:
        pid = int(entry.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and _is_node_process(pid, entry) else None


def running_nodes(network: Network) -> list[str]:
    """Names of the nodes of ``network`` whose process is alive."""
    return [entry.name for entry in network.nodes if running_pid(entry) is not None]


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _is_node_process(pid: int, entry: NodeEntry) -> bool:
    """Alive, and (where /proc tells) running this node's config: pids get reused."""
    if not _alive(pid):
        return False
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    if not raw:
        # A child between fork and exec (Popen uses vfork) has no command line
        # yet: it cannot be told apart, so it counts as this node.
        return True
    return str(entry.config).encode() in raw.split(b"\0")


def start_node(entry: NodeEntry) -> int:
    """Start one node in the background; return its pid (the running one if already up)."""
    existing = running_pid(entry)
    if existing is not None:
        return existing
    if not entry.config.is_file():
        raise NetError(f"{entry.name}: config file {entry.config} is missing")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with entry.log_file.open("ab") as log:
        process = subprocess.Popen(
            node_command(entry),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=entry.directory,
            env=env,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    entry.pid_file.write_text(f"{process.pid}\n")
    return process.pid


def stop_nodes(entries: Sequence[NodeEntry], grace_s: float = DOWN_GRACE_S) -> dict[str, str]:
    """Stop several nodes at once, so the grace period is shared, not summed."""
    outcome: dict[str, str] = {}
    pids: dict[str, int] = {}
    for entry in entries:
        pid = running_pid(entry)
        if pid is None:
            outcome[entry.name] = "not running"
        else:
            pids[entry.name] = pid
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name, pid in pids.items():
        outcome[name] = "stopped"
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
            _wait_gone(pid, 2.0)
            outcome[name] = "killed"
        _CHILDREN.pop(pid, None)
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):
            entry.pid_file.unlink()
    return outcome


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


# ------------------------------------------------------------ HTTP

# net up polls /healthz at a steady pace until its deadline.
HEALTH_POLL = RetryPolicy(first_pause_s=POLL_INTERVAL_S, max_pause_s=POLL_INTERVAL_S)


def _transport(network: Network) -> Transport:
    """The SDK's transport to every node of ``network``, one node per request
    (no failover, no retry: each node is asked about itself)."""
    return Transport(
        [entry.api_url for entry in network.nodes],
        network.ssl_context(),
        timeout_s=REQUEST_TIMEOUT_S,
        connect_timeout_s=REQUEST_TIMEOUT_S,
        retry=RetryPolicy(rounds=1),
    )


async def _healthy(transport: Transport, entry: NodeEntry) -> bool:
    """This node (by name, not just whoever holds its port) answers /healthz."""
    try:
        reply = await transport.fetch(entry.api_url, "GET", "/healthz")
    except NodeFailed:
        return False
    body = reply.json()
    return reply.status == 200 and isinstance(body, dict) and body.get("node") == entry.name


def wait_healthy(
    network: Network,
    timeout_s: float = DEFAULT_UP_TIMEOUT_S,
    names: Iterable[str] | None = None,
) -> list[str]:
    """Poll ``/healthz`` until every named node answers 200; return those that did not.

    A node whose process has exited is given up on at once instead of being
    polled until the deadline: its log already says why.  Runs its own event
    loop (call it from synchronous code, or from a thread).
    """
    return asyncio.run(_wait_healthy(network, timeout_s, names))


async def _wait_healthy(
    network: Network, timeout_s: float, names: Iterable[str] | None
) -> list[str]:
    wanted = set(names) if names is not None else {e.name for e in network.nodes}
    pending = [e for e in network.nodes if e.name in wanted]
    deadline = time.monotonic() + timeout_s
    failed: list[str] = []
    transport = _transport(network)
    try:
        polls = 0
        while pending:
            # Death first: a dead node's port may be answered by another network.
            dead = [e for e in pending if e.pid_file.exists() and running_pid(e) is None]
            failed.extend(e.name for e in dead)
            alive = [e for e in pending if e not in dead]
            healthy = await asyncio.gather(*(_healthy(transport, e) for e in alive))
            pending = [e for e, ok in zip(alive, healthy, strict=True) if not ok]
            if pending and time.monotonic() >= deadline:
                failed.extend(e.name for e in pending)
                break
            if pending:
                polls += 1
                await asyncio.sleep(HEALTH_POLL.pause_s(polls))
    finally:
        await transport.close()
    order = [e.name for e in network.nodes]
    return sorted(failed, key=order.index)


# ------------------------------------------------------------ commands


def up(directory: Path, timeout_s: float = DEFAULT_UP_TIMEOUT_S) -> list[dict[str, Any]]:
    """Start every node of the network and wait until all are healthy.

    Returns one endpoint per node ({name, role, org_id, replica_id, api_url,
    peer_url, pid}).  On failure raises :class:`NetError` naming the nodes
    that did not become healthy, with the tail of their logs; nodes that did
    start keep running (``down`` stops them).
    """
    network = load_network(directory)
    pids = {entry.name: start_node(entry) for entry in network.nodes}
    failed = wait_healthy(network, timeout_s)
    if failed:
        raise NetError(_failure_report(network, failed, timeout_s))
    return [
        {
            "name": e.name,
            "role": e.role,
            "org_id": e.org_id,
            "replica_id": e.replica_id,
            "api_url": e.api_url,
            "peer_url": e.peer_url,
            "pid": pids[e.name],
        }
        for e in network.nodes
    ]


def down(directory: Path, grace_s: float = DOWN_GRACE_S) -> dict[str, str]:
    """Stop every node of the network; name -> 'stopped' | 'killed' | 'not running'."""
    network = load_network(directory)
    return stop_nodes(network.nodes, grace_s)


def status(directory: Path) -> list[dict[str, Any]]:
    """GET /v1/status of every node (all at once, on an event loop of its own).

    One dict per node: {name, role, org_id, api_url, pid (or None), up,
    status (the node's JSON, or None), error (why it is down, or None)}.
    """
    return asyncio.run(_statuses(load_network(directory)))


async def _statuses(network: Network) -> list[dict[str, Any]]:
    transport = _transport(network)
    try:
        return list(await asyncio.gather(*(_node_status(transport, e) for e in network.nodes)))
    finally:
        await transport.close()


async def _node_status(transport: Transport, entry: NodeEntry) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": entry.name,
        "role": entry.role,
        "org_id": entry.org_id,
        "api_url": entry.api_url,
        "pid": running_pid(entry),
        "up": False,
        "status": None,
        "error": None,
    }
    try:
        reply = await transport.fetch(entry.api_url, "GET", "/v1/status")
    except NodeFailed as failure:
        row["error"] = failure.reason
        return row
    body = reply.json()
    if reply.status != 200 or not isinstance(body, dict):
        row["error"] = f"HTTP {reply.status}"
        return row
    row.update(up=True, status=body)
    return row


# ------------------------------------------------------------ text for the CLI


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' if there is none)."""
    try:
        text = path.read_bytes()[-64_000:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _failure_report(network: Network, failed: list[str], timeout_s: float) -> str:
    parts = [
        f"{len(failed)} of {len(network.nodes)} nodes did not become healthy "
        f"(waited up to {timeout_s:g} s): {', '.join(failed)}"
    ]
    for name in failed:
        entry = network.node(name)
        state = "running" if running_pid(entry) is not None else "exited"
        log = tail(entry.log_file) or "(empty log)"
        indented = "\n".join(f"    {line}" for line in log.splitlines())
        parts.append(f"--- {name} ({state}), last lines of {entry.log_file}:\n{indented}")
    parts.append(f"stop what started with: provenet net down {network.root}")
    return "\n".join(parts)


def format_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart."""
    table = [list(header)] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def format_endpoints(directory: Path, endpoints: Sequence[dict[str, Any]]) -> str:
    """The table `net up` prints, and how to use the network."""
    network = load_network(directory)
    table = format_table(
        ("NAME", "ROLE", "ORG", "API"),
        ((e["name"], e["role"], e["org_id"], e["api_url"]) for e in endpoints),
    )
    first = endpoints[0]["api_url"] if endpoints else "URL"
    curl = f"curl --cacert {network.ca_file} " if network.ca_file else "curl "
    return "\n".join(
        [
            f"network {network.chain_id}: {len(endpoints)} nodes up",
            table,
            "",
            f"  status:   provenet net status {directory}",
            f"  api:      {curl}{first}/v1/status",
            f"  txs:      provenet tx ... --net {directory}    (org keys in {network.root / 'orgs'})",
            f"  logs:     {network.root / 'nodes'}/<name>/{LOG_NAME}",
            f"  stop:     provenet net down {directory}",
        ]
    )


def format_status(rows: Sequence[dict[str, Any]]) -> str:
    """The table `net status` prints: one line per node, 'down' for silent ones."""
    return format_table(
        ("NAME", "ROLE", "VIEW", "HEIGHT", "STATE_ROOT", "PEERS", "STATUS"),
        (_status_cells(row) for row in rows),
    )


def _status_cells(row: dict[str, Any]) -> list[object]:
    body = row["status"]
    if not row["up"] or not isinstance(body, dict):
        return [row["name"], row["role"], None, None, None, None, f"down ({row['error']})"]
    peers = body.get("peers") or {}
    connected = sum(1 for p in peers.values() if isinstance(p, dict) and p.get("connected"))
    root = body.get("state_root")
    primary = body.get("primary")
    is_primary = primary is not None and primary == body.get("replica_id")
    return [
        row["name"],
        body.get("role", row["role"]),
        body.get("view"),
        body.get("height"),
        root[:16] if isinstance(root, str) else None,
        f"{connected}/{len(peers)}",
        "up (primary)" if is_primary else "up",
    ]
