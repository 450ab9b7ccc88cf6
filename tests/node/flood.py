"""A hostile client flooding a running network, and a paced honest workload.

Shared by ``tests/node/test_flood.py`` (bounded, in the default suite) and
``scripts/bench_flood.py`` (the same scenario with the figures printed).

The scenario is a measured attack: one unauthenticated client per
validator posts ``POST /v1/txs/batch`` bodies that cost nothing to send and
much to refuse (hundreds of thousands of junk envelopes, or an object-dense
msgpack list), while an honest sender submits one transaction every
``interval_s`` to every validator (PBFT's client multicast).  The chain's
height is sampled before and after each window, so a window's block count
is what a user would see.  Flooders bind a source address of their own in
127.0.0.0/8 (Linux routes the whole block to loopback), so a node can tell
them from the honest client as it would on a real network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from consensus.codec import Ed25519Signer, encode
from contracts.tx import encode_tx, sign_tx
from node.sdk.keys import load_identity

# 150,000 two-hex-digit envelopes: about 750 kB of JSON.
JUNK_ENVELOPES = 150_000
# A msgpack list of lists of 0 just under 1 MiB: 65,535 lists of 15 zeros.
DENSE_LISTS = 65_535
DENSE_LIST_LEN = 15
FLOODER_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
REQUEST_TIMEOUT_S = 5.0
HEIGHT_WAIT_S = 60.0


def junk_json_body() -> bytes:
    return json.dumps({"envelopes": ["00"] * JUNK_ENVELOPES}).encode()


def dense_msgpack_body() -> bytes:
    """A canonical msgpack list of lists of 0 (each list is 1 + 15 bytes)."""
    return encode([[0] * DENSE_LIST_LEN for _ in range(DENSE_LISTS)])


def stranger_batch_body(chain_id: str, count: int) -> bytes:
    """A msgpack batch of ``count`` well-formed transactions signed by a non-member key.

    Every entry passes the cheap checks and costs the node a decode and a
    state lookup before it is refused as ``unknown_key``: the most work a
    stranger can ask for without being a member.
    """
    stranger = Ed25519Signer.from_seed(b"\x5a" * 32)
    envelopes = [
        encode_tx(
            sign_tx(
                stranger,
                chain_id=chain_id,
                nonce=index,
                contract="food",
                method="harvest",
                args={"lot_id": f"S-{index}", "product": "wheat", "mass_grams": 1_000},
            )
        )
        for index in range(count)
    ]
    return encode(envelopes)


def loopback_aliases_usable() -> bool:
    """Whether this host lets a socket bind 127.0.0.2 (Linux does; some others do not)."""
    with socket.socket() as probe:
        try:
            probe.bind((FLOODER_ADDRESSES[0], 0))
        except OSError:
            return False
    return True


@dataclass
class FloodStats:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    retry_after_seen: bool = False

    def merge(self, other: FloodStats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.retry_after_seen |= other.retry_after_seen
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count


async def flood(
    url: str,
    context: ssl.SSLContext | bool,
    source_address: str,
    bodies: list[tuple[bytes, str]],
    until: float,
) -> FloodStats:
    """Post the hostile bodies in turn to ``url``/v1/txs/batch until the loop time ``until``.

    The flooder obeys nothing: on a 429 it sends again at once.
    """
    stats = FloodStats()
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(local_addr=(source_address, 0), limit=4)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        turn = 0
        while loop.time() < until:
            body, content_type = bodies[turn % len(bodies)]
            turn += 1
            stats.requests += 1
            try:
                async with session.post(
                    f"{url}/v1/txs/batch",
                    data=body,
                    headers={"Content-Type": content_type},
                    ssl=context,
                ) as response:
                    await response.read()
                    stats.statuses[response.status] = stats.statuses.get(response.status, 0) + 1
                    stats.retry_after_seen |= "Retry-After" in response.headers
            except (aiohttp.ClientError, OSError, TimeoutError):
                stats.errors += 1
                await asyncio.sleep(0.05)
    return stats


class HonestSender:
    """One organisation submitting pre-signed transactions at a steady pace to every node."""

    def __init__(self, net_dir: Path, chain_id: str, org_id: str = "farm") -> None:
        self.signer = load_identity(net_dir / "orgs" / f"{org_id}.key").signer
        self.chain_id = chain_id
        self.next_nonce = 0
        self.sent = 0

    def _envelope(self, tag: str) -> bytes:
        tx = sign_tx(
            self.signer,
            chain_id=self.chain_id,
            nonce=self.next_nonce,
            contract="food",
            method="harvest",
            args={"lot_id": f"{tag}-{self.next_nonce}", "product": "wheat", "mass_grams": 1_000},
        )
        self.next_nonce += 1
        return encode_tx(tx)

    async def run(
        self,
        session: aiohttp.ClientSession,
        urls: list[str],
        context: ssl.SSLContext | bool,
        interval_s: float,
        until: float,
        tag: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()
        next_send = loop.time()
        while next_send < until:
            await asyncio.sleep(max(0.0, next_send - loop.time()))
            envelope = self._envelope(tag)
            self.sent += 1
            for url in urls:
                task = asyncio.create_task(_post_quietly(session, url, envelope, context))
                pending.add(task)
                task.add_done_callback(pending.discard)
            next_send += interval_s
        if pending:
            await asyncio.wait(pending, timeout=REQUEST_TIMEOUT_S)


async def _post_quietly(
    session: aiohttp.ClientSession, url: str, envelope: bytes, context: ssl.SSLContext | bool
) -> None:
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with session.post(
            f"{url}/v1/txs",
            data=envelope,
            headers={"Content-Type": "application/msgpack"},
            ssl=context,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        ) as response:
            await response.read()


async def chain_height(
    session: aiohttp.ClientSession, urls: list[str], context: ssl.SSLContext | bool
) -> int:
    """The highest height any node reports (the chain is one chain).

    Nodes that a flood has stalled may not answer for a while: ask again, for
    up to ``HEIGHT_WAIT_S``, until one does.  A fresh chain's height 0 is an
    answer too (waiting for a non-zero one cost a whole HEIGHT_WAIT_S).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEIGHT_WAIT_S
    while True:
        height = await _highest_answer(session, urls, context)
        if height is not None:
            return height
        if loop.time() > deadline:
            return 0
        await asyncio.sleep(0.5)


