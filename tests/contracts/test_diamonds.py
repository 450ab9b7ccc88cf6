"""Diamond pack: one test per rule, exact codes, nothing changed on refusal."""

from __future__ import annotations

from contracts_testkit import (
    ORGS,
    World,
    cut_and_grade,
    export_to_belgium,
    grading,
    hand_to_lab,
    kp_args,
    make_genesis,
    mine_and_extract,
    stones,
)

from contracts.config import ContractLimits
from contracts.queries import query

REGISTER = {"mine_id": "M1", "country": "BW", "operator": "debswana"}


def extracted() -> World:
    world = World()
    mine_and_extract(world, "P1", 10_000)
    return world


def imported() -> World:
    world = extracted()
    export_to_belgium(world, "P1", 10_000)
    return world


def graded_at_retailer() -> World:
    world = imported()
    cut_and_grade(world, "P1")
    world.ok("antwerp", "diamonds", "transfer", {"asset_id": "S1", "to_org": "jeweller"})
    return world


def sell(
    world: World, code: str | None = None, stone: str = "S1", seller: str = "jeweller"
) -> None:
    args = {"asset_id": stone, "buyer_ref": "customer-1", "price_cents": 900_000}
    if code is None:
        world.ok(seller, "diamonds", "sell", args)
    else:
        world.reject(seller, "diamonds", "sell", args, code)


# --- full scenario -----------------------------------------------------------


def test_full_scenario_mine_to_shop() -> None:
    world = World()
    mine_and_extract(world, "P1", 6_000)
    mine_and_extract(world, "P2", 4_000)
    world.ok("debswana", "diamonds", "merge", {"inputs": ["P1", "P2"], "output_id": "LOT-A"})
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-2026-1", ["LOT-A"], 10_000))
    world.ok("debswana", "diamonds", "ship", {"cert_id": "BW-2026-1"})
    world.ok(
        "kp-be", "diamonds", "confirm_import", {"cert_id": "BW-2026-1", "carats_points": 10_000}
    )
    world.ok(
        "antwerp",
        "diamonds",
        "split",
        {"asset_id": "LOT-A", "outputs": stones(("R1", 7_000), ("R2", 3_000))},
    )
    world.ok("antwerp", "diamonds", "transfer", {"asset_id": "R1", "to_org": "cutter"})
    world.ok(
        "cutter",
        "diamonds",
        "cut",
        {"asset_id": "R1", "stones": stones(("S1", 1_800), ("S2", 1_200), ("S3", 700))},
    )
    for stone, points in (("S1", 1_800), ("S2", 1_200), ("S3", 700)):
        hand_to_lab(world, "cutter", stone)
        world.ok("gia", "diamonds", "grade", grading(stone, f"GIA-{stone}", points))
        world.ok("cutter", "diamonds", "transfer", {"asset_id": stone, "to_org": "jeweller"})
        sell(world, stone=stone)
    asset = world.query("diamonds", "asset", {"asset_id": "S2"})
    assert (asset["status"], asset["owner"], asset["country"], asset["kind"]) == (
        "sold",
        "jeweller",
        "US",
        "polished",
    )
    verdict = world.query("diamonds", "compliance", {"asset_id": "S2"})
    assert verdict["conflict_free"] is True and verdict["failures"] == []
    trace = world.query("diamonds", "trace", {"asset_id": "S2"})
    assert [node["asset_id"] for node in trace["nodes"]] == ["S2", "R1", "LOT-A", "P1", "P2"]
    assert trace["edges"] == [["LOT-A", "R1"], ["P1", "LOT-A"], ["P2", "LOT-A"], ["R1", "S2"]]
    assert [cert["cert_id"] for cert in trace["kp_certificates"]] == ["BW-2026-1"]
    assert [report["report_id"] for report in trace["grading_reports"]] == ["GIA-S2"]
    assert [mine["mine_id"] for mine in trace["mines"]] == ["M1"]
    assert {"debswana", "antwerp", "cutter", "gia", "jeweller", "kp-be"} <= {
        a["org_id"] for a in trace["actors"]
    }
    kinds = [event["kind"] for event in trace["nodes"][2]["events"]]
    assert kinds == ["merged_from", "shipped", "imported", "split"]
    # Mass balance across the whole chain: polished <= rough, rough conserved.
    assert world.query("diamonds", "asset", {"asset_id": "R2"})["carats_points"] == 3_000


# --- mines and extraction ---------------------------------------------------


def test_register_mine_needs_the_countrys_kp_authority() -> None:
    World().reject("kp-be", "diamonds", "register_mine", REGISTER, "unauthorized")


