"""Run a local network: start, watch and stop the nodes ``net init`` wrote.

Theory of operation
-------------------
``network.json`` (read by :func:`load_network`, written by
:mod:`node.ops.netinit`) lists every node with its config file and URLs.
:func:`up` starts each node as its own background process, exactly as an
operator would (``python -m node.ops.cli node run --config FILE``), in a new
session so that closing the terminal that ran ``net up`` does not kill the
network.  A node's output goes to ``nodes/<name>/node.log`` and its process
id to ``nodes/<name>/node.pid``; :func:`down` and :func:`status` need
nothing else, so they work from any later shell.

A pid file can outlive its process, and the kernel can give that pid to an
unrelated program; before signalling a pid we check (where ``/proc`` exists)
that the process is still this node's ``node run --config FILE``.

Nothing here prints: functions return data or text and raise
:class:`NetError` with the whole operator-facing message; the CLI prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.sdk.errors import ProvenetError
from node.sdk.tls import client_context

NETWORK_FILE = "network.json"
GENESIS_FILE = "genesis.json"
LOG_NAME = "node.log"
PID_NAME = "node.pid"
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


@dataclass(frozen=True)
class NodeEntry:
    """One node of network.json, with its config path made absolute."""

    name: str
    role: str
    replica_id: int | None
    org_id: str
    api_url: str
    peer_url: str
    config: Path

    @property
    def directory(self) -> Path:
        return self.config.parent

    @property
    def log_file(self) -> Path:
        return self.directory / LOG_NAME

    @property
    def pid_file(self) -> Path:
        return self.directory / PID_NAME


@dataclass(frozen=True)
class Network:
    """network.json of a network directory, paths absolute."""

    root: Path
    chain_id: str
    tls: bool
    ca_file: Path | None
    nodes: tuple[NodeEntry, ...]
    orgs: dict[str, Path]

    def ssl_context(self) -> ssl.SSLContext | None:
        """How an API client reaches these nodes: the CA's context, or None for plain HTTP."""
        return client_context(self.ca_file) if self.tls and self.ca_file else None

    def node(self, name: str) -> NodeEntry:
        for entry in self.nodes:
            if entry.name == name:
                return entry
        raise NetError(f"no node named {name!r} in {self.root / NETWORK_FILE}")


# ------------------------------------------------------------ network.json


def network_to_json(network: Network) -> dict[str, Any]:
    """The network.json document, paths relative to the network directory."""
    root = network.root

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    return {
        "chain_id": network.chain_id,
        "tls": network.tls,
        "ca_file": rel(network.ca_file) if network.ca_file else None,
        "nodes": [
            {
                "name": e.name,
                "role": e.role,
                "replica_id": e.replica_id,
                "org_id": e.org_id,
                "api_url": e.api_url,
                "peer_url": e.peer_url,
                "config": rel(e.config),
            }
            for e in network.nodes
        ],
        "orgs": {org_id: rel(path) for org_id, path in network.orgs.items()},
    }


def load_network(directory: Path) -> Network:
    """Read DIR/network.json; a missing or malformed file is a :class:`NetError`."""
    root = Path(directory).resolve()
    path = root / NETWORK_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NetError(
            f"{root} is not a network directory (no {NETWORK_FILE}); "
            f"create one with: provenet net init {directory} --validators 4"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise NetError(f"cannot read {path}: {exc}") from None
    try:
        ca_file = data.get("ca_file")
        return Network(
            root=root,
            chain_id=str(data["chain_id"]),
            tls=bool(data["tls"]),
            ca_file=root / ca_file if ca_file else None,
            nodes=tuple(_node_entry(root, item) for item in data["nodes"]),
            orgs={str(k): root / v for k, v in data.get("orgs", {}).items()},
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise NetError(f"{path} is malformed ({exc!r})") from None


def _node_entry(root: Path, item: dict[str, Any]) -> NodeEntry:
    return NodeEntry(
        name=str(item["name"]),
        role=str(item["role"]),
        replica_id=item.get("replica_id"),
        org_id=str(item["org_id"]),
        api_url=str(item["api_url"]),
        peer_url=str(item["peer_url"]),
        config=root / item["config"],
    )


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


def get_json(url: str, context: ssl.SSLContext | None, timeout_s: float) -> tuple[int, Any]:
    """GET ``url``; (HTTP status, decoded JSON body or None).  Connection errors raise OSError."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            return response.status, _json_or_none(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json_or_none(exc.read())


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _healthy(entry: NodeEntry, context: ssl.SSLContext | None) -> bool:
    """This node (by name, not just whoever holds its port) answers /healthz."""
    try:
        status, body = get_json(f"{entry.api_url}/healthz", context, REQUEST_TIMEOUT_S)
    except (OSError, ValueError):
        return False
    return status == 200 and isinstance(body, dict) and body.get("node") == entry.name


def wait_healthy(
    network: Network,
    timeout_s: float = DEFAULT_UP_TIMEOUT_S,
    names: Iterable[str] | None = None,
) -> list[str]:
    """Poll ``/healthz`` until every named node answers 200; return those that did not.

    A node whose process has exited is given up on at once instead of being
    polled until the deadline: its log already says why.
    """
    wanted = set(names) if names is not None else {e.name for e in network.nodes}
    pending = [e for e in network.nodes if e.name in wanted]
    context = network.ssl_context()
    deadline = time.monotonic() + timeout_s
    failed: list[str] = []
    while pending:
        still: list[NodeEntry] = []
        for entry in pending:
            # Death first: a dead node's port may be answered by another network.
            if entry.pid_file.exists() and running_pid(entry) is None:
                failed.append(entry.name)
            elif not _healthy(entry, context):
                still.append(entry)
        pending = still
        if pending and time.monotonic() >= deadline:
            failed.extend(e.name for e in pending)
            break
        if pending:
            time.sleep(POLL_INTERVAL_S)
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
    """GET /v1/status of every node.

    One dict per node: {name, role, org_id, api_url, pid (or None), up,
    status (the node's JSON, or None), error (why it is down, or None)}.
    """
    network = load_network(directory)
    context = network.ssl_context()
    return [_node_status(entry, context) for entry in network.nodes]


def _node_status(entry: NodeEntry, context: ssl.SSLContext | None) -> dict[str, Any]:
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
        code, body = get_json(f"{entry.api_url}/v1/status", context, REQUEST_TIMEOUT_S)
    except (OSError, ValueError) as exc:
        row["error"] = str(getattr(exc, "reason", exc))
        return row
    if code != 200 or not isinstance(body, dict):
        row["error"] = f"HTTP {code}"
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
