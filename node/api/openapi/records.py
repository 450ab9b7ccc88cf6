"""The contracts' records as queries return them: assets, organisations, mines, certificates."""

from __future__ import annotations

from node.api.openapi.common import BOOL, INT64, STR, STRS, Schema, array, obj, ref


def asset_schemas() -> dict[str, Schema]:
    """A diamond, a food lot, and one event in an asset's history."""
    diamond: dict[str, Schema] = {
        "asset_id": STR,
        "kind": {"type": "string", "enum": ["rough", "polished"]},
        "carats_points": INT64,
        "owner": STR,
        "custodian": STR,
        "country": STR,
        "status": {"type": "string", "enum": ["active", "in_transit", "consumed", "sold"]},
        "frozen": BOOL,
        "parents": STRS,
        "mine_id": STR,
        "kp_certificates": STRS,
        "grading_report": STR,
        "actors": STRS,
        "event_count": INT64,
        "created_height": INT64,
    }
    lot: dict[str, Schema] = {
        "lot_id": STR,
        "product": STR,
        "mass_grams": INT64,
        "owner": STR,
        "custodian": STR,
        "status": {"type": "string", "enum": ["active", "in_transit", "consumed"]},
        "destination": STR,
        "recalled": BOOL,
        "recall_reason": STR,
        "parents": STRS,
        "certificates": STRS,
        "event_count": INT64,
        "created_height": INT64,
    }
    asset_event = obj(
        {
            "seq": INT64,
            "kind": STR,
            "height": INT64,
            "time_ms": INT64,
            "tx_id": ref("Digest"),
            "actor": STR,
            "attributes": {"type": "object"},
        }
    )
    return {
        "Diamond": obj(diamond),
        "Lot": obj(lot),
        "AssetEvent": asset_event,
    }


def registry_schemas() -> dict[str, Schema]:
    """Who and what the assets refer to: organisations, mines, KP certificates, grading."""
    return {
        "Org": obj(
            {
                "org_id": STR,
                "name": STR,
                "country": STR,
                "roles": STRS,
                "scopes": STRS,
                "keys": array(ref("PublicKey")),
            }
        ),
        "Mine": obj(
            {
                "mine_id": STR,
                "country": STR,
                "operator": STR,
                "accredited": BOOL,
                "registered_by": STR,
                "registered_height": INT64,
            }
        ),
        "KpCertificate": obj(
            {
                "cert_id": STR,
                "issuer": STR,
                "exporter": STR,
                "importer": STR,
                "origin_country": STR,
                "destination_country": STR,
                "parcels": STRS,
                "parcel_count": INT64,
                "hs_code": STR,
                "carats_points": INT64,
                "value_cents": INT64,
                "expiry_height": INT64,
                "status": {
                    "type": "string",
                    "enum": ["issued", "shipped", "completed", "rejected"],
                },
                "revoked": BOOL,
                "issued_height": INT64,
                "confirmed_by": STR,
            }
        ),
        "GradingReport": obj(
            {
                "report_id": STR,
                "lab": STR,
                "asset_id": STR,
                "carats_points": INT64,
                "colour": STR,
                "clarity": STR,
                "cut_grade": STR,
                "revoked": BOOL,
                "issued_height": INT64,
            }
        ),
    }
