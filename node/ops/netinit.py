"""``provenet net init``: write a complete local network directory.

Theory of operation
-------------------
One call produces everything N validators need to start on this host:
fresh random keys (consensus keys per node, one transaction key per
organisation of :mod:`node.ops.catalog`), the shared ``genesis.json``, one
``config.json`` per node, and, with TLS, a private network CA and one
certificate per node.  Paths inside node configs are relative to the config
file, so the directory can be copied elsewhere whole.

Ports: node i serves its API on ``base_port + i`` and its peer link on
``base_port + 100 + i``.  All nodes listen on one ``host`` (127.0.0.1 by
default), or each on its own address from ``hosts`` (``--hosts``), as on a
network of separate machines: the partition tests give each validator its
own network namespace and address this way.  ``network.json`` is written last: a directory
without it is not (yet) a network, and an interrupted init can simply be
run again.  Every file and directory gets an explicit mode whatever the
umask (see ``DIRECTORY_MODES``; files through :func:`node.sdk.files.write_file`:
0644 for public files, 0600 for keys), because anyone who can rewrite the
genesis, a config or the CA certificate controls the network.
Re-initialising an existing network destroys its chain (new
keys, new genesis, node data removed), so it needs ``force`` and is refused
while any of its nodes still runs.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from consensus.codec import Ed25519Signer
from contracts.genesis import Genesis, GenesisOrg, genesis_state
from node.ops.catalog import CHAIN_ID, DEFAULT_BASE_PORT, KP_PARTICIPANTS, ORGS, validator_org
from node.ops.netctl import NetError, load_network, running_nodes
from node.runtime.tls import issue_node_cert, make_ca
from node.sdk.files import (
    PRIVATE_DIR_MODE,
    PUBLIC_DIR_MODE,
    PUBLIC_FILE_MODE,
    make_directory,
    write_file,
)
from node.sdk.genesis import (
    DEFAULT_EPOCH_RULES,
    NetworkGenesis,
    ValidatorEntry,
    genesis_to_json,
    governed_validators,
)
from node.sdk.keys import Identity, save_identity
from node.sdk.network_file import GENESIS_FILE, NETWORK_FILE, Network, NodeEntry, write_network

PEER_PORT_OFFSET = 100
# The kernel hands out source ports of outgoing connections from this range
# (Linux's default when /proc does not say): a node listening on a port in it
# can find the port taken by some client's connection when it restarts.
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_RANGE = (32_768, 60_999)
# Observers are run by the regulator organisation of the catalog.
OBSERVER_ORG = "regulator"
MAX_VALIDATORS = PEER_PORT_OFFSET  # beyond this api and peer ports would collide
# What `net init` writes and `--force` removes; nothing else in DIR is touched.
GENERATED = (NETWORK_FILE, GENESIS_FILE, "ca", "nodes", "orgs")
# The directories net init makes, and why each has its mode.  Files carry
# their own modes too (node.sdk.files: 0644 public, 0600 keys), so a directory's
# mode decides only who may list it and reach what is inside.
DIRECTORY_MODES = {
    # ca.pem is public (every node and client reads it); ca.key is 0600.
    "ca": PUBLIC_DIR_MODE,
    # Only the node directories, listed by anyone who runs `net status`.
    "nodes": PUBLIC_DIR_MODE,
    # Nothing but the organisations' private transaction keys.
    "orgs": PRIVATE_DIR_MODE,
}
# nodes/<name>/: the node's consensus and TLS keys, and (once it runs) its
# chain data and signed records: the node's own user is the only reader.
NODE_DIR_MODE = PRIVATE_DIR_MODE


def init_network(
    dir: Path,
    validators: int,
    tls: bool = True,
    base_port: int = DEFAULT_BASE_PORT,
    chain_id: str = CHAIN_ID,
    host: str = "127.0.0.1",
    force: bool = False,
    observers: int = 0,
    hosts: Sequence[str] | None = None,
) -> Path:
    """Write a network of ``validators`` validators into ``dir``; return network.json's path.

    ``hosts``, when given, is one address per node (validators in replica
    order, then observers) and replaces ``host``: each node listens on and
    is advertised at its own address, as on a network of separate hosts.

    Raises :class:`NetError` for an operator mistake (bad count or ports, an
    existing network without ``force``, running nodes).
    """
    if type(validators) is not int or validators < 1:
        raise NetError(f"--validators must be at least 1, not {validators}")
    if type(observers) is not int or observers < 0:
        raise NetError(f"--observers must be a whole number, not {observers}")
    if validators + observers > MAX_VALIDATORS:
        raise NetError(f"at most {MAX_VALIDATORS} nodes (validators and observers) per network")
    node_hosts = _node_hosts(validators + observers, host, hosts)
    layout = _Layout(Path(dir).resolve(), chain_id, tls, base_port, node_hosts)
    for each in set(node_hosts):
        _check_arguments(validators + observers, base_port, chain_id, each)
    _prepare_directory(layout.root, force)
    org_keys = _write_org_keys(layout.root)
    nodes = [_node_entry(layout, index) for index in range(validators)]
    node_keys = [Identity(entry.org_id, Ed25519Signer.generate()) for entry in nodes]
    genesis = _make_genesis(chain_id, org_keys, nodes, node_keys)
    _write_json(layout.root / GENESIS_FILE, genesis_to_json(genesis))
    ca_file = _write_ca(layout) if tls else None
    for index, (entry, identity) in enumerate(zip(nodes, node_keys, strict=True)):
        _write_node(layout, index, entry, identity, nodes, ca_file)
    watchers = [_observer_entry(layout, validators + j, j) for j in range(observers)]
    for offset, entry in enumerate(watchers):
        _write_observer(layout, validators + offset, entry, nodes, ca_file)
    nodes += watchers
    network = Network(
        root=layout.root,
        chain_id=chain_id,
        tls=tls,
        ca_file=ca_file,
        nodes=tuple(nodes),
        orgs={org_id: _org_key_path(layout.root, org_id) for org_id in ORGS},
    )
    return write_network(network)


@dataclass(frozen=True)
class _Layout:
    """The choices every generated file depends on."""

    root: Path
    chain_id: str
    tls: bool
    base_port: int
    hosts: tuple[str, ...]  # one per node, by index

    def host(self, index: int) -> str:
        return self.hosts[index]

    def api_port(self, index: int) -> int:
        return self.base_port + index

    def peer_port(self, index: int) -> int:
        return self.base_port + PEER_PORT_OFFSET + index


# ------------------------------------------------------------ ports


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range of source ports for outgoing connections (inclusive)."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE
    return low, high


def network_ports(base_port: int, nodes: int) -> list[int]:
    """Every port a network of ``nodes`` nodes listens on (api ports, then peer ports)."""
    api = [base_port + index for index in range(nodes)]
    return api + [port + PEER_PORT_OFFSET for port in api]


def ephemeral_ports(base_port: int, nodes: int) -> list[int]:
    """The network's ports that lie in the ephemeral range (a restart may find them taken)."""
    low, high = ephemeral_port_range()
    return [port for port in network_ports(base_port, nodes) if low <= port <= high]


