"""Receipt proofs: which block certifies a height's results (node/runtime/
certified.py), the anchor's check (ResultsAnchor.verify) and the receipt's
(node/sdk/receipt_proof.py), on a chain built and signed by hand in a real
store.  Every way of tampering with a proof is refused with a named part."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from consensus.blocks import CommittedBlock, derive_header
from consensus.codec import Ed25519Signer, digest
from consensus.messages import Batch, Commit, Request, sign
from consensus.quorum import ValidatorSet
from contracts.results import HeightResults, genesis_results, receipt_leaf_of, receipts_root
from node.runtime.certified import await_anchor, results_anchor
from node.runtime.storage import Store
from node.runtime.views import proof_view, receipt_proof_view, receipt_view, to_json
from node.sdk.errors import ProofError
from node.sdk.receipt_proof import verify_receipt_proof

CHAIN = "provenet-test"
SIGNERS = [Ed25519Signer.from_seed(digest(b"receipt validator %d" % i)) for i in range(4)]
VALIDATORS = ValidatorSet(tuple(s.public_key for s in SIGNERS))
GENESIS_ROOT = digest(b"genesis state")
SEARCH = 64

Outcome = tuple[str, str | None]
OK: Outcome = ("ok", None)
REJECTED: Outcome = ("rejected", "duplicate")


class HandChain:
    """Blocks with real commit certificates in a real store; block ``h``'s
    batch carries whichever executed height the test says."""

    def __init__(self, path: Path) -> None:
        self.store = Store(path)
        self.store.bind_chain(CHAIN, GENESIS_ROOT, [])
        self.prev_hash = bytes(32)

    def results_root_at(self, height: int) -> bytes:
        if height == 0:
            return genesis_results(GENESIS_ROOT).results_root
        root = self.store.results_root_at(height)
        assert root is not None
        return root

    def add(self, outcomes: list[Outcome], carries: int) -> list[bytes]:
        """Store the next block, its requests having ``outcomes``, carrying
        executed height ``carries``; the requests' ids."""
        height = self.store.height() + 1
        requests = tuple(Request.of(b"tx %d.%d" % (height, i)) for i in range(len(outcomes)))
        batch = Batch(height, requests, 1_000 + height, carries, self.results_root_at(carries))
        header = derive_header(CHAIN, batch, self.prev_hash, 0)
        commits = tuple(
            sign(Commit(0, height, batch.digest, i), SIGNERS[i], CHAIN) for i in (0, 1, 3)
        )
        receipts: list[dict[str, object]] = [
            {
                "tx_id": request.digest,
                "status": status,
                "error": code,
                "message": "",
                "events": [],
                "writes": 0,
                "writes_digest": digest(b"writes of %d" % n),
            }
            for n, (request, (status, code)) in enumerate(zip(requests, outcomes, strict=True))
        ]
        results = HeightResults(
            height,
            digest(b"state %d" % height),
            receipts_root([receipt_leaf_of(r) for r in receipts]),
            self.results_root_at(height - 1),
        )
        block = CommittedBlock(header, requests, commits)
        positions = [(r.digest, i) for i, r in enumerate(requests)]
        self.store.commit_block(block, receipts, positions, {}, results)
        self.prev_hash = header.hash
        return [r.digest for r in requests]

    def status(self, tx: bytes) -> dict[str, Any]:
        """The JSON answer of GET /v1/txs/{tx}, built as node/api/routes.py builds it."""
        position = self.store.tx_position(tx)
        assert position is not None
        height, index = position
        stored = self.store.block(height)
        assert stored is not None
        anchor = results_anchor(self.store, height, SEARCH)
        answer = to_json(
            {
                "tx_id": tx,
                "status": "committed",
                "height": height,
                "index": index,
                "receipt": receipt_view(stored.receipts[index]),
                "proof": proof_view(stored, index),
                "receipt_proof": receipt_proof_view(stored, index, anchor),
            }
        )
        assert isinstance(answer, dict)
        return answer


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[HandChain]:
    built = HandChain(tmp_path / "db.sqlite")
    try:
        yield built
    finally:
        built.store.close()


