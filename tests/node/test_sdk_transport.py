"""The SDK transport's connection pool against a slow but healthy server.

The defect: with more concurrent calls than the pool holds, the
time a call spent queuing for a connection counted against its timeout, so
a healthy node answering well inside the timeout was reported "timed out".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from aiohttp import web
from netfixture import serving

from node.sdk.transport import MAX_CONNECTIONS_PER_NODE, Transport

pytestmark = [pytest.mark.asyncio, pytest.mark.network]

# Each answer takes this long: well inside the timeout, but four waves of
# the pool one after another take longer than one timeout.
ANSWER_DELAY_S = 0.3
TIMEOUT_S = 1.0
WAVES = 4


@dataclass
class SlowServer:
    url: str
    in_flight: int = 0
    most_in_flight: int = 0
    answered: int = 0


@pytest_asyncio.fixture
async def slow_server() -> AsyncIterator[SlowServer]:
    server = SlowServer(url="")

    async def answer(request: web.Request) -> web.Response:
        server.in_flight += 1
        server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            await asyncio.sleep(ANSWER_DELAY_S)
        finally:
            server.in_flight -= 1
        server.answered += 1
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/v1/status", answer)
    async with serving(app) as url:
        server.url = url
        yield server


async def test_calls_queued_for_a_connection_do_not_time_out(slow_server: SlowServer) -> None:
    transport = Transport([slow_server.url], timeout_s=TIMEOUT_S, retry_rounds=1)
    calls = WAVES * MAX_CONNECTIONS_PER_NODE
    try:
        answers = await asyncio.gather(
            *(transport.call("GET", "/v1/status") for _ in range(calls)), return_exceptions=True
        )
    finally:
        await transport.close()
    failures = [answer for answer in answers if isinstance(answer, BaseException)]
    assert failures == []
    assert slow_server.answered == calls
    # The pool was used to its size and never past it.
    assert 1 < slow_server.most_in_flight <= MAX_CONNECTIONS_PER_NODE


async def test_the_pool_size_is_the_named_option(slow_server: SlowServer) -> None:
    pool = 3
    transport = Transport(
        [slow_server.url], timeout_s=TIMEOUT_S, retry_rounds=1, max_connections_per_node=pool
    )
    try:
        answers = await asyncio.gather(
            *(transport.call("GET", "/v1/status") for _ in range(WAVES * pool))
        )
    finally:
        await transport.close()
    assert answers == [{"ok": True}] * (WAVES * pool)
    assert 1 < slow_server.most_in_flight <= pool
