"""One node process: load config, recover from disk, serve peers and clients.

``run_node(config_path)`` is what ``provenet node run --config FILE`` calls,
on a developer's machine (through ``provenet net up``) and on a real host
(deploy/).  Start-up order matters: the store is opened and checked against
the genesis first, the state and the replica's records are loaded, the
replica is restored (it re-sends what it had in flight), and only then do
the peer and client listeners open.  SIGTERM or SIGINT stop the node
cleanly; a SIGKILL at any moment is recovered from on the next start.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import signal
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from aiohttp import web

from consensus.blocks import ChainTip
from consensus.codec import CachingVerifier, ed25519_verify
from consensus.config import ReplicaConfig
from consensus.epochs import EpochRules, ValidatorHistory
from consensus.events import Effect
from consensus.quorum import ValidatorSet
from consensus.replica import Replica
from consensus.wire import DEFAULT_WIRE_LIMITS, GOVERNED_MAX_VALIDATOR_ID, record_from_wire
from contracts.genesis import genesis_state
from contracts.results import genesis_results
from contracts.state import MemoryState
from contracts.validators import MAX_VALIDATORS, ValidatorSetRecord, validator_set
from node.api import dashboard
from node.api.bundle import bundle_routes
from node.api.routes import ClientApi, error_middleware
from node.runtime.chain import now_ms
from node.runtime.config import (
    NodeConfig,
    PeerEntry,
    load_node_config,
)
from node.runtime.engine import Engine
from node.runtime.follower import Follower
from node.runtime.ledger import Ledger, TxCache
from node.runtime.listener.http_errors import SERVER_HEADER
from node.runtime.listener.site import PortSpec, listen, raise_file_limit
from node.runtime.metrics import NodeMetrics
from node.runtime.peers import CLOSE_POLICY, PeerIdentity, PeerLinks
from node.runtime.storage import StorageError, Store
from node.sdk.genesis import DEFAULT_EPOCH_RULES, NetworkGenesis, load_genesis
from node.sdk.keys import KeyFileError, load_identity
from node.sdk.schema import ConfigError

log = logging.getLogger("provenet.node")

DATABASE_FILE = "node.sqlite"
LOCK_FILE = "LOCK"
# Open client connections (event streams, waits) get this long to finish at shutdown.
SHUTDOWN_TIMEOUT_S = 2.0


@dataclass
class RunningNode:
    config: NodeConfig
    network: NetworkGenesis
    store: Store
    engine: Engine | Follower
    peers: PeerLinks | None
    runners: list[web.AppRunner]
    engine_task: asyncio.Task[None]
    lock: TextIO

    async def stop(self) -> None:
        self.engine.stop()
        try:
            await asyncio.wait_for(asyncio.shield(self.engine_task), 5)
        except (TimeoutError, Exception):
            self.engine_task.cancel()
        if self.peers is not None:
            await self.peers.stop()
        for runner in self.runners:
            await runner.cleanup()
        self.store.close()
        self.lock.close()


@dataclass
class _Chain:
    """The opened data directory: what both roles start from."""

    network: NetworkGenesis
    lock: TextIO
    store: Store
    tip: ChainTip
    ledger: Ledger
    tx_cache: TxCache
    metrics: NodeMetrics


def _tls_contexts(
    config: NodeConfig,
) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None, ssl.SSLContext | None]:
    """(API server, peer server with client certs, peer client) contexts, or Nones."""
    tls = config.tls
    if not tls.enabled:
        return None, None, None
    from node.runtime.tls import server_context
    from node.sdk.tls import client_context

    assert tls.ca_file and tls.cert_file and tls.key_file
    return (
        server_context(tls.ca_file, tls.cert_file, tls.key_file, require_client_cert=False),
        server_context(tls.ca_file, tls.cert_file, tls.key_file, require_client_cert=True),
        client_context(tls.ca_file, tls.cert_file, tls.key_file),
    )


def _lock_data_dir(data_dir: Path) -> TextIO:
    """Hold an exclusive lock on the data directory for the node's lifetime.

    Two processes restoring the same records would vote independently, and
    an honest validator would sign contradicting votes.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / LOCK_FILE).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StorageError(f"another process is running the node in {data_dir}") from None
    return handle


