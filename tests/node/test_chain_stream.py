"""``GET /v1/chain/stream`` is bounded like the rest of the client API.

Against one in-process validator: the global and per-address caps on open
streams answer 503 ``too_many_subscribers``; a client that never reads what
it is sent loses its stream within the send timeout and frees its slot; and
a stream that replays the chain is charged to its client's budget like the
``GET /v1/chain`` pages it stands in for, closed with ``rate_limited`` when
the client runs out.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from flood import FLOODER_ADDRESSES, loopback_aliases_usable
from netfixture import CHAIN, Single, single_node

from consensus.codec import digest, encode
from contracts.tx import Transaction, encode_tx, sign_tx

pytestmark = [pytest.mark.asyncio, pytest.mark.network]

MSGPACK = "application/msgpack"
STREAM = "/v1/chain/stream"
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
# A merge names up to 256 parcels of up to 64 characters each, so each such
# transaction is about 17 KiB and a few hundred fill megabytes of chain
# (the farm may not merge diamonds: each fails, in a block like any other).
PARCELS_PER_TX = 256
# More than the kernel buffers between a client that never reads and the
# node (about 2.8 MB on a Linux loopback) and aiohttp's 64 KiB write buffer.
SLOW_READER_CHAIN_TXS = 220
# Under the 1 MiB body limit.
BATCH_TXS = 50


def large_tx(single: Single, nonce: int) -> Transaction:
    parcels = [f"{nonce:06d}-{index:03d}".ljust(64, "p") for index in range(PARCELS_PER_TX)]
    args: dict[str, object] = {"inputs": parcels, "output_id": f"merged-{nonce}"}
    return sign_tx(
        single.farm, chain_id=CHAIN, nonce=nonce, contract="diamonds", method="merge", args=args
    )


async def grow_chain(http: aiohttp.ClientSession, single: Single, txs: int) -> None:
    """Commit ``txs`` large transactions (failed or not, their bytes are in blocks)."""
    envelopes = [encode_tx(large_tx(single, nonce)) for nonce in range(txs)]
    for start in range(0, txs, BATCH_TXS):
        body = encode(envelopes[start : start + BATCH_TXS])
        headers = {"Content-Type": MSGPACK}
        async with http.post(f"{single.url}/v1/txs/batch", data=body, headers=headers) as answer:
            assert answer.status == 200, await answer.text()
    last = digest(envelopes[-1]).hex()
    async with http.get(f"{single.url}/v1/txs/{last}?wait=true&timeout_ms=30000") as answer:
        assert (await answer.json())["status"] == "committed"


async def refused_upgrade(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    """The status and error code of a stream upgrade the node refuses."""
    async with http.get(url, headers=UPGRADE) as answer:
        assert answer.status != 101, "the upgrade was accepted"
        return answer.status, (await answer.json())["error"]["code"]


async def accepted_within(http: aiohttp.ClientSession, url: str, tries: int) -> bool:
    """Whether a stream upgrade is accepted within ``tries`` attempts 0.1 s apart
    (a slot is given back when the node notices its stream has ended)."""
    for _ in range(tries):
        try:
            async with http.ws_connect(url):
                return True
        except aiohttp.WSServerHandshakeError as refused:
            assert refused.status == 503
        await asyncio.sleep(0.1)
    return False


@asynccontextmanager
async def never_reading_stream(port: int, path: str) -> AsyncIterator[socket.socket]:
    """A websocket client with a small receive buffer that never reads past the 101."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4_096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        head = "".join(f"{name}: {value}\r\n" for name, value in UPGRADE.items())
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n"
        await loop.sock_sendall(sock, request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer and len(answer) < 4_096:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), timeout=5)
            assert chunk, "the node closed the connection before answering the upgrade"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 101"), answer
        yield sock
    finally:
        sock.close()


