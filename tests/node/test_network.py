"""A real 4-validator network on 127.0.0.1: processes, TLS, SIGKILL, bad input.

The network is started once for the module with ``provenet net init`` and
``provenet net up`` (TLS on, as by default) and torn down with ``net down``.
The tests run in file order and share it: the kill tests leave every node
running and in agreement, which the next test checks again.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from netfixture import LocalNetwork, local_network

from consensus.codec import Ed25519Signer, decode, encode
from contracts.food_records import lot_key
from contracts.orgs import org_key
from contracts.tx import Transaction, encode_tx, sign_tx, tx_id
from node.runtime.peers import CLOSE_BAD_DATA, CLOSE_POLICY, hello_bytes
from node.runtime.tls import issue_node_cert, make_ca
from node.sdk import ProvenetClient, TransactionRejected
from node.sdk.keys import load_identity
from node.sdk.state_proof import ProvenState
from node.sdk.tls import client_context

pytestmark = [pytest.mark.asyncio, pytest.mark.network, pytest.mark.slow]

CATCH_UP_TIMEOUT_S = 60
VIEW_CHANGE_TIMEOUT_S = 45


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with local_network(tmp_path_factory.mktemp("network")) as running:
        yield running


KP_CERTIFICATE: dict[str, object] = {
    "cert_id": "BW-BAD-1",
    "exporter": "bw-trader",
    "importer": "cutter",
    "origin_country": "BW",
    "destination_country": "BE",
    "parcels": ["P-none"],
    "carats_points": 12_000,
    "value_cents": 5_000_000,
    "hs_code": "7102.31",
    "expiry_height": 10**9,
}

# ---------------------------------------------------------------- helpers


def harvest_args(tag: str, index: int) -> dict[str, object]:
    return {"lot_id": f"{tag}-{index}", "product": "wheat", "mass_grams": 1_000 + index}


async def sign_many(client: ProvenetClient, count: int, tag: str) -> list[object]:
    first = await client.next_nonce()
    return [
        await client.sign("food", "harvest", harvest_args(tag, i), nonce=first + i)
        for i in range(count)
    ]


async def chain_of(
    network: LocalNetwork, http: aiohttp.ClientSession, name: str
) -> dict[int, dict[str, Any]]:
    """Every block a node holds, by height (hash and per-transaction results)."""
    blocks: dict[int, dict[str, Any]] = {}
    start = 1
    while True:
        url = f"{network.api_url(name)}/v1/blocks?from={start}&limit=100"
        async with http.get(url, ssl=network.ssl()) as response:
            page = (await response.json())["blocks"]
        for block in page:
            blocks[block["height"]] = block
        if len(page) < 100:
            return blocks
        start += 100


async def wait_agreement(
    network: LocalNetwork, names: list[str], at_least: int = 0
) -> dict[str, Any]:
    """Wait until every named node reports one height (>= at_least) and one state root."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while True:
            statuses = [await network.status(http, name) for name in names]
            if all(statuses):
                heights = {s["height"] for s in statuses if s}
                roots = {s["state_root"] for s in statuses if s}
                if len(heights) == 1 and len(roots) == 1 and heights.pop() >= at_least:
                    return statuses[0] or {}
            if time.monotonic() > deadline:
                pytest.fail(f"nodes never agreed: {[(s or {}).get('height') for s in statuses]}")
            await asyncio.sleep(0.2)


async def primary_name(network: LocalNetwork) -> tuple[str, int]:
    async with aiohttp.ClientSession() as http:
        for node in network.nodes:
            status = await network.status(http, node.name)
            if status and status["active"]:
                primary = int(status["primary"])
                name = next(n.name for n in network.nodes if n.replica_id == primary)
                return name, int(status["view"])
    pytest.fail("no active node")


# ---------------------------------------------------------------- tests


