"""One hostile client per validator must not stall the chain.

A real 4-validator network (``net init`` + ``net up``, TLS on) commits an
honest sender's steady trickle of transactions; then, window by window,
one flooding client per validator (each from its own loopback address)
posts batch bodies built to cost the node as much as possible: 150,000 junk
envelopes in JSON, an object-dense msgpack list, full batches of
well-formed transactions from a stranger's key.  Blocks must keep coming at
no less than half the quiet rate measured in the same run, the flooders
must be answered with refusals (never a 5xx), and every node must still be
healthy.  Before the admission budgets the same run gave 1 block in 20 s
against 395 quiet (scripts/bench_flood.py prints the figures).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from flood import (
    HonestSender,
    Window,
    dense_msgpack_body,
    junk_json_body,
    loopback_aliases_usable,
    measure_window,
    stranger_batch_body,
)
from netfixture import LocalNetwork, local_network

pytestmark = [pytest.mark.asyncio, pytest.mark.network, pytest.mark.slow]

WINDOW_S = 6.0
HONEST_INTERVAL_S = 0.05
# The flooded rate must stay above this share of the quiet rate.
MIN_RATIO = 0.5


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    if not loopback_aliases_usable():
        pytest.skip("the flooders need loopback addresses of their own (127.0.0.2...)")
    with local_network(tmp_path_factory.mktemp("flood")) as running:
        yield running


def _check_flooded(window: Window, quiet: Window, refused_with: set[int]) -> None:
    assert window.flood is not None and window.flood.requests > 0
    assert window.blocks_per_s >= MIN_RATIO * quiet.blocks_per_s, (
        f"{window.name}: {window.blocks} blocks in {window.seconds:.1f} s "
        f"against {quiet.blocks} quiet in {quiet.seconds:.1f} s"
    )
    statuses = set(window.flood.statuses)
    assert statuses, f"{window.name}: the flooders got no answer at all"
    assert statuses <= refused_with, f"{window.name}: flooders were answered {statuses}"


async def test_one_flooding_client_per_validator_does_not_stall_the_chain(
    network: LocalNetwork,
) -> None:
    urls = [network.api_url(node.name) for node in network.nodes]
    context = network.ssl()
    chain_id = json.loads((network.dir / "genesis.json").read_text())["chain_id"]
    sender = HonestSender(Path(network.dir), chain_id)

    async def window(name: str, bodies: list[tuple[bytes, str]] | None) -> Window:
        return await measure_window(
            name, urls, context, sender, WINDOW_S, HONEST_INTERVAL_S, bodies
        )

    quiet = await window("quiet", None)
    assert quiet.blocks > 0, "the honest sender alone must make blocks"
    junk = await window("junk_json", [(junk_json_body(), "application/json")])
    _check_flooded(junk, quiet, {413, 429})
    dense = await window("dense_msgpack", [(dense_msgpack_body(), "application/msgpack")])
    _check_flooded(dense, quiet, {413, 429})
    strangers = await window(
        "stranger_batches", [(stranger_batch_body(chain_id, 1_024), "application/msgpack")]
    )
    # A batch of well-formed strangers' transactions is answered entry by entry.
    _check_flooded(strangers, quiet, {200, 429})
    async with aiohttp.ClientSession() as http:
        for name in (node.name for node in network.nodes):
            status = await asyncio.wait_for(network.status(http, name), timeout=10)
            assert status is not None, f"{name} stopped answering"
