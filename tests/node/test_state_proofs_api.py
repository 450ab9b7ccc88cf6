"""GET /v1/state/{key} and ProvenetClient.prove_state against one in-process node,
directly and through a lying node that relays it, replays old answers or
tampers with values."""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from netfixture import REPO, Single, serving, single_node

from consensus.codec import decode
from contracts.food_records import lot_key
from contracts.orgs import org_key
from contracts.stateroot import StateProof, verify_state_proof
from contracts.tx import encode_tx
from node.sdk import ProvenetClient
from node.sdk.errors import ProofError
from node.sdk.genesis import load_genesis
from node.sdk.results_proof import ResultsAnchor
from node.sdk.state_proof import ProvenState

pytestmark = [pytest.mark.asyncio, pytest.mark.network]

T = TypeVar("T")
MSGPACK = "application/msgpack"
FARM = org_key("farm")
ABSENT = b"no/such/key"
# Transactions a test may submit to move the chain on while a proof waits
# for the block that certifies its height.
MAX_NUDGES = 40
NUDGE_INTERVAL_S = 0.2


@dataclass
class Chain:
    """Submits harvests to the node so that later blocks certify earlier heights."""

    single: Single
    http: aiohttp.ClientSession
    nonce: int = 0

    async def commit_one(self) -> None:
        tx = self.single.harvest(self.nonce, f"nudge-{self.nonce}")
        self.nonce += 1
        url = f"{self.single.url}/v1/txs?wait=1"
        headers = {"Content-Type": MSGPACK}
        async with self.http.post(url, data=encode_tx(tx), headers=headers) as response:
            assert response.status == 200, await response.text()

    async def while_waiting(self, work: Awaitable[T]) -> T:
        """``work``'s result, committing blocks until it is done (a bounded number).

        A node proves at its current height and the anchor of that height
        comes with a later block; this test chain has no other traffic.
        """
        task = asyncio.ensure_future(work)
        for _ in range(MAX_NUDGES):
            done, _ = await asyncio.wait({task}, timeout=NUDGE_INTERVAL_S)
            if done:
                break
            await self.commit_one()
        return await task


def victim_client(single: Single, url: str) -> ProvenetClient:
    genesis = load_genesis(single.dir / "genesis.json")
    return ProvenetClient([url], None, genesis.chain_id, genesis.validator_set())


@asynccontextmanager
async def running_chain(tmp_path: Path, limits: dict[str, int]) -> AsyncIterator[Chain]:
    async with single_node(tmp_path, limits) as single, aiohttp.ClientSession() as http:
        chain = Chain(single, http)
        await chain.commit_one()
        yield chain


async def test_presence_and_absence_are_proven_and_the_watermark_rises(tmp_path: Path) -> None:
    async with (
        running_chain(tmp_path, {}) as chain,
        victim_client(chain.single, chain.single.url) as client,
    ):
        present = await chain.while_waiting(client.prove_state(FARM))
        assert present.key == FARM and present.value is not None
        assert decode(present.value)["org_id"] == "farm"  # type: ignore[index]
        assert client.proven_height == present.height >= 1
        absent = await chain.while_waiting(client.prove_state(ABSENT))
        assert absent == ProvenState(ABSENT, None, absent.height)
        assert client.proven_height == absent.height >= present.height
        lot = await chain.while_waiting(client.prove_state(lot_key("nudge-0")))
        assert lot.value is not None


async def test_answer_forms_and_refusals_of_the_route(tmp_path: Path) -> None:
    async with running_chain(tmp_path, {"max_state_key_bytes": 16}) as chain:
        http, url = chain.http, chain.single.url
        async with http.get(f"{url}/v1/state/{FARM.hex()}") as response:
            plain = await response.json()
        assert plain == {"key": FARM.hex(), "value": plain["value"], "height": plain["height"]}
        assert plain["value"] is not None
        async with http.get(f"{url}/v1/state/{ABSENT.hex()}") as response:
            assert (await response.json())["value"] is None
        # The msgpack form carries the proof with raw bytes: it verifies as sent.
        request = http.get(
            f"{url}/v1/state/{FARM.hex()}?prove=1&timeout_ms=1",
            headers={"Accept": MSGPACK},
        )
        async with request as response:
            answer = decode(await response.read())
        assert isinstance(answer, dict)
        # On a quiet chain the proof is anchored at once, at the highest
        # certified height holding this state (anchor_state).
        if answer["anchor"] is not None:
            assert ResultsAnchor.from_dict(answer["anchor"]).height == answer["height"]
        proof = StateProof.from_dict(answer["proof"])
        stored = chain.single.node.engine.store.results_at(answer["height"])
        assert stored is not None
        assert verify_state_proof(stored.state_root, FARM, answer["value"], proof)
        for path, status, code in (
            ("zz", 400, "bad_request"),
            ("abc", 400, "bad_request"),
            ("61" * 17, 400, "limit_exceeded"),
            ("61" * 16 + "?timeout_ms=x", 400, "bad_request"),
        ):
            async with http.get(f"{url}/v1/state/{path}") as response:
                body = await response.json()
                assert (response.status, body["error"]["code"]) == (status, code), path


