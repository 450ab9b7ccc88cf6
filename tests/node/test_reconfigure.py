"""Validator-set changes on a live network (node side of consensus.epochs).

Four founding validators and an observer in this process; the validators order transactions while
governance adds a fifth (which joins by following the chain as an observer
until it has executed the decision, then restarts as a validator) and then
removes a founder.  The new validator's commits appear in certificates, the
removed one's stop counting, the validators store the sets with the blocks
that change them, the observer checks every certificate against the set
in force at its height, no acknowledged transaction is lost, and every node
ends with the same set and state root.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from netfixture import free_base_port

from consensus.messages import Commit, sign
from consensus.proofs import CommitCertificate
from contracts.validators import VALIDATORS_KEY
from node.app import DATABASE_FILE, RunningNode, start_node
from node.ops.cli import main
from node.ops.netinit import init_network
from node.runtime.config import load_node_config
from node.runtime.ledger import Ledger
from node.runtime.storage import Store
from node.sdk.client import ProvenetClient
from node.sdk.errors import ProofError, ProvenetError
from node.sdk.keys import Identity, load_identity
from node.sdk.results_proof import ResultsAnchor

# Small epochs, so a change takes effect a few blocks after its decision.
CONSENSUS = {"checkpoint_interval": 4, "window_size": 8}
HISTORY_PAGE = {"max_validator_changes_per_page": 1}
VOTERS = ("miner", "bw-trader", "cutter", "kp-bw", "kp-be", "lab", "regulator")
STEP_TIMEOUT_S = 60.0


def _rewrite(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def _prepare(net: Path) -> dict[str, Path]:
    """Five validators written; the fifth left out of genesis and the
    founders' peers, with an observer config to catch up with."""

    def drop_v4(document: dict[str, Any]) -> None:
        document["validators"] = [v for v in document["validators"] if v["replica_id"] != 4]
        document["epoch_rules"] = CONSENSUS

    _rewrite(net / "genesis.json", drop_v4)
    configs: dict[str, Path] = {}
    for n in range(5):
        path = net / "nodes" / f"v{n}" / "config.json"

        def founders_only(document: dict[str, Any]) -> None:
            document["peers"] = [p for p in document["peers"] if p["replica_id"] != 4]
            document["consensus"] = CONSENSUS
            # One change per page of GET /v1/validators/history: clients page.
            document["limits"] = {**document.get("limits", {}), **HISTORY_PAGE}

        _rewrite(path, founders_only)
        configs[f"v{n}"] = path
    configs["o0"] = net / "nodes" / "o0" / "config.json"
    _rewrite(configs["o0"], lambda document: document.update(consensus=CONSENSUS))
    observer = json.loads(configs["v4"].read_text())
    observer["role"] = "observer"
    del observer["replica_id"], observer["key_file"]
    configs["v4-observer"] = net / "nodes" / "v4" / "observer.json"
    configs["v4-observer"].write_text(json.dumps(observer))
    return configs


def _client(net: Path, org: str, node: str) -> ProvenetClient:
    # The SDK follows the certified set changes from genesis on its own
    # (GET /v1/validators/history, node.sdk.validator_history).
    return ProvenetClient.from_network_dir(net, org_id=org, node=node)


