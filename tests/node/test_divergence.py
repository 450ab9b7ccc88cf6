"""Divergence names the transaction: the pure diff of two executions, and the
check of a height's certified results (node/sdk/certified_results.py)."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from netfixture import free_base_port

from consensus.blocks import derive_header
from consensus.codec import Ed25519Signer, digest
from consensus.messages import Batch, Commit, sign
from consensus.proofs import CommitCertificate
from consensus.quorum import ValidatorSet
from contracts.results import HeightResults, ReceiptLeaf, receipts_root
from node.app import RunningNode, start_node
from node.ops.netinit import init_network
from node.runtime import ledger as ledger_module
from node.runtime.config import load_node_config
from node.runtime.views import to_json
from node.sdk.certified_results import (
    first_difference,
    verify_linked_results,
    verify_results,
)
from node.sdk.client import ProvenetClient
from node.sdk.errors import ProofError
from node.sdk.results_proof import ResultsAnchor

CHAIN = "provenet-test"
SIGNERS = [Ed25519Signer.from_seed(digest(b"validator-%d" % i)) for i in range(4)]
VALIDATORS = ValidatorSet(tuple(signer.public_key for signer in SIGNERS))


def outcome(n: int, status: str = "ok", code: str | None = None) -> ReceiptLeaf:
    return ReceiptLeaf(digest(b"tx-%d" % n), status, code, digest(b"writes-%d" % n))


OUTCOMES = [outcome(n) for n in range(5)]
LEAVES = [o.encoded for o in OUTCOMES]


# ---------------------------------------------------------------- first_difference


def test_identical_executions_have_no_difference() -> None:
    assert first_difference(LEAVES, list(LEAVES)) is None
    assert first_difference([], []) is None


def test_the_first_differing_receipt_is_named_with_both_outcomes() -> None:
    own = list(LEAVES)
    own[2] = outcome(2, "rejected", "insufficient_mass").encoded
    own[4] = outcome(4, "rejected", "other").encoded  # a later difference is not the first
    found = first_difference(own, LEAVES)
    assert found is not None
    assert found.index == 2 and found.tx_id == OUTCOMES[2].tx_id
    assert found.own == outcome(2, "rejected", "insufficient_mass")
    assert found.certified == OUTCOMES[2]
    line = found.describe()
    assert OUTCOMES[2].tx_id.hex() in line
    assert "rejected (insufficient_mass)" in line and "certified ok" in line


def test_a_difference_in_writes_alone_is_named() -> None:
    own = list(LEAVES)
    own[1] = ReceiptLeaf(OUTCOMES[1].tx_id, "ok", None, digest(b"else")).encoded
    found = first_difference(own, LEAVES)
    assert found is not None and found.index == 1
    assert "wrote something else" in found.describe()


def test_a_missing_or_extra_receipt_is_named() -> None:
    shorter = first_difference(LEAVES[:3], LEAVES)
    assert shorter is not None and shorter.index == 3 and shorter.own is None
    assert shorter.tx_id == OUTCOMES[3].tx_id
    longer = first_difference(LEAVES, LEAVES[:4])
    assert longer is not None and longer.index == 4 and longer.certified is None
    assert longer.tx_id == OUTCOMES[4].tx_id


def test_a_leaf_that_is_not_a_receipt_still_counts_as_a_difference() -> None:
    found = first_difference([b"garbage", *LEAVES[1:]], LEAVES)
    assert found is not None and found.index == 0 and found.own is None


def test_receipt_outcomes_round_trip_through_their_leaf() -> None:
    rejected = outcome(9, "rejected", "bad_nonce")
    assert ReceiptLeaf.from_encoded(rejected.encoded) == rejected
    stored = {
        "tx_id": rejected.tx_id,
        "status": "rejected",
        "error": "bad_nonce",
        "message": "m",
        "events": [],
        "writes": 0,
        "writes_digest": rejected.writes_digest,
    }
    assert ReceiptLeaf.from_stored(stored) == rejected


# ---------------------------------------------------------------- verify_results


def certified_answer(outcomes: list[ReceiptLeaf]) -> dict[str, Any]:
    """GET /v1/results/5's JSON for a chain whose block 6 carries height 5's results."""
    results = HeightResults(
        5, digest(b"state"), receipts_root([o.encoded for o in outcomes]), digest(b"r4")
    )
    batch = Batch(6, (), 1_700_000_000_000, 5, results.results_root)
    header = derive_header(CHAIN, batch, b"p" * 32, 1_699_999_999_000)
    commits = tuple(
        sign(Commit(0, 6, header.batch_digest, n), SIGNERS[n], CHAIN) for n in (0, 1, 3)
    )
    anchor = ResultsAnchor(results, (), header.signed, CommitCertificate(commits))
    answer = {
        "height": 5,
        "results": results.to_dict(),
        "receipts": [o.to_dict() for o in outcomes],
        "anchor": anchor.to_dict(),
    }
    served = to_json(answer)
    assert isinstance(served, dict)
    return served


def test_certified_results_verify_and_return_the_receipts() -> None:
    certified = verify_results(certified_answer(OUTCOMES), 5, VALIDATORS, CHAIN)
    assert certified.receipts == tuple(OUTCOMES)
    assert certified.leaves() == LEAVES


def test_certified_results_refuse_each_lie_by_name() -> None:
    answer = certified_answer(OUTCOMES)

    def refused(change: Any, part: str) -> None:
        lying = copy.deepcopy(answer)
        change(lying)
        with pytest.raises(ProofError) as raised:
            verify_results(lying, 5, VALIDATORS, CHAIN)
        assert raised.value.part == part

    # A receipt said ok that the certified root says was rejected (or any edit).
    refused(lambda a: a["receipts"][1].update(status="rejected", code="x"), "receipts")
    refused(lambda a: a["receipts"].pop(), "receipts")
    refused(lambda a: a["results"].update(state_root="00" * 32), "results")
    refused(lambda a: a.update(anchor=None), "anchor")
    refused(lambda a: a["anchor"]["certificate"].pop(), "certificate")
    refused(lambda a: a.pop("receipts"), "malformed")
    with pytest.raises(ProofError) as raised:
        verify_results(answer, 4, VALIDATORS, CHAIN)
    assert raised.value.part == "results"


def test_a_lower_height_is_certified_by_the_link_from_the_next() -> None:
    lower = HeightResults(4, digest(b"s4"), receipts_root(LEAVES), digest(b"r3"))
    upper = HeightResults(5, digest(b"s5"), receipts_root(()), lower.results_root)
    answer = to_json(
        {
            "height": 4,
            "results": lower.to_dict(),
            "receipts": [o.to_dict() for o in OUTCOMES],
            "anchor": None,
        }
    )
    assert verify_linked_results(answer, 4, upper).receipts == tuple(OUTCOMES)
    other = HeightResults(5, digest(b"s5"), receipts_root(()), digest(b"another"))
    with pytest.raises(ProofError) as raised:
        verify_linked_results(answer, 4, other)
    assert raised.value.part == "results"


# ---------------------------------------------------------------- a diverging network


DIVERGING_LOT = "DIVERGE-1"
DIVERGED_CODE = "test_divergence"
FOLLOW_TIMEOUT_S = 30


def diverging_execute(targets: set[int]) -> Any:
    """contracts' execute, except that on the nodes whose state is in ``targets``
    a harvest of DIVERGING_LOT is reported rejected (its writes still made):
    those nodes' receipts, and so their results roots, differ deterministically."""
    from contracts import runtime

    real = runtime.execute

    def execute(state: Any, tx: Any, context: Any, verifier: Any) -> Any:
        receipt = real(state, tx, context, verifier)
        inner = getattr(state, "inner", state)
        if id(inner) in targets and tx.args.get("lot_id") == DIVERGING_LOT:
            return replace(receipt, status="rejected", error=DIVERGED_CODE)  # type: ignore[arg-type]
        return receipt

    return execute


