"""``fetch_bundle`` against nodes that answer badly: each is one failed node, never a crash.

A bundle answer larger than the SDK decodes is refused while it streams
(the client never holds more than the cap), and an answer that is not a
msgpack map is a broken node; both move the call to the next node, whose
bundle bytes come back unchanged.  The nodes are stand-ins and the cap is
lowered for the test, so nothing large crosses the loopback.
"""

from __future__ import annotations

import dataclasses

import pytest
from aiohttp import web
from netfixture import serving

import node.sdk.bundle as sdk_bundle
from consensus.codec import encode
from consensus.quorum import ValidatorSet
from node.sdk import ProvenetClient
from node.sdk.errors import Unavailable

pytestmark = pytest.mark.asyncio

CAP_BYTES = 4096
GOOD_BUNDLE = encode({"format": "stand-in", "steps": [1, 2, 3]})


def _app(body: bytes, chunks: int = 1) -> web.Application:
    async def bundle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/msgpack"})
        await response.prepare(request)
        for _ in range(chunks):
            await response.write(body)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/bundle/{asset_id}", bundle)
    return app


def _client(urls: list[str]) -> ProvenetClient:
    validators = ValidatorSet((bytes(32),))
    return ProvenetClient(urls, None, "provenet-local", validators, timeout_s=5.0, retry_rounds=1)


@pytest.fixture(autouse=True)
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    small = dataclasses.replace(sdk_bundle.BUNDLE_LIMITS, max_size_bytes=CAP_BYTES)
    monkeypatch.setattr(sdk_bundle, "BUNDLE_LIMITS", small)


async def test_an_oversized_or_malformed_bundle_answer_moves_on_to_the_next_node() -> None:
    # 64 chunks of 1 KiB: far past the cap, and a node may send no length.
    oversized = _app(b"\x00" * 1024, chunks=64)
    async with (
        serving(oversized) as huge,
        serving(_app(b"\xc1")) as garbage,
        serving(_app(GOOD_BUNDLE)) as good,
    ):
        client = _client([huge, garbage, good])
        try:
            assert await sdk_bundle.fetch_bundle(client, "S-1") == GOOD_BUNDLE
        finally:
            await client.close()


async def test_when_every_node_answers_badly_the_call_names_each_failure() -> None:
    async with serving(_app(b"\x00" * 1024, chunks=64)) as huge, serving(_app(b"\xc1")) as garbage:
        client = _client([huge, garbage])
        try:
            with pytest.raises(Unavailable) as failed:
                await sdk_bundle.fetch_bundle(client, "S-1")
        finally:
            await client.close()
    reasons = dict(failed.value.errors)
    assert f"exceeds {CAP_BYTES} bytes" in reasons[huge]
    assert reasons[garbage] == "the bundle answer is not a canonical msgpack map"