def test_a_regulator_may_register_a_mine() -> None:
    assert World().send("regulator", "diamonds", "register_mine", REGISTER).ok


def test_register_mine_needs_a_kp_participant_country() -> None:
    world = World()
    world.reject(
        "kp-zz",
        "diamonds",
        "register_mine",
        {"mine_id": "MZ", "country": "ZZ", "operator": "rogue"},
        "not_kp_participant",
    )


def test_mine_operator_must_be_in_the_mines_country() -> None:
    World().reject(
        "kp-bw", "diamonds", "register_mine", {**REGISTER, "operator": "antwerp"}, "wrong_location"
    )


def test_mine_ids_are_unique() -> None:
    world = extracted()
    world.reject("kp-bw", "diamonds", "register_mine", REGISTER, "duplicate")


def test_register_mine_with_unknown_operator() -> None:
    World().reject(
        "kp-bw", "diamonds", "register_mine", {**REGISTER, "operator": "ghost"}, "unknown_org"
    )


def test_only_the_operator_extracts() -> None:
    world = extracted()
    world.reject(
        "bw-trader",
        "diamonds",
        "extract",
        {"mine_id": "M1", "parcel_id": "P9", "carats_points": 5},
        "unauthorized",
    )


def test_extract_at_unknown_mine() -> None:
    World().reject(
        "debswana",
        "diamonds",
        "extract",
        {"mine_id": "M9", "parcel_id": "P9", "carats_points": 5},
        "unknown_mine",
    )


def test_extract_at_unaccredited_mine() -> None:
    world = extracted()
    world.reject(
        "kp-be",
        "diamonds",
        "set_mine_accreditation",
        {"mine_id": "M1", "accredited": False},
        "unauthorized",
    )
    world.ok("kp-bw", "diamonds", "set_mine_accreditation", {"mine_id": "M1", "accredited": False})
    world.reject(
        "debswana",
        "diamonds",
        "extract",
        {"mine_id": "M1", "parcel_id": "P9", "carats_points": 5},
        "mine_not_accredited",
    )


def test_extract_at_sanctioned_mine_or_country() -> None:
    world = extracted()
    world.ok(
        "regulator", "diamonds", "sanction", {"kind": "mine", "target": "M1", "reason": "abuses"}
    )
    world.reject(
        "debswana",
        "diamonds",
        "extract",
        {"mine_id": "M1", "parcel_id": "P9", "carats_points": 5},
        "sanctioned",
    )
    world.ok("regulator", "diamonds", "lift_sanction", {"kind": "mine", "target": "M1"})
    world.ok(
        "regulator",
        "diamonds",
        "sanction",
        {"kind": "country", "target": "BW", "reason": "suspended"},
    )
    world.reject(
        "debswana",
        "diamonds",
        "extract",
        {"mine_id": "M1", "parcel_id": "P9", "carats_points": 5},
        "sanctioned",
    )


def test_a_sanctioned_organisation_cannot_transact() -> None:
    world = imported()
    world.ok(
        "regulator",
        "diamonds",
        "sanction",
        {"kind": "org", "target": "antwerp", "reason": "laundering"},
    )
    world.reject(
        "antwerp",
        "diamonds",
        "split",
        {"asset_id": "P1", "outputs": stones(("A", 5_000), ("B", 5_000))},
        "sanctioned",
    )


def test_parcel_ids_are_unique() -> None:
    world = extracted()
    world.reject(
        "debswana",
        "diamonds",
        "extract",
        {"mine_id": "M1", "parcel_id": "P1", "carats_points": 5},
        "duplicate",
    )


# --- Kimberley Process certificates ------------------------------------------


def test_only_the_exporting_countrys_authority_issues() -> None:
    world = extracted()
    world.reject(
        "kp-be", "diamonds", "issue_kp_certificate", kp_args("BW-1", ["P1"], 10_000), "unauthorized"
    )
    world.reject(
        "regulator",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["P1"], 10_000),
        "unauthorized",
    )


def test_certificate_number_starts_with_the_issuing_country() -> None:
    world = extracted()
    world.reject(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BE-1", ["P1"], 10_000),
        "invalid_argument",
    )


def test_export_to_a_non_participant_is_refused() -> None:
    world = extracted()
    args = kp_args("BW-1", ["P1"], 10_000, destination_country="ZZ", importer="rogue")
    world.reject("kp-bw", "diamonds", "issue_kp_certificate", args, "not_kp_participant")


def test_export_to_a_sanctioned_country_is_refused() -> None:
    world = extracted()
    world.ok(
        "regulator",
        "diamonds",
        "sanction",
        {"kind": "country", "target": "BE", "reason": "suspended"},
    )
    world.reject(
        "kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-1", ["P1"], 10_000), "sanctioned"
    )


