"""A regulator's observer: follows a 4-validator network, refuses writes and
consensus traffic, and rejects blocks a lying validator serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from ssl import SSLContext

import aiohttp
import pytest
from aiohttp import web
from netfixture import LocalNetwork, free_base_port, local_network

from consensus.blocks import ChainTip
from consensus.codec import decode, encode
from consensus.quorum import ValidatorSet
from node.app import start_node
from node.ops.netinit import init_network
from node.runtime.config import PeerEntry, load_node_config
from node.runtime.follower import _HEADER_TYPES, BlockRejected, Follower, check_block
from node.runtime.metrics import NodeMetrics
from node.runtime.peers import CLOSE_POLICY
from node.sdk.tls import client_context
from node.sdk.transport import Transport

pytestmark = [pytest.mark.asyncio, pytest.mark.network]

FOLLOW_TIMEOUT_S = 30
# The read timeout every visit to a hung source cost before the follower was pushed to.
OLD_READ_TIMEOUT_S = 5


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with local_network(tmp_path_factory.mktemp("observed"), observers=1) as running:
        yield running


def names(network: LocalNetwork, role: str) -> list[str]:
    return [n.name for n in network.nodes if n.role == role]


async def heights_and_roots(network: LocalNetwork, node_names: list[str]) -> list[tuple[int, str]]:
    async with aiohttp.ClientSession() as http:
        statuses = [await network.status(http, name) for name in node_names]
    return [(int(s["height"]), str(s["state_root"])) if s else (-1, "") for s in statuses]


async def wait_same_tip(network: LocalNetwork, node_names: list[str]) -> tuple[int, str]:
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    while True:
        tips = await heights_and_roots(network, node_names)
        if len(set(tips)) == 1 and tips[0][0] > 0:
            return tips[0]
        if time.monotonic() > deadline:
            pytest.fail(f"nodes never reached one tip: {tips}")
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_the_observer_keeps_up_with_validators_under_load(network: LocalNetwork) -> None:
    observer = names(network, "observer")[0]
    lags: list[int] = []

    async def sample_lag(stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                status = await network.status(http, observer)
                if status:
                    lags.append(int(status["following"]["lag_blocks"]))
                await asyncio.sleep(0.05)

    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_lag(stop))
    async with network.client("farm") as farm:
        first = await farm.next_nonce()
        txs = [
            await farm.sign(
                "food",
                "harvest",
                {"lot_id": f"O-{i}", "product": "rice", "mass_grams": 5},
                nonce=first + i,
            )
            for i in range(400)
        ]
        for chunk in range(0, len(txs), 100):
            await farm.submit_many(txs[chunk : chunk + 100])
        for tx in txs[-1:]:
            await farm.wait_tx(tx, timeout_s=60)
    stop.set()
    await sampler
    height, _ = await wait_same_tip(network, [*names(network, "validator"), observer])
    assert height >= 2
    assert lags, "the observer's status was never read"


async def test_writes_and_consensus_traffic_are_refused(network: LocalNetwork) -> None:
    observer = next(n for n in network.nodes if n.role == "observer")
    async with aiohttp.ClientSession() as http:
        url = f"{observer.api_url}/v1/txs"
        async with http.post(
            url, data=b"\x80", headers={"Content-Type": "application/msgpack"}, ssl=network.ssl()
        ) as response:
            assert response.status == 403
            assert (await response.json())["error"]["code"] == "read_only"
        node_dir = network.dir / "nodes" / "v1"
        context = client_context(
            network.dir / "ca" / "ca.pem", node_dir / "tls.pem", node_dir / "tls.key"
        )
        async with http.ws_connect(observer.peer_url, ssl=context) as ws:
            message = await ws.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == CLOSE_POLICY


# ---------------------------------------------------------------- a lying validator


def forge_certificate(block: dict[str, object]) -> None:
    certificate = block["certificate"]
    assert isinstance(certificate, list) and certificate
    first = bytearray(certificate[0])
    first[-1] ^= 1  # the last byte of the signature
    certificate[0] = bytes(first)


def tamper_transaction(block: dict[str, object]) -> None:
    payloads = block["payloads"]
    assert isinstance(payloads, list)
    if payloads:
        changed = bytearray(payloads[0])
        changed[len(changed) // 2] ^= 1
        payloads[0] = bytes(changed)
    else:
        payloads.append(b"a transaction nobody committed")


async def lying_proxy(
    honest_url: str, ssl_context: SSLContext | bool, lie: Callable[[dict[str, object]], None]
) -> tuple[web.AppRunner, str]:
    """A validator's API that passes everything through but lies in every chain page."""

    # One session for the proxy's life, closed with it: a session per request
    # left TLS transports to be collected unclosed (a ResourceWarning).
    sessions: list[aiohttp.ClientSession] = []

    async def chain(request: web.Request) -> web.Response:
        if not sessions:
            sessions.append(aiohttp.ClientSession())
        url = f"{honest_url}/v1/chain?{request.query_string}"
        async with sessions[0].get(
            url, headers={"Accept": "application/msgpack"}, ssl=ssl_context
        ) as response:
            page = decode(await response.read())
        assert isinstance(page, dict)
        for block in page["blocks"]:
            lie(block)
        return web.Response(body=encode(page), content_type="application/msgpack")

    async def close_session(app: web.Application) -> None:
        for session in sessions:
            await session.close()

    app = web.Application()
    app.on_cleanup.append(close_session)
    app.add_routes([web.get("/v1/chain", chain)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_base_port(1)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def observer_config(
    network: LocalNetwork,
    tmp_path: Path,
    sources: dict[str, str],
    limits: dict[str, int] | None = None,
) -> Path:
    """A second observer's config, to run in this process, following ``sources``
    (validator name -> API URL, in the order it tries them)."""
    source = json.loads((network.dir / "nodes" / "o0" / "config.json").read_text())
    config = {**source, "node_name": "o-test", "data_dir": str(tmp_path / "data")}
    config["genesis_file"] = str(network.dir / "genesis.json")
    o0 = network.dir / "nodes" / "o0"
    config["tls"] = {
        "enabled": True,
        "ca_file": str(network.dir / "ca" / "ca.pem"),
        "cert_file": str(o0 / "tls.pem"),
        "key_file": str(o0 / "tls.key"),
    }
    port = free_base_port(1)
    config["api_port"], config["peer_port"] = port, port + 100
    by_name = {n.name: n for n in network.nodes if n.role == "validator"}
    # An observer never dials peer_url (it reads the API), but the schema wants a URL.
    config["peers"] = [
        {
            "replica_id": by_name[name].replica_id,
            "name": name,
            "peer_url": by_name[name].peer_url,
            "api_url": url,
        }
        for name, url in sources.items()
    ]
    config["limits"] = limits or {}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def honest_sources(network: LocalNetwork, *names: str) -> dict[str, str]:
    return {name: network.api_url(name) for name in names}


@pytest.mark.parametrize(
    ("lie", "kind"),
    [(forge_certificate, "bad_certificate"), (tamper_transaction, "tampered_transaction")],
)
async def test_an_observer_rejects_a_lying_validator_and_follows_the_honest_ones(
    network: LocalNetwork, tmp_path: Path, lie: Callable[[dict[str, object]], None], kind: str
) -> None:
    honest = next(n for n in network.nodes if n.name == "v1")
    runner, proxy_url = await lying_proxy(honest.api_url, network.ssl(), lie)
    # A second observer, in this process, whose first source is the liar posing as v1.
    loaded = load_node_config(
        observer_config(
            network, tmp_path, {"v1": proxy_url, **honest_sources(network, "v0", "v2", "v3")}
        )
    )
    observer = await start_node(loaded)
    api = f"https://127.0.0.1:{loaded.api_port}"
    validators = [n for n in network.nodes if n.role == "validator"]
    try:
        target, _ = await wait_same_tip(network, ["v0"])
        deadline = time.monotonic() + FOLLOW_TIMEOUT_S
        while observer.store.height() < target and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert observer.store.height() >= target
        alerts = list(observer.engine.alerts)
        assert alerts and {a.kind for a in alerts} == {kind}
        assert {a.validator for a in alerts} == {"v1"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{api}/v1/status", ssl=network.ssl()) as response:
                status = await response.json()
            async with http.get(f"{api}/metrics", ssl=network.ssl()) as response:
                metrics = await response.text()
            async with http.get(
                f"{validators[0].api_url}/v1/blocks/{target}", ssl=network.ssl()
            ) as response:
                honest_block = await response.json()
            async with http.get(f"{api}/v1/blocks/{target}", ssl=network.ssl()) as response:
                observed_block = await response.json()
        assert status["alerts"][0]["kind"] == kind
        assert f'provenet_observer_alerts_total{{kind="{kind}",validator="v1"}}' in metrics
        assert observed_block["hash"] == honest_block["hash"]
        assert (
            observer.engine.ledger.state.root().hex()
            == (await heights_and_roots(network, ["v0"]))[0][1]
        )
    finally:
        await observer.stop()
        await runner.cleanup()

    # Restarted, it resumes from its own store rather than from height 0.
    again = await start_node(loaded)
    try:
        assert again.store.height() >= target
    finally:
        await again.stop()


# ---------------------------------------------------------------- hanging and pushing sources


async def at_least_blocks(network: LocalNetwork, blocks: int) -> int:
    """Commit transactions until the chain has ``blocks`` blocks; its height then."""
    height = min(h for h, _ in await heights_and_roots(network, names(network, "validator")))
    if height < blocks:
        async with network.client("farm") as farm:
            first = await farm.next_nonce()
            for i in range(blocks - height):
                tx = await farm.sign(
                    "food",
                    "harvest",
                    {"lot_id": f"B-{first + i}", "product": "rice", "mass_grams": 5},
                    nonce=first + i,
                )
                await farm.submit_many([tx])
                await farm.wait_tx(tx, timeout_s=30)
        height, _ = await wait_same_tip(network, names(network, "validator"))
    return height


@asynccontextmanager
async def hanging_source() -> AsyncIterator[str]:
    """A validator's API that accepts connections and never answers (a SIGSTOPped node)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client gives up

    port = free_base_port(1)
    server = await asyncio.start_server(hold, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in held:
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)


@asynccontextmanager
async def stream_proxy(
    honest_url: str,
    ssl_context: SSLContext | bool,
    rewrite: Callable[[dict[str, object]], None],
    serve_blocks: bool = True,
) -> AsyncIterator[str]:
    """A validator's API serving only GET /v1/chain/stream, passed through from
    ``honest_url`` with every message rewritten; with ``serve_blocks`` False
    it serves only tips (a block stream is answered 404)."""

    async def stream(request: web.Request) -> web.StreamResponse:
        if not serve_blocks and request.query.get("blocks") != "0":
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        url = f"{honest_url}/v1/chain/stream?{request.query_string}"
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, ssl=ssl_context, max_msg_size=0) as upstream,
        ):
            async for message in upstream:
                if message.type != aiohttp.WSMsgType.BINARY or ws.closed:
                    break
                served = decode(message.data)
                assert isinstance(served, dict)
                rewrite(served)
                try:
                    await ws.send_bytes(encode(served))
                except ConnectionResetError:
                    break  # the observer hung up (on a liar, or at its end)
        return ws

    app = web.Application()
    app.add_routes([web.get("/v1/chain/stream", stream)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_base_port(1)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def claim_a_height_never_certified(served: dict[str, object]) -> None:
    """Withhold every block and claim a far higher tip, under a certificate for another."""
    served["blocks"] = []
    served["height"] = 1_000_000
    tip = served.get("tip")
    if isinstance(tip, dict):
        header = dict(tip["header"])
        header["height"] = 1_000_000
        served["tip"] = {**tip, "header": header}


def forge_every_block(served: dict[str, object]) -> None:
    blocks = served["blocks"]
    assert isinstance(blocks, list)
    for block in blocks:
        forge_certificate(block)


async def test_an_observer_reports_its_true_lag_when_sources_hang_or_lie_about_their_height(
    network: LocalNetwork, tmp_path: Path
) -> None:
    """Every block source hangs, withholds or lies, so the observer cannot move;
    one validator still shows it the certified tip.  Its status says how far
    behind it truly is, and never believes the liar's height."""
    height = await at_least_blocks(network, 3)
    async with (
        hanging_source() as hung,
        stream_proxy(network.api_url("v2"), network.ssl(), lambda s: None, False) as tips_only,
        stream_proxy(network.api_url("v3"), network.ssl(), claim_a_height_never_certified) as liar,
    ):
        sources = {"v1": hung, "v2": tips_only, "v3": liar}
        loaded = load_node_config(observer_config(network, tmp_path, sources))
        observer = await start_node(loaded)
        follower = observer.engine
        assert isinstance(follower, Follower)
        reported: list[int] = []
        try:
            deadline = time.monotonic() + FOLLOW_TIMEOUT_S
            while time.monotonic() < deadline:
                reported.append(int(str(follower.following()["lag_blocks"])))
                if reported[-1] == height and any(a.validator == "v3" for a in follower.alerts):
                    break
                await asyncio.sleep(0.05)
            async with aiohttp.ClientSession() as http:
                url = f"https://127.0.0.1:{loaded.api_port}/v1/status"
                async with http.get(url, ssl=network.ssl()) as response:
                    status = await response.json()
        finally:
            await observer.stop()
    assert status["height"] == 0
    assert status["following"]["lag_blocks"] == height
    assert status["following"]["certified_height"] == height
    assert status["following"]["certified_by"] == "v2"
    assert max(reported) == height, "the lag was never more than the truth"
    assert {(a["kind"], a["validator"]) for a in status["alerts"]} == {("bad_certificate", "v3")}


async def test_an_observer_skips_hanging_sources_within_its_stall_timeout(
    network: LocalNetwork, tmp_path: Path
) -> None:
    """Two hung validators come first; the observer leaves each after
    follow_stall_timeout_ms and follows the third, also as the chain grows."""
    height = await at_least_blocks(network, 3)
    async with hanging_source() as hung1, hanging_source() as hung2:
        sources = {"v1": hung1, "v2": hung2, **honest_sources(network, "v0")}
        limits = {"follow_stall_timeout_ms": 200}
        loaded = load_node_config(observer_config(network, tmp_path, sources, limits))
        started = time.monotonic()
        observer = await start_node(loaded)
        try:
            deadline = started + FOLLOW_TIMEOUT_S
            while observer.store.height() < height and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            caught_up_s = time.monotonic() - started
            assert observer.store.height() >= height
            # Two visits to a hung source cost 2 x 5 s before; two stall timeouts now.
            assert caught_up_s < OLD_READ_TIMEOUT_S, f"caught up after {caught_up_s:.1f} s"
            grown = await at_least_blocks(network, height + 2)
            deadline = time.monotonic() + FOLLOW_TIMEOUT_S
            while observer.store.height() < grown and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert observer.store.height() >= grown
            assert observer.engine.following()["source"] == "v0"  # type: ignore[union-attr]
            assert observer.engine.following()["mode"] == "stream"  # type: ignore[union-attr]
        finally:
            await observer.stop()


def withhold_blocks(served: dict[str, object]) -> None:
    """Stay alive (heartbeats) but never deliver a block or show a tip."""
    served["blocks"] = []
    served["tip"] = None


async def test_an_observer_leaves_a_live_source_that_withholds_what_others_certified(
    network: LocalNetwork, tmp_path: Path
) -> None:
    height = await at_least_blocks(network, 3)
    async with stream_proxy(network.api_url("v1"), network.ssl(), withhold_blocks) as withholder:
        sources = {"v1": withholder, **honest_sources(network, "v0")}
        loaded = load_node_config(observer_config(network, tmp_path, sources))
        observer = await start_node(loaded)
        try:
            deadline = time.monotonic() + FOLLOW_TIMEOUT_S
            while observer.store.height() < height and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            reached = observer.store.height()
            behind = observer.engine.metrics.registry.get_sample_value(
                "provenet_observer_source_switches_total", {"validator": "v1", "reason": "behind"}
            )
        finally:
            await observer.stop()
    assert reached >= height
    assert behind is not None and behind >= 1
    assert not observer.engine.alerts


async def test_a_forged_block_pushed_on_a_stream_is_refused_with_an_alert(
    network: LocalNetwork, tmp_path: Path
) -> None:
    """The first source pushes every block with a forged certificate (and
    serves no GET /v1/chain, so only its stream can lie)."""
    height = await at_least_blocks(network, 3)
    async with stream_proxy(network.api_url("v1"), network.ssl(), forge_every_block) as liar:
        sources = {"v1": liar, **honest_sources(network, "v0", "v2", "v3")}
        loaded = load_node_config(observer_config(network, tmp_path, sources))
        observer = await start_node(loaded)
        try:
            deadline = time.monotonic() + FOLLOW_TIMEOUT_S
            while observer.store.height() < height and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            alerts = list(observer.engine.alerts)
            reached = (observer.store.height(), observer.engine.ledger.state.root().hex())
        finally:
            await observer.stop()
    assert reached[0] >= height
    assert alerts and {(a.kind, a.validator, a.height) for a in alerts} == {
        ("bad_certificate", "v1", 1)
    }
    assert reached == (await heights_and_roots(network, ["v0"]))[0]


# ---------------------------------------------------------------- pure checks


def _tip() -> ChainTip:
    return ChainTip.genesis(bytes(32))


@pytest.mark.parametrize(
    "served",
    [
        None,
        {"header": {"height": "1"}, "payloads": [], "certificate": []},
        {
            "header": {**dict.fromkeys(_HEADER_TYPES, 0), "chain_id": "c"},
            "payloads": [],
            "certificate": [],
        },
        {
            "header": {
                k: (b"" if t is bytes else "c" if t is str else 1) for k, t in _HEADER_TYPES.items()
            },
            "payloads": [b"x"],
            "certificate": [b"\xc1"],
        },
        {
            "header": {
                k: (b"" if t is bytes else "c" if t is str else 1) for k, t in _HEADER_TYPES.items()
            },
            "payloads": "not a list",
            "certificate": [],
        },
    ],
)
async def test_whatever_a_validator_serves_is_a_rejection_never_a_crash(served: object) -> None:
    validators = ValidatorSet((bytes(range(32)),))
    with pytest.raises(BlockRejected):
        check_block(served, _tip(), "c", validators, None)


async def test_a_chain_page_larger_than_one_network_chunk_is_read_whole(tmp_path: Path) -> None:
    page = {"height": 1, "blocks": [], "padding": [b"p" * 60_000 for _ in range(40)]}
    body = encode(page)

    async def chain(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/msgpack")

    app = web.Application()
    app.add_routes([web.get("/v1/chain", chain)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_base_port(1)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        init_network(tmp_path / "net", 1, tls=False, base_port=free_base_port(1), observers=1)
        config = load_node_config(tmp_path / "net" / "nodes" / "o0" / "config.json")
        follower = Follower(
            config,
            ValidatorSet((bytes(range(32)),)),
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            NodeMetrics(),
            _tip(),
            None,
        )
        source = PeerEntry(0, "v0", "", f"http://127.0.0.1:{port}")
        transport = Transport([source.api_url])
        try:
            fetched = await follower._fetch(transport, source)
        finally:
            await transport.close()
        assert fetched == page
    finally:
        await runner.cleanup()
