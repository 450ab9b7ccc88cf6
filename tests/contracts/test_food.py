"""Food pack: one test per rule, and a recall across three processing levels."""

from __future__ import annotations

from contracts_testkit import World, make_genesis

from contracts.config import ContractLimits

KG = 1_000  # grams


def harvested() -> World:
    world = World()
    world.ok(
        "farm", "food", "harvest", {"lot_id": "W1", "product": "wheat", "mass_grams": 1_000 * KG}
    )
    return world


def at_mill() -> World:
    world = harvested()
    world.ok("farm", "food", "ship", {"lot_id": "W1", "to_org": "mill"})
    world.ok("mill", "food", "receive", {"lot_id": "W1"})
    return world


def process_args(
    inputs: list[tuple[str, int]], outputs: list[tuple[str, str, int]]
) -> dict[str, object]:
    return {
        "inputs": [{"lot_id": lot, "mass_grams": grams} for lot, grams in inputs],
        "outputs": [
            {"lot_id": lot, "product": product, "mass_grams": grams}
            for lot, product, grams in outputs
        ],
    }


def test_full_recall_across_three_levels_of_processing() -> None:
    world = World()
    world.ok(
        "farm", "food", "harvest", {"lot_id": "W1", "product": "wheat", "mass_grams": 1_000 * KG}
    )
    world.ok(
        "farm2", "food", "harvest", {"lot_id": "W2", "product": "wheat", "mass_grams": 500 * KG}
    )
    world.ok(
        "farm", "food", "harvest", {"lot_id": "SALT", "product": "salt", "mass_grams": 50 * KG}
    )
    for farm, lot in (("farm", "W1"), ("farm2", "W2"), ("farm", "SALT")):
        world.ok(farm, "food", "ship", {"lot_id": lot, "to_org": "mill"})
        world.ok("mill", "food", "receive", {"lot_id": lot})
    # Level 1: milling two wheat lots into two flours.
    world.ok(
        "mill",
        "food",
        "process",
        process_args(
            [("W1", 600 * KG), ("W2", 400 * KG)],
            [("F1", "flour", 700 * KG), ("F2", "bran", 200 * KG)],
        ),
    )
    world.ok("mill", "food", "ship", {"lot_id": "F1", "to_org": "bakery"})
    world.ok("mill", "food", "ship", {"lot_id": "SALT", "to_org": "bakery"})
    world.ok("bakery", "food", "receive", {"lot_id": "F1"})
    world.ok("bakery", "food", "receive", {"lot_id": "SALT"})
    # Level 2: flour and salt into dough; level 3: dough into two breads.
    world.ok(
        "bakery",
        "food",
        "process",
        process_args([("F1", 500 * KG), ("SALT", 10 * KG)], [("D1", "dough", 510 * KG)]),
    )
    world.ok(
        "bakery",
        "food",
        "process",
        process_args([("D1", 510 * KG)], [("B1", "bread", 300 * KG), ("B2", "bread", 150 * KG)]),
    )
    world.ok("bakery", "food", "ship", {"lot_id": "B1", "to_org": "grocer"})
    world.ok("bakery", "food", "ship", {"lot_id": "B2", "to_org": "grocer"})
    world.ok("grocer", "food", "receive", {"lot_id": "B2"})

    world.ok("safety-lab", "food", "recall", {"lot_id": "W2", "reason": "aflatoxin"})

    impact = world.query("food", "recall_impact", {"lot_id": "W2"})
    assert impact["recalled"] is True and impact["truncated"] is False
    rows = {row["lot_id"]: row for row in impact["affected"]}
    assert sorted(rows) == ["B1", "B2", "D1", "F1", "F2"]
    assert (rows["F1"]["depth"], rows["D1"]["depth"], rows["B1"]["depth"]) == (1, 2, 3)
    assert (rows["F2"]["custodian"], rows["F1"]["custodian"], rows["F1"]["mass_grams"]) == (
        "mill",
        "bakery",
        200 * KG,
    )
    assert (rows["B1"]["status"], rows["B1"]["custodian"], rows["B1"]["destination"]) == (
        "in_transit",
        "bakery",
        "grocer",
    )
    assert (rows["B2"]["owner"], rows["B2"]["custodian"]) == ("grocer", "grocer")
    assert rows["D1"]["status"] == "consumed"
    assert impact["holders"] == ["bakery", "grocer", "mill"]
    # Salt and W1 are upstream of the dough but not downstream of W2.
    assert "SALT" not in rows

    # Everything downstream is now blocked, whoever holds it.
    b2 = world.reject("grocer", "food", "ship", {"lot_id": "B2", "to_org": "bakery"}, "recalled")
    assert b2.message == "lot B2 comes from lot W2, which is recalled: aflatoxin"
    world.reject(
        "bakery",
        "food",
        "process",
        process_args([("F1", 100 * KG)], [("X", "cake", 90 * KG)]),
        "recalled",
    )
    # The untouched W1 remainder is fine.
    world.ok("mill", "food", "ship", {"lot_id": "W1", "to_org": "bakery"})

    back = world.query("food", "trace_back", {"lot_id": "B1"})
    assert [node["lot_id"] for node in back["nodes"]] == ["B1", "D1", "F1", "SALT", "W1", "W2"]
    assert ["W2", "F1"] in back["edges"] and ["SALT", "D1"] in back["edges"]
    forward = world.query("food", "trace_forward", {"lot_id": "W1"})
    assert [node["lot_id"] for node in forward["nodes"]] == ["W1", "F1", "F2", "D1", "B1", "B2"]
    assert [event["kind"] for event in forward["nodes"][0]["events"]][:3] == [
        "harvested",
        "shipped",
        "received",
    ]


