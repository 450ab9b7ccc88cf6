"""A compliance verdict from a lying node: the SDK refuses each lie with a named part.

The "node" here is a test double: the honest answer is built by the node's
own code (node/api/proven.py over a real contract state, an anchor signed
by four validators) and the double serves it, or a lie made from it, on
127.0.0.1.  The state has a sanction in force on the stone's origin mine,
so the honest verdict is *not* conflict-free, and each lie tries to make it
read conflict-free:

* leave the sanction key out of the reads: ``missing_read``;
* prove it absent, with an absence proof from the state before the
  sanction: ``state``;
* serve every read faithfully but a conflict-free verdict: ``verdict``;
* swap the (frozen) stone's record for its record before the freeze:
  ``state``;
* an old certified height when the caller knows a later one: ``stale``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from contracts_testkit import CHAIN_ID, World, cut_and_grade, export_to_belgium, mine_and_extract
from netfixture import serving

from consensus.blocks import derive_header
from consensus.codec import Ed25519Signer, digest
from consensus.messages import Batch, Commit, sign
from consensus.proofs import CommitCertificate
from consensus.quorum import ValidatorSet
from contracts.diamond_records import asset_key
from contracts.orgs import sanction_key
from contracts.queries import query
from contracts.results import HeightResults, receipts_root
from contracts.state import MemoryState, ReadableState
from node.api.errors import ApiError
from node.api.proven import record_and_prove
from node.runtime.views import to_json
from node.sdk import ProvenetClient
from node.sdk.compliance_proof import verify_compliance
from node.sdk.errors import ProofError
from node.sdk.results_proof import ResultsAnchor

SIGNERS = [Ed25519Signer.from_seed(digest(b"validator-%d" % i)) for i in range(4)]
VALIDATORS = ValidatorSet(tuple(signer.public_key for signer in SIGNERS))
OUTSIDERS = [Ed25519Signer.from_seed(digest(b"outsider-%d" % i)) for i in range(4)]
HEIGHT = 40
JSON = dict[str, Any]


def anchor_for(state_root: bytes, height: int, signers: list[Ed25519Signer]) -> ResultsAnchor:
    """The anchor a node serves: block height+1 carries height's results root."""
    results = HeightResults(height, state_root, receipts_root(()), digest(b"earlier"))
    batch = Batch(height + 1, (), 1_700_000_000_000, height, results.results_root)
    header = derive_header(CHAIN_ID, batch, digest(b"previous"), 1_699_999_999_000).signed
    votes = tuple(
        sign(Commit(0, header.height, header.batch_digest, sender), signers[sender], CHAIN_ID)
        for sender in (0, 1, 3)
    )
    return ResultsAnchor(results, (), header, CommitCertificate(votes))


def verdict_of(view: ReadableState, asset_id: str = "S1") -> JSON:
    answer = query(view, "diamonds", "compliance", {"asset_id": asset_id})
    assert answer["ok"], answer
    result = answer["result"]
    assert isinstance(result, dict)
    return result


def honest(state: MemoryState, signers: list[Ed25519Signer] = SIGNERS) -> JSON:
    """The JSON answer of GET /v1/compliance/S1?prove=1 (node/api/routes.py)."""
    verdict, reads = record_and_prove(state, verdict_of, 10_000)
    anchor = anchor_for(state.root(), HEIGHT, signers)
    answer = {"verdict": verdict, "height": HEIGHT, "reads": reads, "anchor": anchor.to_dict()}
    document = json.loads(json.dumps(to_json(answer)))
    assert isinstance(document, dict)
    return document


def graded_stone() -> World:
    world = World()
    mine_and_extract(world, "P1", 10_000)
    export_to_belgium(world, "P1", 10_000)
    cut_and_grade(world, "P1")
    return world


def sanction_mine(world: World) -> None:
    world.ok("regulator", "diamonds", "sanction", {"kind": "mine", "target": "M1", "reason": "x"})


def snapshot(world: World) -> MemoryState:
    return MemoryState((key, value) for key, value in world.state.scan(b""))


def read_of(answer: JSON, key: bytes) -> JSON:
    (found,) = [read for read in answer["reads"] if read["key"] == key.hex()]
    assert isinstance(found, dict)
    return found


def check(answer: JSON, min_height: int | None = None) -> JSON:
    return verify_compliance(answer, "S1", lambda height: VALIDATORS, CHAIN_ID, min_height)


@pytest.fixture(scope="module")
def sanctioned() -> tuple[MemoryState, MemoryState]:
    """(before, after) a sanction on the stone's origin mine."""
    world = graded_stone()
    before = snapshot(world)
    sanction_mine(world)
    return before, world.state


def test_an_honest_answer_verifies_with_its_height_and_certificate(
    sanctioned: tuple[MemoryState, MemoryState],
) -> None:
    before, after = sanctioned
    clean = check(honest(before))
    assert clean["verdict"]["conflict_free"] is True
    proven = check(honest(after))
    assert proven["verdict"]["conflict_free"] is False
    assert [f["rule"] for f in proven["verdict"]["failures"]] == ["mine_sanctioned"]
    assert (proven["height"], proven["certified_by"]) == (HEIGHT, HEIGHT + 1)
    assert proven["reads"] == len(honest(after)["reads"])