def test_importer_must_be_in_the_destination() -> None:
    world = extracted()
    world.reject(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["P1"], 10_000, importer="jeweller"),
        "wrong_location",
    )


def test_certificate_ids_are_unique() -> None:
    world = extracted()
    mine_and_extract(world, "P2", 100)
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-1", ["P1"], 10_000))
    world.reject(
        "kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-1", ["P2"], 100), "duplicate"
    )


def test_certificate_cannot_be_issued_already_expired() -> None:
    world = extracted()
    world.reject(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["P1"], 10_000, expiry_height=2),
        "expired_certificate",
    )


def test_certificate_carats_must_match_the_parcels() -> None:
    world = extracted()
    world.reject(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["P1"], 9_999),
        "carats_mismatch",
    )


def test_certificate_covers_only_the_exporters_rough_in_the_country() -> None:
    world = extracted()
    world.reject(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["P1"], 10_000, exporter="bw-trader"),
        "not_owner",
    )
    world.reject(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["P9"], 10_000),
        "unknown_asset",
    )


def test_certificate_refuses_polished_stones() -> None:
    world = graded_at_retailer()
    args = kp_args(
        "BE-1",
        ["S2"],
        1_500,
        exporter="antwerp",
        importer="debswana",
        origin_country="BE",
        destination_country="BW",
    )
    world.reject("kp-be", "diamonds", "issue_kp_certificate", args, "not_rough")


def test_certificate_refuses_a_tainted_parcel() -> None:
    world = extracted()
    world.ok(
        "regulator", "diamonds", "sanction", {"kind": "mine", "target": "M1", "reason": "abuses"}
    )
    receipt = world.reject(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["P1"], 10_000),
        "not_conflict_free",
    )
    assert "link P1 fails mine_sanctioned" in receipt.message


def test_only_the_exporter_ships() -> None:
    world = extracted()
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-1", ["P1"], 10_000))
    world.reject("bw-trader", "diamonds", "ship", {"cert_id": "BW-1"}, "unauthorized")


def test_shipping_under_an_expired_certificate_is_refused() -> None:
    world = extracted()
    world.ok(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["P1"], 10_000, expiry_height=5),
    )
    world.height = 6
    world.reject("debswana", "diamonds", "ship", {"cert_id": "BW-1"}, "expired_certificate")


def test_shipping_under_a_revoked_certificate_is_refused() -> None:
    world = extracted()
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-1", ["P1"], 10_000))
    world.ok(
        "kp-bw",
        "diamonds",
        "revoke_certificate",
        {"kind": "kp", "cert_id": "BW-1", "reason": "error"},
    )
    world.reject("debswana", "diamonds", "ship", {"cert_id": "BW-1"}, "revoked_certificate")


def test_a_certificate_covers_one_shipment() -> None:
    world = imported()
    world.reject("debswana", "diamonds", "ship", {"cert_id": "BW-0001"}, "certificate_used")
    world.reject(
        "kp-be",
        "diamonds",
        "confirm_import",
        {"cert_id": "BW-0001", "carats_points": 10_000},
        "certificate_used",
    )


def test_unknown_certificate() -> None:
    World().reject("debswana", "diamonds", "ship", {"cert_id": "BW-404"}, "unknown_certificate")


def test_import_must_match_the_certificates_carats() -> None:
    world = extracted()
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-1", ["P1"], 10_000))
    world.ok("debswana", "diamonds", "ship", {"cert_id": "BW-1"})
    world.reject(
        "kp-be",
        "diamonds",
        "confirm_import",
        {"cert_id": "BW-1", "carats_points": 9_900},
        "carats_mismatch",
    )
    assert world.query("diamonds", "asset", {"asset_id": "P1"})["status"] == "in_transit"


def test_only_the_destinations_authority_confirms_import() -> None:
    world = extracted()
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-1", ["P1"], 10_000))
    world.ok("debswana", "diamonds", "ship", {"cert_id": "BW-1"})
    world.reject(
        "kp-bw",
        "diamonds",
        "confirm_import",
        {"cert_id": "BW-1", "carats_points": 10_000},
        "unauthorized",
    )


def test_parcels_in_transit_cannot_be_used() -> None:
    world = extracted()
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-1", ["P1"], 10_000))
    world.ok("debswana", "diamonds", "ship", {"cert_id": "BW-1"})
    world.reject(
        "debswana",
        "diamonds",
        "transfer",
        {"asset_id": "P1", "to_org": "bw-trader"},
        "not_available",
    )