# ------------------------------------------------------------ checks


def _check_arguments(validators: int, base_port: int, chain_id: str, host: str) -> None:
    if type(validators) is not int or not 1 <= validators <= MAX_VALIDATORS:
        raise NetError(f"--validators must be between 1 and {MAX_VALIDATORS}, not {validators}")
    last_port = base_port + PEER_PORT_OFFSET + validators - 1
    if base_port < 1 or last_port > 65_535:
        raise NetError(
            f"ports {base_port}..{last_port} do not fit in 1..65535; choose another --base-port"
        )
    if not chain_id or not chain_id.isprintable() or chain_id != chain_id.strip():
        raise NetError(f"--chain-id must be a non-empty printable string, not {chain_id!r}")
    if host in ("", "0.0.0.0", "::"):
        # The host is also written into every URL peers and clients dial.
        raise NetError("--host must be an address nodes are reached at, not a wildcard")


def _node_hosts(count: int, host: str, hosts: Sequence[str] | None) -> tuple[str, ...]:
    """Each node's address: ``host`` for all, or the ``hosts`` list, one per node."""
    if hosts is None:
        return (host,) * count
    listed = tuple(hosts)
    if len(listed) != count:
        raise NetError(
            f"--hosts lists {len(listed)} addresses for {count} nodes; give one per node "
            "(validators first, then observers)"
        )
    return listed


