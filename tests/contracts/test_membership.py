"""Governance: proposals, votes under the genesis threshold, key lifecycle."""

from __future__ import annotations

from collections.abc import Mapping

from contracts_testkit import World, make_genesis, signer_for

from consensus.codec import Ed25519Signer
from contracts.config import ContractLimits

# Three members and a 2/3 threshold: two approvals pass, two rejections fail.
SMALL = {
    "alpha": ("BW", ("regulator",), ()),
    "beta": ("BE", ("trader",), ()),
    "gamma": ("US", ("retailer",), ()),
}
NEW_KEY = Ed25519Signer.from_seed(b"new-key".ljust(32, b"."))


def small_world() -> World:
    return World(make_genesis(orgs=SMALL))


def propose(world: World, org: str, action: str, params: Mapping[str, object]) -> str:
    receipt = world.ok(org, "membership", "propose", {"action": action, "params": params})
    return receipt.events[0].attributes["proposal_id"]  # type: ignore[return-value]


ADD_DELTA = {
    "org_id": "delta",
    "name": "Delta",
    "country": "IN",
    "roles": ["manufacturer"],
    "keys": [NEW_KEY.public_key],
}


def test_add_org_passes_at_the_threshold_and_not_before() -> None:
    world = small_world()
    proposal = propose(world, "alpha", "add_org", ADD_DELTA)
    assert world.query("membership", "proposal", {"proposal_id": proposal})["status"] == "open"
    receipt = world.ok("beta", "membership", "vote", {"proposal_id": proposal, "approve": True})
    assert receipt.events[-1].kind == "decided"
    assert world.query("membership", "proposal", {"proposal_id": proposal})["status"] == "executed"
    assert world.query("membership", "org", {"org_id": "delta"})["roles"] == ("manufacturer",)
    world.signers["delta"] = NEW_KEY
    # The new key works from the next block on.
    assert (
        world.send("delta", "membership", "vote", {"proposal_id": proposal}).error
        == "proposal_closed"
    )


def test_rejections_that_make_the_threshold_unreachable_close_the_proposal() -> None:
    world = small_world()
    proposal = propose(world, "alpha", "add_org", ADD_DELTA)
    world.ok("beta", "membership", "vote", {"proposal_id": proposal, "approve": False})
    world.ok("gamma", "membership", "vote", {"proposal_id": proposal, "approve": False})
    assert world.query("membership", "proposal", {"proposal_id": proposal})["status"] == "rejected"
    world.reject("alpha", "membership", "vote", {"proposal_id": "0" * 64}, "unknown_proposal")
    answer = world.send("alpha", "membership", "vote", {"proposal_id": proposal})
    assert answer.error == "proposal_closed"


def test_a_member_votes_once() -> None:
    world = small_world()
    proposal = propose(world, "alpha", "add_org", ADD_DELTA)
    world.reject("alpha", "membership", "vote", {"proposal_id": proposal}, "already_voted")


def test_closed_proposal_refuses_votes() -> None:
    world = small_world()
    proposal = propose(world, "alpha", "add_org", ADD_DELTA)
    world.ok("beta", "membership", "vote", {"proposal_id": proposal})
    world.reject("gamma", "membership", "vote", {"proposal_id": proposal}, "proposal_closed")


def test_unknown_proposal_is_refused() -> None:
    world = small_world()
    world.reject("alpha", "membership", "vote", {"proposal_id": "0" * 64}, "unknown_proposal")
    # Proposal ids are transaction ids: 64 lowercase hex digits, nothing else.
    for malformed in ("nope", "0" * 63, "A" * 64):
        world.reject("alpha", "membership", "vote", {"proposal_id": malformed}, "invalid_argument")


def test_malformed_or_duplicate_proposals_are_refused_when_proposed() -> None:
    world = small_world()
    world.reject(
        "alpha",
        "membership",
        "propose",
        {"action": "add_org", "params": {**ADD_DELTA, "org_id": "beta"}},
        "duplicate",
    )
    world.reject(
        "alpha",
        "membership",
        "propose",
        {"action": "add_org", "params": {**ADD_DELTA, "roles": ["king"]}},
        "invalid_argument",
    )
    world.reject(
        "alpha", "membership", "propose", {"action": "crown", "params": {}}, "invalid_argument"
    )
    world.reject(
        "alpha",
        "membership",
        "propose",
        {"action": "add_key", "params": {"org_id": "beta", "key": signer_for("gamma").public_key}},
        "duplicate",
    )


def test_an_action_that_no_longer_applies_fails_without_blocking_the_vote() -> None:
    world = small_world()
    first = propose(world, "alpha", "add_org", ADD_DELTA)
    second = propose(world, "beta", "add_org", {**ADD_DELTA, "name": "Delta again"})
    world.ok("beta", "membership", "vote", {"proposal_id": first})
    # Delta now counts as a member: 3 of 4 approvals are needed.
    assert (
        world.ok("alpha", "membership", "vote", {"proposal_id": second}).events[-1].kind == "voted"
    )
    receipt = world.ok("gamma", "membership", "vote", {"proposal_id": second})
    assert receipt.events[-1].attributes["status"] == "failed"
    assert world.query("membership", "proposal", {"proposal_id": second})["outcome"].startswith(
        "duplicate"
    )


def test_revoked_key_is_refused_from_the_next_block_on() -> None:
    world = small_world()
    old_key = signer_for("gamma").public_key
    proposal = propose(world, "alpha", "revoke_key", {"org_id": "gamma", "key": old_key})
    world.ok("beta", "membership", "vote", {"proposal_id": proposal})
    decided_at = world.height - 1
    key_record = world.query("membership", "key", {"key": old_key})
    assert key_record["revoked_from_height"] == decided_at + 1
    world.reject("gamma", "membership", "vote", {"proposal_id": proposal}, "key_revoked")


