"""diamonds.provenance_scope and diamonds.attestations: what a provenance rests on.

These are the pack's own answers that provenance bundles are built from and
checked against (node/api/bundle.py, node/sdk/bundle_verify.py), so each
test pins one rule of the scope: which transactions, which records, who
vouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts_testkit import (
    World,
    cut_and_grade,
    export_to_belgium,
    kp_args,
    mine_and_extract,
    stones,
)

from contracts import diamond_scope
from contracts.queries import query
from contracts.receipt import Receipt


def _scope(world: World, asset_id: str) -> dict[str, Any]:
    return world.query("diamonds", "provenance_scope", {"asset_id": asset_id})


def _record(kind: str, attributes: dict[str, object], height: int, at: str) -> dict[str, object]:
    return {"contract": "diamonds", "kind": kind, "attributes": attributes, "height": height, "at": at}  # fmt: skip


class Recording(World):
    """A world that keeps every receipt with the height it was executed at."""

    def __init__(self) -> None:
        super().__init__()
        self.receipts: list[tuple[int, Receipt]] = []

    def send(
        self, org: str, contract: str, method: str, args: Mapping[str, object], **overrides: Any
    ) -> Receipt:
        height = self.height
        receipt = super().send(org, contract, method, args, **overrides)
        self.receipts.append((height, receipt))
        return receipt

    def ids(self, *heights: int) -> list[bytes]:
        return sorted(receipt.tx_id for height, receipt in self.receipts if height in heights)


def test_a_stone_s_scope_is_its_upstream_events_and_their_records() -> None:
    world = Recording()
    mine_and_extract(world, "P1", 10_000)  # heights 1 (mine), 2 (extract)
    export_to_belgium(world, "P1", 10_000)  # 3 issue, 4 ship, 5 confirm
    cut_and_grade(world, "P1")  # 6 cut, 7 hand to lab, 8 grade
    world.ok("antwerp", "diamonds", "transfer", {"asset_id": "S2", "to_org": "cutter"})  # 9
    scope = _scope(world, "S1")
    assert scope["assets"] == ["P1", "S1"]
    # The sibling's transfer is no part of S1's history; the cut that made both is.
    assert scope["tx_ids"] == world.ids(2, 4, 5, 6, 7, 8)
    assert scope["records"] == [
        _record("mine_registered", {"mine_id": "M1"}, 1, "height"),
        _record("kp_certificate_issued", {"cert_id": "BW-0001"}, 3, "height"),
    ]
    assert scope["truncated"] is False


def test_sanctions_revocations_and_withdrawn_accreditation_in_force_are_records() -> None:
    world = Recording()
    mine_and_extract(world, "P1", 10_000)
    export_to_belgium(world, "P1", 10_000)
    cut_and_grade(world, "P1")
    world.ok("regulator", "diamonds", "sanction", {"kind": "country", "target": "BE", "reason": "r"})  # fmt: skip
    sanctioned_at = world.height - 1
    world.ok("regulator", "diamonds", "sanction", {"kind": "org", "target": "kp-zz", "reason": "r"})  # fmt: skip
    world.ok("kp-bw", "diamonds", "set_mine_accreditation", {"mine_id": "M1", "accredited": False})  # fmt: skip
    world.ok("regulator", "diamonds", "revoke_certificate", {"kind": "grading", "cert_id": "R-S1", "reason": "r"})  # fmt: skip
    records = _scope(world, "S1")["records"]
    assert _record("sanctioned", {"kind": "country", "target": "BE"}, sanctioned_at, "height") in records  # fmt: skip
    assert _record("mine_accreditation", {"mine_id": "M1", "accredited": False}, 1, "last_from") in records  # fmt: skip
    assert _record("certificate_revoked", {"kind": "grading", "cert_id": "R-S1"}, 8, "first_from") in records  # fmt: skip
    # kp-zz never touched S1's history: its sanction does not bear on S1.
    assert all(record["attributes"].get("target") != "kp-zz" for record in records)
    # A lifted sanction is no longer a record of the verdict.
    world.ok("regulator", "diamonds", "lift_sanction", {"kind": "country", "target": "BE"})
    assert all(r["kind"] != "sanctioned" for r in _scope(world, "S1")["records"])


def test_co_certified_parcels_and_merge_inputs_are_in_scope() -> None:
    world = World()
    mine_and_extract(world, "P1", 6_000)
    mine_and_extract(world, "P2", 4_000)
    mine_and_extract(world, "P3", 2_000)
    world.ok("debswana", "diamonds", "merge", {"inputs": ["P1", "P2"], "output_id": "LOT"})
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-C1", ["LOT", "P3"], 12_000))
    world.ok("debswana", "diamonds", "ship", {"cert_id": "BW-C1"})
    world.ok("kp-be", "diamonds", "confirm_import", {"cert_id": "BW-C1", "carats_points": 12_000})
    world.ok("antwerp", "diamonds", "cut", {"asset_id": "P3", "stones": stones(("S3", 1_000))})
    # S3 comes from P3 alone, but P3 crossed under C1 with LOT, which was merged from P1 and P2.
    assert _scope(world, "S3")["assets"] == ["LOT", "P1", "P2", "P3", "S3"]


def test_the_walk_stops_at_max_nodes_and_says_so() -> None:
    world = World()
    mine_and_extract(world, "P1", 10_000)
    world.ok("debswana", "diamonds", "split", {"asset_id": "P1", "outputs": stones(("A", 5_000), ("B", 5_000))})  # fmt: skip
    assert diamond_scope.scope(world.state, "A", 2)["truncated"] is False
    assert diamond_scope.scope(world.state, "A", 1)["truncated"] is True
    assert diamond_scope.attestations(world.state, "A", 1)["truncated"] is True


def test_an_unknown_asset_is_refused() -> None:
    world = World()
    for name in ("provenance_scope", "attestations"):
        answer = query(world.state, "diamonds", name, {"asset_id": "NOPE"})
        assert answer["ok"] is False and answer["error"] == "unknown_asset"


def test_attestations_name_who_vouched_for_mine_and_crossing() -> None:
    world = Recording()
    mine_and_extract(world, "P1", 10_000)
    world.ok("regulator", "diamonds", "register_mine", {"mine_id": "M2", "country": "BW", "operator": "debswana"})  # fmt: skip
    world.ok("debswana", "diamonds", "extract", {"mine_id": "M2", "parcel_id": "P2", "carats_points": 1_000})  # fmt: skip
    world.ok("debswana", "diamonds", "merge", {"inputs": ["P1", "P2"], "output_id": "LOT"})
    export_to_belgium(world, "LOT", 11_000)
    confirm_height, confirm = world.receipts[-1]
    answer = world.query("diamonds", "attestations", {"asset_id": "LOT"})
    assert answer["mine_registrations"] == [
        {
            "mine_id": "M1", "country": "BW", "registered_by": "kp-bw", "registered_height": 1,
            "entitled_as": "kp_authority",
            "registration": _record("mine_registered", {"mine_id": "M1"}, 1, "height"),
        },
        {
            "mine_id": "M2", "country": "BW", "registered_by": "regulator", "registered_height": 3,
            "entitled_as": "regulator",
            "registration": _record("mine_registered", {"mine_id": "M2"}, 3, "height"),
        },
    ]  # fmt: skip
    assert answer["kp_crossings"] == [
        {
            "cert_id": "BW-0001", "parcels": ["LOT"], "origin_country": "BW",
            "destination_country": "BE", "issuer": "kp-bw", "issuer_is_authority": True,
            "issued_height": confirm_height - 2, "confirmed_by": "kp-be",
            "confirmer_is_authority": True, "confirmed_height": confirm_height,
            "confirmed_tx_id": confirm.tx_id,
        }
    ]  # fmt: skip


def test_a_crossing_not_yet_confirmed_is_not_attested() -> None:
    world = World()
    mine_and_extract(world, "P1", 10_000)
    world.ok("kp-bw", "diamonds", "issue_kp_certificate", kp_args("BW-C1", ["P1"], 10_000))
    world.ok("debswana", "diamonds", "ship", {"cert_id": "BW-C1"})
    answer = world.query("diamonds", "attestations", {"asset_id": "P1"})
    assert answer["kp_crossings"] == []
    assert [r["kind"] for r in _scope(world, "P1")["records"]] == [
        "mine_registered",
        "kp_certificate_issued",
    ]