def test_only_suppliers_harvest() -> None:
    World().reject(
        "mill",
        "food",
        "harvest",
        {"lot_id": "W1", "product": "wheat", "mass_grams": 5},
        "unauthorized",
    )


def test_lot_ids_are_unique() -> None:
    harvested().reject(
        "farm",
        "food",
        "harvest",
        {"lot_id": "W1", "product": "wheat", "mass_grams": 5},
        "duplicate",
    )


def test_only_manufacturers_process() -> None:
    world = harvested()
    world.reject(
        "farm", "food", "process", process_args([("W1", 10)], [("F1", "flour", 10)]), "unauthorized"
    )


def test_processing_needs_lots_the_sender_owns_and_holds() -> None:
    world = harvested()
    world.reject(
        "mill", "food", "process", process_args([("W1", 10)], [("F1", "flour", 10)]), "not_owner"
    )


def test_processing_never_creates_mass() -> None:
    world = at_mill()
    world.reject(
        "mill",
        "food",
        "process",
        process_args([("W1", 100 * KG)], [("F1", "flour", 100 * KG + 1)]),
        "mass_balance",
    )
    world.reject(
        "mill",
        "food",
        "process",
        process_args([("W1", 1_000 * KG + 1)], [("F1", "flour", 1)]),
        "mass_balance",
    )
    world.ok(
        "mill", "food", "process", process_args([("W1", 1_000 * KG)], [("F1", "flour", 800 * KG)])
    )
    world.reject(
        "mill", "food", "process", process_args([("W1", 1)], [("F2", "flour", 1)]), "not_available"
    )


def test_processing_outputs_must_be_new() -> None:
    world = at_mill()
    world.reject(
        "mill", "food", "process", process_args([("W1", 10)], [("W1", "flour", 5)]), "duplicate"
    )


def test_shipping_needs_the_owner() -> None:
    harvested().reject("mill", "food", "ship", {"lot_id": "W1", "to_org": "mill"}, "not_owner")


def test_shipping_to_an_unknown_organisation() -> None:
    harvested().reject("farm", "food", "ship", {"lot_id": "W1", "to_org": "ghost"}, "unknown_org")


def test_only_the_addressee_receives() -> None:
    world = harvested()
    world.reject("mill", "food", "receive", {"lot_id": "W1"}, "not_available")
    world.ok("farm", "food", "ship", {"lot_id": "W1", "to_org": "mill"})
    world.reject("bakery", "food", "receive", {"lot_id": "W1"}, "unauthorized")


def test_certification_needs_the_matching_scope() -> None:
    world = harvested()
    world.reject(
        "safety-lab",
        "food",
        "certify",
        {"cert_id": "C1", "lot_id": "W1", "kind": "organic", "expiry_height": 100},
        "unauthorized",
    )


def test_certificates_cannot_be_issued_expired_or_twice() -> None:
    world = harvested()
    world.reject(
        "organic-cert",
        "food",
        "certify",
        {"cert_id": "C1", "lot_id": "W1", "kind": "organic", "expiry_height": 1},
        "expired_certificate",
    )
    world.ok(
        "organic-cert",
        "food",
        "certify",
        {"cert_id": "C1", "lot_id": "W1", "kind": "organic", "expiry_height": 100},
    )
    world.reject(
        "organic-cert",
        "food",
        "certify",
        {"cert_id": "C1", "lot_id": "W1", "kind": "organic", "expiry_height": 100},
        "duplicate",
    )


