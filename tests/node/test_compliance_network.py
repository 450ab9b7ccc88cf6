"""A real node's proven verdict verifies, before and after a sanction (one in-process node).

The diamond demo makes a conflict-free stone; ``verified_compliance`` and
``provenet verify --compliance`` check the node's proven verdict against
the genesis validators.  Then a regulator sanctions the stone's origin
mine, and the proven verdict, now as of a later height, names the sanction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from netfixture import Single, single_node

from node.ops import demo
from node.ops.cli import main as provenet
from node.sdk import ProvenetClient

pytestmark = [pytest.mark.asyncio, pytest.mark.network]


@pytest_asyncio.fixture
async def single(tmp_path: Path) -> AsyncIterator[Single]:
    async with single_node(tmp_path, {}) as node:
        yield node


def quiet(line: str) -> None:
    del line


async def cli_verify(
    single: Single, stone: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> str:
    args = ["verify", "--compliance", stone, "--net", str(single.dir), *extra]
    exit_code = await asyncio.to_thread(provenet, args)
    captured = capsys.readouterr()
    return f"{exit_code}\n{captured.out}{captured.err}"


async def test_a_real_nodes_proven_verdict_verifies_before_and_after_a_sanction(
    single: Single, capsys: pytest.CaptureFixture[str]
) -> None:
    def client(org_id: str | None = None) -> ProvenetClient:
        return ProvenetClient.from_network_dir(single.dir, org_id=org_id)

    run = await demo.diamonds(client, out=quiet)
    stone, mine = run["stone"], run["trace"]["mines"][0]["mine_id"]
    async with client() as viewer:
        clean = await viewer.verified_compliance(stone)
    assert clean["verdict"] == run["compliance"]
    assert clean["verdict"]["conflict_free"] is True
    assert clean["certified_by"] > clean["height"] > 0
    printed = await cli_verify(single, stone, capsys)
    assert printed.startswith("0\n")
    assert f"{stone}: conflict-free as of height" in printed
    assert "verified against the certificate of block" in printed
    printed = await cli_verify(single, stone, capsys, "--min-height", str(clean["height"] + 1000))
    assert printed.startswith("1\n") and "bad_proof: stale:" in printed

    async with client("regulator") as regulator:
        args = {"kind": "mine", "target": mine, "reason": "forced labour"}
        await regulator.submit("diamonds", "sanction", args)
        tainted = await regulator.verified_compliance(stone)
    assert tainted["height"] > clean["height"]
    assert tainted["verdict"]["conflict_free"] is False
    assert {f["rule"] for f in tainted["verdict"]["failures"]} == {"mine_sanctioned"}
    printed = await cli_verify(single, stone, capsys)
    assert printed.startswith("3\n") and "failed mine_sanctioned" in printed

    # The plain route still answers the bare verdict, and proofs have a shape.
    url = f"{single.url}/v1/compliance/{stone}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            assert (await response.json())["result"] == tainted["verdict"]
        async with http.get(url, params={"prove": "1"}) as response:
            answer = await response.json()
    assert set(answer) == {"verdict", "height", "reads", "anchor"}
    assert [read["key"] for read in answer["reads"]] == sorted(
        read["key"] for read in answer["reads"]
    )
    assert len(json.dumps(answer)) < 200_000
