"""The load generator's clients against a fake node on 127.0.0.1: what they send,
what they retry, and what they count as failed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from benchkit.http import MSGPACK, NodeHttp
from benchkit.load import BATCH, PACED, ClientJob, ClientState, batch_client, paced_client, post
from netfixture import serving

from consensus.codec import decode, encode

pytestmark = pytest.mark.asyncio

LANE = [b"e0", b"e1", b"e2"]


def msgpack_answer(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=encode(body), content_type=MSGPACK)


def refused(code: str) -> dict[str, Any]:
    return {"status": "refused", "error": {"code": code, "message": code}}


async def test_batch_client_retries_what_the_node_says_to_retry() -> None:
    batches: list[list[bytes]] = []

    async def batch(request: web.Request) -> web.Response:
        assert request.headers["Accept"] == MSGPACK
        envelopes = decode(await request.read())
        assert isinstance(envelopes, list)
        batches.append(envelopes)
        if len(batches) == 1:  # a node that cannot serve yet
            return msgpack_answer(503, {"error": {"code": "unavailable", "message": ""}})
        if len(batches) == 2:
            results = [refused("mempool_full"), {"status": "pending"}, refused("nonce_used")]
            return msgpack_answer(200, {"results": results})
        return msgpack_answer(200, {"results": [{"status": "pending"} for _ in envelopes]})

    app = web.Application()
    app.router.add_post("/v1/txs/batch", batch)
    async with serving(app) as url, NodeHttp([url]) as http:
        job = ClientJob(0, url, None, LANE, BATCH, batch_size=3, window=10)
        state = ClientState()
        result = await batch_client(job, http, state)
    # Everything, then everything again after the 503, then only the full mempool's one.
    assert batches == [LANE, LANE, [b"e0"]]
    assert state.accepted == 2
    assert result["failed"] == {2: "nonce_used"}
    assert result["stats"] == {"posts": 3, "batch_http_503": 1, "retried:mempool_full": 1}
    assert all(t is not None for t in result["submitted_at"])
    assert result["posts"] == 3


async def test_paced_client_records_refusals_and_drops() -> None:
    answers = iter(
        [
            msgpack_answer(202, {"status": "pending"}),
            msgpack_answer(429, {"error": {"code": "rate_limited", "message": ""}}),
            msgpack_answer(200, {"status": "dropped"}),
        ]
    )

    async def submit(request: web.Request) -> web.Response:
        await request.read()
        return next(answers)

    app = web.Application()
    app.router.add_post("/v1/txs", submit)
    async with serving(app) as url, NodeHttp([url]) as http:
        job = ClientJob(0, url, None, LANE, PACED, rate=1000.0)
        result = await paced_client(job, http, ClientState())
    assert result["failed"] == {1: "rate_limited", 2: "dropped"}
    assert result["posts"] == 3
    assert result["offered_tx_per_s_actual"] is not None


async def test_a_node_that_cannot_be_reached_is_counted_not_raised() -> None:
    app = web.Application()
    async with serving(app) as url:
        pass  # the port is closed again
    stats: Counter[str] = Counter()
    async with NodeHttp([url]) as http:
        status, body = await post(http, url, "/v1/txs", b"x", stats)
    assert (status, body) == (0, None)
    assert list(stats) == ["transport_error:ClientConnectorError"]