def omit_sanction(before: MemoryState, after: MemoryState) -> JSON:
    """(i) The sanction key left out of the reads; the verdict is the clean one."""
    answer = honest(after)
    key = sanction_key("mine", "M1").hex()
    answer["reads"] = [read for read in answer["reads"] if read["key"] != key]
    answer["verdict"] = verdict_of(before)
    return answer


def prove_sanction_absent(before: MemoryState, after: MemoryState) -> JSON:
    """(ii) The sanction key proven absent, with a proof from before the sanction."""
    answer = honest(after)
    key = sanction_key("mine", "M1")
    read = read_of(answer, key)
    read["value"] = None
    read["proof"] = before.prove(key).to_json()
    answer["verdict"] = verdict_of(before)
    return answer


def claim_conflict_free(before: MemoryState, after: MemoryState) -> JSON:
    """(iii) Every read faithful; the verdict says conflict-free."""
    answer = honest(after)
    answer["verdict"] = verdict_of(before)
    assert answer["verdict"]["conflict_free"] is True
    return answer


LIES: dict[str, tuple[Callable[[MemoryState, MemoryState], JSON], str]] = {
    "omitted sanction": (omit_sanction, "missing_read"),
    "sanction proven absent": (prove_sanction_absent, "state"),
    "conflict-free verdict over faithful reads": (claim_conflict_free, "verdict"),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_verdict_that_omits_a_sanction_in_force_is_refused_with_its_reason(
    sanctioned: tuple[MemoryState, MemoryState], lie: str
) -> None:
    make, part = LIES[lie]
    with pytest.raises(ProofError) as refused:
        check(make(*sanctioned))
    assert refused.value.part == part
    if part == "missing_read":
        assert "sanction/mine/M1" in refused.value.message


def test_a_swapped_asset_record_fails_its_state_proof() -> None:
    world = graded_stone()
    before = snapshot(world)
    world.ok("regulator", "diamonds", "freeze", {"asset_id": "S1", "reason": "seized"})
    answer = honest(world.state)
    assert answer["verdict"]["conflict_free"] is False
    key = asset_key("S1")
    read = read_of(answer, key)
    unfrozen = before.get(key)
    assert unfrozen is not None
    read["value"] = unfrozen.hex()
    answer["verdict"] = verdict_of(before)
    with pytest.raises(ProofError) as refused:
        check(answer)
    assert refused.value.part == "state"
    # The true record with the unfrozen record's proof fails the same way.
    read["value"] = world.state.get(key).hex()  # type: ignore[union-attr]
    read["proof"] = before.prove(key).to_json()
    with pytest.raises(ProofError, match="state"):
        check(answer)


def test_a_stale_height_an_outsiders_certificate_and_bad_shapes_are_refused(
    sanctioned: tuple[MemoryState, MemoryState],
) -> None:
    _, after = sanctioned
    cases: list[tuple[JSON, str]] = [(honest(after, OUTSIDERS), "certificate")]
    wrong_height = honest(after)
    wrong_height["height"] = HEIGHT + 5
    cases.append((wrong_height, "malformed"))
    twice = honest(after)
    twice["reads"].append(copy.deepcopy(twice["reads"][0]))
    cases.append((twice, "malformed"))
    bad_proof = honest(after)
    bad_proof["reads"][0]["proof"] = {"levels": "x", "other_leaf": None}
    cases.append((bad_proof, "malformed"))
    for answer, part in cases:
        with pytest.raises(ProofError) as refused:
            check(answer)
        assert refused.value.part == part, answer
    with pytest.raises(ProofError) as stale:
        check(honest(after), min_height=HEIGHT + 1)
    assert stale.value.part == "stale"


# --------------------------------------------------------- through the client


async def _serve(answer: JSON) -> AsyncIterator[str]:
    async def compliance(request: web.Request) -> web.Response:
        assert request.query.get("prove") == "1"
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/v1/compliance/{asset_id}", compliance)
    async with serving(app) as url:
        yield url


@pytest.mark.asyncio
@pytest.mark.network
async def test_the_client_verifies_an_honest_node_and_names_a_lying_nodes_lie(
    sanctioned: tuple[MemoryState, MemoryState],
) -> None:
    cases: list[tuple[JSON, str | None]] = [(honest(sanctioned[1]), None)]
    cases += [(make(*sanctioned), part) for make, part in LIES.values()]
    for answer, part in cases:
        async for url in _serve(answer):
            client = ProvenetClient([url], None, CHAIN_ID, VALIDATORS, retry_rounds=1)
            async with client:
                if part is None:
                    proven = await client.verified_compliance("S1")
                    assert proven["verdict"]["conflict_free"] is False
                    continue
                with pytest.raises(ProofError) as refused:
                    await client.verified_compliance("S1")
                assert refused.value.part == part


def test_a_verdict_that_reads_more_keys_than_the_node_proves_is_refused_cleanly(
    sanctioned: tuple[MemoryState, MemoryState],
) -> None:
    with pytest.raises(ApiError) as refused:
        record_and_prove(sanctioned[1], verdict_of, 5)
    assert refused.value.code == "limit_exceeded"