# ---------------------------------------------------------------- a lying node


@dataclass
class Liar:
    """Relays GET /v1/state to the honest node and lies as ``mode`` says."""

    upstream: str
    http: aiohttp.ClientSession
    mode: str = "relay"
    first: dict[str, dict[str, Any]] = field(default_factory=dict)
    lies: Callable[[dict[str, Any]], None] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if self.mode == "replay":
            return web.json_response(self.first[key])
        url = f"{self.upstream}/v1/state/{key}"
        async with self.http.get(url, params=request.query) as response:
            answer = await response.json()
        self.first.setdefault(key, copy.deepcopy(answer))
        if self.mode == "tamper" and self.lies is not None:
            self.lies(answer)
        return web.json_response(answer)


@asynccontextmanager
async def lying_node(chain: Chain) -> AsyncIterator[tuple[Liar, str]]:
    liar = Liar(chain.single.url, chain.http)
    app = web.Application()
    app.router.add_get("/v1/state/{key}", liar.handle)
    async with serving(app) as url:
        yield liar, url


async def test_a_lying_node_is_refused_stale_state_and_unproven(tmp_path: Path) -> None:
    async with (
        running_chain(tmp_path, {}) as chain,
        lying_node(chain) as (liar, url),
        victim_client(chain.single, url) as client,
    ):
        old = await chain.while_waiting(client.prove_state(FARM))
        await chain.commit_one()
        await chain.commit_one()
        newer = await chain.while_waiting(client.prove_state(ABSENT))
        assert newer.height > old.height == liar.first[FARM.hex()]["height"]

        # An answer valid at an older height, certificate and all.
        liar.mode = "replay"
        with pytest.raises(ProofError) as refused:
            await client.prove_state(FARM)
        assert refused.value.part == "stale"
        async with victim_client(chain.single, url) as fresh:
            assert await fresh.prove_state(FARM) == old
            with pytest.raises(ProofError) as below:
                await fresh.prove_state(FARM, min_height=newer.height)
            assert below.value.part == "stale"

        # Another value for a present key, and a value for an absent one.
        liar.mode = "tamper"
        for lie in (_set_value("00"), _flip_value_byte):
            liar.lies = lie
            with pytest.raises(ProofError) as tampered:
                await chain.while_waiting(client.prove_state(FARM))
            assert tampered.value.part == "state"
        liar.lies = _set_value("01")
        with pytest.raises(ProofError) as invented:
            await chain.while_waiting(client.prove_state(ABSENT))
        assert invented.value.part == "state"
        # Denying a present key.
        liar.lies = _set_value(None)
        with pytest.raises(ProofError) as denied:
            await chain.while_waiting(client.prove_state(FARM))
        assert denied.value.part == "state"

        # No certificate at all.
        liar.lies = _drop_anchor
        with pytest.raises(ProofError) as unproven:
            await chain.while_waiting(client.prove_state(FARM))
        assert unproven.value.part == "unproven"
        assert client.proven_height == newer.height


def _set_value(value: str | None) -> Callable[[dict[str, Any]], None]:
    def lie(answer: dict[str, Any]) -> None:
        answer["value"] = value

    return lie


def _flip_value_byte(answer: dict[str, Any]) -> None:
    raw = bytearray.fromhex(answer["value"])
    raw[-1] ^= 1
    answer["value"] = raw.hex()


def _drop_anchor(answer: dict[str, Any]) -> None:
    answer["anchor"] = None


async def test_cli_state_prints_the_proven_value(tmp_path: Path) -> None:
    async with running_chain(tmp_path, {}) as chain:
        genesis = chain.single.dir / "genesis.json"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node.ops.cli", "state", "m/org/farm", "--prove",
            "--node", chain.single.url, "--genesis", str(genesis),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await chain.while_waiting(process.communicate())
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        lines = out.decode().splitlines()
        assert process.returncode == 0, err.decode()
        assert lines[0] == "key b'm/org/farm'" and lines[1].startswith("value ")
        assert '"org_id": "farm"' in lines[2]
        assert lines[-1].startswith("proven at height ")