def test_revoked_key_still_works_in_the_deciding_block() -> None:
    world = small_world()
    old_key = signer_for("gamma").public_key
    proposal = propose(world, "alpha", "revoke_key", {"org_id": "gamma", "key": old_key})
    world.ok("beta", "membership", "vote", {"proposal_id": proposal})
    world.height -= 1  # a later transaction of the same block
    assert (
        world.send("gamma", "membership", "vote", {"proposal_id": proposal}).error
        == "proposal_closed"
    )


def test_rotate_key_swaps_keys_at_the_next_block() -> None:
    world = small_world()
    old_key = signer_for("beta").public_key
    proposal = propose(
        world,
        "alpha",
        "rotate_key",
        {"org_id": "beta", "old_key": old_key, "new_key": NEW_KEY.public_key},
    )
    world.ok("gamma", "membership", "vote", {"proposal_id": proposal})
    assert world.query("membership", "org", {"org_id": "beta"})["keys"] == (NEW_KEY.public_key,)
    world.reject("beta", "membership", "vote", {"proposal_id": proposal}, "key_revoked")
    world.signers["beta"] = NEW_KEY
    other = propose(
        world, "beta", "set_roles", {"org_id": "gamma", "roles": ["retailer", "trader"]}
    )
    world.ok("alpha", "membership", "vote", {"proposal_id": other})
    assert world.query("membership", "org", {"org_id": "gamma"})["roles"] == ("retailer", "trader")


def test_an_org_revokes_its_own_key_without_a_vote() -> None:
    world = small_world()
    own = signer_for("beta").public_key
    spare = propose(world, "alpha", "add_key", {"org_id": "beta", "key": NEW_KEY.public_key})
    world.ok("gamma", "membership", "vote", {"proposal_id": spare})
    world.reject(
        "beta",
        "membership",
        "revoke_own_key",
        {"key": signer_for("alpha").public_key},
        "invalid_argument",
    )
    world.ok("beta", "membership", "revoke_own_key", {"key": own})
    world.reject(
        "beta", "membership", "propose", {"action": "add_org", "params": ADD_DELTA}, "key_revoked"
    )


def test_a_key_added_by_governance_is_valid_from_the_next_block() -> None:
    world = small_world()
    proposal = propose(world, "alpha", "add_key", {"org_id": "gamma", "key": NEW_KEY.public_key})
    world.ok("beta", "membership", "vote", {"proposal_id": proposal})
    world.signers["gamma"] = NEW_KEY
    world.height -= 1  # same block as the decision: not valid yet
    world.reject("gamma", "membership", "vote", {"proposal_id": proposal}, "unknown_key")
    assert (
        world.send("gamma", "membership", "vote", {"proposal_id": proposal}).error
        == "proposal_closed"
    )


def test_an_org_cannot_revoke_its_last_key_without_a_vote() -> None:
    world = small_world()
    for org in ("beta", "gamma"):
        receipt = world.reject(
            org,
            "membership",
            "revoke_own_key",
            {"key": signer_for(org).public_key},
            "unauthorized",
        )
        assert "rotate_key" in receipt.message
    # The way to replace a last key is a rotation decided by vote.
    proposal = propose(
        world,
        "beta",
        "rotate_key",
        {"org_id": "beta", "old_key": signer_for("beta").public_key, "new_key": NEW_KEY.public_key},
    )
    world.ok("gamma", "membership", "vote", {"proposal_id": proposal})
    assert world.query("membership", "org", {"org_id": "beta"})["keys"] == (NEW_KEY.public_key,)


def test_keyless_and_sanctioned_orgs_do_not_count_as_voters() -> None:
    orgs = {**SMALL, "delta": ("IN", ("trader",), ())}
    world = World(make_genesis(orgs=orgs))
    # Governance may leave an org keyless; it then stops counting.
    proposal = propose(
        world, "alpha", "revoke_key", {"org_id": "delta", "key": signer_for("delta").public_key}
    )
    world.ok("beta", "membership", "vote", {"proposal_id": proposal})
    world.ok("gamma", "membership", "vote", {"proposal_id": proposal})
    assert world.query("membership", "org", {"org_id": "delta"})["keys"] == ()
    # A sanctioned org may neither propose nor vote, and does not count.
    world.ok("alpha", "diamonds", "sanction", {"kind": "org", "target": "gamma", "reason": "x"})
    world.reject(
        "gamma", "membership", "propose", {"action": "add_org", "params": ADD_DELTA}, "sanctioned"
    )
    add_key = {"org_id": "beta", "key": NEW_KEY.public_key}
    proposal = propose(world, "alpha", "add_key", add_key)
    world.reject("gamma", "membership", "vote", {"proposal_id": proposal}, "sanctioned")
    # Voters are alpha and beta: the second approval reaches 2/3.
    world.ok("beta", "membership", "vote", {"proposal_id": proposal})
    assert world.query("membership", "proposal", {"proposal_id": proposal})["status"] == "executed"


def test_governance_votes_when_max_id_len_is_below_64() -> None:
    world = World(make_genesis(limits=ContractLimits(max_id_len=32), orgs=SMALL))
    proposal = propose(world, "alpha", "add_org", ADD_DELTA)
    assert len(proposal) == 64
    world.ok("beta", "membership", "vote", {"proposal_id": proposal})
    assert world.query("membership", "proposal", {"proposal_id": proposal})["status"] == "executed"