def _open_state(store: Store, network: NetworkGenesis) -> tuple[MemoryState, ChainTip]:
    genesis_items = genesis_state(network.genesis)
    genesis_root = MemoryState(genesis_items).root()
    store.bind_chain(network.chain_id, genesis_root, genesis_items)
    state = MemoryState(store.load_state())
    tip = store.tip()
    if tip is None:
        if state.root() != genesis_root:
            raise StorageError("the stored state at height 0 is not the genesis state")
        genesis = genesis_results(genesis_root)
        return state, ChainTip.genesis(genesis.results_root, network.genesis_time_ms)
    if state.root() != store.state_root_at(tip.height):
        raise StorageError(f"the stored state is not the state after block {tip.height}")
    return state, tip


def _open_chain(config: NodeConfig) -> _Chain:
    network = load_genesis(config.genesis_file)
    if network.chain_id != config.chain_id:
        raise ConfigError(
            f"genesis is for chain {network.chain_id!r}, config says {config.chain_id!r}"
        )
    # Before the data directory is touched: a node at odds with the chain's
    # epoch rules does not start at all.
    rules = epoch_rules(config, network)
    lock = _lock_data_dir(config.data_dir)
    store = Store(config.data_dir / DATABASE_FILE)
    state, tip = _open_state(store, network)
    metrics = NodeMetrics()
    metrics.height.set(tip.height)
    tx_cache = TxCache(config.limits.verified_cache_entries)
    ledger = Ledger(
        store,
        state,
        ed25519_verify,
        tx_cache,
        network.genesis.limits,
        tip.results_root,
        _validator_history(network, store, tip),
        rules,
    )
    return _Chain(network, lock, store, tip, ledger, tx_cache, metrics)


def epoch_rules(config: NodeConfig, network: NetworkGenesis) -> EpochRules | None:
    """The consensus settings that place a validator-set change, on a governed
    chain (None: the set is fixed).  They are chain-wide, in genesis.json: a
    node configured otherwise would place changes at other heights than its
    peers (a fork of the validator set), so it refuses to start.  The node's
    own values are its config's, else the replica defaults, as the replica
    itself reads them."""
    if not network.genesis.validators:
        return None
    rules = network.epoch_rules or DEFAULT_EPOCH_RULES
    own = EpochRules(
        int(config.consensus.get("checkpoint_interval", ReplicaConfig.checkpoint_interval)),
        int(config.consensus.get("window_size", ReplicaConfig.window_size)),
    )
    if own != rules:
        raise ConfigError(
            f"{config.path}: consensus checkpoint_interval {own.checkpoint_interval} and "
            f"window_size {own.window_size} differ from genesis epoch_rules "
            f"(checkpoint_interval {rules.checkpoint_interval}, window_size "
            f"{rules.window_size}): they place validator-set changes, so every node of "
            "the chain must use genesis's"
        )
    return rules


def _validator_history(
    network: NetworkGenesis, store: Store, tip: ChainTip
) -> ValidatorHistory | None:
    """The validator sets by height through the tip, on a chain whose genesis
    puts them under governance (None: the genesis.json set, fixed).  The store
    keeps the history as of the last block that changed it; the blocks after
    it changed nothing, so it holds through the tip."""
    if not network.genesis.validators:
        return None
    founding = network.validator_set()
    if tuple(v.public_key for v in network.genesis.validators) != founding.public_keys:
        raise ConfigError(
            "genesis: the governed validators (genesis.validators) must list the "
            "validators' keys in replica id order"
        )
    stored = store.validator_history()
    epochs = ValidatorHistory.genesis(founding).epochs if stored is None else stored.epochs
    return ValidatorHistory(epochs, tip.height)