# --- custody, split, merge ----------------------------------------------------


def test_rough_cannot_cross_a_border_without_a_kp_certificate() -> None:
    world = extracted()
    receipt = world.reject(
        "debswana",
        "diamonds",
        "transfer",
        {"asset_id": "P1", "to_org": "antwerp"},
        "no_kp_certificate",
    )
    assert "P1" in receipt.message and "BW" in receipt.message and "BE" in receipt.message
    world.ok("debswana", "diamonds", "transfer", {"asset_id": "P1", "to_org": "bw-trader"})


def test_only_the_owner_transfers() -> None:
    world = extracted()
    world.reject(
        "bw-trader", "diamonds", "transfer", {"asset_id": "P1", "to_org": "bw-trader"}, "not_owner"
    )


def test_transfer_to_a_sanctioned_or_unknown_organisation() -> None:
    world = extracted()
    world.ok(
        "regulator", "diamonds", "sanction", {"kind": "org", "target": "bw-trader", "reason": "x"}
    )
    world.reject(
        "debswana", "diamonds", "transfer", {"asset_id": "P1", "to_org": "bw-trader"}, "sanctioned"
    )
    world.reject(
        "debswana", "diamonds", "transfer", {"asset_id": "P1", "to_org": "ghost"}, "unknown_org"
    )


def test_custody_only_transfer_keeps_the_owner() -> None:
    world = extracted()
    world.ok(
        "debswana",
        "diamonds",
        "transfer",
        {"asset_id": "P1", "to_org": "bw-trader", "custody_only": True},
    )
    asset = world.query("diamonds", "asset", {"asset_id": "P1"})
    assert (asset["owner"], asset["custodian"]) == ("debswana", "bw-trader")


def test_frozen_asset_refuses_every_action() -> None:
    world = extracted()
    world.reject("debswana", "diamonds", "freeze", {"asset_id": "P1"}, "unauthorized")
    world.ok("regulator", "diamonds", "freeze", {"asset_id": "P1", "reason": "investigation"})
    world.reject(
        "debswana", "diamonds", "transfer", {"asset_id": "P1", "to_org": "bw-trader"}, "frozen"
    )
    world.ok("regulator", "diamonds", "unfreeze", {"asset_id": "P1"})
    world.ok("debswana", "diamonds", "transfer", {"asset_id": "P1", "to_org": "bw-trader"})


def test_split_must_balance_exactly() -> None:
    world = extracted()
    world.reject(
        "debswana",
        "diamonds",
        "split",
        {"asset_id": "P1", "outputs": stones(("A", 6_000), ("B", 4_001))},
        "mass_balance",
    )
    world.reject(
        "debswana",
        "diamonds",
        "split",
        {"asset_id": "P1", "outputs": stones(("A", 6_000), ("B", 3_999))},
        "mass_balance",
    )
    world.ok(
        "debswana",
        "diamonds",
        "split",
        {"asset_id": "P1", "outputs": stones(("A", 6_000), ("B", 4_000))},
    )
    assert world.query("diamonds", "asset", {"asset_id": "P1"})["status"] == "consumed"
    world.reject(
        "debswana",
        "diamonds",
        "split",
        {"asset_id": "P1", "outputs": stones(("C", 5_000), ("D", 5_000))},
        "not_available",
    )


def test_split_outputs_must_be_new() -> None:
    world = extracted()
    mine_and_extract(world, "P2", 10)
    world.reject(
        "debswana",
        "diamonds",
        "split",
        {"asset_id": "P1", "outputs": stones(("P2", 6_000), ("B", 4_000))},
        "duplicate",
    )


def test_merge_needs_parcels_held_together() -> None:
    world = extracted()
    mine_and_extract(world, "P2", 500)
    world.ok(
        "debswana",
        "diamonds",
        "transfer",
        {"asset_id": "P2", "to_org": "bw-trader", "custody_only": True},
    )
    world.reject(
        "debswana",
        "diamonds",
        "merge",
        {"inputs": ["P1", "P2"], "output_id": "M"},
        "wrong_location",
    )


def test_merge_needs_the_owner_of_every_parcel() -> None:
    world = extracted()
    mine_and_extract(world, "P2", 500)
    world.ok("debswana", "diamonds", "transfer", {"asset_id": "P2", "to_org": "bw-trader"})
    world.reject(
        "debswana", "diamonds", "merge", {"inputs": ["P1", "P2"], "output_id": "M"}, "not_owner"
    )


# --- cutting, grading, sale ---------------------------------------------------