async def _highest_answer(
    session: aiohttp.ClientSession, urls: list[str], context: ssl.SSLContext | bool
) -> int | None:
    """The highest height the nodes that answer report; None if none answers."""

    async def one(url: str) -> int | None:
        try:
            async with session.get(
                f"{url}/healthz", ssl=context, timeout=aiohttp.ClientTimeout(total=3)
            ) as response:
                return int((await response.json())["height"])
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError):
            return None

    answers = [h for h in await asyncio.gather(*(one(url) for url in urls)) if h is not None]
    return max(answers, default=None)


@dataclass(frozen=True)
class Window:
    name: str
    blocks: int
    seconds: float
    flood: FloodStats | None

    @property
    def blocks_per_s(self) -> float:
        return self.blocks / self.seconds if self.seconds else 0.0


async def measure_window(
    name: str,
    urls: list[str],
    context: ssl.SSLContext | bool,
    sender: HonestSender,
    seconds: float,
    interval_s: float,
    flood_bodies: list[tuple[bytes, str]] | None,
) -> Window:
    """Run the honest workload for ``seconds`` (with flooders when bodies are given)."""
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        start_height = await chain_height(session, urls, context)
        started = time.monotonic()
        until = loop.time() + seconds
        jobs: list[asyncio.Future[object]] = [
            asyncio.ensure_future(sender.run(session, urls, context, interval_s, until, name))
        ]
        if flood_bodies is not None:
            jobs += [
                asyncio.ensure_future(flood(url, context, address, flood_bodies, until))
                for url, address in zip(urls, FLOODER_ADDRESSES, strict=False)
            ]
        results = await asyncio.gather(*jobs)
        # Give the last honest transactions a moment to commit before counting.
        await asyncio.sleep(interval_s * 4)
        end_height = await chain_height(session, urls, context)
        elapsed_s = time.monotonic() - started
    stats: FloodStats | None = None
    if flood_bodies is not None:
        stats = FloodStats()
        for result in results[1:]:
            assert isinstance(result, FloodStats)
            stats.merge(result)
    return Window(name, end_height - start_height, elapsed_s, stats)