async def start_node(config: NodeConfig) -> RunningNode:
    """Open the data directory and start the node's role, its task and listeners."""
    if config.role == "observer":
        return await _start_observer(config)
    return await _start_validator(config)


def _own_set(chain: _Chain, replica_id: int) -> ValidatorSet:
    """The first validator set this node belongs to: the genesis set, or on a
    governed chain the first set governance added it to (a joining validator
    follows the chain as an observer until it has executed that decision)."""
    history = chain.ledger.history
    if history is not None:
        for epoch in history.epochs:
            if epoch.validators.contains(replica_id):
                return epoch.validators
        raise ConfigError(
            f"validator {replica_id} is in no validator set this node has executed to "
            f"(height {chain.tip.height}): follow the chain as an observer until "
            "governance has added it"
        )
    return chain.network.validator_set()


def _start_replica(
    config: NodeConfig, chain: _Chain, peer_client_ssl: ssl.SSLContext | None
) -> tuple[Engine, PeerLinks, list[Effect]]:
    """Restore the replica from its records and wire it to the peer links."""
    assert config.key_file is not None and config.replica_id is not None
    validators = _own_set(chain, config.replica_id)
    replica_config = config.replica_config(validators)
    signer = load_identity(config.key_file).signer
    if validators.key_of(config.replica_id) != signer.public_key:
        raise ConfigError(
            f"{config.key_file} is not validator {config.replica_id}'s key in the genesis"
        )
    message_verifier = CachingVerifier(ed25519_verify, 65_536)
    engine_ref: list[Engine] = []
    links_ref: list[PeerLinks] = []
    governed = chain.ledger.history is not None
    record_limits = (
        replace(DEFAULT_WIRE_LIMITS, max_validator_id=GOVERNED_MAX_VALIDATOR_ID)
        if governed
        else DEFAULT_WIRE_LIMITS
    )
    records = [record_from_wire(raw, record_limits) for raw in chain.store.load_records()]
    replica, initial_effects = Replica.restore(
        replica_config,
        signer,
        message_verifier,
        lambda payload: engine_ref[0].request_valid(payload),
        chain.tip,
        records,
        now_ms(),
        history=chain.ledger.history,
    )
    engine = Engine(
        config,
        replica,
        chain.store,
        chain.ledger,
        chain.tx_cache,
        chain.metrics,
        send=lambda to, frame: links_ref[0].send(to, frame),
        broadcast=lambda frame: links_ref[0].broadcast(frame),
        backlog_bytes=lambda to: links_ref[0].backlog_bytes(to),
    )
    engine_ref.append(engine)
    engine.client_ssl = peer_client_ssl
    engine.load_records(records)
    chain.metrics.watch_replica(lambda: dict(replica.dropped))
    names = {entry.replica_id: entry.name for entry in chain.network.validators}
    identity = PeerIdentity(config.chain_id, config.replica_id, signer, validators, names)
    peers = PeerLinks(
        identity,
        config.peers,
        config.limits,
        message_verifier,
        engine.on_peer_message,
        chain.metrics,
        peer_client_ssl,
        tls_required=config.tls.enabled,
        consensus=replica_config,
        max_validators=MAX_VALIDATORS if governed else 0,
    )
    links_ref.append(peers)
    if governed:
        tls = config.tls.enabled

        def follow(history: ValidatorHistory) -> None:
            record = validator_set(chain.ledger.state)
            peers.set_members(
                ValidatorSet(tuple(history.members().values()), tuple(history.members())),
                _member_peers(history, record, tls, peers.peer_entries()),
            )

        engine.on_epochs = follow
        follow(replica.epochs)
    return engine, peers, initial_effects