async def drained_to_end(sock: socket.socket, timeout_s: float) -> bool:
    """Read ``sock`` until the node closes it (True) or ``timeout_s`` passes."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            while await loop.sock_recv(sock, 1_048_576):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


async def test_the_global_cap_on_chain_streams_answers_503_too_many_subscribers(
    tmp_path: Path,
) -> None:
    async with (
        single_node(tmp_path, {"max_chain_streams": 1}) as single,
        aiohttp.ClientSession() as http,
    ):
        url = f"{single.url}{STREAM}?blocks=0"
        async with http.ws_connect(url):
            assert await refused_upgrade(http, url) == (503, "too_many_subscribers")


async def test_one_address_holds_at_most_its_share_of_chain_streams(tmp_path: Path) -> None:
    async with (
        single_node(tmp_path, {"max_chain_streams_per_address": 2}) as single,
        aiohttp.ClientSession() as http,
    ):
        url = f"{single.url}{STREAM}?blocks=0"
        first = await http.ws_connect(url)
        async with http.ws_connect(url):
            assert await refused_upgrade(http, url) == (503, "too_many_subscribers")
            if loopback_aliases_usable():
                # Another address has its own share.
                other = aiohttp.TCPConnector(local_addr=(FLOODER_ADDRESSES[0], 0))
                async with aiohttp.ClientSession(connector=other) as elsewhere:
                    assert await accepted_within(elsewhere, url, tries=1)
            # A stream that closes gives its slot back to its address.
            await first.close()
            assert await accepted_within(http, url, tries=50)


async def test_a_client_that_never_reads_loses_its_stream_and_frees_its_slot(
    tmp_path: Path,
) -> None:
    limits = {"max_chain_streams": 1, "chain_stream_send_timeout_ms": 200}
    async with single_node(tmp_path, limits) as single, aiohttp.ClientSession() as http:
        await grow_chain(http, single, SLOW_READER_CHAIN_TXS)
        port = single.node.config.api_port
        async with never_reading_stream(port, f"{STREAM}?from=1") as stuck:
            # Its one slot comes free once the stuck client's replay times out.
            url = f"{single.url}{STREAM}?blocks=0"
            assert await accepted_within(http, url, tries=100), (
                "the never-reading client still holds the only chain stream"
            )
            # And the stuck client was disconnected, not just counted out.
            assert await drained_to_end(stuck, timeout_s=10)


async def test_replaying_the_chain_is_charged_and_closes_a_stream_out_of_budget(
    tmp_path: Path,
) -> None:
    # Each connection may spend 20 units (a unit a request, a unit per KiB);
    # the node's address budget is left at its default, so the test's own
    # writes, each on a fresh connection, are served.
    limits = {"client_cost_per_s": 1, "client_cost_burst": 20}
    fresh_connections = aiohttp.TCPConnector(force_close=True)
    async with (
        single_node(tmp_path, limits) as single,
        aiohttp.ClientSession(connector=fresh_connections) as http,
    ):
        for nonce in range(3):
            envelope = encode_tx(large_tx(single, nonce))
            async with http.post(
                f"{single.url}/v1/txs?wait=true&timeout_ms=10000",
                data=envelope,
                headers={"Content-Type": MSGPACK},
            ) as answer:
                assert answer.status == 200, await answer.text()
        # About 50 KiB of chain: more than the stream's connection may spend.
        async with http.ws_connect(f"{single.url}{STREAM}?from=1") as ws:
            replayed = await ws.receive(timeout=5)
            assert replayed.type is aiohttp.WSMsgType.BINARY
            closed = None
            for _ in range(12):  # three seconds of heartbeats at most
                message = await ws.receive(timeout=5)
                if message.type is aiohttp.WSMsgType.CLOSE:
                    closed = message
                    break
            assert closed is not None, "a stream that replayed the chain for free stayed open"
            assert closed.data == aiohttp.WSCloseCode.TRY_AGAIN_LATER
            assert closed.extra is not None and closed.extra.startswith("rate_limited: ")
