"""The validator set in state, changed by governance votes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest
from contracts_testkit import World, make_genesis, signer_for

from consensus.codec import Ed25519Signer
from contracts.genesis import GenesisValidator, genesis_state

# Three members and a 2/3 threshold: two approvals pass.
SMALL = {
    "alpha": ("BW", ("regulator",), ()),
    "beta": ("BE", ("trader",), ()),
    "gamma": ("US", ("retailer",), ()),
}


def node_key(n: int) -> bytes:
    return Ed25519Signer.from_seed((b"validator-%d" % n).ljust(32, b".")).public_key


def founding(n: int, org: str) -> GenesisValidator:
    return GenesisValidator(
        org, node_key(n), f"sha256:{n:064x}", f"10.0.0.{n}:7000", f"10.0.0.{n}:8000"
    )


FOUNDERS = (founding(0, "alpha"), founding(1, "beta"), founding(2, "gamma"), founding(3, "alpha"))


def governed_world(validators: tuple[GenesisValidator, ...] = FOUNDERS) -> World:
    return World(replace(make_genesis(orgs=SMALL), validators=validators))


def new_validator(n: int, org: str = "beta") -> dict[str, object]:
    return {
        "org_id": org,
        "key": node_key(n),
        "tls_identity": f"CN=validator-{n}.beta.example",
        "peer_address": f"validator-{n}.beta.example:7000",
        "api_address": f"validator-{n}.beta.example:8000",
    }


def propose(world: World, org: str, action: str, params: Mapping[str, object]) -> str:
    receipt = world.ok(org, "membership", "propose", {"action": action, "params": params})
    return receipt.events[0].attributes["proposal_id"]  # type: ignore[return-value]


def decide(world: World, action: str, params: Mapping[str, object]) -> str:
    proposal = propose(world, "alpha", action, params)
    world.ok("beta", "membership", "vote", {"proposal_id": proposal})
    return proposal


def validators(world: World) -> list[tuple[int, str, bytes]]:
    listed = world.query("membership", "validators", {})["validators"]
    return [(v["validator_id"], v["org_id"], v["public_key"]) for v in listed]


def test_genesis_seeds_the_set_with_ids_in_order() -> None:
    world = governed_world()
    assert validators(world) == [
        (0, "alpha", node_key(0)),
        (1, "beta", node_key(1)),
        (2, "gamma", node_key(2)),
        (3, "alpha", node_key(3)),
    ]
    assert world.query("membership", "validators", {})["next_id"] == 4


def test_adding_a_validator_takes_the_threshold_and_the_next_id() -> None:
    world = governed_world()
    proposal = propose(world, "alpha", "add_validator", new_validator(4))
    assert len(validators(world)) == 4  # one approval of three is not two thirds
    receipt = world.ok("beta", "membership", "vote", {"proposal_id": proposal})
    added = [e for e in receipt.events if e.kind == "validator_added"]
    assert added and added[0].attributes["validator_id"] == 4
    assert validators(world)[-1] == (4, "beta", node_key(4))
    listed = world.query("membership", "validators", {})["validators"][-1]
    assert listed["tls_identity"] == "CN=validator-4.beta.example"
    assert listed["peer_address"] == "validator-4.beta.example:7000"


def test_removing_a_validator_never_frees_its_id() -> None:
    world = governed_world()
    decide(world, "add_validator", new_validator(4))
    decide(world, "remove_validator", {"key": node_key(1)})
    assert [v[0] for v in validators(world)] == [0, 2, 3, 4]
    decide(world, "add_validator", new_validator(5))
    assert [v[0] for v in validators(world)] == [0, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("action", "params", "code"),
    [
        ("add_validator", new_validator(0) | {"key": node_key(2)}, "duplicate"),
        ("add_validator", new_validator(4, org="nobody"), "unknown_org"),
        ("remove_validator", {"key": node_key(9)}, "unknown_validator"),
        ("remove_validator", {"key": node_key(0)}, "validator_set_too_small"),
        ("add_validator", new_validator(4) | {"peer_address": "no-port"}, "invalid_argument"),
        ("add_validator", new_validator(4) | {"tls_identity": ""}, "invalid_argument"),
    ],
)
def test_a_proposal_that_cannot_apply_is_refused_with_a_stable_code(
    action: str, params: dict[str, object], code: str
) -> None:
    world = governed_world()
    world.reject("alpha", "membership", "propose", {"action": action, "params": params}, code)
    assert len(validators(world)) == 4


def test_a_chain_without_founding_validators_refuses_both_actions() -> None:
    world = governed_world(validators=())
    for action, params in (
        ("add_validator", new_validator(4)),
        ("remove_validator", {"key": node_key(0)}),
    ):
        world.reject(
            "alpha",
            "membership",
            "propose",
            {"action": action, "params": params},
            "validators_not_governed",
        )


def test_a_removal_that_no_longer_applies_fails_at_its_deciding_vote() -> None:
    world = governed_world()
    decide(world, "add_validator", new_validator(4))
    first = propose(world, "alpha", "remove_validator", {"key": node_key(1)})
    second = propose(world, "alpha", "remove_validator", {"key": node_key(2)})
    world.ok("beta", "membership", "vote", {"proposal_id": first})
    world.ok("beta", "membership", "vote", {"proposal_id": second})
    outcome = world.query("membership", "proposal", {"proposal_id": second})
    assert outcome["status"] == "failed"
    assert outcome["outcome"].startswith("validator_set_too_small")
    assert [v[0] for v in validators(world)] == [0, 2, 3, 4]


def test_genesis_refuses_a_validator_of_a_non_member() -> None:
    genesis = replace(make_genesis(orgs=SMALL), validators=(founding(0, "nobody"),))
    with pytest.raises(ValueError, match="not a member"):
        genesis_state(genesis)
    twice = replace(
        make_genesis(orgs=SMALL), validators=(founding(0, "alpha"), founding(0, "beta"))
    )
    with pytest.raises(ValueError, match="distinct"):
        genesis_state(twice)
    assert signer_for("alpha").public_key != node_key(0)