def test_only_a_manufacturer_cuts() -> None:
    world = extracted()
    world.reject(
        "debswana",
        "diamonds",
        "cut",
        {"asset_id": "P1", "stones": stones(("S1", 1_000))},
        "unauthorized",
    )


def test_polished_carats_never_exceed_the_rough() -> None:
    world = imported()
    world.reject(
        "antwerp",
        "diamonds",
        "cut",
        {"asset_id": "P1", "stones": stones(("S1", 6_000), ("S2", 4_001))},
        "mass_balance",
    )


def test_cutting_yield_is_capped() -> None:
    world = imported()
    # The default cap is 60%: 6,001 of 10,000 points is refused, 6,000 allowed.
    world.reject(
        "antwerp",
        "diamonds",
        "cut",
        {"asset_id": "P1", "stones": stones(("S1", 6_001))},
        "yield_exceeded",
    )
    world.ok(
        "antwerp",
        "diamonds",
        "cut",
        {"asset_id": "P1", "stones": stones(("S1", 3_000), ("S2", 3_000))},
    )


def test_polished_stones_are_not_cut_again_or_split() -> None:
    world = graded_at_retailer()
    world.reject(
        "antwerp", "diamonds", "cut", {"asset_id": "S2", "stones": stones(("S9", 100))}, "not_rough"
    )
    world.reject(
        "antwerp",
        "diamonds",
        "split",
        {"asset_id": "S2", "outputs": stones(("A", 750), ("B", 750))},
        "not_rough",
    )


def test_only_a_grading_lab_grades() -> None:
    world = imported()
    cut_and_grade(world)
    world.reject("kp-be", "diamonds", "grade", grading("S2", "R-S2", 1_500), "unauthorized")


def test_grading_needs_a_polished_stone_and_matching_carats() -> None:
    world = imported()
    world.reject("gia", "diamonds", "grade", grading("P1", "R-P1", 10_000), "not_polished")
    cut_and_grade(world)
    hand_to_lab(world, "antwerp", "S2")
    world.reject("gia", "diamonds", "grade", grading("S2", "R-S2", 1_499), "carats_mismatch")
    world.reject("gia", "diamonds", "grade", grading("S2", "R-S1", 1_500), "duplicate")


def test_only_a_retailer_sells() -> None:
    world = graded_at_retailer()
    world.reject(
        "antwerp",
        "diamonds",
        "sell",
        {"asset_id": "S2", "buyer_ref": "c", "price_cents": 1},
        "unauthorized",
    )


def test_sale_needs_a_grading_report() -> None:
    world = graded_at_retailer()
    world.ok("antwerp", "diamonds", "transfer", {"asset_id": "S2", "to_org": "jeweller"})
    sell(world, "not_graded", stone="S2")


def test_sale_refuses_a_revoked_grading_report() -> None:
    world = graded_at_retailer()
    world.reject(
        "jeweller",
        "diamonds",
        "revoke_certificate",
        {"kind": "grading", "cert_id": "R-S1", "reason": "x"},
        "unauthorized",
    )
    world.ok(
        "gia",
        "diamonds",
        "revoke_certificate",
        {"kind": "grading", "cert_id": "R-S1", "reason": "re-graded"},
    )
    sell(world, "revoked_certificate")


def test_sale_refuses_stones_from_a_mine_sanctioned_after_cutting() -> None:
    world = graded_at_retailer()
    world.ok(
        "regulator",
        "diamonds",
        "sanction",
        {"kind": "mine", "target": "M1", "reason": "forced labour"},
    )
    receipt = world.reject(
        "jeweller",
        "diamonds",
        "sell",
        {"asset_id": "S1", "buyer_ref": "c", "price_cents": 1},
        "not_conflict_free",
    )
    assert receipt.message == "link P1 fails mine_sanctioned: origin mine M1 is sanctioned"
    world.ok("regulator", "diamonds", "lift_sanction", {"kind": "mine", "target": "M1"})
    sell(world)


def test_only_regulators_sanction_and_sanctions_do_not_repeat() -> None:
    world = extracted()
    world.reject(
        "kp-bw",
        "diamonds",
        "sanction",
        {"kind": "mine", "target": "M1", "reason": "x"},
        "unauthorized",
    )
    world.ok("regulator", "diamonds", "sanction", {"kind": "mine", "target": "M1", "reason": "x"})
    world.reject(
        "regulator",
        "diamonds",
        "sanction",
        {"kind": "mine", "target": "M1", "reason": "x"},
        "duplicate",
    )
    world.reject(
        "regulator",
        "diamonds",
        "sanction",
        {"kind": "mine", "target": "M404", "reason": "x"},
        "unknown_mine",
    )