# ---------------------------------------------------------------- which certificate


def test_the_anchor_is_the_lowest_later_block_carrying_the_height(chain: HandChain) -> None:
    chain.add([OK, REJECTED], carries=0)  # 1
    chain.add([OK], carries=0)  # 2: carries genesis only
    assert results_anchor(chain.store, 1, SEARCH) is None  # not yet certified
    chain.add([], carries=2)  # 3: an empty carrier of heights 1 and 2
    chain.add([OK], carries=3)  # 4
    anchor = results_anchor(chain.store, 1, SEARCH)
    assert anchor is not None
    assert (anchor.header.height, anchor.header.executed_height, len(anchor.links)) == (3, 2, 1)
    assert anchor.verify(VALIDATORS, CHAIN) == chain.store.results_at(1)
    assert results_anchor(chain.store, 4, SEARCH) is None


def test_the_anchor_search_is_bounded(chain: HandChain) -> None:
    chain.add([OK], carries=0)  # 1
    for _ in range(4):
        chain.add([OK], carries=0)  # 2..5 carry nothing new
    chain.add([OK], carries=1)  # 6
    assert results_anchor(chain.store, 1, search_heights=4) is None
    found = results_anchor(chain.store, 1, search_heights=5)
    assert found is not None and found.header.height == 6


@pytest.mark.asyncio
async def test_await_anchor_waits_for_the_certifying_block_within_its_bound(
    chain: HandChain,
) -> None:
    chain.add([OK], carries=0)
    events = [asyncio.Event()]
    host: Any = SimpleNamespace(
        store=chain.store,
        limits=SimpleNamespace(results_anchor_search_heights=SEARCH),
        block_stored=lambda: events[-1],
    )
    assert await await_anchor(host, 1, timeout_s=0.05) is None  # not yet: the bound holds

    async def store_the_carrier() -> None:
        await asyncio.sleep(0.05)
        chain.add([], carries=1)
        events[-1].set()
        events.append(asyncio.Event())

    storing = asyncio.create_task(store_the_carrier())
    anchor = await await_anchor(host, 1, timeout_s=5)
    await storing
    assert anchor is not None and anchor.header.height == 2


# ---------------------------------------------------------------- the receipt proof


def built(chain: HandChain) -> tuple[list[bytes], list[bytes]]:
    """Block 1 (ok, rejected, ok), block 2 (ok) carrying genesis, block 3 (an
    empty carrier of 2), block 4 (ok) carrying 3."""
    first = chain.add([OK, REJECTED, OK], carries=0)
    second = chain.add([OK], carries=0)
    chain.add([], carries=2)
    chain.add([OK], carries=3)
    return first, second