async def _block_with_the_added_validator(net: Path, height: int, added_id: int) -> None:
    """A block whose certificate counts the added validator's commit verifies
    for a client that followed the sets from genesis; a node that hides the
    change adding it is caught: that certificate does not verify against the
    set the client then holds."""
    async with _client(net, "farm", "v1") as client:
        block = await client.block(height)
        assert added_id in {commit["sender"] for commit in block["certificate"]}
    async with _client(net, "farm", "v1") as client:
        honest = client.transport.call

        async def hiding_call(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            if path == "/v1/validators/history":
                return {"changes": [], "more": False}
            return await honest(method, path, *args, **kwargs)

        client.transport.call = hiding_call  # type: ignore[method-assign]
        with pytest.raises(ProofError) as refused:
            await client.block(height)
        assert refused.value.part == "certificate"
        assert f"commit from unknown validator {added_id}" in str(refused.value)


async def _forged_certificate_refused(net: Path, removed: Identity, removed_id: int) -> None:
    """A lying node answers a state proof whose anchor's certificate counts
    the removed validator's commit (signed by its real key, at a height after
    its removal) in place of a current validator's: the SDK, following the
    sets from genesis, refuses it, naming the certificate."""
    async with _client(net, "farm", "v0") as client:
        honest = client.transport.call

        async def lying_call(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            answer = await honest(method, path, *args, **kwargs)
            if path.startswith("/v1/state/") and answer.get("anchor") is not None:
                anchor = ResultsAnchor.from_json(answer["anchor"])
                kept = anchor.certificate.commits[: len(anchor.certificate.commits) - 1]
                template = kept[0]
                forged = sign(
                    Commit(template.view, template.height, template.digest, removed_id),
                    removed.signer,
                    client.chain_id,
                )
                swapped = replace(anchor, certificate=CommitCertificate((*kept, forged)))
                answer = {**answer, "anchor": swapped.to_json()}
            return answer

        client.transport.call = lying_call  # type: ignore[method-assign]
        with pytest.raises(ProofError) as refused:
            await client.prove_state(VALIDATORS_KEY, timeout_s=STEP_TIMEOUT_S)
        assert refused.value.part == "certificate"
        assert f"commit from unknown validator {removed_id}" in str(refused.value)
        history = client.validator_history
        assert history is not None and not history.latest.contains(removed_id)
        # The same answer, untouched, verifies: only the forgery was refused.
        client.transport.call = honest  # type: ignore[method-assign]
        await client.prove_state(VALIDATORS_KEY, timeout_s=STEP_TIMEOUT_S)


async def _decide(net: Path, action: str, params: dict[str, object], cli_votes: int = 0) -> int:
    """Propose ``action`` and vote it through; the deciding vote's height.
    The first ``cli_votes`` votes go through ``provenet governance vote``."""
    async with _client(net, "leadfirm", "v0") as lead:
        receipt = await lead.submit("membership", "propose", {"action": action, "params": params})
        events: list[dict[str, Any]] = receipt["events"]
        proposal_id = events[0]["attributes"]["proposal_id"]
    for org in VOTERS[:cli_votes]:
        command = ["governance", "vote", proposal_id, "--as", org, "--net", str(net)]
        assert await asyncio.to_thread(main, command) == 0
    height = 0
    for org in VOTERS[cli_votes:]:
        async with _client(net, org, "v1") as voter:
            voted = await voter.submit("membership", "vote", {"proposal_id": proposal_id})
            height = int(str(voted["height"]))
    return height


def _commit_senders(node: RunningNode, height: int) -> set[int]:
    stored = node.store.block(height)
    assert stored is not None
    return {commit.sender for commit in stored.block.certificate}


async def _until(condition: Any, what: str, nodes: dict[str, RunningNode] | None = None) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}: {_describe(nodes)}"
        await asyncio.sleep(0.05)


def _describe(nodes: dict[str, RunningNode] | None) -> str:
    """Each node's height, and each validator's view, mode and drops."""
    if not nodes:
        return ""
    lines = []
    for name, node in nodes.items():
        line = f"{name}: height {node.store.height()}"
        replica = getattr(node.engine, "replica", None)
        if replica is not None:
            line += f" view {replica.view} mode {replica.mode} dropped {dict(replica.dropped)}"
            line += f" peers {node.peers.status() if node.peers else None}"
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.asyncio
@pytest.mark.network
async def test_governance_adds_then_removes_a_validator_under_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = tmp_path / "net"
    init_network(net, 5, tls=False, base_port=free_base_port(6), observers=1)
    configs = _prepare(net)
    v4_key = load_identity(net / "nodes" / "v4" / "node.key").public_key
    v3 = load_identity(net / "nodes" / "v3" / "node.key")
    v3_key = v3.public_key
    nodes: dict[str, RunningNode] = {}
    acknowledged: list[bytes] = []
    stop_load = asyncio.Event()

    def ledger(name: str) -> Ledger:
        return nodes[name].engine.ledger

    async def load() -> None:
        async with _client(net, "farm", "v2") as farm:
            n = 0
            while not stop_load.is_set():
                n += 1
                lot = {"lot_id": f"LOAD-{n}", "product": "rice", "mass_grams": 5}
                receipt = await farm.submit("food", "harvest", lot, timeout_s=STEP_TIMEOUT_S)
                acknowledged.append(bytes.fromhex(str(receipt["tx_id"])))

    try:
        for name in ("v0", "v1", "v2", "v3", "o0", "v4-observer"):
            nodes[name] = await start_node(load_node_config(configs[name]))
        load_task = asyncio.create_task(load())

        # Add v4.  It follows as an observer until it has executed the
        # decision, then restarts as a validator from that state.
        added_at = await _decide(
            net,
            "add_validator",
            {
                "org_id": "kp-bw",
                "key": v4_key,
                "tls_identity": "v4",
                "peer_address": f"127.0.0.1:{nodes['v0'].config.peer_port + 4}",
                "api_address": f"127.0.0.1:{nodes['v0'].config.api_port + 4}",
            },
            cli_votes=1,
        )
        decided_s = time.monotonic()
        history = ledger("v0").history
        assert history is not None and history.latest.contains(4)
        joins_at = history.epochs[-1].first_height
        assert joins_at > added_at

        def observer_knows() -> bool:
            own = ledger("v4-observer").history
            return own is not None and own.latest.contains(4)

        await _until(observer_knows, "the joining node executed its addition")
        known_s = time.monotonic() - decided_s
        await nodes.pop("v4-observer").stop()
        stopped_s = time.monotonic() - decided_s
        nodes["v4"] = await start_node(load_node_config(configs["v4"]))
        started_s = time.monotonic() - decided_s

        counted: list[int] = []

        def v4_counted() -> bool:
            top = nodes["v0"].store.height()
            counted.extend(
                h for h in range(joins_at, top + 1) if 4 in _commit_senders(nodes["v0"], h)
            )
            return bool(counted)

        await _until(v4_counted, "a certificate counts v4's commit", nodes)
        first_counted_s = time.monotonic() - decided_s
        with capsys.disabled():
            print(
                f"\nv4 added by the vote at height {added_at}; its set orders from "
                f"{joins_at}; its first counted commit at height {counted[0]}, "
                f"{first_counted_s:.2f} s after the deciding vote committed (its "
                f"observer executed it at {known_s:.2f} s, stopped at {stopped_s:.2f} s; "
                f"the validator started at {started_s:.2f} s)"
            )

        await _block_with_the_added_validator(net, counted[0], 4)

        # Remove v3: from its set's first height no certificate counts it.
        removed_at = await _decide(net, "remove_validator", {"key": v3_key})
        history = ledger("v0").history
        assert history is not None and not history.latest.contains(3)
        leaves_at = history.epochs[-1].first_height
        assert leaves_at > removed_at
        await _until(
            lambda: nodes["v0"].store.height() >= leaves_at + 8, "the four-validator set ordered"
        )
        for height in range(leaves_at, nodes["v0"].store.height() + 1):
            assert 3 not in _commit_senders(nodes["v0"], height), height
        await _forged_certificate_refused(net, v3, 3)
        # A client follows the same sets as the validators, from genesis.
        async with _client(net, "farm", "v1") as client:
            await client.refresh_validators()
            followed = client.validator_history
            assert followed is not None and followed.epochs == history.epochs
            with pytest.raises(ProvenetError) as refused:
                path = "/v1/validators/history"
                await client.transport.call("GET", path, params={"after": "-1"})
            assert refused.value.code == "bad_request"
        stop_load.set()
        await asyncio.wait_for(load_task, STEP_TIMEOUT_S)

        # Nothing acknowledged is lost; every current validator agrees.
        current = ("v0", "v1", "v2", "v4", "o0")
        await _until(
            lambda: len({nodes[name].store.height() for name in current}) == 1,
            "the validators reach the same height",
        )
        top = nodes["v0"].store.height()
        assert acknowledged
        for name in current:
            assert all(nodes[name].store.has_tx(tx_id) for tx_id in acknowledged), name
            assert nodes[name].store.state_root_at(top) == nodes["v0"].store.state_root_at(top)
            own = ledger(name).history
            assert own is not None and own.latest == history.latest, name
            assert own.latest.ids == (0, 1, 2, 4)
        assert await asyncio.to_thread(main, ["validators", "list", "--net", str(net)]) == 0
        listed = capsys.readouterr().out
        assert "4 validators; the next gets id 5" in listed
        assert "v4" in listed and "v3" not in listed
    finally:
        stop_load.set()
        await asyncio.gather(*(node.stop() for node in nodes.values()))
    # What a restart restores the replica from (v4 restarted from its
    # observer's store already): the sets, stored with the blocks that
    # changed them.
    stored = Store(net / "nodes" / "v1" / "data" / DATABASE_FILE)
    try:
        kept = stored.validator_history()
        assert kept is not None and kept.epochs == history.epochs
    finally:
        stored.close()