def test_compliance_names_every_failing_link_and_rule() -> None:
    world = graded_at_retailer()
    world.ok(
        "regulator",
        "diamonds",
        "revoke_certificate",
        {"kind": "kp", "cert_id": "BW-0001", "reason": "forged"},
    )
    world.ok(
        "regulator", "diamonds", "sanction", {"kind": "org", "target": "debswana", "reason": "x"}
    )
    world.ok("regulator", "diamonds", "freeze", {"asset_id": "S1", "reason": "seized"})
    verdict = world.query("diamonds", "compliance", {"asset_id": "S1"})
    assert verdict["conflict_free"] is False
    assert [(f["asset_id"], f["rule"]) for f in verdict["failures"]] == [
        ("S1", "asset_frozen"),
        ("P1", "kp_certificate_revoked"),
        ("P1", "org_sanctioned"),
    ]
    clean = world.query("diamonds", "compliance", {"asset_id": "S2"})
    assert [(f["asset_id"], f["rule"]) for f in clean["failures"]] == [
        ("P1", "kp_certificate_revoked"),
        ("P1", "org_sanctioned"),
    ]


def test_queries_refuse_with_the_same_codes() -> None:
    world = extracted()
    assert query(world.state, "diamonds", "trace", {"asset_id": "nope"})["error"] == "unknown_asset"
    assert query(world.state, "diamonds", "teleport", {})["error"] == "unknown_query"
    assert query(world.state, "gold", "trace", {})["error"] == "unknown_contract"
    assert (
        query(world.state, "diamonds", "asset", {"asset_id": "P1", "x": 1})["error"]
        == "invalid_argument"
    )


def test_walks_past_the_trace_limit_are_truncated_and_never_conflict_free() -> None:
    world = World(make_genesis(ContractLimits(max_trace_nodes=3)))
    for index in range(4):
        mine_and_extract(world, f"P{index}", 100)
    world.ok(
        "debswana", "diamonds", "merge", {"inputs": ["P0", "P1", "P2", "P3"], "output_id": "ALL"}
    )
    verdict = world.query("diamonds", "compliance", {"asset_id": "ALL"})
    assert verdict["truncated"] is True and verdict["conflict_free"] is False
    assert [f["rule"] for f in verdict["failures"]] == ["trace_truncated"]
    assert world.query("diamonds", "trace", {"asset_id": "ALL"})["truncated"] is True
    assert len(world.query("diamonds", "trace", {"asset_id": "ALL"})["nodes"]) == 3
    world.reject(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["ALL"], 400),
        "not_conflict_free",
    )


# --- re-checks after issue, rejected imports (review findings 1, 1b, 5) -------


def sanction(world: World, kind: str, target: str) -> None:
    world.ok("regulator", "diamonds", "sanction", {"kind": kind, "target": target, "reason": "x"})


def issued(expiry_height: int = 10_000) -> World:
    world = extracted()
    world.ok(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["P1"], 10_000, expiry_height=expiry_height),
    )
    return world


def shipped(expiry_height: int = 10_000) -> World:
    world = issued(expiry_height)
    world.ok("debswana", "diamonds", "ship", {"cert_id": "BW-1"})
    return world


CONFIRM = {"cert_id": "BW-1", "carats_points": 10_000}


def test_ship_refuses_an_importer_sanctioned_after_issue() -> None:
    world = issued()
    sanction(world, "org", "antwerp")
    receipt = world.reject("debswana", "diamonds", "ship", {"cert_id": "BW-1"}, "sanctioned")
    assert "antwerp" in receipt.message


def test_confirm_import_refuses_an_importer_sanctioned_after_issue() -> None:
    world = shipped()
    sanction(world, "org", "antwerp")
    world.reject("kp-be", "diamonds", "confirm_import", CONFIRM, "sanctioned")
    asset = world.query("diamonds", "asset", {"asset_id": "P1"})
    assert (asset["owner"], asset["country"], asset["status"]) == ("debswana", "BW", "in_transit")


def test_ship_refuses_a_destination_suspended_after_issue() -> None:
    world = issued()
    sanction(world, "country", "BE")
    receipt = world.reject("debswana", "diamonds", "ship", {"cert_id": "BW-1"}, "sanctioned")
    assert "BE" in receipt.message
    assert world.query("diamonds", "asset", {"asset_id": "P1"})["status"] == "active"


def test_ship_and_confirm_refuse_a_certificate_whose_issuer_was_sanctioned_after_issue() -> None:
    world = issued()
    sanction(world, "org", "kp-bw")
    world.reject("debswana", "diamonds", "ship", {"cert_id": "BW-1"}, "sanctioned")
    world = shipped()
    sanction(world, "org", "kp-bw")
    world.reject("kp-be", "diamonds", "confirm_import", CONFIRM, "sanctioned")