async def test_a_thousand_transactions_from_several_clients_all_commit(
    network: LocalNetwork,
) -> None:
    senders = ["farm", "miner", "bw-trader", "farm", "miner"]
    names = [n.name for n in network.nodes]
    # Five clients, each preferring a different node; two pairs share a sender's
    # key, so those pairs split one nonce sequence between two nodes.
    lanes: list[tuple[ProvenetClient, list[object]]] = []
    signed: dict[str, list[object]] = {}
    for org in dict.fromkeys(senders):
        signer_client = network.client(org)
        per_org = senders.count(org) * 200
        signed[org] = await sign_many(signer_client, per_org, f"load-{org}")
        await signer_client.close()
    taken: dict[str, int] = {}
    for index, org in enumerate(senders):
        start = taken.get(org, 0)
        taken[org] = start + 200
        lanes.append(
            (network.client(org, node=names[index % len(names)]), signed[org][start : start + 200])
        )

    async def drive(client: ProvenetClient, txs: list[object]) -> list[dict[str, object]]:
        for chunk in range(0, len(txs), 50):
            results = await client.submit_many(txs[chunk : chunk + 50])  # type: ignore[arg-type]
            assert all(r["error"] is None for r in results), results
        return [await client.wait_tx(tx, timeout_s=60) for tx in txs]  # type: ignore[arg-type]

    receipts = await asyncio.gather(*(drive(client, txs) for client, txs in lanes))
    for client, _ in lanes:
        await client.close()
    flat = [receipt for lane in receipts for receipt in lane]
    assert len(flat) == 1_000
    assert all(receipt["status"] == "ok" for receipt in flat)
    committed = {receipt["tx_id"] for receipt in flat}
    assert len(committed) == 1_000

    status = await wait_agreement(network, names)
    async with aiohttp.ClientSession() as http:
        chains = [await chain_of(network, http, name) for name in names]
    assert all(len(chain) == status["height"] for chain in chains)
    for height in chains[0]:
        assert len({chain[height]["hash"] for chain in chains}) == 1, f"fork at height {height}"
    on_chain = {
        tx["tx_id"] for block in chains[0].values() for tx in block["txs"] if tx["status"] == "ok"
    }
    assert committed <= on_chain


async def _steady_load(
    network: LocalNetwork, avoid: str, stop: asyncio.Event, committed: list[str]
) -> None:
    """One client submitting and waiting, one transaction at a time, failing over."""
    nodes = [n.name for n in network.nodes if n.name != avoid]
    client = network.client("farm", node=nodes[0])
    index = 0
    tag = f"steady-{avoid}-{time.time_ns()}"
    try:
        while not stop.is_set():
            receipt = await client.submit("food", "harvest", harvest_args(tag, index), timeout_s=90)
            committed.append(str(receipt["tx_id"]))
            index += 1
    finally:
        await client.close()


async def _kill_under_load_and_restart(
    network: LocalNetwork, victim: str, expect_view_change: bool
) -> None:
    names = [n.name for n in network.nodes]
    survivors = [name for name in names if name != victim]
    _, view_before = await primary_name(network)
    stop = asyncio.Event()
    committed: list[str] = []
    load = asyncio.create_task(_steady_load(network, victim, stop, committed))
    await asyncio.sleep(1.0)
    network.kill(victim)
    killed_at = len(committed)
    deadline = time.monotonic() + VIEW_CHANGE_TIMEOUT_S
    while len(committed) < killed_at + 20 and time.monotonic() < deadline and not load.done():
        await asyncio.sleep(0.2)
    stop.set()
    await load
    assert len(committed) >= killed_at + 20, "transactions stopped committing after the kill"
    async with aiohttp.ClientSession() as http:
        views = [
            int((await network.status(http, name) or {}).get("view", -1)) for name in survivors
        ]
    if expect_view_change:
        assert min(views) > view_before, f"no view change after killing the primary: {views}"

    network.up()
    status = await wait_agreement(network, names)
    async with aiohttp.ClientSession() as http:
        chain = await chain_of(network, http, victim)
    on_chain = {
        tx["tx_id"] for block in chain.values() for tx in block["txs"] if tx["status"] == "ok"
    }
    assert set(committed) <= on_chain, (
        "a transaction the SDK saw commit is missing after the restart"
    )
    assert len(chain) == status["height"]


async def test_sigkill_the_primary_under_load_then_a_backup(network: LocalNetwork) -> None:
    primary, _ = await primary_name(network)
    await _kill_under_load_and_restart(network, primary, expect_view_change=True)
    primary, _ = await primary_name(network)
    backup = next(n.name for n in network.nodes if n.name != primary)
    await _kill_under_load_and_restart(network, backup, expect_view_change=False)


# ---------------------------------------------------------------- bad input


async def post(
    network: LocalNetwork, http: aiohttp.ClientSession, body: bytes, content_type: str
) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    url = f"{network.api_url('v1')}/v1/txs?wait=true&timeout_ms=20000"
    async with http.post(
        url, data=body, headers={"Content-Type": content_type}, ssl=network.ssl()
    ) as response:
        return response.status, await response.json(), response.headers


