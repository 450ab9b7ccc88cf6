"""The client API of one in-process validator (a network of one commits alone).

Fast checks of the API's contract that need no second process: content
negotiation, the JSON transaction form, back-pressure with Retry-After,
the resumable event stream, error shapes, metrics.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from netfixture import CHAIN, Single, single_node

from consensus.codec import decode, encode
from contracts.tx import Transaction, encode_tx, sign_tx, tx_id
from node.sdk import ProvenetClient, verify_tx_proof
from node.sdk.errors import ProvenetError
from node.sdk.genesis import load_genesis
from node.sdk.keys import load_identity

pytestmark = [pytest.mark.asyncio, pytest.mark.network]

JSON = "application/json"


@pytest_asyncio.fixture
async def single(tmp_path: Path) -> AsyncIterator[Single]:
    async with single_node(tmp_path, {"mempool_max_txs": 3, "retry_after_s": 2}) as node:
        yield node


async def submit(
    http: aiohttp.ClientSession, single: Single, tx: Transaction
) -> tuple[int, dict[str, Any]]:
    url = f"{single.url}/v1/txs?wait=true&timeout_ms=10000"
    headers = {"Content-Type": "application/msgpack"}
    async with http.post(url, data=encode_tx(tx), headers=headers) as response:
        return response.status, await response.json()


async def test_json_transaction_form_commits_with_a_proof_that_verifies(single: Single) -> None:
    tx = single.harvest(0, "J1")
    fields = {**tx.body(), "sender": tx.sender.hex(), "signature": tx.signature.hex()}
    url = f"{single.url}/v1/txs?wait=true"
    async with aiohttp.ClientSession() as http, http.post(url, json={"tx": fields}) as response:
        assert response.status == 200
        status = await response.json()
    assert status["status"] == "committed" and status["receipt"]["status"] == "ok"
    network = load_genesis(single.dir / "genesis.json")
    header = verify_tx_proof(tx_id(tx), status["proof"], network.validator_set(), CHAIN)
    assert header.height == status["height"]


async def test_msgpack_is_served_when_asked(single: Single) -> None:
    async with aiohttp.ClientSession() as http:
        await submit(http, single, single.harvest(0, "M1"))
        headers = {"Accept": "application/msgpack"}
        async with http.get(f"{single.url}/v1/blocks/1", headers=headers) as response:
            assert response.content_type == "application/msgpack"
            block = decode(await response.read())
    assert isinstance(block, dict) and block["height"] == 1 and isinstance(block["hash"], bytes)


async def test_a_full_mempool_answers_429_with_retry_after_and_keeps_what_it_holds(
    single: Single,
) -> None:
    async with aiohttp.ClientSession() as http:
        # Nonces 5..7 wait for 0..4, so they stay in the mempool (its bound is 3).
        for nonce in (5, 6, 7):
            url = f"{single.url}/v1/txs"
            body = encode_tx(single.harvest(nonce, f"H{nonce}"))
            async with http.post(
                url, data=body, headers={"Content-Type": "application/msgpack"}
            ) as response:
                assert response.status == 202
        body = encode_tx(single.harvest(8, "H8"))
        async with http.post(
            f"{single.url}/v1/txs", data=body, headers={"Content-Type": "application/msgpack"}
        ) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "2"
            assert (await response.json())["error"]["code"] == "mempool_full"
        async with http.get(f"{single.url}/v1/nonce/{single.farm.public_key.hex()}") as response:
            assert await response.json() == {
                "sender": single.farm.public_key.hex(),
                "next_nonce": 0,
                "pending_next_nonce": 8,
            }


async def test_event_stream_replays_from_a_height_and_resumes(single: Single) -> None:
    async with aiohttp.ClientSession() as http:
        ids = []
        for nonce in range(3):
            tx = single.harvest(nonce, f"E{nonce}")
            status, _ = await submit(http, single, tx)
            assert status == 200
            ids.append(tx_id(tx).hex())
        # Each block is followed by the empty one that carries its results
        # (the submit waits for it): six frames, heights 1..6.
        async with http.ws_connect(f"{single.url}/v1/events?from_height=1") as ws:
            frames = [json.loads((await ws.receive(timeout=10)).data) for _ in range(6)]
        assert [f["height"] for f in frames] == [1, 2, 3, 4, 5, 6]
        assert [t["tx_id"] for f in frames for t in f["txs"]] == ids
        last = frames[-1]["height"]
        fourth = single.harvest(3, "E3")
        async with http.ws_connect(f"{single.url}/v1/events?from_height={last + 1}") as ws:
            await submit(http, single, fourth)
            frame = json.loads((await ws.receive(timeout=10)).data)
        assert frame["height"] == last + 1
        assert frame["txs"][0]["tx_id"] == tx_id(fourth).hex()


async def test_errors_are_json_with_stable_codes(single: Single) -> None:
    async with aiohttp.ClientSession() as http:
        await submit(http, single, single.harvest(0, "X0"))
        cases = [
            ("GET", "/v1/blocks/999", 404, "not_found"),
            ("GET", "/no/such/route", 404, "not_found"),
            ("GET", "/v1/txs/zz", 404, "not_found"),
            ("GET", "/v1/txs/abc", 400, "bad_request"),
            ("GET", "/v1/txs/batch", 405, "method_not_allowed"),
            ("GET", f"/v1/txs/{'00' * 32}", 404, "not_found"),
            ("GET", "/v1/compliance/NO-SUCH-STONE", 404, "unknown_asset"),
            ("GET", "/v1/recall_impact/NO-SUCH-LOT", 404, "unknown_asset"),
            ("POST", "/v1/query", 400, "malformed_json"),
        ]
        for method, path, status, code in cases:
            async with http.request(
                method, f"{single.url}{path}", data=b"{", headers={"Content-Type": JSON}
            ) as response:
                assert response.status == status, path
                assert (await response.json())["error"]["code"] == code, path
        status, answer = await submit(http, single, single.harvest(1, "X1", expiry_height=0))
        assert (status, answer["error"]["code"]) == (400, "expired")
        async with http.post(
            f"{single.url}/v1/txs", data=b"x", headers={"Content-Type": "text/plain"}
        ) as response:
            assert response.status == 415


async def test_metrics_count_what_the_node_did(single: Single) -> None:
    async with aiohttp.ClientSession() as http:
        await submit(http, single, single.harvest(0, "P0"))
        async with http.get(f"{single.url}/metrics") as response:
            text = await response.text()
    # Block 1 holds it, block 2 is the empty one that carries its results.
    assert "provenet_height 2.0" in text
    assert 'provenet_transactions_executed_total{status="ok"} 1.0' in text
    assert 'provenet_submissions_total{outcome="accepted"} 1.0' in text


async def test_batch_submission_reports_each_transaction(single: Single) -> None:
    good = single.harvest(0, "B0")
    wrong_chain = sign_tx(
        single.farm, chain_id="elsewhere", nonce=1, contract="food", method="harvest", args={}
    )
    body = encode([encode_tx(good), encode_tx(wrong_chain)])
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{single.url}/v1/txs/batch", data=body, headers={"Content-Type": "application/msgpack"}
        ) as response,
    ):
        results = (await response.json())["results"]
    assert results[0]["tx_id"] == tx_id(good).hex() and results[0]["error"] is None
    assert results[1]["error"]["code"] == "wrong_chain"


async def test_audit_views_show_a_sanction_and_what_it_tainted(single: Single) -> None:
    def signed(org: str, nonce: int, method: str, args: dict[str, object]) -> Transaction:
        signer = load_identity(single.dir / "orgs" / f"{org}.key").signer
        return sign_tx(
            signer, chain_id=CHAIN, nonce=nonce, contract="diamonds", method=method, args=args
        )

    steps = [
        signed(
            "kp-bw", 0, "register_mine", {"mine_id": "M-A", "country": "BW", "operator": "miner"}
        ),
        signed("miner", 0, "extract", {"mine_id": "M-A", "parcel_id": "P-A", "carats_points": 100}),
        signed("miner", 1, "extract", {"mine_id": "M-A", "parcel_id": "P-B", "carats_points": 100}),
        signed("regulator", 0, "sanction", {"kind": "mine", "target": "M-A", "reason": "conflict"}),
    ]
    async with aiohttp.ClientSession() as http:
        for tx in steps:
            status, answer = await submit(http, single, tx)
            assert (status, answer["receipt"]["status"]) == (200, "ok"), answer
        async with http.get(f"{single.url}/v1/audit/noncompliant") as response:
            failing = (await response.json())["result"]
        async with http.get(f"{single.url}/v1/audit/sanctions") as response:
            sanctions = (await response.json())["result"]["sanctions"]
        # Each step's block is followed by the empty one carrying its results.
        async with http.get(f"{single.url}/v1/audit/activity?from=1&to=8") as response:
            activity = (await response.json())["result"]
    assert {a["asset_id"] for a in failing["assets"]} == {"P-A", "P-B"}
    assert {f["rule"] for a in failing["assets"] for f in a["failures"]} == {"mine_sanctioned"}
    assert [(s["kind"], s["target"], sorted(s["tainted"])) for s in sanctions] == [
        ("mine", "M-A", ["P-A", "P-B"])
    ]
    assert activity["orgs"]["miner"] == {
        "txs": 2,
        "ok": 2,
        "rejected": 0,
        "methods": {"diamonds.extract": 2},
    }
    assert activity["truncated"] is False


async def test_a_signature_that_fails_gives_its_nonce_back(single: Single) -> None:
    client = ProvenetClient.from_network_dir(single.dir, org_id="farm")
    async with client:
        first = await client.next_nonce()
        with pytest.raises(TypeError):
            await client.sign("food", "harvest", {"mass": 1.5})
        tx = await client.sign("food", "harvest", {"lot_id": "N1", "product": "x", "mass_grams": 1})
    # The failed call's nonce was not lost: the next transaction takes it.
    assert tx.nonce == first + 1


async def test_arguments_that_can_never_be_valid_are_refused_before_ordering(
    single: Single,
) -> None:
    extract = sign_tx(
        single.farm,
        chain_id=CHAIN,
        nonce=0,
        contract="diamonds",
        method="extract",
        args={"mine_id": "M1", "parcel_id": "P1", "carats_points": -100_000},
    )
    nonce_url = f"{single.url}/v1/nonce/{single.farm.public_key.hex()}"
    async with aiohttp.ClientSession() as http:
        status, answer = await submit(http, single, extract)
        assert (status, answer["error"]["code"]) == (400, "invalid_argument")
        assert "carats_points" in answer["error"]["message"]
        async with http.get(nonce_url) as response:
            assert (await response.json())["next_nonce"] == 0
        async with http.get(f"{single.url}/v1/txs/{tx_id(extract).hex()}") as response:
            assert response.status == 404  # never ordered, so never committed
        # The nonce the refused transaction named is still free.
        status, answer = await submit(http, single, single.harvest(0, "V1"))
        assert status == 200 and answer["status"] == "committed"
        assert answer["receipt"]["status"] == "ok"
        async with http.get(nonce_url) as response:
            assert (await response.json())["next_nonce"] == 1


async def test_the_sdk_reuses_the_nonce_of_a_transaction_refused_before_ordering(
    single: Single,
) -> None:
    client = ProvenetClient.from_network_dir(single.dir, org_id="farm")
    async with client:
        with pytest.raises(ProvenetError) as refused:
            await client.submit(
                "food", "harvest", {"lot_id": "S/1", "product": "x", "mass_grams": 1}
            )
        assert (refused.value.code, refused.value.status) == ("invalid_argument", 400)
        result = await client.submit(
            "food", "harvest", {"lot_id": "S1", "product": "x", "mass_grams": 1}
        )
    assert result["status"] == "ok"
