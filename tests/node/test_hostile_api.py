"""Hostile clients against one in-process validator: every refusal is cheap, coded and harmless.

Each test is one attack of a hostile-input campaign, with bounded sizes: a
batch of many envelopes, an object-dense body, JSON nested thousands deep
or with a repeated key, a body of the wrong media type, a Content-Length
the client never sends, a client over its budget.  Each asserts the
documented answer (status and stable code) and that the node went on
serving and committing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from flood import FLOODER_ADDRESSES, dense_msgpack_body, loopback_aliases_usable
from netfixture import Single, single_node

from consensus.codec import encode
from contracts.tx import Transaction, encode_tx

pytestmark = [pytest.mark.asyncio, pytest.mark.network]

JSON = "application/json"
MSGPACK = "application/msgpack"
DEEP = 5_000
# Small budgets so a test can run a client out of them with a few requests.
BUDGET_LIMITS = {
    "client_cost_per_s": 1,
    "client_cost_burst": 20,
    "address_cost_per_s": 1,
    "address_cost_burst": 30,
}


@pytest_asyncio.fixture
async def single(tmp_path: Path) -> AsyncIterator[Single]:
    async with single_node(tmp_path, {"max_batch_envelopes": 100}) as node:
        yield node


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, content_type: str | None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type} if content_type else {}
    async with http.post(url, data=body, headers=headers) as response:
        return response.status, await response.json()


async def commit(http: aiohttp.ClientSession, single: Single, tx: Transaction) -> None:
    status, answer = await post(
        http, f"{single.url}/v1/txs?wait=true&timeout_ms=10000", encode_tx(tx), MSGPACK
    )
    assert (status, answer["status"]) == (200, "committed"), answer


def tx_json(tx: Transaction) -> dict[str, object]:
    return {**tx.body(), "sender": tx.sender.hex(), "signature": tx.signature.hex()}


async def test_a_batch_over_the_envelope_limit_is_refused_whole(single: Single) -> None:
    url = f"{single.url}/v1/txs/batch"
    async with aiohttp.ClientSession() as http:
        junk = json.dumps({"envelopes": ["00"] * 150_000}).encode()
        status, answer = await post(http, url, junk, JSON)
        assert (status, answer["error"]["code"]) == (413, "too_large")
        status, answer = await post(http, url, encode([b"\x00"] * 101), MSGPACK)
        assert (status, answer["error"]["code"]) == (413, "too_large")
        # An object-dense msgpack body within the byte limit is refused at its header.
        status, answer = await post(http, url, dense_msgpack_body(), MSGPACK)
        assert (status, answer["error"]["code"]) == (413, "too_large")
        # At the limit, every entry gets its own result (0 is msgpack, not a transaction).
        status, answer = await post(http, url, encode([b"\x00"] * 100), MSGPACK)
        assert status == 200
        results = answer["results"]
        assert len(results) == 100
        assert {r["error"]["code"] for r in results} == {"malformed_tx"}
        await commit(http, single, single.harvest(0, "after-batches"))


async def test_json_nested_thousands_deep_is_400_with_no_traceback(
    single: Single, caplog: pytest.LogCaptureFixture
) -> None:
    deep_lists = ("[" * DEEP + "]" * DEEP).encode()
    deep_objects = ('{"a":' * DEEP + "1" + "}" * DEEP).encode()
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as http:
        # A batch holds at most max_batch_envelopes + 2 values, which the
        # raw-byte bound refuses before the parser meets the depth.
        expected = {
            "/v1/txs": (400, "malformed_json"),
            "/v1/txs/batch": (413, "too_large"),
            "/v1/query": (400, "malformed_json"),
        }
        for path, answer_expected in expected.items():
            for body in (deep_lists, deep_objects):
                status, answer = await post(http, f"{single.url}{path}", body, JSON)
                assert (status, answer["error"]["code"]) == answer_expected, path
        await commit(http, single, single.harvest(0, "after-deep"))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


async def test_a_repeated_json_key_is_refused_on_every_json_endpoint(single: Single) -> None:
    tx = single.harvest(0, "dup")
    fields = json.dumps(tx_json(tx))
    # The signed args hold lot_id once; the body repeats it with another value.
    repeated = fields.replace('"lot_id": "dup"', '"lot_id": "dup", "lot_id": "other"')
    assert repeated != fields
    bodies = {
        "/v1/txs": f'{{"tx": {repeated}}}',
        "/v1/txs/batch": '{"envelopes": ["00"], "envelopes": []}',
        "/v1/query": '{"contract": "food", "name": "x", "name": "recall_impact", "args": {}}',
    }
    async with aiohttp.ClientSession() as http:
        for path, body in bodies.items():
            status, answer = await post(http, f"{single.url}{path}", body.encode(), JSON)
            assert (status, answer["error"]["code"]) == (400, "duplicate_key"), path
        # Nothing was admitted: the same nonce still commits with its one lot_id.
        await commit(http, single, tx)


async def test_every_endpoint_answers_415_for_a_type_it_does_not_take(single: Single) -> None:
    query = {"contract": "food", "name": "recall_impact", "args": {"lot_id": "none"}}
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/txs", "/v1/txs/batch", "/v1/query"):
            for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
                status, answer = await post(http, f"{single.url}{path}", b"{}", content_type)
                assert (status, answer["error"]["code"]) == (415, "unsupported_media_type"), (
                    path,
                    content_type,
                )
        # A query in msgpack is a query, answered like its JSON twin.
        status, answer = await post(http, f"{single.url}/v1/query", encode(query), MSGPACK)
        status_json, answer_json = await post(
            http, f"{single.url}/v1/query", json.dumps(query).encode(), JSON
        )
        assert status == status_json == 404
        assert answer["error"]["code"] == answer_json["error"]["code"] == "unknown_asset"


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(single: Single) -> None:
    port = single.node.config.api_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
            b"Content-Length: 10000000000\r\n\r\n" + b"\x00" * 65_536
        )
        await writer.drain()
        # The answer must come while the client still owes almost all of the body.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head
    # The client paid for what the node would have read (1 MiB), not for the
    # 10 GB it claimed: its next request is served.
    async with aiohttp.ClientSession() as http:
        await commit(http, single, single.harvest(0, "after-a-false-length"))


async def test_a_client_over_its_budget_gets_429_and_others_are_still_served(
    tmp_path: Path,
) -> None:
    if not loopback_aliases_usable():
        pytest.skip("this host cannot bind a second loopback address")
    async with single_node(tmp_path, BUDGET_LIMITS) as single:
        greedy = aiohttp.TCPConnector(local_addr=(FLOODER_ADDRESSES[0], 0))
        async with aiohttp.ClientSession(connector=greedy) as http:
            answers = []
            for _ in range(40):
                async with http.get(f"{single.url}/v1/status") as response:
                    answers.append((response.status, response.headers.get("Retry-After")))
                    if response.status == 429:
                        assert (await response.json())["error"]["code"] == "rate_limited"
        refused = [retry for status, retry in answers if status == 429]
        assert refused, "40 requests at once must exceed a burst of 20"
        assert all(retry is not None and int(retry) >= 1 for retry in refused)
        # Another address has its own budget, and the chain goes on committing.
        async with aiohttp.ClientSession() as http:
            await commit(http, single, single.harvest(0, "polite"))


async def test_a_body_that_never_arrives_whole_is_408_and_frees_the_connection(
    tmp_path: Path,
) -> None:
    async with single_node(tmp_path, {"body_read_timeout_ms": 300}) as single:
        reader, writer = await asyncio.open_connection("127.0.0.1", single.node.config.api_port)
        try:
            writer.write(
                b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
                b"Content-Length: 100\r\n\r\n" + b"\x00" * 10
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            assert head.startswith(b"HTTP/1.1 408"), head
            # The node does not wait for the rest: the connection closes.
            rest = await asyncio.wait_for(reader.read(), timeout=5)
        finally:
            writer.close()
        assert b"request_timeout" in rest


async def test_a_query_costs_its_client_the_steps_it_took(tmp_path: Path) -> None:
    if not loopback_aliases_usable():
        pytest.skip("this host cannot bind a second loopback address")
    budget = {"client_cost_per_s": 1, "client_cost_burst": 5}
    budget |= {"address_cost_per_s": 1, "address_cost_burst": 5}
    async with single_node(tmp_path, budget) as single:
        async with aiohttp.ClientSession() as http:
            await commit(http, single, single.harvest(0, "L1"))
        querier = aiohttp.TCPConnector(local_addr=(FLOODER_ADDRESSES[0], 0))
        url = f"{single.url}/v1/query"
        body = json.dumps({"contract": "food", "name": "trace_forward", "args": {"lot_id": "L1"}})
        statuses = []
        async with aiohttp.ClientSession(connector=querier) as http:
            for _ in range(3):
                status, _ = await post(http, url, body.encode(), JSON)
                statuses.append(status)
    # Each query is one unit up front and two steps (state reads) after:
    # a budget of five covers two queries, not three.  (At one unit a
    # request, five would have covered five.)
    assert statuses == [200, 200, 429]


async def test_a_query_over_the_nodes_step_cap_is_refused(tmp_path: Path) -> None:
    query = {"contract": "food", "name": "trace_forward", "args": {"lot_id": "L1"}}
    async with (
        single_node(tmp_path, {"max_query_steps": 1}) as single,
        aiohttp.ClientSession() as http,
    ):
        await commit(http, single, single.harvest(0, "L1"))
        status, answer = await post(
            http, f"{single.url}/v1/query", json.dumps(query).encode(), JSON
        )
    assert (status, answer["error"]["code"]) == (400, "budget_exceeded")
