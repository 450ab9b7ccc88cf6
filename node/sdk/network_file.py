"""A network directory's ``network.json`` as a typed value: one reader, one writer.

``provenet net init`` (:mod:`node.ops.netinit`) writes it last, through
:func:`write_network`; ``net up/status/down`` (:mod:`node.ops.netctl`), the
participant SDK and CLI (``--net DIR``, :meth:`ProvenetClient.from_network_dir
<node.sdk.client.ProvenetClient.from_network_dir>`) and the test harnesses
read it, all through :func:`read_network`.  The reader is a schema
(:mod:`node.sdk.schema`): an unknown or missing key, a value of the wrong
type, or a node name given twice is one :class:`ConfigError` line naming the
file, the key path and what was expected.

Format (paths relative to the network directory)::

    {"chain_id": "provenet-local", "tls": true, "ca_file": "ca/ca.pem",
     "nodes": [{"name": "v0", "role": "validator", "replica_id": 0,
                "org_id": "leadfirm", "api_url": "https://127.0.0.1:7100",
                "peer_url": "wss://127.0.0.1:7200/peer",
                "config": "nodes/v0/config.json"}, ...],
     "orgs": {"farm": "orgs/farm.key", ...}}

An observer's ``replica_id`` is null; ``ca_file`` is null without TLS.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.sdk.files import PUBLIC_FILE_MODE, write_file
from node.sdk.schema import (
    At,
    ConfigError,
    boolean,
    choice,
    integer,
    list_of,
    nested,
    optional,
    read_json_file,
    read_object,
    required,
    text,
    unique,
)
from node.sdk.tls import client_context

__all__ = [
    "GENESIS_FILE",
    "NETWORK_FILE",
    "ConfigError",
    "Network",
    "NodeEntry",
    "network_to_json",
    "read_network",
    "write_network",
]

NETWORK_FILE = "network.json"
GENESIS_FILE = "genesis.json"
# What `net up` keeps in each node's directory (node/ops/netctl.py).
LOG_NAME = "node.log"
PID_NAME = "node.pid"
ROLES = ("validator", "observer")


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

    @property
    def path(self) -> Path:
        return self.root / NETWORK_FILE

    @property
    def genesis_file(self) -> Path:
        return self.root / GENESIS_FILE

    def ssl_context(self) -> ssl.SSLContext | None:
        """How an API client reaches these nodes: the CA's context, or None for plain HTTP."""
        return client_context(self.ca_file) if self.tls and self.ca_file else None

    def node(self, name: str) -> NodeEntry:
        for entry in self.nodes:
            if entry.name == name:
                return entry
        raise ConfigError(f"{self.path}: no node named {name!r}")

    def org_key(self, org_id: str) -> Path:
        """The transaction key file of organisation ``org_id``."""
        path = self.orgs.get(org_id)
        if path is None:
            known = ", ".join(sorted(self.orgs))
            raise ConfigError(f"{self.root}: no organisation {org_id!r} (known: {known})")
        return path

    def api_urls(self, first: str | None = None) -> list[str]:
        """API URLs, validators before observers (which refuse writes), and
        the node named ``first`` (a name or an API URL) before all."""
        entries = sorted(self.nodes, key=lambda entry: entry.role != "validator")
        urls = [entry.api_url for entry in entries]
        if first is None:
            return urls
        chosen = [e.api_url for e in entries if first in (e.name, e.api_url)]
        if not chosen:
            raise ConfigError(f"network has no node {first!r}")
        return chosen + [url for url in urls if url not in chosen]


# ------------------------------------------------------------ reading


def _replica_id(value: Any, at: At) -> int | None:
    return None if value is None else integer(0)(value, at)


def _relative_path(value: Any, at: At) -> str:
    return text(value, at)


def _optional_path(value: Any, at: At) -> str | None:
    return None if value is None else _relative_path(value, at)


def _org_paths(value: Any, at: At) -> dict[str, str]:
    if type(value) is not dict:
        raise at.expected("an object of organisation -> key file", value)
    return {
        text(org_id, at): _relative_path(path, at.key(org_id)) for org_id, path in value.items()
    }


NODE_SCHEMA = {
    "name": required(text),
    "role": required(choice(ROLES)),
    "replica_id": required(_replica_id),
    "org_id": required(text),
    "api_url": required(text),
    "peer_url": required(text),
    "config": required(_relative_path),
}
NETWORK_SCHEMA = {
    "chain_id": required(text),
    "tls": required(boolean),
    "ca_file": optional(_optional_path, None),
    "nodes": required(list_of(nested(NODE_SCHEMA), min_items=1)),
    "orgs": optional(_org_paths, {}),
}


def read_network(directory: Path | str) -> Network:
    """DIR/network.json; a missing, unreadable or malformed file is one :class:`ConfigError` line."""
    root = Path(directory).resolve()
    path = root / NETWORK_FILE
    at = At(str(path))
    data = read_object(read_json_file(path), at, NETWORK_SCHEMA)
    nodes = data["nodes"]
    unique([(at.key("nodes").index(i).key("name"), n["name"]) for i, n in enumerate(nodes)], "name")
    for i, node in enumerate(nodes):
        if node["role"] == "validator" and node["replica_id"] is None:
            raise at.key("nodes").index(i).key("replica_id").expected("a validator's id", None)
    return Network(
        root=root,
        chain_id=data["chain_id"],
        tls=data["tls"],
        ca_file=root / data["ca_file"] if data["ca_file"] else None,
        nodes=tuple(NodeEntry(**{**node, "config": root / node["config"]}) for node in nodes),
        orgs={org_id: root / path for org_id, path in data["orgs"].items()},
    )


# ------------------------------------------------------------ writing


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


def write_network(network: Network) -> Path:
    """Write ROOT/network.json (public: every node and client reads it); return its path."""
    document = json.dumps(network_to_json(network), indent=2) + "\n"
    write_file(network.path, document.encode(), PUBLIC_FILE_MODE)
    return network.path
