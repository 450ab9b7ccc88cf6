"""A node's configuration file and the network's genesis file, as typed values.

Theory of operation
-------------------
``provenet net init`` writes one ``genesis.json`` for the network and one
``config.json`` per node; ``provenet node run --config FILE`` reads them
back with :func:`load_node_config`.  Everything a node does with a limit or a
timeout reads it from here: :class:`NodeLimits` (the node's own bounds) and
the ``consensus`` section, which overrides :class:`~consensus.config.ReplicaConfig`
fields by name.  Relative paths in a config file are relative to the file's
own directory, so a network directory can be moved or copied to another host.

A malformed file is the operator's mistake: :class:`ConfigError` says which
field is wrong, and the node does not start.

Genesis JSON (bytes are lowercase hex)::

    {"chain_id": "provenet-local",
     "validators": [{"replica_id": 0, "name": "v0", "org_id": "leadfirm", "public_key": "..."}],
     "organisations": [{"org_id": "...", "name": "...", "country": "BE",
                        "roles": ["certifier"], "scopes": ["kp_authority"], "keys": ["..."]}],
     "kp_participants": ["BE", "BW"], "threshold": [2, 3], "max_cutting_yield_bp": 6000,
     "genesis_time_ms": 0}

Node config JSON::

    {"chain_id": "...", "node_name": "v0", "org_id": "leadfirm", "role": "validator",
     "replica_id": 0, "data_dir": "data", "key_file": "node.key", "genesis_file": "../../genesis.json",
     "listen_host": "127.0.0.1", "api_port": 7100, "peer_port": 7200,
     "peers": [{"replica_id": 1, "name": "v1", "peer_url": "wss://127.0.0.1:7201/peer",
                "api_url": "https://127.0.0.1:7101"}],
     "tls": {"enabled": true, "ca_file": "../../ca/ca.pem", "cert_file": "tls.pem", "key_file": "tls.key"},
     "consensus": {"max_batch_size": 256},
     "limits": {"mempool_max_txs": 50000}}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.config import ReplicaConfig
from consensus.quorum import ValidatorSet
from contracts.genesis import Genesis, GenesisOrg


class ConfigError(ValueError):
    """A configuration or genesis file is malformed; the message names the field."""


# Where a node's defaults differ from the pure core's: a networked node batches
# more per block (each block costs about 30 signatures whatever its size) and
# waits less for a batch to fill (clients feel that wait as latency); state
# transfer moves fewer, larger blocks per frame to stay under max_frame_bytes.
NODE_CONSENSUS_DEFAULTS: dict[str, int] = {
    "max_batch_size": 512,
    "batch_timeout_ms": 2,
    "max_blocks_per_transfer": 16,
}


@dataclass(frozen=True)
class NodeLimits:
    """Every bound the node itself enforces (the core and contracts have their own)."""

    # HTTP request bodies and websocket frames from clients.
    max_body_bytes: int = 1_048_576
    # One peer frame.  The largest legitimate one is a NEW-VIEW: a quorum of
    # view changes, each carrying up to a window of batches of at most
    # consensus.max_batch_bytes (32 x 256 KiB = 8 MiB), plus the new view's own.
    max_frame_bytes: int = 64 * 1_048_576
    # Inbound peer connections still in their handshake (each may buffer one frame).
    max_pending_handshakes: int = 4
    # Peer messages queued for the replica task before new ones are dropped.
    inbound_queue_max: int = 100_000
    # Transactions held in the mempool (waiting or proposed, not yet executed).
    mempool_max_txs: int = 100_000
    # Of those, at most this many from one sender.
    mempool_max_per_sender: int = 10_000
    # A transaction whose nonce is this far above the sender's next one is refused.
    max_nonce_gap: int = 10_000
    # A transaction held for an earlier nonce that never arrives is dropped after this.
    nonce_gap_timeout_ms: int = 30_000
    # A released transaction not executed in this long is sent again, to every
    # validator (PBFT's client retransmission), so a silent primary is deposed.
    resubmit_after_ms: int = 1_000
    max_resubmit_per_turn: int = 1_024
    # Seconds a client is told to wait when the mempool is full (Retry-After).
    retry_after_s: int = 1
    # Receipts of transactions dropped before execution, kept for status queries.
    dropped_receipts_kept: int = 100_000
    # Frames and bytes queued for one peer before the oldest are dropped
    # (consensus re-sends what matters).
    peer_queue_max_frames: int = 10_000
    peer_queue_max_bytes: int = 64 * 1_048_576
    # Reconnect back-off for peer links.
    peer_backoff_min_ms: int = 50
    peer_backoff_max_ms: int = 2_000
    # A peer has this long to complete the link handshake.
    peer_handshake_timeout_ms: int = 5_000
    # How often the replica task ticks: the replica's timers (status, request
    # and view-change timeouts) run on ticks, and so does the batch timeout,
    # which is why the tick is faster while requests wait to be proposed.
    tick_interval_ms: int = 25
    busy_tick_interval_ms: int = 1
    # Longest a submit with wait=true may wait.
    max_wait_ms: int = 60_000
    # Event-stream subscribers, and blocks buffered per subscriber before it is cut off.
    max_subscribers: int = 256
    subscriber_queue_blocks: int = 1_024
    # Blocks one GET of a block range may return.
    max_blocks_per_page: int = 100
    # Observers: blocks per fetch from a validator, and the pause when caught up.
    follow_page_blocks: int = 64
    follow_poll_interval_ms: int = 50
    # Bytes of full blocks one GET /v1/chain returns (at least one block).
    chain_page_bytes: int = 8 * 1_048_576
    # Verified-signature cache (so no transaction is verified twice on one node).
    verified_cache_entries: int = 262_144
    # Envelopes one POST /v1/txs/batch may carry (checked before any is looked at).
    max_batch_envelopes: int = 1_024

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if type(value) is not int or value < 0:
                raise ConfigError(f"limits.{name} must be a non-negative integer")


@dataclass(frozen=True)
class TlsFiles:
    enabled: bool
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class PeerEntry:
    replica_id: int
    name: str
    peer_url: str
    api_url: str


@dataclass(frozen=True)
class ValidatorEntry:
    replica_id: int
    name: str
    org_id: str
    public_key: bytes


@dataclass(frozen=True)
class NetworkGenesis:
    """genesis.json: the contract genesis plus the validator set and start time."""

    genesis: Genesis
    validators: tuple[ValidatorEntry, ...]
    genesis_time_ms: int = 0

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def validator_set(self) -> ValidatorSet:
        ordered = sorted(self.validators, key=lambda v: v.replica_id)
        return ValidatorSet(tuple(entry.public_key for entry in ordered))


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    chain_id: str
    node_name: str
    org_id: str
    role: str
    replica_id: int | None
    data_dir: Path
    key_file: Path | None
    genesis_file: Path
    listen_host: str
    api_port: int
    peer_port: int
    peers: tuple[PeerEntry, ...]
    tls: TlsFiles
    consensus: dict[str, int] = field(default_factory=dict)
    limits: NodeLimits = field(default_factory=NodeLimits)

    def replica_config(self, validators: ValidatorSet) -> ReplicaConfig:
        if self.replica_id is None:
            raise ConfigError("only a validator has a replica configuration")
        try:
            return ReplicaConfig(
                chain_id=self.chain_id,
                validators=validators,
                replica_id=self.replica_id,
                **{**NODE_CONSENSUS_DEFAULTS, **self.consensus},
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"consensus: {exc}") from None


# ------------------------------------------------------------------ reading


def _need(data: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in data:
        raise ConfigError(f"{where}: missing field {name!r}")
    value = data[name]
    if kind is int and type(value) is not int:
        raise ConfigError(f"{where}: {name} must be an integer")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {name} must be a {kind.__name__}")
    return value


def _hex(value: object, where: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or (size is not None and len(raw) != size):
        raise ConfigError(f"{where}: expected {size or 'some'} bytes as hex")
    return raw


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def _resolve(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    candidate = Path(value)
    return candidate if candidate.is_absolute() else (base / candidate).resolve()


def load_genesis(path: Path) -> NetworkGenesis:
    data = _read_json(path)
    where = str(path)
    try:
        orgs = tuple(
            GenesisOrg(
                org_id=_need(org, "org_id", str, where),
                name=_need(org, "name", str, where),
                country=_need(org, "country", str, where),
                roles=tuple(_need(org, "roles", list, where)),
                keys=tuple(
                    _hex(key, f"{where}: keys", 32) for key in _need(org, "keys", list, where)
                ),
                scopes=tuple(org.get("scopes", [])),
            )
            for org in _need(data, "organisations", list, where)
        )
        numerator, denominator = data.get("threshold", [2, 3])
        genesis = Genesis(
            chain_id=_need(data, "chain_id", str, where),
            organisations=orgs,
            kp_participants=tuple(data.get("kp_participants", [])),
            threshold_numerator=numerator,
            threshold_denominator=denominator,
            max_cutting_yield_bp=data.get("max_cutting_yield_bp", 6_000),
        )
        validators = tuple(
            ValidatorEntry(
                replica_id=_need(entry, "replica_id", int, where),
                name=_need(entry, "name", str, where),
                org_id=_need(entry, "org_id", str, where),
                public_key=_hex(entry.get("public_key"), f"{where}: validator key", 32),
            )
            for entry in _need(data, "validators", list, where)
        )
    except (TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: malformed genesis ({exc})") from None
    if sorted(v.replica_id for v in validators) != list(range(len(validators))):
        raise ConfigError(f"{where}: validator replica ids must be 0..n-1")
    return NetworkGenesis(genesis, validators, data.get("genesis_time_ms", 0))


def genesis_to_json(network: NetworkGenesis) -> dict[str, object]:
    genesis = network.genesis
    return {
        "chain_id": genesis.chain_id,
        "genesis_time_ms": network.genesis_time_ms,
        "validators": [
            {
                "replica_id": entry.replica_id,
                "name": entry.name,
                "org_id": entry.org_id,
                "public_key": entry.public_key.hex(),
            }
            for entry in network.validators
        ],
        "organisations": [
            {
                "org_id": org.org_id,
                "name": org.name,
                "country": org.country,
                "roles": list(org.roles),
                "scopes": list(org.scopes),
                "keys": [key.hex() for key in org.keys],
            }
            for org in genesis.organisations
        ],
        "kp_participants": list(genesis.kp_participants),
        "threshold": [genesis.threshold_numerator, genesis.threshold_denominator],
        "max_cutting_yield_bp": genesis.max_cutting_yield_bp,
    }


def load_node_config(path: Path) -> NodeConfig:
    path = path.resolve()
    data = _read_json(path)
    where = str(path)
    base = path.parent
    role = _need(data, "role", str, where)
    if role not in ("validator", "observer"):
        raise ConfigError(f"{where}: role must be 'validator' or 'observer'")
    replica_id = data.get("replica_id")
    if role == "validator" and type(replica_id) is not int:
        raise ConfigError(f"{where}: a validator needs an integer replica_id")
    tls_data = data.get("tls", {"enabled": False})
    tls = TlsFiles(
        enabled=bool(tls_data.get("enabled", False)),
        ca_file=_resolve(base, tls_data.get("ca_file")),
        cert_file=_resolve(base, tls_data.get("cert_file")),
        key_file=_resolve(base, tls_data.get("key_file")),
    )
    if tls.enabled and not (tls.ca_file and tls.cert_file and tls.key_file):
        raise ConfigError(f"{where}: tls needs ca_file, cert_file and key_file")
    peers = tuple(
        PeerEntry(
            replica_id=_need(entry, "replica_id", int, where),
            name=_need(entry, "name", str, where),
            peer_url=_need(entry, "peer_url", str, where),
            api_url=_need(entry, "api_url", str, where),
        )
        for entry in data.get("peers", [])
    )
    consensus = data.get("consensus", {})
    if not isinstance(consensus, dict) or any(type(v) is not int for v in consensus.values()):
        raise ConfigError(f"{where}: consensus must map field names to integers")
    limits_data = data.get("limits", {})
    known = {f.name for f in dataclasses.fields(NodeLimits)}
    unknown = set(limits_data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown limits {sorted(unknown)}")
    key_file = _resolve(base, data.get("key_file"))
    if role == "validator" and key_file is None:
        raise ConfigError(f"{where}: a validator needs key_file")
    return NodeConfig(
        path=path,
        chain_id=_need(data, "chain_id", str, where),
        node_name=_need(data, "node_name", str, where),
        org_id=_need(data, "org_id", str, where),
        role=role,
        replica_id=replica_id if role == "validator" else None,
        data_dir=_resolve(base, _need(data, "data_dir", str, where)) or base,
        key_file=key_file,
        genesis_file=_resolve(base, _need(data, "genesis_file", str, where)) or base,
        listen_host=data.get("listen_host", "127.0.0.1"),
        api_port=_need(data, "api_port", int, where),
        peer_port=_need(data, "peer_port", int, where),
        peers=peers,
        tls=tls,
        consensus=consensus,
        limits=NodeLimits(**limits_data),
    )