def _member_peers(
    history: ValidatorHistory,
    record: ValidatorSetRecord | None,
    tls: bool,
    known: dict[int, PeerEntry],
) -> dict[int, PeerEntry]:
    """Where to reach each validator of a kept epoch: its addresses in the set
    in state, else (a validator already removed) the link this node has."""
    api_scheme, peer_scheme = ("https", "wss") if tls else ("http", "ws")
    in_state = {} if record is None else {v.validator_id: v for v in record.validators()}
    found: dict[int, PeerEntry] = {}
    for validator_id in history.members():
        validator = in_state.get(validator_id)
        if validator is not None:
            found[validator_id] = PeerEntry(
                validator_id,
                validator.tls_identity,
                f"{peer_scheme}://{validator.peer_address}/peer",
                f"{api_scheme}://{validator.api_address}",
            )
        elif validator_id in known:
            found[validator_id] = known[validator_id]
    return found


async def _start_validator(config: NodeConfig) -> RunningNode:
    chain = _open_chain(config)
    api_ssl, peer_server_ssl, peer_client_ssl = _tls_contexts(config)
    engine, peers, initial_effects = _start_replica(config, chain, peer_client_ssl)

    def status() -> dict[str, object]:
        return node_status(config, chain.network, engine, peers)

    api = ClientApi(engine, status)
    peer_app = web.Application(client_max_size=config.limits.max_frame_bytes)
    peer_app.add_routes([web.get("/peer", peers.handle_inbound)])
    engine_task = asyncio.create_task(engine.run(initial_effects), name="replica")
    runners = await _listen(
        config,
        _api_app(config, api, chain.network),
        peer_app,
        api_ssl,
        peer_server_ssl,
        chain.metrics,
    )
    await peers.start()
    log.info(
        "node %s (validator %d) listening: api %d, peers %d; height %d",
        config.node_name,
        config.replica_id,
        config.api_port,
        config.peer_port,
        chain.tip.height,
    )
    return RunningNode(
        config, chain.network, chain.store, engine, peers, runners, engine_task, chain.lock
    )


async def _start_observer(config: NodeConfig) -> RunningNode:
    chain = _open_chain(config)
    api_ssl, peer_server_ssl, peer_client_ssl = _tls_contexts(config)
    client_ssl = peer_client_ssl
    follower = Follower(
        config,
        chain.network.validator_set(),
        chain.store,
        chain.ledger,
        chain.metrics,
        chain.tip,
        client_ssl,
    )

    def status() -> dict[str, object]:
        return observer_status(config, chain.network, follower)

    api = ClientApi(follower, status, read_only=True)
    peer_app = web.Application(client_max_size=1024)
    peer_app.add_routes([web.get("/peer", refuse_peer)])
    task = asyncio.create_task(follower.run(), name="follower")
    runners = await _listen(
        config,
        _api_app(config, api, chain.network),
        peer_app,
        api_ssl,
        peer_server_ssl,
        chain.metrics,
    )
    log.info(
        "observer %s listening: api %d; following %d validators from height %d",
        config.node_name,
        config.api_port,
        len(config.peers),
        chain.tip.height,
    )
    return RunningNode(
        config, chain.network, chain.store, follower, None, runners, task, chain.lock
    )


async def refuse_peer(request: web.Request) -> web.StreamResponse:
    """An observer takes no consensus traffic: any peer link is closed at once."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close(code=CLOSE_POLICY, message=b"read-only observer: no consensus traffic")
    return ws


def _api_app(config: NodeConfig, api: ClientApi, network: NetworkGenesis) -> web.Application:
    app = web.Application(
        client_max_size=config.limits.max_body_bytes,
        # The budget runs inside the error middleware so its 429 is shaped like any error.
        middlewares=[error_middleware(config.limits.retry_after_s), api.budget.middleware()],
    )
    app.add_routes(api.routes())
    app.add_routes(bundle_routes(api, network))
    app.add_routes(dashboard.routes())
    return app


async def _listen(
    config: NodeConfig,
    api_app: web.Application,
    peer_app: web.Application,
    api_ssl: ssl.SSLContext | None,
    peer_ssl: ssl.SSLContext | None,
    metrics: NodeMetrics,
) -> list[web.AppRunner]:
    """Both ports behind node/runtime/listener/'s connection caps and timeouts."""
    # Only now, with the configuration and genesis accepted: a node refusing
    # to start says one line, and this one is not it.
    raise_file_limit()
    for app in (peer_app, api_app):
        app.on_response_prepare.append(_set_server_header)
    return await listen(
        config.listen_host,
        [
            PortSpec("peer", peer_app, config.peer_port, peer_ssl),
            PortSpec("api", api_app, config.api_port, api_ssl),
        ],
        config.limits,
        frozenset(peer.name for peer in config.peers),
        metrics.registry,
        SHUTDOWN_TIMEOUT_S,
    )