def _prepare_directory(root: Path, force: bool) -> None:
    """Refuse to overwrite a network unless forced; when forced, remove the old one."""
    if root.exists() and not root.is_dir():
        raise NetError(f"{root} exists and is not a directory")
    if (root / NETWORK_FILE).exists():
        if not force:
            raise NetError(
                f"{root} already holds a network ({NETWORK_FILE}); "
                "use --force to replace it (its keys and chain data are deleted)"
            )
        running = running_nodes(load_network(root))
        if running:
            raise NetError(
                f"nodes {', '.join(running)} of {root} are running; "
                f"stop them first: provenet net down {root}"
            )
        for name in GENERATED:
            _remove(root / name)
    # A root we create is 0755: it holds only public files and the
    # directories below, each of which protects its own secrets.  A root that
    # already exists keeps the mode its owner gave it.
    make_directory(root, PUBLIC_DIR_MODE)
    for name in ("nodes", "orgs"):  # ca/ only with TLS, made by _write_ca
        make_directory(root / name, DIRECTORY_MODES[name])


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ------------------------------------------------------------ keys and genesis


def _org_key_path(root: Path, org_id: str) -> Path:
    return root / "orgs" / f"{org_id}.key"


def _write_org_keys(root: Path) -> dict[str, bytes]:
    """One fresh transaction key per catalog organisation; org_id -> public key."""
    keys: dict[str, bytes] = {}
    for org_id in ORGS:
        identity = Identity(org_id, Ed25519Signer.generate())
        save_identity(_org_key_path(root, org_id), identity)
        keys[org_id] = identity.public_key
    return keys


def _node_entry(layout: _Layout, index: int) -> NodeEntry:
    """Validator ``index`` as network.json lists it: name v<index>, replica id <index>."""
    return _entry(layout, index, f"v{index}", "validator", index, validator_org(index))


def _observer_entry(layout: _Layout, index: int, number: int) -> NodeEntry:
    """Observer ``number`` (a regulator's read-only node) on the ports after the validators'."""
    return _entry(layout, index, f"o{number}", "observer", None, OBSERVER_ORG)


def _entry(
    layout: _Layout, index: int, name: str, role: str, replica_id: int | None, org_id: str
) -> NodeEntry:
    """The node on port slot ``index``: its URLs follow the layout's host and TLS choice."""
    api_scheme, peer_scheme = ("https", "wss") if layout.tls else ("http", "ws")
    url_host = _url_host(layout.host(index))
    return NodeEntry(
        name=name,
        role=role,
        replica_id=replica_id,
        org_id=org_id,
        api_url=f"{api_scheme}://{url_host}:{layout.api_port(index)}",
        peer_url=f"{peer_scheme}://{url_host}:{layout.peer_port(index)}/peer",
        config=layout.root / "nodes" / name / "config.json",
    )


def _write_observer(
    layout: _Layout, index: int, entry: NodeEntry, validators: list[NodeEntry], ca_file: Path | None
) -> None:
    """nodes/<name>/ of an observer: a TLS certificate and config.json, no consensus key."""
    directory = entry.directory
    make_directory(directory, NODE_DIR_MODE)
    if ca_file is not None:
        extra_hosts = _extra_hosts(layout.host(index))
        issue_node_cert(ca_file, ca_file.parent / "ca.key", entry.name, directory, extra_hosts)
    config = {
        "chain_id": layout.chain_id,
        "node_name": entry.name,
        "org_id": entry.org_id,
        "role": "observer",
        "data_dir": "data",
        "genesis_file": f"../../{GENESIS_FILE}",
        "listen_host": layout.host(index),
        "api_port": layout.api_port(index),
        "peer_port": layout.peer_port(index),
        "peers": [_peer(validator) for validator in validators],
        "tls": _tls_section(ca_file),
        "limits": {},
    }
    _write_json(entry.config, config)