async def test_bad_input_gets_its_error_code_and_the_node_stays_healthy(
    network: LocalNetwork,
) -> None:
    farm = load_identity(network.dir / "orgs" / "farm.key").signer
    async with network.client("farm") as client, aiohttp.ClientSession() as http:
        nonce = await client.next_nonce()
        good = sign_tx(
            farm,
            chain_id="provenet-local",
            nonce=nonce,
            contract="food",
            method="harvest",
            args=harvest_args("bad", 0),
        )
        stranger = Ed25519Signer.from_seed(b"s" * 32)
        cases: list[tuple[bytes, str, int, str]] = [
            (b"{not json", "application/json", 400, "malformed_json"),
            (b"\xc1\xff", "application/msgpack", 400, "malformed_msgpack"),
            (
                b'{"tx": {"chain_id": "provenet-local", "nonce": 1.5}}',
                "application/json",
                400,
                "float_not_allowed",
            ),
            (b"x" * 2_000_000, "application/msgpack", 413, "too_large"),
            (encode({"hello": 1}), "application/msgpack", 400, "malformed_tx"),
            (
                encode_tx(
                    sign_tx(
                        farm,
                        chain_id="other-chain",
                        nonce=nonce,
                        contract="food",
                        method="harvest",
                        args={},
                    )
                ),
                "application/msgpack",
                400,
                "wrong_chain",
            ),
            (
                encode_tx(
                    sign_tx(
                        stranger,
                        chain_id="provenet-local",
                        nonce=0,
                        contract="food",
                        method="harvest",
                        # Valid arguments: the contracts' stateless checks
                        # run before the key is looked up.
                        args=harvest_args("stranger", 0),
                    )
                ),
                "application/msgpack",
                403,
                "unknown_key",
            ),
        ]
        forged = encode_tx(good)[:-1] + bytes([encode_tx(good)[-1] ^ 1])
        cases.append((forged, "application/msgpack", 401, "bad_signature"))
        for body, content_type, status, code in cases:
            got_status, answer, _ = await post(network, http, body, content_type)
            assert (got_status, answer["error"]["code"]) == (status, code), answer

        # The good transaction commits; sending it again returns the same result.
        first_status, first, _ = await post(network, http, encode_tx(good), "application/msgpack")
        again_status, again, _ = await post(network, http, encode_tx(good), "application/msgpack")
        assert first_status == again_status == 200
        assert first["status"] == "committed" and again == first
        # Another transaction with the used nonce is a replay.
        replay = sign_tx(
            farm,
            chain_id="provenet-local",
            nonce=nonce,
            contract="food",
            method="harvest",
            args=harvest_args("bad", 1),
        )
        replay_status, answer, _ = await post(
            network, http, encode_tx(replay), "application/msgpack"
        )
        assert (replay_status, answer["error"]["code"]) == (409, "nonce_used")

        # A supplier issuing a KP certificate: it commits, and the contract refuses it.
        client.forget_nonce()
        async with network.client("miner") as miner:
            with pytest.raises(TransactionRejected) as refused:
                await miner.submit("diamonds", "issue_kp_certificate", KP_CERTIFICATE)
        assert refused.value.code == "unauthorized"

        async with http.get(f"{network.api_url('v1')}/healthz", ssl=network.ssl()) as response:
            assert response.status == 200
        receipt = await client.submit("food", "harvest", harvest_args("after-bad", 0))
        assert receipt["status"] == "ok"


async def test_a_double_spend_loser_is_answered_409_nonce_used_whichever_way_it_lost(
    network: LocalNetwork,
) -> None:
    """Two transactions with one nonce, sent at once to two validators: one commits,
    and the other is answered 409 ``nonce_used`` whether it lost at admission, in
    the mempool when the winner executed, or in a block after the winner."""
    farm = load_identity(network.dir / "orgs" / "farm.key").signer
    names = [n.name for n in network.nodes]
    losers: dict[str, int] = {}
    async with network.client("farm") as client, aiohttp.ClientSession() as http:
        for round_index in range(6):
            nonce = await client.next_nonce()
            client.forget_nonce()
            pair = [
                sign_tx(
                    farm,
                    chain_id="provenet-local",
                    nonce=nonce,
                    contract="food",
                    method="harvest",
                    args=harvest_args(f"spend-{round_index}-{side}", nonce),
                )
                for side in ("a", "b")
            ]
            targets = [names[round_index % 4], names[(round_index + 1) % 4]]

            async def send(tx: Transaction, name: str) -> tuple[int, dict[str, Any]]:
                url = f"{network.api_url(name)}/v1/txs?wait=true&timeout_ms=20000"
                headers = {"Content-Type": "application/msgpack"}
                async with http.post(
                    url, data=encode_tx(tx), headers=headers, ssl=network.ssl()
                ) as response:
                    return response.status, await response.json()

            answers = await asyncio.gather(
                *(send(tx, n) for tx, n in zip(pair, targets, strict=True))
            )
            winners = [a for s, a in answers if s == 200]
            refused = [a for s, a in answers if s != 200]
            assert len(winners) == 1 and winners[0]["receipt"]["status"] == "ok", answers
            assert [(a["error"]["code"]) for a in refused] == ["nonce_used"], answers
            loser = pair[[s for s, _ in answers].index(409)]
            url = f"{network.api_url(names[0])}/v1/txs/{tx_id(loser).hex()}"
            async with http.get(url, ssl=network.ssl()) as response:
                fate = (await response.json()).get("status") if response.status == 200 else "none"
            losers[str(fate)] = losers.get(str(fate), 0) + 1
    # How each loser lost depends on the race; the answer never did.
    assert sum(losers.values()) == 6, losers