def test_a_served_receipt_verifies_against_the_certificate_of_its_results(
    chain: HandChain,
) -> None:
    first, _ = built(chain)
    leaf = verify_receipt_proof(first[1], chain.status(first[1]), VALIDATORS, CHAIN)
    assert (leaf.tx_id, leaf.status, leaf.code) == (first[1], "rejected", "duplicate")
    ok = verify_receipt_proof(first[0], chain.status(first[0]), VALIDATORS, CHAIN)
    assert (ok.status, ok.code) == ("ok", None)


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def tamper(status: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = status
        for name in parents:
            target = target[int(name)] if isinstance(target, list) else target[name]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return tamper


def _flip_hex(path: str) -> Callable[[dict[str, Any]], None]:
    def tamper(status: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = status
        for name in parents:
            target = target[int(name)] if isinstance(target, list) else target[name]
        key: Any = int(last) if isinstance(target, list) else last
        value = target[key]
        target[key] = ("0" if value[0] != "0" else "1") + value[1:]

    return tamper


def _claim_ok_everywhere(status: dict[str, Any]) -> None:
    for part in (status["receipt"], status["receipt_proof"]["leaf"]):
        part["status"], part["code"] = "ok", None


TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # The node serves "ok" for the rejected transaction, its leaf unchanged.
    "served_status_flipped": (_set("receipt.status", "ok"), "receipt"),
    "served_code_dropped": (_set("receipt.code", None), "receipt"),
    # It rewrites the leaf too: the leaf is then not under the certified root.
    "leaf_status_flipped": (_claim_ok_everywhere, "receipt"),
    "wrong_path": (_flip_hex("receipt_proof.path.0"), "receipt"),
    "wrong_index": (_set("receipt_proof.index", 0), "receipt"),
    "writes_digest_altered": (_flip_hex("receipt_proof.leaf.writes_digest"), "receipt"),
    "chain_link_altered": (_flip_hex("receipt_proof.anchor.links.0.1"), "results"),
    "results_altered": (_flip_hex("receipt_proof.anchor.results.state_root"), "results"),
    "certificate_signature_altered": (
        _flip_hex("receipt_proof.anchor.certificate.0.signature"),
        "certificate",
    ),
    "unanchored": (_set("receipt_proof.anchor", None), "unproven"),
    "no_receipt_proof": (_set("receipt_proof", None), "unproven"),
    "malformed": (_set("receipt_proof.count", "three"), "malformed"),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_a_tampered_receipt_proof_is_refused_naming_the_part(chain: HandChain, name: str) -> None:
    first, _ = built(chain)
    status = chain.status(first[1])
    tamper, part = TAMPERS[name]
    tamper(status)
    with pytest.raises(ProofError) as caught:
        verify_receipt_proof(first[1], status, VALIDATORS, CHAIN)
    assert caught.value.part == part, caught.value


def test_another_transactions_leaf_is_refused(chain: HandChain) -> None:
    first, _ = built(chain)
    status = chain.status(first[1])
    other = chain.status(first[0])
    status["receipt_proof"] = other["receipt_proof"]
    status["receipt"] = {**other["receipt"], "tx_id": first[1].hex()}
    with pytest.raises(ProofError) as caught:
        verify_receipt_proof(first[1], status, VALIDATORS, CHAIN)
    assert caught.value.part == "receipt"


def test_the_certificate_of_another_block_is_refused(chain: HandChain) -> None:
    first, _ = built(chain)
    status = chain.status(first[1])
    # Block 4's signed header and certificate: it carries height 3, not 2.
    found = chain.store.certified_header(4)
    assert found is not None
    header, certificate = found
    swapped = copy.deepcopy(status)
    swapped["receipt_proof"]["anchor"]["header"] = header.signed.to_json()
    swapped["receipt_proof"]["anchor"]["certificate"] = certificate.to_json()
    with pytest.raises(ProofError) as caught:
        verify_receipt_proof(first[1], swapped, VALIDATORS, CHAIN)
    assert caught.value.part == "results"
    # Block 4's certificate under block 3's header signs another digest.
    mixed = copy.deepcopy(status)
    mixed["receipt_proof"]["anchor"]["certificate"] = certificate.to_json()
    with pytest.raises(ProofError) as caught:
        verify_receipt_proof(first[1], mixed, VALIDATORS, CHAIN)
    assert caught.value.part == "certificate"


def test_the_anchor_of_another_height_is_refused(chain: HandChain) -> None:
    first, second = built(chain)
    status = chain.status(first[1])
    status["receipt_proof"]["anchor"] = chain.status(second[0])["receipt_proof"]["anchor"]
    with pytest.raises(ProofError) as caught:
        verify_receipt_proof(first[1], status, VALIDATORS, CHAIN)
    assert caught.value.part == "results"


def test_a_proof_for_another_chain_or_validator_set_is_refused(chain: HandChain) -> None:
    first, _ = built(chain)
    with pytest.raises(ProofError) as caught:
        verify_receipt_proof(first[1], chain.status(first[1]), VALIDATORS, "provenet-other")
    assert caught.value.part == "chain_id"
    strangers = ValidatorSet(
        tuple(Ed25519Signer.from_seed(digest(b"stranger %d" % i)).public_key for i in range(4))
    )
    with pytest.raises(ProofError) as caught:
        verify_receipt_proof(first[1], chain.status(first[1]), strangers, CHAIN)
    assert caught.value.part == "certificate"
