"""The man-in-the-middle proxy's forgeries, checked fast and without a network.

Each forgery of tests/faults/mitm.py, applied to a genuinely certified block,
is refused by the observer's block check with the alert kind the live
scenario (test_mitm_live.py) expects; and the proxy really forges what it
relays, both a ``/v1/chain`` page and a websocket stream, so a live run
that sees no alert cannot be explained by a proxy that forged nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web
from netfixture import free_base_port

from consensus.blocks import ChainTip, certificate_problem, derive_header
from consensus.codec import Ed25519Signer, decode, digest, encode
from consensus.messages import Batch, Commit, Request, sign
from consensus.quorum import ValidatorSet
from consensus.wire import message_from_wire, message_to_wire
from faults.mitm import EXPECTED_ALERT, FORGERIES, MitmProxy, forge_document, running_proxy
from node.runtime.follower import BlockRejected, check_block
from node.runtime.storage import header_from_dict
from node.runtime.views import to_json

CHAIN = "provenet-mitm-test"
SIGNERS = tuple(Ed25519Signer.from_seed(digest(b"mitm validator %d" % i)) for i in range(4))
VALIDATORS = ValidatorSet(tuple(s.public_key for s in SIGNERS))
TIP = ChainTip.genesis(digest(b"genesis"))


def certified_block(certificate_size: int = 4) -> dict[str, Any]:
    """Height 1 after TIP with two transactions, committed by ``certificate_size`` validators."""
    requests = (Request.of(b"tx one"), Request.of(b"tx two"))
    batch = Batch(1, requests, TIP.time_ms + 5, 0, TIP.results_root)
    header = derive_header(CHAIN, batch, TIP.block_hash, TIP.time_ms)
    commits = [
        sign(Commit(0, 1, header.batch_digest, sender), SIGNERS[sender], CHAIN)
        for sender in range(certificate_size)
    ]
    return {
        "header": header.to_dict(),
        "certificate": [message_to_wire(c) for c in commits],
        "payloads": [r.payload for r in requests],
    }


def test_the_unforged_block_is_accepted() -> None:
    for size in (VALIDATORS.quorum, VALIDATORS.n):
        assert check_block(certified_block(size), TIP, CHAIN, VALIDATORS, None).header.height == 1


@pytest.mark.parametrize("size", [3, 4], ids=["quorum-certificate", "full-certificate"])
@pytest.mark.parametrize("mode", sorted(FORGERIES))
def test_every_forgery_is_refused_with_its_alert(mode: str, size: int) -> None:
    block = certified_block(size)
    assert forge_document({"height": 1, "blocks": [block]}, FORGERIES[mode], VALIDATORS.quorum)
    with pytest.raises(BlockRejected) as refused:
        check_block(block, TIP, CHAIN, VALIDATORS, None)
    assert refused.value.kind == EXPECTED_ALERT[mode]


@pytest.mark.parametrize("mode", sorted(FORGERIES))
def test_a_forgery_in_json_form_keeps_the_json_form(mode: str) -> None:
    """A pushed stream may carry blocks as JSON (bytes as hex): forged in kind."""
    block = to_json(certified_block())
    assert isinstance(block, dict)
    forge_document([block], FORGERIES[mode], VALIDATORS.quorum)
    back = {
        "header": {
            k: bytes.fromhex(v) if k.endswith(("hash", "root")) else v
            for k, v in block["header"].items()
        },
        "certificate": [bytes.fromhex(c) for c in block["certificate"]],
        "payloads": [bytes.fromhex(p) if isinstance(p, str) else p for p in block["payloads"]],
    }
    with pytest.raises(BlockRejected) as refused:
        check_block(back, TIP, CHAIN, VALIDATORS, None)
    assert refused.value.kind == EXPECTED_ALERT[mode]


@pytest.mark.parametrize("mode", sorted(set(FORGERIES) - {"alter_payload"}))
def test_a_tip_without_payloads_is_forged_too(mode: str) -> None:
    """A stream's tip (header and certificate only) no longer certifies its header."""
    tip = certified_block()
    del tip["payloads"]
    assert forge_document({"blocks": [], "tip": tip}, FORGERIES[mode], VALIDATORS.quorum) == 1
    header = header_from_dict(tip["header"])
    messages = [message_from_wire(c) for c in tip["certificate"]]
    commits = [m for m in messages if isinstance(m, Commit)]
    assert len(commits) == len(messages)
    problem = certificate_problem(
        header.height,
        header.batch_digest,
        commits,
        VALIDATORS,
        CHAIN,
    )
    assert problem is not None


# ---------------------------------------------------------------- the relay itself


async def _fake_validator(port: int) -> web.AppRunner:
    """Serves one certified block as a chain page and as a websocket stream."""

    async def chain(_request: web.Request) -> web.Response:
        page = {"height": 1, "blocks": [certified_block()]}
        return web.Response(body=encode(page), content_type="application/msgpack")

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps(to_json({"type": "block", "block": certified_block()})))
        await ws.send_bytes(encode({"type": "block", "block": certified_block()}))
        await ws.close()
        return ws

    app = web.Application()
    app.add_routes([web.get("/v1/chain", chain), web.get("/v1/stream", stream)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _proxy_ports() -> tuple[int, int]:
    base = free_base_port(1)
    return base, base + 1


@pytest.mark.network
@pytest.mark.asyncio
async def test_the_proxy_forges_pages_and_stream_frames_it_relays() -> None:
    validator_port, proxy_port = _proxy_ports()
    runner = await _fake_validator(validator_port)
    proxy = MitmProxy(f"http://127.0.0.1:{validator_port}", VALIDATORS.quorum, "flip_byte")
    try:
        with running_proxy(proxy, proxy_port) as url:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/v1/chain?from=1") as response:
                    page = decode(await response.read())
                async with http.ws_connect(f"{url}/v1/stream") as ws:
                    text = await asyncio.wait_for(ws.receive(), 5)
                    binary = await asyncio.wait_for(ws.receive(), 5)
    finally:
        await runner.cleanup()
    frames = [json.loads(text.data)["block"], msgpack.unpackb(binary.data)["block"]]
    assert isinstance(page, dict)
    assert page["blocks"][0] != certified_block()
    with pytest.raises(BlockRejected, match="bad signature"):
        check_block(page["blocks"][0], TIP, CHAIN, VALIDATORS, None)
    assert frames[0]["certificate"] != to_json(certified_block())["certificate"]  # type: ignore[index]
    assert frames[1]["certificate"] != certified_block()["certificate"]
    assert (proxy.forged_blocks, proxy.streams) == (3, 1)


@pytest.mark.network
@pytest.mark.asyncio
async def test_a_gone_upstream_is_a_502_and_one_log_line_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone_port, proxy_port = _proxy_ports()  # nothing listens on gone_port
    proxy = MitmProxy(f"http://127.0.0.1:{gone_port}", VALIDATORS.quorum, "flip_byte")
    with running_proxy(proxy, proxy_port) as url:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/v1/chain?from=1") as response:
                status = response.status
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{url}/v1/chain/stream?blocks=0")
    assert (status, refused.value.status) == (502, 502)
    assert (proxy.upstream_failures, proxy.streams) == (2, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