def _extra_hosts(host: str) -> tuple[str, ...]:
    """Names the node's certificate adds to the local ones it always holds."""
    return () if host in ("127.0.0.1", "localhost") else (host,)


def _url_host(host: str) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"[{host}]" if is_v6 else host


def _make_genesis(
    chain_id: str,
    org_keys: dict[str, bytes],
    nodes: list[NodeEntry],
    node_keys: list[Identity],
) -> NetworkGenesis:
    """Genesis of the catalog organisations and the validators, checked before writing."""
    organisations = tuple(
        GenesisOrg(
            org_id=spec.org_id,
            name=spec.name,
            country=spec.country,
            roles=spec.roles,
            keys=(org_keys[spec.org_id],),
            scopes=spec.scopes,
        )
        for spec in ORGS.values()
    )
    # The validator set is governed (contracts/validators.py): each validator's
    # addresses go into state, so that governance can add and remove them.
    validators = tuple(
        ValidatorEntry(
            replica_id=index,
            name=entry.name,
            org_id=entry.org_id,
            public_key=identity.public_key,
            peer_address=urlsplit(entry.peer_url).netloc,
            api_address=urlsplit(entry.api_url).netloc,
        )
        for index, (entry, identity) in enumerate(zip(nodes, node_keys, strict=True))
    )
    genesis = Genesis(
        chain_id=chain_id,
        organisations=organisations,
        kp_participants=KP_PARTICIPANTS,
        validators=governed_validators(validators),
    )
    try:
        genesis_state(genesis)  # the contracts' own validation, so a bad genesis never lands
    except ValueError as exc:
        raise NetError(f"genesis would be invalid: {exc}") from None
    # The chain-wide epoch rules: the replica defaults every node's config
    # starts from (an operator changing them edits genesis.json and every
    # config.json alike, or the nodes refuse to start).
    return NetworkGenesis(
        genesis,
        validators,
        genesis_time_ms=int(time.time() * 1000),
        epoch_rules=DEFAULT_EPOCH_RULES,
    )


# ------------------------------------------------------------ files


def _write_ca(layout: _Layout) -> Path:
    make_directory(layout.root / "ca", DIRECTORY_MODES["ca"])
    ca_cert, _ = make_ca(layout.root / "ca", common_name=f"Provenet CA {layout.chain_id}")
    return ca_cert


def _write_node(
    layout: _Layout,
    index: int,
    entry: NodeEntry,
    identity: Identity,
    nodes: list[NodeEntry],
    ca_file: Path | None,
) -> None:
    """nodes/<name>/: consensus key, TLS certificate and config.json."""
    directory = entry.directory
    make_directory(directory, NODE_DIR_MODE)
    save_identity(directory / "node.key", identity)
    if ca_file is not None:
        extra_hosts = _extra_hosts(layout.host(index))
        issue_node_cert(ca_file, ca_file.parent / "ca.key", entry.name, directory, extra_hosts)
    config = {
        "chain_id": layout.chain_id,
        "node_name": entry.name,
        "org_id": entry.org_id,
        "role": entry.role,
        "replica_id": index,
        "data_dir": "data",
        "key_file": "node.key",
        "genesis_file": f"../../{GENESIS_FILE}",
        "listen_host": layout.host(index),
        "api_port": layout.api_port(index),
        "peer_port": layout.peer_port(index),
        "peers": [_peer(other) for other in nodes if other.name != entry.name],
        "tls": _tls_section(ca_file),
        "consensus": {},
        "limits": {},
    }
    _write_json(entry.config, config)


def _peer(entry: NodeEntry) -> dict[str, Any]:
    return {
        "replica_id": entry.replica_id,
        "name": entry.name,
        "peer_url": entry.peer_url,
        "api_url": entry.api_url,
    }


def _tls_section(ca_file: Path | None) -> dict[str, Any]:
    if ca_file is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "ca_file": "../../ca/ca.pem",
        "cert_file": "tls.pem",
        "key_file": "tls.key",
    }


def _write_json(path: Path, document: dict[str, Any]) -> None:
    """Genesis and node configs are public: every node reads them."""
    write_file(path, (json.dumps(document, indent=2) + "\n").encode(), PUBLIC_FILE_MODE)
