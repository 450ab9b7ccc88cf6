"""The node itself: status, validators, liveness, the event stream, metrics, this description."""

from __future__ import annotations

from node.api.openapi.common import (
    BOOL,
    INT64,
    JSON_TYPE,
    OPENAPI_PATH,
    STR,
    WEBSOCKET_UPGRADE,
    WHOLE,
    Schema,
    array,
    error_responses,
    nullable,
    obj,
    ok,
    operation,
    path_param,
    query_param,
    ref,
)


def _status_common() -> dict[str, Schema]:
    """The status fields validators and observers share."""
    return {
        "chain_id": STR,
        "node": STR,
        "org_id": STR,
        "height": INT64,
        "block_hash": {
            "type": "string",
            "pattern": "^([0-9a-f]{64})?$",
            "description": "Empty at height 0.",
        },
        "state_root": ref("Digest"),
        "mempool": obj({"size": INT64}),
        "validator_set": ref("ValidatorSet"),
        "alerts": array(
            obj(
                {
                    "kind": STR,
                    "validator": STR,
                    "height": INT64,
                    "message": STR,
                    "time_ms": INT64,
                }
            ),
            "What this node refused or found wrong, latest last: an observer's rejected "
            "blocks (kind names the check, validator who served it) and "
            "`execution_diverged` (validator: who served the certified results).",
        ),
        "divergence": nullable(ref("Divergence")),
    }


def _validator_status() -> Schema:
    return obj(
        {
            **_status_common(),
            "role": {"const": "validator"},
            "replica_id": INT64,
            "view": INT64,
            "primary": INT64,
            "active": BOOL,
            "peers": {
                "type": "object",
                "additionalProperties": obj({"connected": BOOL, "queued": INT64, "dropped": INT64}),
            },
        }
    )


def _observer_status() -> Schema:
    return obj(
        {
            **_status_common(),
            "role": {"const": "observer"},
            "replica_id": {"type": "null"},
            "following": obj(
                {
                    "source": STR,
                    "mode": STR,
                    "source_height": INT64,
                    "certified_height": INT64,
                    "certified_by": STR,
                    "lag_blocks": INT64,
                }
            ),
        }
    )


def node_schemas() -> dict[str, Schema]:
    """The validator set, the node's status (a validator's or an observer's), liveness."""
    return {
        "Validator": obj(
            {
                "replica_id": INT64,
                "name": STR,
                "org_id": STR,
                "public_key": ref("PublicKey"),
            }
        ),
        "ValidatorSet": obj(
            {"chain_id": STR, "quorum": INT64, "validators": array(ref("Validator"))}
        ),
        "Status": {
            "oneOf": [_validator_status(), _observer_status()],
            "description": "A validator's or an observer's.",
        },
        "Divergence": obj(
            {
                "height": INT64,
                "detected_height": INT64,
                "kind": {
                    "type": "string",
                    "enum": ["receipt", "state_root", "beyond_search", "unnamed"],
                },
                "source": STR,
                "message": STR,
                "tx_id": nullable(ref("Digest")),
                "index": nullable(INT64),
                "own": nullable(ref("ReceiptLeaf")),
                "certified": nullable(ref("ReceiptLeaf")),
            },
            "Why this node stopped executing: its results at `height` differ from the "
            "certified ones (node/runtime/divergence.py); `receipt` names the first "
            "transaction it executed differently, with its own and the certified outcome.",
        ),
        "Health": obj({"ok": {"const": True}, "node": STR, "height": INT64}),
        "ValidatorHistory": obj(
            {"changes": array(ref("StateValue")), "more": BOOL},
            "Each write of the validator-set record (key m/validators) above `after`, in "
            "height order: its value at the height whose block wrote it, the state proof "
            "taken when that block executed, and the anchor certifying that height's state "
            "root (null, ending the page, while the certifying block has not come).  "
            "`more`: later changes exist; ask again with after = the last height.  Empty "
            "on a chain whose validator set is not governed.",
        ),
    }


def _events() -> Schema:
    """GET /v1/events: committed blocks pushed as JSON frames over a websocket."""
    return operation(
        "events",
        "node",
        "The live block stream (websocket)",
        {
            "101": {
                "description": "Switching to the websocket protocol.  Each text frame is "
                "one JSON EventFrame (components/schemas/EventFrame), blocks in order from "
                "from_height.  A subscriber that falls subscriber_queue_blocks behind is "
                "closed with 1013 and resumes from its last height.",
                "x-websocket-frame": ref("EventFrame"),
            },
            **error_responses(("bad_request", "too_many_subscribers")),
        },
        [
            query_param(
                "from_height", WHOLE, "Replay stored blocks from here (default: the next)."
            ),
            WEBSOCKET_UPGRADE,
        ],
        description="A GET that is not a websocket upgrade answers 400 `bad_request`; a node "
        "serving max_subscribers streams answers 503 `too_many_subscribers`.",
    )


def node_ops() -> dict[str, Schema]:
    """A key's nonces, the event stream, and what the node says about itself."""
    return {
        "/v1/nonce/{sender}": {
            "get": operation(
                "nonce",
                "transactions",
                "A key's committed and pending next nonce",
                {"200": ok(ref("Nonce"), "The nonces."), **error_responses(("bad_request",))},
                [path_param("sender", ref("PublicKey"), "The key.", "00" * 32)],
            )
        },
        "/v1/events": {"get": _events()},
        "/v1/status": {
            "get": operation(
                "status",
                "node",
                "The node's role, view, height, peers and mempool",
                {"200": ok(ref("Status"), "The status."), **error_responses(())},
            )
        },
        "/v1/validators": {
            "get": operation(
                "validators",
                "node",
                "The validator set",
                {"200": ok(ref("ValidatorSet"), "The set."), **error_responses(())},
            )
        },
        "/v1/validators/history": {
            "get": operation(
                "validatorHistory",
                "node",
                "The validator-set changes since genesis, each proven and certified",
                {
                    "200": ok(ref("ValidatorHistory"), "The changes."),
                    **error_responses(("bad_request",)),
                },
                [
                    query_param(
                        "after",
                        WHOLE,
                        "Only changes at heights above this one (default 0).  At most the "
                        "node's max_validator_changes_per_page (16 by default) per answer.",
                    ),
                ],
                description="400 `bad_request` when after is not a whole number.",
            )
        },
        "/healthz": {
            "get": operation(
                "healthz",
                "node",
                "Liveness",
                {
                    "200": ok(ref("Health"), "The node is live."),
                    **error_responses(("unavailable",)),
                },
                description="503 `unavailable` once the replica task has stopped.",
            )
        },
        **_documents(),
    }


def _documents() -> dict[str, Schema]:
    """The two answers that are not the API's objects: metrics and this description."""
    return {
        "/metrics": {
            "get": operation(
                "metrics",
                "node",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "The Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": STR}},
                    },
                    **error_responses(()),
                },
            )
        },
        OPENAPI_PATH: {
            "get": operation(
                "openapi",
                "node",
                "This description",
                {
                    "200": {
                        "description": "The OpenAPI 3.1 document (always JSON).",
                        "content": {JSON_TYPE: {"schema": {"type": "object"}}},
                    },
                    **error_responses(()),
                },
            )
        },
    }