def test_claims_need_a_certificate() -> None:
    harvested().reject(
        "farm",
        "food",
        "ship",
        {"lot_id": "W1", "to_org": "mill", "claims": ["organic"]},
        "missing_certificate",
    )


def test_claims_need_an_unexpired_certificate() -> None:
    world = harvested()
    world.ok(
        "organic-cert",
        "food",
        "certify",
        {"cert_id": "C1", "lot_id": "W1", "kind": "organic", "expiry_height": 5},
    )
    world.height = 6
    world.reject(
        "farm",
        "food",
        "ship",
        {"lot_id": "W1", "to_org": "mill", "claims": ["organic"]},
        "expired_certificate",
    )


def test_claims_need_an_unrevoked_certificate() -> None:
    world = harvested()
    world.ok(
        "organic-cert",
        "food",
        "certify",
        {"cert_id": "C1", "lot_id": "W1", "kind": "organic", "expiry_height": 100},
    )
    world.reject(
        "farm", "food", "revoke_certificate", {"cert_id": "C1", "reason": "x"}, "unauthorized"
    )
    world.ok("organic-cert", "food", "revoke_certificate", {"cert_id": "C1", "reason": "fraud"})
    world.reject(
        "farm",
        "food",
        "ship",
        {"lot_id": "W1", "to_org": "mill", "claims": ["organic"]},
        "revoked_certificate",
    )


def test_valid_claim_ships() -> None:
    world = harvested()
    world.ok(
        "organic-cert",
        "food",
        "certify",
        {"cert_id": "C1", "lot_id": "W1", "kind": "organic", "expiry_height": 100},
    )
    receipt = world.ok(
        "farm", "food", "ship", {"lot_id": "W1", "to_org": "mill", "claims": ["organic"]}
    )
    assert receipt.events[0].attributes == {"id": "W1", "to_org": "mill", "claims": ["organic"]}


def test_recall_needs_a_regulator_or_food_safety_certifier() -> None:
    world = harvested()
    world.reject("organic-cert", "food", "recall", {"lot_id": "W1", "reason": "x"}, "unauthorized")
    world.ok("regulator", "food", "recall", {"lot_id": "W1", "reason": "listeria"})
    world.reject("safety-lab", "food", "recall", {"lot_id": "W1", "reason": "x"}, "duplicate")
    world.reject("farm", "food", "ship", {"lot_id": "W1", "to_org": "mill"}, "recalled")


def test_recall_of_an_unknown_lot() -> None:
    World().reject("regulator", "food", "recall", {"lot_id": "W9", "reason": "x"}, "unknown_asset")


def test_recall_impact_is_bounded() -> None:
    world = World(make_genesis(ContractLimits(max_trace_nodes=3)))
    world.ok("farm", "food", "harvest", {"lot_id": "W1", "product": "wheat", "mass_grams": 100})
    world.ok("farm", "food", "ship", {"lot_id": "W1", "to_org": "mill"})
    world.ok("mill", "food", "receive", {"lot_id": "W1"})
    world.ok(
        "mill",
        "food",
        "process",
        process_args([("W1", 100)], [(f"F{i}", "flour", 10) for i in range(5)]),
    )
    impact = world.query("food", "recall_impact", {"lot_id": "W1"})
    assert impact["truncated"] is True and len(impact["affected"]) == 2


def test_recall_impact_of_a_heavily_used_lot_is_truncated_not_over_budget() -> None:
    # A small query budget keeps the test fast; with the defaults the same
    # held once a lot had over ~500k forward edges (max_query_steps).
    limits = ContractLimits(max_query_steps=2_000, max_trace_nodes=50)
    world = World(make_genesis(limits=limits))
    world.ok("farm", "food", "harvest", {"lot_id": "SILO", "product": "wheat", "mass_grams": 10**9})
    world.ok("farm", "food", "ship", {"lot_id": "SILO", "to_org": "mill"})
    world.ok("mill", "food", "receive", {"lot_id": "SILO"})
    for run in range(10):
        outputs = [(f"F{run}-{i:03d}", "flour", 1) for i in range(256)]
        world.ok("mill", "food", "process", process_args([("SILO", 256)], outputs))
    impact = world.query("food", "recall_impact", {"lot_id": "SILO"})
    assert impact["truncated"] is True
    # The walk reads forward edges in key order and keeps the first ones.
    assert [lot["lot_id"] for lot in impact["affected"]] == [f"F0-{i:03d}" for i in range(49)]
    forward = world.query("food", "trace_forward", {"lot_id": "SILO"})
    assert forward["truncated"] is True and len(forward["nodes"]) == 50