async def test_a_loser_waiting_in_a_mempool_is_answered_409_when_the_winner_executes(
    network: LocalNetwork,
) -> None:
    """The loser waits in v0's mempool for an earlier nonce while the winner and
    that earlier nonce commit through v1: v0 drops it, and its waiting submit
    hears 409 ``nonce_used``, not a 200 "dropped"."""
    farm = load_identity(network.dir / "orgs" / "farm.key").signer
    async with network.client("farm") as client, aiohttp.ClientSession() as http:
        nonce = await client.next_nonce()
        client.forget_nonce()

        def harvest(at: int, tag: str) -> bytes:
            return encode_tx(
                sign_tx(
                    farm,
                    chain_id="provenet-local",
                    nonce=at,
                    contract="food",
                    method="harvest",
                    args=harvest_args(tag, at),
                )
            )

        async def send(body: bytes, name: str) -> tuple[int, dict[str, Any]]:
            url = f"{network.api_url(name)}/v1/txs?wait=true&timeout_ms=20000"
            headers = {"Content-Type": "application/msgpack"}
            async with http.post(url, data=body, headers=headers, ssl=network.ssl()) as response:
                return response.status, await response.json()

        loser = asyncio.create_task(send(harvest(nonce + 1, "held-loser"), "v0"))
        await asyncio.sleep(0.5)
        assert not loser.done(), "the loser waits for its earlier nonce"
        # The gap filler and the winner go to v1 together, so the winner is on
        # its way to the primary before v0 could release the loser.
        winner = harvest(nonce + 1, "held-winner")
        batch = encode([harvest(nonce, "gap-filler"), winner])
        url = f"{network.api_url('v1')}/v1/txs/batch"
        headers = {"Content-Type": "application/msgpack"}
        async with http.post(url, data=batch, headers=headers, ssl=network.ssl()) as response:
            assert response.status == 200
        status, answer = await asyncio.wait_for(loser, timeout=30)
        assert (status, answer["error"]["code"]) == (409, "nonce_used"), answer
        committed = await send(winner, "v1")
        assert committed[0] == 200 and committed[1]["receipt"]["status"] == "ok", committed


async def test_a_revoked_key_is_refused(network: LocalNetwork) -> None:
    second = Ed25519Signer.from_seed(b"grocer-second-key".ljust(32, b"\0"))
    async with network.client("grocer") as grocer:
        proposal = await grocer.submit(
            "membership",
            "propose",
            {"action": "add_key", "params": {"org_id": "grocer", "key": second.public_key}},
        )
        proposal_id = str(proposal["tx_id"])
        voters = [
            "leadfirm",
            "miner",
            "bw-trader",
            "cutter",
            "kp-bw",
            "kp-be",
            "lab",
            "farm",
            "mill",
        ]
        for org in voters:
            async with network.client(org) as voter:
                answer = await voter.submit(
                    "membership", "vote", {"proposal_id": proposal_id}, raise_on_reject=False
                )
            if answer["status"] != "ok":
                break  # the proposal passed on an earlier vote and is closed
        await grocer.submit("membership", "revoke_own_key", {"key": second.public_key})
    revoked = sign_tx(
        second,
        chain_id="provenet-local",
        nonce=0,
        contract="food",
        method="harvest",
        args=harvest_args("revoked", 0),  # valid, so that the key is what is refused
    )
    async with aiohttp.ClientSession() as http:
        status, answer, _ = await post(network, http, encode_tx(revoked), "application/msgpack")
    assert (status, answer["error"]["code"]) == (403, "key_revoked")
    assert tx_id(revoked).hex() not in str(answer)


