"""A regulator's audit views: noncompliant assets, sanctions, activity."""

from __future__ import annotations

from node.api.openapi.common import (
    BOOL,
    INT64,
    STR,
    STRS,
    WHOLE,
    Schema,
    array,
    error_responses,
    obj,
    ok,
    operation,
    query_param,
    result_of,
)
from node.api.openapi.queries import COMPLIANCE_FAILURE


def _sanctions() -> Schema:
    """Sanctions in force and revoked credentials, each with the assets it taints."""
    return obj(
        {
            "sanctions": array(
                obj(
                    {
                        "kind": STR,
                        "target": STR,
                        "reason": STR,
                        "imposed_by": STR,
                        "height": INT64,
                        "tainted": STRS,
                    }
                )
            ),
            "revocations": array(
                obj(
                    {
                        "kind": {
                            "type": "string",
                            "enum": ["kp_certificate", "grading", "food_certificate", "key"],
                        },
                        "tainted": STRS,
                    },
                    "A key, KP certificate or grading report carries id, org_id and "
                    "height; a food certificate carries its record's fields.",
                )
            ),
        }
    )


def audit_schemas() -> dict[str, Schema]:
    """What each audit view answers."""
    return {
        "Noncompliant": obj(
            {
                "assets": array(
                    obj(
                        {
                            "asset_id": STR,
                            "owner": STR,
                            "status": STR,
                            "failures": array(COMPLIANCE_FAILURE),
                        }
                    )
                ),
                "checked": INT64,
                "truncated": BOOL,
            }
        ),
        "Sanctions": _sanctions(),
        "Activity": obj(
            {
                "from": INT64,
                "to": INT64,
                "orgs": {
                    "type": "object",
                    "additionalProperties": obj(
                        {
                            "txs": INT64,
                            "ok": INT64,
                            "rejected": INT64,
                            "methods": {"type": "object", "additionalProperties": INT64},
                        }
                    ),
                },
                "truncated": BOOL,
            }
        ),
    }


def audit_ops() -> dict[str, Schema]:
    def audit(operation_id: str, summary: str, name: str, params: list[Schema]) -> Schema:
        errors = error_responses(("bad_request",)) if params else error_responses(())
        return operation(
            operation_id,
            "audit",
            summary,
            {"200": ok(result_of(name), "The view; `truncated` when it stopped early."), **errors},
            params,
        )

    return {
        "/v1/audit/noncompliant": {
            "get": audit(
                "auditNoncompliant",
                "Diamonds that exist and fail compliance",
                "Noncompliant",
                [query_param("limit", WHOLE, "At most this many assets.")],
            )
        },
        "/v1/audit/sanctions": {
            "get": audit(
                "auditSanctions",
                "Sanctions and revocations, with the assets tainted",
                "Sanctions",
                [],
            )
        },
        "/v1/audit/activity": {
            "get": audit(
                "auditActivity",
                "Transactions per organisation and method",
                "Activity",
                [
                    query_param("from", WHOLE, "First height."),
                    query_param("to", WHOLE, "Last height (default: the tip)."),
                ],
            )
        },
    }
