"""execute(): admission rules, the nonce rule, atomicity, budgets, receipts."""

from __future__ import annotations

import pytest
from contracts_testkit import CHAIN_ID, World, make_genesis, mine_and_extract, signer_for
from snapshot_root import pairs

from consensus.codec import Ed25519Signer, decode, encode
from contracts.config import ContractLimits
from contracts.receipt import BlockContext
from contracts.runtime import execute
from contracts.state import MemoryState
from contracts.tx import Transaction, sign_tx

REGISTER: dict[str, object] = {"mine_id": "M1", "country": "BW", "operator": "debswana"}


def test_a_valid_transaction_writes_emits_and_consumes_its_nonce() -> None:
    world = World()
    receipt = world.ok("kp-bw", "diamonds", "register_mine", REGISTER)
    assert [event.kind for event in receipt.events] == ["mine_registered"]
    assert receipt.writes == 2  # the mine record and the nonce
    assert world.nonce("kp-bw") == 1
    assert world.query("diamonds", "mine", {"mine_id": "M1"})["operator"] == "debswana"


def test_receipt_encodes_canonically() -> None:
    world = World()
    receipt = world.ok("kp-bw", "diamonds", "register_mine", REGISTER)
    assert decode(encode(receipt.to_dict())) == receipt.to_dict()
    assert decode(receipt.leaf()) == [receipt.tx_id, "ok", "", receipt.writes_digest]


def test_wrong_chain_is_refused_without_consuming_the_nonce() -> None:
    World().reject(
        "kp-bw", "diamonds", "register_mine", REGISTER, "wrong_chain", chain_id="other-net"
    )


def test_bad_nonce_is_refused() -> None:
    World().reject("kp-bw", "diamonds", "register_mine", REGISTER, "bad_nonce", nonce=1)


def test_a_replayed_transaction_is_refused_as_bad_nonce() -> None:
    world = World()
    tx = sign_tx(
        signer_for("kp-bw"),
        chain_id=CHAIN_ID,
        nonce=0,
        contract="diamonds",
        method="register_mine",
        args=REGISTER,
    )
    assert execute(world.state, tx, world.block()).ok
    root = world.state.root()
    replay = execute(world.state, tx, BlockContext(2, 1, "v0"))
    assert replay.error == "bad_nonce" and world.state.root() == root


def test_expired_transaction_is_refused() -> None:
    world = World()
    world.height = 10
    world.reject("kp-bw", "diamonds", "register_mine", REGISTER, "expired", expiry_height=9)
    world.height = 10
    assert world.send("kp-bw", "diamonds", "register_mine", REGISTER, expiry_height=10).ok


def test_unknown_key_is_refused() -> None:
    world = World()
    world.signers["kp-bw"] = Ed25519Signer.from_seed(b"n" * 32)
    world.reject("kp-bw", "diamonds", "register_mine", REGISTER, "unknown_key")


def test_bad_signature_is_refused() -> None:
    world = World()
    good = sign_tx(
        signer_for("kp-bw"),
        chain_id=CHAIN_ID,
        nonce=0,
        contract="diamonds",
        method="register_mine",
        args=REGISTER,
    )
    forged = Transaction(**{**good.body(), "signature": bytes(64)})  # type: ignore[arg-type]
    before = pairs(world.state)
    receipt = execute(world.state, forged, world.block())
    assert receipt.error == "bad_signature" and pairs(world.state) == before


def test_oversized_and_over_deep_transactions_are_refused() -> None:
    world = World(make_genesis(ContractLimits(max_tx_bytes=600, max_args_depth=3)))
    world.reject("kp-bw", "diamonds", "register_mine", {**REGISTER, "note": "x" * 600}, "too_large")
    world.reject(
        "kp-bw", "diamonds", "register_mine", {**REGISTER, "note": [[[["deep"]]]]}, "too_large"
    )


def test_unknown_contract_method_and_argument_consume_the_nonce_only() -> None:
    world = World()
    world.reject("kp-bw", "ledger", "register_mine", REGISTER, "unknown_contract")
    world.reject("kp-bw", "diamonds", "dig", REGISTER, "unknown_method")
    world.reject(
        "kp-bw", "diamonds", "register_mine", {**REGISTER, "colour": "red"}, "invalid_argument"
    )
    world.reject(
        "kp-bw", "diamonds", "register_mine", {**REGISTER, "mine_id": "a/b"}, "invalid_argument"
    )
    world.reject(
        "kp-bw", "diamonds", "register_mine", {**REGISTER, "country": "bw"}, "invalid_argument"
    )
    assert world.nonce("kp-bw") == 5


def test_write_budget_is_enforced_and_nothing_is_half_written() -> None:
    world = World(make_genesis(ContractLimits(max_writes_per_tx=5)))
    mine_and_extract(world, "P1", 1_000)
    outputs = [{"asset_id": f"Q{i}", "carats_points": 100} for i in range(10)]
    world.reject(
        "debswana", "diamonds", "split", {"asset_id": "P1", "outputs": outputs}, "budget_exceeded"
    )


def test_step_budget_is_enforced() -> None:
    world = World(make_genesis(ContractLimits(max_steps_per_tx=30)))
    mine_and_extract(world, "P1", 1_000)
    outputs = [{"asset_id": f"Q{i}", "carats_points": 100} for i in range(10)]
    world.reject(
        "debswana", "diamonds", "split", {"asset_id": "P1", "outputs": outputs}, "budget_exceeded"
    )


def test_list_arguments_over_the_output_limit_are_refused() -> None:
    world = World(make_genesis(ContractLimits(max_outputs=3)))
    mine_and_extract(world, "P1", 1_000)
    outputs = [{"asset_id": f"Q{i}", "carats_points": 250} for i in range(4)]
    world.reject(
        "debswana", "diamonds", "split", {"asset_id": "P1", "outputs": outputs}, "limit_exceeded"
    )


def test_api_misuse_raises() -> None:
    state = MemoryState()
    tx = sign_tx(
        signer_for("kp-bw"), chain_id=CHAIN_ID, nonce=0, contract="diamonds", method="x", args={}
    )
    with pytest.raises(ValueError, match="genesis"):
        execute(state, tx, BlockContext(1, 0, "v0"))
    with pytest.raises(TypeError):
        execute(World().state, tx, (1, 0, "v0"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BlockContext(-1, 0, "v0")


def test_args_mutated_into_a_non_canonical_form_still_yield_a_receipt() -> None:
    world = World()
    tx = sign_tx(
        signer_for("debswana"),
        chain_id=CHAIN_ID,
        nonce=0,
        contract="diamonds",
        method="merge",
        args={"inputs": ["A", "B"], "output_id": "C"},
    )
    before = pairs(world.state)
    for bad in (("A", "B"), 1.5):
        tx.args["inputs"] = bad  # the args dict is the one mutable part
        receipt = execute(world.state, tx, world.block())
        assert (receipt.status, receipt.error, receipt.tx_id) == (
            "rejected",
            "invalid_argument",
            b"",
        )
        assert pairs(world.state) == before