async def _proven_while_committing(
    reader: ProvenetClient, writer: ProvenetClient, key: bytes, tag: str
) -> ProvenState:
    """``reader.prove_state(key)``, committing harvests (at most 20) until it is
    answered: a height is certified by a later block."""
    task = asyncio.ensure_future(reader.prove_state(key, timeout_s=20))
    for index in range(20):
        done, _ = await asyncio.wait({task}, timeout=0.2)
        if done:
            break
        await writer.submit("food", "harvest", harvest_args(tag, index))
    return await task


async def test_state_is_proven_present_and_absent_through_the_sdk(network: LocalNetwork) -> None:
    tag = f"state-{time.time_ns()}"
    async with network.client("farm") as writer, network.client(node="v2") as reader:
        await writer.submit("food", "harvest", harvest_args(tag, 99))
        present = await _proven_while_committing(reader, writer, lot_key(f"{tag}-99"), tag)
        assert present.value is not None and decode(present.value)["lot_id"] == f"{tag}-99"
        org = await _proven_while_committing(reader, writer, org_key("miner"), tag + "b")
        assert org.value is not None and org.height >= present.height
        absent = await _proven_while_committing(reader, writer, lot_key(f"never-{tag}"), tag + "c")
        assert absent.value is None and absent.height >= org.height
        assert reader.proven_height == absent.height


# ---------------------------------------------------------------- peer links


async def _peer_socket(
    network: LocalNetwork, http: aiohttp.ClientSession, cert: Path, key: Path
) -> aiohttp.ClientWebSocketResponse:
    target = next(n for n in network.nodes if n.name == "v0")
    context = client_context(network.dir / "ca" / "ca.pem", cert, key)
    return await http.ws_connect(target.peer_url, ssl=context)


async def _answer_challenge(
    ws: aiohttp.ClientWebSocketResponse, signer: Ed25519Signer, claimed_id: int
) -> None:
    challenge = decode((await ws.receive(timeout=5)).data)
    assert isinstance(challenge, dict)
    signature = signer.sign(hello_bytes("provenet-local", challenge["challenge"], claimed_id, 0))
    await ws.send_bytes(encode({"replica_id": claimed_id, "signature": signature}))


async def test_peer_links_close_on_a_non_validator_key_or_garbage_and_the_network_carries_on(
    network: LocalNetwork,
) -> None:
    v1_dir = network.dir / "nodes" / "v1"
    v1_key = load_identity(v1_dir / "node.key").signer
    async with aiohttp.ClientSession() as http:
        # A key that is not validator 1's, claiming to be validator 1.
        ws = await _peer_socket(network, http, v1_dir / "tls.pem", v1_dir / "tls.key")
        await _answer_challenge(ws, Ed25519Signer.from_seed(b"n" * 32), 1)
        closing = await ws.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == CLOSE_POLICY
        # Validator 1's own key and certificate, then a garbage frame.
        ws = await _peer_socket(network, http, v1_dir / "tls.pem", v1_dir / "tls.key")
        await _answer_challenge(ws, v1_key, 1)
        await ws.send_bytes(b"\x92\xc1garbage")
        closing = await ws.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == CLOSE_BAD_DATA
    async with network.client("farm") as client:
        receipt = await client.submit(
            "food", "harvest", harvest_args(f"after-peers-{time.time_ns()}", 0)
        )
    assert receipt["status"] == "ok"
    await wait_agreement(network, [n.name for n in network.nodes])


async def test_a_certificate_from_another_ca_cannot_join_the_validator_links(
    network: LocalNetwork, tmp_path: Path
) -> None:
    ca_cert, ca_key = make_ca(tmp_path / "rogue-ca")
    rogue_cert, rogue_key = issue_node_cert(ca_cert, ca_key, "v1", tmp_path / "rogue")
    v1_dir = network.dir / "nodes" / "v1"
    async with aiohttp.ClientSession() as http:
        try:
            ws = await _peer_socket(network, http, rogue_cert, rogue_key)
            first = await ws.receive(timeout=5)
        except (aiohttp.ClientError, ConnectionError, ssl.SSLError, TimeoutError):
            joined = False
        else:
            joined = first.type == aiohttp.WSMsgType.BINARY
        assert not joined, "a certificate from another CA reached the peer handshake"
        # The same attempt with the network's own certificate is let in: the
        # refusal above is the certificate's doing.
        ws = await _peer_socket(network, http, v1_dir / "tls.pem", v1_dir / "tls.key")
        assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.BINARY
        await ws.close()