def test_reject_import_returns_parcels_stranded_by_an_expired_certificate() -> None:
    world = extracted()
    expiry = world.height + 2
    world.ok(
        "kp-bw",
        "diamonds",
        "issue_kp_certificate",
        kp_args("BW-1", ["P1"], 10_000, expiry_height=expiry),
    )
    world.ok("debswana", "diamonds", "ship", {"cert_id": "BW-1"})
    world.height = expiry + 1
    # Expiry applies at confirmation too: the importing authority confirms
    # against a valid certificate ...
    world.reject("kp-be", "diamonds", "confirm_import", CONFIRM, "expired_certificate")
    # ... and rejects the late shipment instead, so the parcel goes home.
    world.ok("kp-be", "diamonds", "reject_import", {"cert_id": "BW-1", "reason": "expired"})
    asset = world.query("diamonds", "asset", {"asset_id": "P1"})
    assert (asset["status"], asset["owner"], asset["custodian"], asset["country"]) == (
        "active",
        "debswana",
        "debswana",
        "BW",
    )
    assert asset["kp_certificates"] == ()
    assert world.query("diamonds", "kp_certificate", {"cert_id": "BW-1"})["status"] == "rejected"
    # The rejected certificate can never be used again ...
    world.reject("debswana", "diamonds", "ship", {"cert_id": "BW-1"}, "certificate_used")
    world.reject(
        "kp-be", "diamonds", "confirm_import", {**CONFIRM, "cert_id": "BW-1"}, "certificate_used"
    )
    world.reject(
        "kp-be", "diamonds", "reject_import", {"cert_id": "BW-1", "reason": "x"}, "certificate_used"
    )
    # ... but the parcel can be certified afresh and exported.
    export_to_belgium(world, "P1", 10_000, cert="BW-2")
    assert world.query("diamonds", "asset", {"asset_id": "P1"})["owner"] == "antwerp"


def test_a_regulator_rejects_an_import_that_can_no_longer_be_confirmed() -> None:
    world = shipped()
    world.ok(
        "kp-bw", "diamonds", "revoke_certificate", {"kind": "kp", "cert_id": "BW-1", "reason": "x"}
    )
    sanction(world, "country", "BE")  # the destination's authority cannot act now
    world.reject("kp-be", "diamonds", "confirm_import", CONFIRM, "sanctioned")
    world.reject(
        "kp-be", "diamonds", "reject_import", {"cert_id": "BW-1", "reason": "x"}, "sanctioned"
    )
    world.ok("regulator", "diamonds", "reject_import", {"cert_id": "BW-1", "reason": "suspended"})
    assert world.query("diamonds", "asset", {"asset_id": "P1"})["status"] == "active"


def test_reject_import_needs_the_destinations_authority_and_a_shipped_certificate() -> None:
    world = issued()
    reject = {"cert_id": "BW-1", "reason": "x"}
    world.reject("kp-be", "diamonds", "reject_import", reject, "certificate_used")
    world.ok("debswana", "diamonds", "ship", {"cert_id": "BW-1"})
    for outsider in ("kp-bw", "debswana", "antwerp"):
        world.reject(outsider, "diamonds", "reject_import", reject, "unauthorized")
    world.reject(
        "kp-be",
        "diamonds",
        "reject_import",
        {"cert_id": "BW-9", "reason": "x"},
        "unknown_certificate",
    )
    world.ok("kp-be", "diamonds", "confirm_import", CONFIRM)
    world.reject("kp-be", "diamonds", "reject_import", reject, "certificate_used")


def test_certificate_carries_the_hs_code_and_number_of_parcels() -> None:
    world = extracted()
    mine_and_extract(world, "P2", 5_000)
    args = kp_args("BW-1", ["P1", "P2"], 15_000)
    for bad in ("7102", "7103.10", 7102):
        world.reject(
            "kp-bw",
            "diamonds",
            "issue_kp_certificate",
            {**args, "hs_code": bad},
            "invalid_argument",
        )
    missing = {key: value for key, value in args.items() if key != "hs_code"}
    world.reject("kp-bw", "diamonds", "issue_kp_certificate", missing, "invalid_argument")
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", {**args, "hs_code": "7102.10"})
    cert = world.query("diamonds", "kp_certificate", {"cert_id": "BW-1"})
    assert (cert["hs_code"], cert["parcel_count"], cert["confirmed_by"]) == ("7102.10", 2, "")


