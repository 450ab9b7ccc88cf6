"""A node's configuration file as typed values (genesis.json: :mod:`node.sdk.genesis`).

Theory of operation
-------------------
``provenet net init`` writes one ``genesis.json`` for the network and one
``config.json`` per node; ``provenet node run --config FILE`` reads them
back with :func:`load_node_config`.  Everything a node does with a limit or a
timeout reads it from here: :class:`NodeLimits` (the node's own bounds) and
the ``consensus`` section, which overrides :class:`~consensus.config.ReplicaConfig`
fields by name.  Relative paths in a config file are relative to the file's
own directory, so a network directory can be moved or copied to another host.

A malformed file is the operator's mistake, and the node does not start.
Both files are read by schemas (one per section, :mod:`node.sdk.schema`):
every unknown key (a typo would otherwise silently leave a default in
force), every missing required key, every value of the wrong type or
range, and every key given twice in one object is one :class:`ConfigError`
line naming the file, the key path and what was expected.  Checks that
span keys (ports, peers and TLS, the consensus overrides together, genesis
roles against scopes, validators against organisations) run at load too,
so a node that loads its files does not fail on them later.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from consensus.codec import PUBLIC_KEY_SIZE
from consensus.config import ReplicaConfig
from consensus.quorum import ValidatorSet
from node.sdk.genesis import identifier
from node.sdk.schema import (
    OMITTED,
    At,
    Check,
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
    # Inbound peer connections still in their handshake (each may buffer one
    # frame) from callers whose TLS certificate does not name a validator; when
    # full, the oldest of them is closed to make room (node/runtime/peers.py).
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
    # A peer has this long to complete the link handshake (one round trip and
    # a signature; a slot held longer is a caller stalling on purpose).
    peer_handshake_timeout_ms: int = 2_000
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
    # Arrays and objects, and values of any kind, one JSON body may hold
    # (bounded on the raw bytes before parsing: node/api/request_body.py).
    max_json_containers: int = 10_000
    max_json_values: int = 100_000
    # Envelopes admitted per turn of the event loop before the replica task
    # (which shares the loop) gets to run again.
    admission_chunk_envelopes: int = 64
    # Admission budgets in cost units (node/api/ratelimit.py: one per request, per
    # KiB of body and per envelope), refilled per second up to the burst: per
    # connection, and per client address over all its connections.  Well
    # above what `scripts/bench` offers one node (a few thousand per second).
    client_cost_per_s: int = 10_000
    client_cost_burst: int = 20_000
    address_cost_per_s: int = 20_000
    address_cost_burst: int = 40_000
    # Client addresses whose budgets are remembered (least recent forgotten).
    max_rate_limited_addresses: int = 4_096
    # Connections (node/runtime/listener/), counted per raw TCP connection before any
    # TLS handshake.  On the API port the caps refuse new connections; on the
    # peer port they apply to connections not (yet) known to be a validator's,
    # and a full port closes the oldest of those to make room, so strangers can
    # never lock a validator out.  Lowered at start if the file limit is smaller.
    max_connections_per_port: int = 4_096
    # From one client address (an IPv6 client's /64) on one port.
    max_connections_per_address: int = 64
    # Peer port: links from one validator (by its certificate, or its signed
    # link handshake without TLS); a further one replaces the oldest.
    max_connections_per_validator: int = 4
    # A connection with no request in flight is closed after this long without
    # a complete request (also the first request after connecting).
    connection_idle_timeout_ms: int = 30_000
    # A TLS handshake not finished in this long closes the connection.
    tls_handshake_timeout_ms: int = 5_000
    # Peer link handshakes pending at once per TLS identity (certificate name)
    # and per client address (the latter not for a validator's certificate).
    max_pending_handshakes_per_identity: int = 2
    max_pending_handshakes_per_address: int = 4
    # A request body must arrive whole within this long of its headers (the
    # idle timeout does not run while a request is in flight).
    body_read_timeout_ms: int = 10_000
    # Steps (state reads) one query may take on this node, below the chain's
    # max_query_steps: a query runs on the event loop the replica shares, and
    # its client pays for every step (node/api/ratelimit.py).
    max_query_steps: int = 100_000
    # After answering a request whose body it did not read (a 413, a 415),
    # the node reads and discards the rest for at most this long, then closes.
    unread_body_linger_ms: int = 1_000
    # A port found in use at start is tried again for this long before the
    # node exits with an error (a restarted node's port can be briefly held).
    bind_retry_ms: int = 5_000
    # Chain streams (GET /v1/chain/stream, node/api/chain_stream.py): how many one
    # node serves at once (an observer holds one for blocks and one per
    # validator for their certified tips); a stream that has sent nothing for
    # chain_stream_heartbeat_ms sends an empty message, so a follower tells a
    # quiet chain from a hung source; a tips-only stream sends at most one tip
    # per chain_stream_tip_interval_ms.
    max_chain_streams: int = 64
    chain_stream_heartbeat_ms: int = 250
    chain_stream_tip_interval_ms: int = 100
    # Observers: a source that sends nothing for follow_stall_timeout_ms (four
    # heartbeats), or no block while a higher certified height is known from
    # another, is left for the next one; it also bounds connecting and each
    # read of a polled page.  follow_request_timeout_ms bounds one polled page
    # or stream handshake in all.
    follow_stall_timeout_ms: int = 1_000
    follow_request_timeout_ms: int = 10_000
    # Chain streams from one client address (an IPv6 client's /64); beyond it
    # 503 too_many_subscribers, as beyond max_chain_streams, so one address
    # cannot take every slot.  An observer holds at most two to one validator
    # (its block stream and its tips stream), and briefly a third while an old
    # one closes; observers on one host share its address.
    max_chain_streams_per_address: int = 8
    # One message of a chain stream (or its close) must be taken by the client
    # within this long, or the connection is dropped and its slot freed: a
    # client that never reads would otherwise hold a stream for ever.
    chain_stream_send_timeout_ms: int = 5_000
    # How far above a height the node looks for the block whose certificate
    # certifies that height's results (node/runtime/certified.py).  The
    # certifying block follows within the pipeline's depth; the bound keeps a
    # proof request for an uncertified height from walking the whole chain.
    results_anchor_search_heights: int = 1_024
    # Distinct state keys one proven answer (GET /v1/compliance/{id}?prove=1)
    # may read, each sent with its state proof: a diamond with a few dozen
    # upstream assets reads a few hundred keys, and the bound keeps one answer
    # (a proof is up to a few KiB) from growing with a pathological DAG.
    max_proven_reads: int = 4_096
    # Longest state key GET /v1/state/{key} takes (as hex, twice as many
    # digits); the contracts' keys are a prefix and an identifier or a
    # public key's hex, well under it.
    max_state_key_bytes: int = 1_024
    # A node whose results differ from the certified ones walks back from the
    # height where it noticed to the first height it got wrong, fetching each
    # height's certified results from a peer (node/runtime/divergence.py); at
    # most this many heights, so a long divergence costs a bounded search.
    divergence_search_heights: int = 256
    # Rounds over every source to fetch the certified results that name the
    # diverging transaction, a peer_backoff_max_ms pause between rounds; after
    # them the node stays stopped and says the difference is not named.
    divergence_fetch_rounds: int = 5
    # Validator-set changes one GET /v1/validators/history answers (each with
    # a state proof and an anchor); a client pages on with ``after``.
    max_validator_changes_per_page: int = 16

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            minimum = limit_minimum(name)
            if type(value) is not int or value < minimum:
                raise ConfigError(f"limits.{name} must be an integer of at least {minimum}")


# Limits for which 0 means something a node can run with (no lingering, no
# gap allowed, no event streams, retry at once, no bind retry); every other limit of 0
# would refuse everything, divide by zero or spin, so it starts at 1.
LIMITS_ALLOWING_ZERO = frozenset(
    {
        "unread_body_linger_ms",
        "retry_after_s",
        "max_nonce_gap",
        "peer_backoff_min_ms",
        "dropped_receipts_kept",
        "max_subscribers",
        "bind_retry_ms",
    }
)


def limit_minimum(name: str) -> int:
    return 0 if name in LIMITS_ALLOWING_ZERO else 1


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
            raise ConfigError(f"{self.path}: consensus: {exc}") from None


# ------------------------------------------------------------------ config.json

_port = integer(1, 65_535)


def _url(*schemes: str) -> Check:
    listed = " or ".join(f"{scheme}://" for scheme in schemes)

    def check(value: Any, at: At) -> str:
        text(value, at)
        try:
            parts = urlsplit(value)
            valid = parts.scheme in schemes and bool(parts.hostname) and parts.port is not None
        except ValueError:
            valid = False
        if not valid:
            raise at.expected(f"a URL starting {listed}, with a host and a port", value)
        return str(value)

    return check


TLS_SCHEMA = {
    "enabled": required(boolean),
    "ca_file": optional(text, None),
    "cert_file": optional(text, None),
    "key_file": optional(text, None),
}
PEER_SCHEMA = {
    "replica_id": required(integer()),
    "name": required(text),
    "peer_url": required(_url("ws", "wss")),
    "api_url": required(_url("http", "https")),
}
# ReplicaConfig fields the node sets itself, from the genesis and the node's identity.
_NODE_SET_CONSENSUS_FIELDS = frozenset({"chain_id", "validators", "replica_id"})
CONSENSUS_SCHEMA = {
    f.name: optional(integer(), OMITTED)
    for f in dataclasses.fields(ReplicaConfig)
    if f.name not in _NODE_SET_CONSENSUS_FIELDS
}
LIMITS_SCHEMA = {
    f.name: optional(integer(limit_minimum(f.name)), OMITTED)
    for f in dataclasses.fields(NodeLimits)
}
CONFIG_SCHEMA = {
    "chain_id": required(text),
    "node_name": required(text),
    "org_id": required(identifier),
    "role": required(choice(("validator", "observer"))),
    "replica_id": optional(integer(), None),
    "data_dir": required(text),
    "key_file": optional(text, None),
    "genesis_file": required(text),
    "listen_host": optional(text, "127.0.0.1"),
    "api_port": required(_port),
    "peer_port": required(_port),
    "peers": optional(list_of(nested(PEER_SCHEMA)), ()),
    "tls": optional(nested(TLS_SCHEMA), {"enabled": False}),
    "consensus": optional(nested(CONSENSUS_SCHEMA), {}),
    "limits": optional(nested(LIMITS_SCHEMA), {}),
}


def _resolve(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    candidate = Path(value)
    return candidate if candidate.is_absolute() else (base / candidate).resolve()


def load_node_config(path: Path) -> NodeConfig:
    path = path.resolve()
    at = At(str(path))
    data = read_object(read_json_file(path), at, CONFIG_SCHEMA)
    _check_role(data, at)
    tls_data = data["tls"]
    _check_tls(tls_data, at.key("tls"))
    _check_peers(data["peers"], data["replica_id"], tls_data["enabled"], at.key("peers"))
    if data["peer_port"] == data["api_port"]:
        raise at.key("peer_port").expected("a port other than api_port", data["peer_port"])
    _check_consensus(data["consensus"], data["chain_id"], at.key("consensus"))
    try:
        limits = NodeLimits(**data["limits"])
    except ConfigError as exc:
        raise at.key("limits").error(str(exc)) from None
    base = path.parent
    return NodeConfig(
        path=path,
        chain_id=data["chain_id"],
        node_name=data["node_name"],
        org_id=data["org_id"],
        role=data["role"],
        replica_id=data["replica_id"],
        data_dir=_resolve(base, data["data_dir"]) or base,
        key_file=_resolve(base, data["key_file"]),
        genesis_file=_resolve(base, data["genesis_file"]) or base,
        listen_host=data["listen_host"],
        api_port=data["api_port"],
        peer_port=data["peer_port"],
        peers=tuple(PeerEntry(**entry) for entry in data["peers"]),
        tls=TlsFiles(
            enabled=tls_data["enabled"],
            ca_file=_resolve(base, tls_data.get("ca_file")),
            cert_file=_resolve(base, tls_data.get("cert_file")),
            key_file=_resolve(base, tls_data.get("key_file")),
        ),
        consensus=data["consensus"],
        limits=limits,
    )


def _check_role(data: dict[str, Any], at: At) -> None:
    """A validator has a replica id and a consensus key; an observer has neither id."""
    if data["role"] == "validator":
        for key in ("replica_id", "key_file"):
            if data[key] is None:
                raise at.key(key).error("missing (a validator needs it)")
    elif data["replica_id"] is not None:
        raise at.key("replica_id").error("an observer has no replica_id (remove it)")


def _check_tls(tls: dict[str, Any], at: At) -> None:
    if not tls["enabled"]:
        return
    for key in ("ca_file", "cert_file", "key_file"):
        if tls.get(key) is None:
            raise at.key(key).error("missing (tls is enabled)")


def _check_peers(peers: tuple[dict[str, Any], ...], own_id: int | None, tls: bool, at: At) -> None:
    """Each peer once, never the node itself; a validator links with TLS exactly when it uses it.

    Why only peer_url: the other side of a peer link refuses a plain link
    when it runs TLS, and a validator would retry forever.  API reads are
    checked by signatures, not by the transport, so api_url may be either.
    """
    peer_scheme = "wss" if tls else "ws"
    for i, peer in enumerate(peers):
        if peer["replica_id"] == own_id:
            raise (
                at.index(i)
                .key("replica_id")
                .expected("another node's replica_id, not this node's own", own_id)
            )
        if own_id is not None and not peer["peer_url"].startswith(f"{peer_scheme}://"):
            state = "enabled" if tls else "disabled"
            raise (
                at.index(i)
                .key("peer_url")
                .expected(f"a URL starting {peer_scheme}:// (tls is {state})", peer["peer_url"])
            )
    for key in ("replica_id", "name"):
        unique([(at.index(i).key(key), peer[key]) for i, peer in enumerate(peers)], key)


def _check_consensus(overrides: dict[str, int], chain_id: str, at: At) -> None:
    """Check the overrides together (window a multiple of the interval, ...) at load.

    ReplicaConfig checks them only when built, with the real validator set
    at start; a stand-in set of one lets a bad value fail here, with the key.
    """
    stand_in = ValidatorSet((bytes(PUBLIC_KEY_SIZE),))
    try:
        ReplicaConfig(
            chain_id=chain_id,
            validators=stand_in,
            replica_id=0,
            **{**NODE_CONSENSUS_DEFAULTS, **overrides},
        )
    except ValueError as exc:
        raise at.error(str(exc)) from None