async def _set_server_header(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER


def _validator_set_view(config: NodeConfig, network: NetworkGenesis) -> dict[str, object]:
    return {
        "chain_id": config.chain_id,
        "quorum": network.validator_set().quorum,
        "validators": [
            {
                "replica_id": v.replica_id,
                "name": v.name,
                "org_id": v.org_id,
                "public_key": v.public_key,
            }
            for v in network.validators
        ],
    }


def observer_status(
    config: NodeConfig, network: NetworkGenesis, follower: Follower
) -> dict[str, object]:
    height = follower.store.height()
    return {
        "chain_id": config.chain_id,
        "node": config.node_name,
        "org_id": config.org_id,
        "role": config.role,
        "replica_id": None,
        "height": height,
        "block_hash": follower.tip.block_hash,
        "state_root": follower.ledger.state.root(),
        "following": follower.following(),
        "alerts": [alert.to_dict() for alert in follower.alerts],
        "divergence": _divergence_view(follower),
        "mempool": {"size": 0},
        "validator_set": _validator_set_view(config, network),
    }


def node_status(
    config: NodeConfig, network: NetworkGenesis, engine: Engine, peers: PeerLinks
) -> dict[str, object]:
    replica = engine.replica
    # The set of the replica's window: on a governed chain it changes.
    validators = replica.validators
    store = engine.store
    executed = engine.last_executed
    height = store.height()
    return {
        "chain_id": config.chain_id,
        "node": config.node_name,
        "org_id": config.org_id,
        "role": config.role,
        "replica_id": config.replica_id,
        "view": replica.view,
        "primary": validators.primary(replica.view),
        "active": replica.active,
        "height": height,
        "block_hash": executed.block_hash if executed else _stored_hash(store, height),
        "state_root": engine.ledger.state.root(),
        "peers": peers.status(),
        "mempool": {"size": len(engine.mempool)},
        "validator_set": _validator_set_view(config, network),
        "alerts": [alert.to_dict() for alert in engine.alerts],
        "divergence": _divergence_view(engine),
    }


def _divergence_view(host: Engine | Follower) -> dict[str, object] | None:
    """Why the node stopped executing, or None while it runs."""
    return None if host.divergence is None else host.divergence.to_dict()


def _stored_hash(store: Store, height: int) -> bytes:
    stored = store.block(height) if height else None
    return stored.block_hash if stored is not None else b""


async def _serve(config: NodeConfig) -> int:
    node = await start_node(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({stopper, node.engine_task}, return_when=asyncio.FIRST_COMPLETED)
    failed = node.engine_task.done()
    stopper.cancel()
    await node.stop()
    if failed:
        log.error("node stopped because its chain task failed: %r", node.engine.fatal)
        return 1
    return 0


def _install_event_loop() -> None:
    """uvloop where it is available: a websocket frame costs far less CPU under it."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_node(config_path: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_node_config(config_path)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        return 2
    _install_event_loop()
    try:
        return asyncio.run(_serve(config))
    except (ConfigError, KeyFileError, StorageError, OSError) as exc:
        log.error("cannot start node %s: %s", config.node_name, exc)
        return 2