@pytest.mark.asyncio
@pytest.mark.network
@pytest.mark.parametrize(
    ("checkpoint_interval", "noticed_by"),
    [(8, "committed block"), (1, "stable checkpoint")],
    ids=["at-delivery", "at-checkpoint"],
)
async def test_a_diverged_validator_and_observer_name_the_transaction_and_stop(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    checkpoint_interval: int,
    noticed_by: str,
) -> None:
    """Four validators and an observer in this process; v3 and the observer
    execute one transaction differently.  Both stop at that height, keep
    serving reads, and name the transaction with both outcomes in their
    status, alerts and metrics; the others go on committing.  v3 notices
    from the next committed block that carries the height's results, or
    (every height a checkpoint) from the stable checkpoint, which until now
    stopped the node process."""
    init_network(tmp_path / "net", 4, tls=False, base_port=free_base_port(5), observers=1)
    names = ["v0", "v1", "v2", "v3", "o0"]
    for name in names:
        path = tmp_path / "net" / "nodes" / name / "config.json"
        config = json.loads(path.read_text())
        config["consensus"] = {"checkpoint_interval": checkpoint_interval}
        path.write_text(json.dumps(config))
    # The epoch rules are chain-wide: genesis.json names the same.
    genesis = tmp_path / "net" / "genesis.json"
    document = json.loads(genesis.read_text())
    document["epoch_rules"]["checkpoint_interval"] = checkpoint_interval
    genesis.write_text(json.dumps(document))
    nodes: dict[str, RunningNode] = {}
    targets: set[int] = set()
    monkeypatch.setattr(ledger_module, "execute", diverging_execute(targets))
    try:
        for name in names:
            path = tmp_path / "net" / "nodes" / name / "config.json"
            nodes[name] = await start_node(load_node_config(path))
        diverging = [nodes["v3"], nodes["o0"]]
        targets.update(id(node.engine.ledger.state) for node in diverging)
        async with ProvenetClient.from_network_dir(
            tmp_path / "net", org_id="farm", node="v0"
        ) as farm:
            args = {"lot_id": DIVERGING_LOT, "product": "rice", "mass_grams": 5}
            receipt = await farm.submit("food", "harvest", args)
            tx_id = bytes.fromhex(str(receipt["tx_id"]))
            height = int(str(receipt["height"]))
            # Later blocks carry (and so certify) this height's results; until
            # carrier blocks exist, traffic makes them.
            filler = 0

            async def one_more() -> int:
                nonlocal filler
                filler += 1
                lot = {"lot_id": f"AFTER-{filler}", "product": "rice", "mass_grams": 5}
                return int(str((await farm.submit("food", "harvest", lot))["height"]))

            deadline = time.monotonic() + FOLLOW_TIMEOUT_S
            while not all(n.engine.divergence is not None for n in diverging) or any(
                n.engine.divergence.kind != "receipt"  # type: ignore[union-attr]
                for n in diverging
            ):
                assert time.monotonic() < deadline, "the diverged nodes never named it"
                await one_more()
                await asyncio.sleep(0.2)
            certified = await farm.results(height)
            assert [(r.status, r.code) for r in certified.receipts if r.tx_id == tx_id] == [
                ("ok", None)
            ]
            # The others go on; the diverged nodes execute nothing more.
            assert await one_more() > height + 1
        async with aiohttp.ClientSession() as http:
            for name in ("v3", "o0"):
                node = nodes[name]
                assert node.store.height() == height, name
                base = f"http://127.0.0.1:{node.config.api_port}"
                async with http.get(f"{base}/v1/status") as response:
                    status = await response.json()
                async with http.get(f"{base}/metrics") as response:
                    metrics = await response.text()
                named = status["divergence"]
                assert named["height"] == height and named["tx_id"] == tx_id.hex(), name
                assert named["own"]["status"] == "rejected", name
                assert named["own"]["code"] == DIVERGED_CODE, name
                assert named["certified"]["status"] == "ok", name
                assert named["certified"]["code"] is None, name
                alert = status["alerts"][-1]
                assert alert["kind"] == "execution_diverged" and alert["height"] == height
                assert tx_id.hex() in alert["message"] and DIVERGED_CODE in alert["message"]
                assert (
                    f'provenet_execution_diverged_height{{certified="ok",kind="receipt",'
                    f'own="rejected ({DIVERGED_CODE})",tx_id="{tx_id.hex()}"}} {float(height)}'
                ) in metrics, name
                assert "provenet_execution_halted 1.0" in metrics
            # A diverged validator refuses writes with a clear error.
            v3 = f"http://127.0.0.1:{nodes['v3'].config.api_port}"
            async with http.post(f"{v3}/v1/txs", json={"envelope": "00"}) as response:
                assert response.status in (400, 503)
        assert nodes["v0"].engine.divergence is None
        noticed = [r.getMessage() for r in caplog.records if "stopped executing" in r.getMessage()]
        assert any(noticed_by in line for line in noticed), noticed
    finally:
        # Together: a validator stopping alone waits on the links of those still up.
        await asyncio.gather(*(node.stop() for node in nodes.values()))