# --- grading (review findings 2, 2b) -------------------------------------------


def test_a_revoked_grading_report_cannot_be_laundered_by_regrading() -> None:
    world = graded_at_retailer()
    world.ok(
        "regulator",
        "diamonds",
        "revoke_certificate",
        {"kind": "grading", "cert_id": "R-S1", "reason": "misgraded / synthetic"},
    )
    sell(world, "revoked_certificate")
    hand_to_lab(world, "jeweller", "S1")
    receipt = world.reject(
        "gia", "diamonds", "grade", grading("S1", "R-S1-again", 2_000), "revoked_certificate"
    )
    assert "final" in receipt.message
    verdict = world.query("diamonds", "compliance", {"asset_id": "S1"})
    assert [f["rule"] for f in verdict["failures"]] == ["grading_certificate_revoked"]
    sell(world, "revoked_certificate")


def test_a_lab_grades_only_a_stone_in_its_custody_and_only_once() -> None:
    orgs = dict(ORGS)
    orgs["lab2"] = ("IN", ("certifier",), ("grading_lab",))
    world = World(make_genesis(orgs=orgs))
    mine_and_extract(world)
    export_to_belgium(world)
    cut_and_grade(world)  # GIA report R-S1 on S1, owned by antwerp, held by gia
    regrade = {**grading("S1", "L2-S1", 2_000), "colour": "Z", "clarity": "I3"}
    receipt = world.reject("lab2", "diamonds", "grade", regrade, "not_owner")
    assert "held by gia" in receipt.message
    world.reject("lab2", "diamonds", "grade", grading("S2", "L2-S2", 1_500), "not_owner")
    # Even in its custody, a graded stone keeps its one report.
    hand_to_lab(world, "antwerp", "S1", lab="lab2")
    world.reject("lab2", "diamonds", "grade", regrade, "duplicate")
    world.reject("gia", "diamonds", "grade", grading("S1", "R-S1b", 2_000), "not_owner")
    assert world.query("diamonds", "asset", {"asset_id": "S1"})["grading_report"] == "R-S1"


# --- regulators and KP authorities under sanction (review findings 3, 4) -------


def two_regulators() -> World:
    orgs = dict(ORGS)
    orgs["regulator2"] = ("BW", ("regulator",), ())
    return World(make_genesis(orgs=orgs))


def test_a_sanctioned_regulator_cannot_lift_its_own_sanction_or_act() -> None:
    world = two_regulators()
    mine_and_extract(world)
    sanction(world, "org", "regulator2")
    world.reject(
        "regulator2",
        "diamonds",
        "lift_sanction",
        {"kind": "org", "target": "regulator2"},
        "unauthorized",
    )
    for method, args in (
        ("sanction", {"kind": "org", "target": "antwerp", "reason": "x"}),
        ("lift_sanction", {"kind": "org", "target": "antwerp"}),
        ("freeze", {"asset_id": "P1", "reason": "x"}),
        ("register_mine", {"mine_id": "M2", "country": "BW", "operator": "debswana"}),
    ):
        world.reject("regulator2", "diamonds", method, args, "sanctioned")
    world.ok("regulator", "diamonds", "lift_sanction", {"kind": "org", "target": "regulator2"})
    world.ok("regulator2", "diamonds", "freeze", {"asset_id": "P1", "reason": "x"})


def test_no_regulator_lifts_a_sanction_on_its_own_country() -> None:
    world = two_regulators()
    world.ok(
        "regulator2", "diamonds", "sanction", {"kind": "country", "target": "CH", "reason": "x"}
    )
    world.reject(
        "regulator",
        "diamonds",
        "lift_sanction",
        {"kind": "country", "target": "CH"},
        "unauthorized",
    )
    world.ok("regulator2", "diamonds", "lift_sanction", {"kind": "country", "target": "CH"})


def test_a_sanctioned_kp_authority_taints_the_crossings_it_validated() -> None:
    for authority, verb in (("kp-bw", "issued"), ("kp-be", "confirmed")):
        world = imported()
        cert = world.query("diamonds", "kp_certificate", {"cert_id": "BW-0001"})
        assert (cert["issuer"], cert["confirmed_by"]) == ("kp-bw", "kp-be")
        sanction(world, "org", authority)
        verdict = world.query("diamonds", "compliance", {"asset_id": "P1"})
        assert verdict["conflict_free"] is False
        assert verdict["failures"] == [
            {
                "asset_id": "P1",
                "rule": "kp_authority_sanctioned",
                "detail": f"KP authority {authority} that {verb} certificate BW-0001 is sanctioned",
            }
        ]
