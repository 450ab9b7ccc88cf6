"""The client API's OpenAPI 3.1 description, built here and kept as ``node/api/openapi.json``.

Theory of operation
-------------------
:func:`build_spec` is the source of truth: a few helpers build every
operation of the client API (``node/api/routes.py``, ``node/api/bundle.py``, the
dashboard) with its parameters, request and response bodies and, per
status, the error codes it can answer.  ``python -m node.api.openapi`` writes
the result to ``node/api/openapi.json``, which ships as package data; every node
serves that file at ``GET /v1/openapi.json`` (:func:`spec_bytes`).  The
tests check that the file is exactly what :func:`build_spec` gives, that it
is valid OpenAPI 3.1, that its paths are the routes a node serves, and
(with schemathesis, against a live node) that the node's answers conform.

Every error answer is one shared ``Error`` schema, ``{"error": {"code",
"message"}}``; each error response also lists its possible codes as
``x-error-codes``, so a machine can check a code against its status.

Bytes are lowercase hex in JSON.  ``Accept: application/msgpack`` gives the
same objects in canonical msgpack with those fields as raw bytes; each
response lists that media type with the JSON schema, which is what the
msgpack body is once its bytes are written as hex.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from importlib import resources
from typing import Any

from node.api.errors import STATUS_OF

JSON_TYPE = "application/json"
MSGPACK = "application/msgpack"
SPEC_NAME = "openapi.json"
OPENAPI_PATH = "/v1/openapi.json"
Schema = dict[str, Any]

# Every error code a client can receive, with its HTTP status: the node's
# own table, so the spec cannot promise a status the node would not give.
ERROR_STATUS: dict[str, int] = dict(STATUS_OF)

_REASONS = {
    400: "Bad request",
    401: "The signature does not verify",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "The body did not arrive in time",
    409: "Nonce conflict",
    413: "Too large",
    415: "Unsupported media type",
    429: "Too many requests: retry after Retry-After seconds",
    500: "Internal error (a bug: please report it)",
    503: "Unavailable",
}

# Codes that can come from a contract's argument checks and queries.
_QUERY_400 = ("unknown_contract", "unknown_query", "invalid_argument", "limit_exceeded")
_QUERY_404 = ("unknown_asset", "unknown_mine", "unknown_org", "unknown_certificate")
# Refusals of one transaction at admission (decode, stateless checks, mempool).
_ADMISSION_400 = (
    "malformed_msgpack",
    "malformed_tx",
    "float_not_allowed",
    "wrong_chain",
    "expired",
    "unknown_contract",
    "unknown_method",
    "invalid_argument",
    "limit_exceeded",
)
_ADMISSION_403 = ("unknown_key", "key_revoked", "read_only")
_ADMISSION_409 = ("nonce_used", "nonce_conflict", "nonce_gap")
_ADMISSION_429 = ("mempool_full", "sender_queue_full")
_JSON_BODY_400 = ("malformed_json", "duplicate_key", "float_not_allowed")

# ---------------------------------------------------------------- schemas

_WHOLE = {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999}
_INT64 = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(
    properties: dict[str, Schema], description: str = "", optional: tuple[str, ...] = ()
) -> Schema:
    """An object whose properties are all required but ``optional``; others may be added."""
    schema: Schema = {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


def _closed(
    properties: dict[str, Schema], description: str = "", optional: tuple[str, ...] = ()
) -> Schema:
    """An object with exactly these properties (request bodies and the error shape)."""
    return {**_obj(properties, description, optional), "additionalProperties": False}


def _list(items: Schema, description: str = "") -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if description:
        schema["description"] = description
    return schema


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_STRS = _list(_STR)


def _schemas() -> dict[str, Schema]:
    return {
        **_scalar_schemas(),
        **_chain_schemas(),
        **_tx_schemas(),
        **_record_schemas(),
        **_query_schemas(),
        **_node_schemas(),
    }


def _scalar_schemas() -> dict[str, Schema]:
    return {
        "ErrorBody": _closed(
            {
                "code": {
                    "type": "string",
                    "enum": sorted(ERROR_STATUS),
                    "description": "Stable: clients match on it.",
                },
                "message": {"type": "string", "description": "For people: may change."},
            }
        ),
        "Error": _closed({"error": _ref("ErrorBody")}, "Every error answer of the API."),
        "Hex": {
            "type": "string",
            "pattern": "^([0-9a-f]{2})*$",
            "description": "Bytes as lowercase hex (raw bytes in msgpack).",
        },
        "Digest": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "A SHA-256 digest as lowercase hex (raw bytes in msgpack).",
        },
        "PublicKey": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "An Ed25519 public key as lowercase hex (raw bytes in msgpack).",
        },
        "Signature": {
            "type": "string",
            "pattern": "^[0-9a-f]{128}$",
            "description": "An Ed25519 signature as lowercase hex (raw bytes in msgpack).",
        },
        "Identifier": {
            "type": "string",
            "pattern": "^[A-Za-z0-9._:-]{1,64}$",
            "description": "An organisation, asset, lot or certificate id: 1 to the chain's "
            "max_id_len (64 by default) of letters, digits and . _ : -",
        },
    }


def _chain_schemas() -> dict[str, Schema]:
    return {
        "BlockHeader": _obj(
            {
                "chain_id": _STR,
                "height": _INT64,
                "prev_block_hash": _ref("Digest"),
                "time_ms": _INT64,
                "proposer_time_ms": _INT64,
                "requests_root": _ref("Digest"),
                "request_count": _INT64,
                "executed_height": _INT64,
                "executed_state_root": _ref("Digest"),
            }
        ),
        "SignedHeader": _obj(
            {
                "chain_id": _STR,
                "height": _INT64,
                "proposer_time_ms": _INT64,
                "requests_root": _ref("Digest"),
                "request_count": _INT64,
                "executed_height": _INT64,
                "executed_state_root": _ref("Digest"),
            },
            "The header fields a commit certificate covers (a bundle carries only these).",
        ),
        "Commit": _obj(
            {
                "view": _INT64,
                "height": _INT64,
                "digest": _ref("Digest"),
                "sender": _INT64,
                "signature": _ref("Signature"),
            },
            "One validator's COMMIT vote; a quorum of them is a block's certificate.",
        ),
        "BlockTx": _obj(
            {
                "tx_id": _ref("Digest"),
                "status": {"type": "string", "enum": ["ok", "rejected"]},
                "code": _nullable(_STR),
            }
        ),
        "Block": _obj(
            {
                "height": _INT64,
                "hash": _ref("Digest"),
                "header": _ref("BlockHeader"),
                "certificate": _list(_ref("Commit")),
                "txs": _list(_ref("BlockTx")),
            }
        ),
        "BlockPage": _obj({"blocks": _list(_ref("Block"))}),
        "FullBlock": _obj(
            {
                "header": _ref("BlockHeader"),
                "certificate": _list(_ref("Hex"), "Each COMMIT in its canonical wire bytes."),
                "payloads": _list(_ref("Hex"), "Each transaction envelope, in block order."),
            }
        ),
        "ChainTip": _obj(
            {
                "header": _ref("BlockHeader"),
                "certificate": _list(_ref("Hex"), "Each COMMIT in its canonical wire bytes."),
            },
            "The node's latest block without its payloads: a height its commit certificate proves.",
        ),
        "ChainPage": _obj(
            {
                "height": _INT64,
                "blocks": _list(_ref("FullBlock")),
                "tip": _nullable(_ref("ChainTip")),
            },
            "Full blocks for observers (msgpack only; bytes raw).  `height` is a bare "
            "claim; `tip`, present when the node has a block above the page's last, "
            "proves its height.",
            optional=("tip",),
        ),
        "Event": _obj(
            {"contract": _STR, "kind": _STR, "attributes": {"type": "object"}},
            "Something a transaction did.",
        ),
        "EventFrame": _obj(
            {
                "type": {"const": "block"},
                "height": _INT64,
                "hash": _ref("Digest"),
                "time_ms": _INT64,
                "txs": _list(
                    _obj(
                        {
                            "tx_id": _ref("Digest"),
                            "status": {"type": "string", "enum": ["ok", "rejected"]},
                            "code": _nullable(_STR),
                            "events": _list(_ref("Event")),
                        }
                    )
                ),
            },
            "One websocket text frame of GET /v1/events: a committed block (JSON).",
        ),
    }


def _tx_schemas() -> dict[str, Schema]:
    fields = {
        "chain_id": _STR,
        "sender": _ref("PublicKey"),
        "nonce": _INT64,
        "contract": _STR,
        "method": _STR,
        "args": {
            "type": "object",
            "description": "The method's arguments; integers only (no floats).",
        },
        "expiry_height": _nullable(_INT64),
        "signature": _ref("Signature"),
    }
    optional = ("args", "expiry_height")
    return {
        # The JSON forms ignore fields they do not know (api.py reads the ones
        # it needs); a msgpack envelope must hold exactly its fields.
        "TxFields": _obj(
            fields,
            "A signed transaction's fields (contracts.tx); other fields are ignored.",
            optional,
        ),
        "TxEnvelope": _closed(
            fields,
            "The envelope bytes (contracts.tx.encode_tx): exactly the transaction's fields "
            "as a canonical msgpack map, sender and signature raw.",
            optional,
        ),
        "TxSubmission": {
            "description": "The envelope, or the transaction's fields; `envelope` wins when "
            "both are present, and other fields are ignored.",
            "anyOf": [
                _obj({"envelope": _ref("Hex")}, "The envelope bytes (contracts.tx.encode_tx)."),
                _obj({"tx": _ref("TxFields")}, "The transaction's fields."),
            ],
        },
        "BatchSubmission": _obj(
            {"envelopes": _list(_ref("Hex"), "Envelope bytes.")}, "Other fields are ignored."
        ),
        "Receipt": _obj(
            {
                "tx_id": _ref("Digest"),
                "status": {"type": "string", "enum": ["ok", "rejected", "dropped"]},
                "code": _nullable(_STR),
                "message": _STR,
                "events": _list(_ref("Event")),
                "writes": _INT64,
            },
            "What a transaction did: ok, rejected by a contract rule (code), or dropped "
            "before execution (code).",
        ),
        "Proof": _obj(
            {
                "block": _ref("BlockHeader"),
                "block_hash": _ref("Digest"),
                "certificate": _list(_ref("Commit")),
                "index": _INT64,
                "count": _INT64,
                "path": _list(_ref("Digest")),
            },
            "The block's commit certificate and the transaction's Merkle inclusion path.",
        ),
        "TxStatus": _obj(
            {
                "tx_id": _ref("Digest"),
                "status": {"type": "string", "enum": ["pending", "committed", "dropped"]},
                "height": _nullable(_INT64),
                "index": _nullable(_INT64),
                "receipt": _nullable(_ref("Receipt")),
                "proof": _nullable(_ref("Proof")),
            }
        ),
        "BatchResults": _obj(
            {
                "results": _list(
                    _obj(
                        {
                            "tx_id": _ref("Digest"),
                            "status": {
                                "type": "string",
                                "enum": ["pending", "committed", "dropped", "refused"],
                            },
                            "error": _nullable(_ref("ErrorBody")),
                        }
                    ),
                    "One per envelope, in order.",
                )
            }
        ),
        "Nonce": _obj(
            {
                "sender": _ref("PublicKey"),
                "next_nonce": _INT64,
                "pending_next_nonce": _INT64,
            }
        ),
    }


def _record_schemas() -> dict[str, Schema]:
    diamond: dict[str, Schema] = {
        "asset_id": _STR,
        "kind": {"type": "string", "enum": ["rough", "polished"]},
        "carats_points": _INT64,
        "owner": _STR,
        "custodian": _STR,
        "country": _STR,
        "status": {"type": "string", "enum": ["active", "in_transit", "consumed", "sold"]},
        "frozen": _BOOL,
        "parents": _STRS,
        "mine_id": _STR,
        "kp_certificates": _STRS,
        "grading_report": _STR,
        "actors": _STRS,
        "event_count": _INT64,
        "created_height": _INT64,
    }
    lot: dict[str, Schema] = {
        "lot_id": _STR,
        "product": _STR,
        "mass_grams": _INT64,
        "owner": _STR,
        "custodian": _STR,
        "status": {"type": "string", "enum": ["active", "in_transit", "consumed"]},
        "destination": _STR,
        "recalled": _BOOL,
        "recall_reason": _STR,
        "parents": _STRS,
        "certificates": _STRS,
        "event_count": _INT64,
        "created_height": _INT64,
    }
    asset_event = _obj(
        {
            "seq": _INT64,
            "kind": _STR,
            "height": _INT64,
            "time_ms": _INT64,
            "tx_id": _ref("Digest"),
            "actor": _STR,
            "attributes": {"type": "object"},
        }
    )
    return {
        "Diamond": _obj(diamond),
        "Lot": _obj(lot),
        "AssetEvent": asset_event,
        "Org": _obj(
            {
                "org_id": _STR,
                "name": _STR,
                "country": _STR,
                "roles": _STRS,
                "scopes": _STRS,
                "keys": _list(_ref("PublicKey")),
            }
        ),
        "Mine": _obj(
            {
                "mine_id": _STR,
                "country": _STR,
                "operator": _STR,
                "accredited": _BOOL,
                "registered_by": _STR,
                "registered_height": _INT64,
            }
        ),
        "KpCertificate": _obj(
            {
                "cert_id": _STR,
                "issuer": _STR,
                "exporter": _STR,
                "importer": _STR,
                "origin_country": _STR,
                "destination_country": _STR,
                "parcels": _STRS,
                "parcel_count": _INT64,
                "hs_code": _STR,
                "carats_points": _INT64,
                "value_cents": _INT64,
                "expiry_height": _INT64,
                "status": {
                    "type": "string",
                    "enum": ["issued", "shipped", "completed", "rejected"],
                },
                "revoked": _BOOL,
                "issued_height": _INT64,
                "confirmed_by": _STR,
            }
        ),
        "GradingReport": _obj(
            {
                "report_id": _STR,
                "lab": _STR,
                "asset_id": _STR,
                "carats_points": _INT64,
                "colour": _STR,
                "clarity": _STR,
                "cut_grade": _STR,
                "revoked": _BOOL,
                "issued_height": _INT64,
            }
        ),
    }


def _query_schemas() -> dict[str, Schema]:
    trace_node = {
        "allOf": [_ref("Diamond"), _obj({"events": _list(_ref("AssetEvent"))})],
    }
    failure = _obj({"asset_id": _STR, "rule": _STR, "detail": _STR})
    return {
        "QueryRequest": _obj(
            {"contract": _STR, "name": _STR, "args": {"type": "object"}},
            "Any contract query (contracts/queries.py); other fields are ignored.",
            optional=("args",),
        )
        | {
            "examples": [
                {"contract": "diamonds", "name": "compliance", "args": {"asset_id": "S-1"}}
            ]
        },
        "QueryResult": _obj(
            {"result": {"description": "The query's answer; its shape depends on the query."}}
        ),
        "Trace": _obj(
            {
                "asset_id": _STR,
                "nodes": _list(trace_node, "The asset and its upstream, nearest first."),
                "edges": _list(_list(_STR), "[parent, child] pairs."),
                "kp_certificates": _list(_ref("KpCertificate")),
                "grading_reports": _list(_ref("GradingReport")),
                "mines": _list(_ref("Mine")),
                "actors": _list(_ref("Org")),
                "truncated": _BOOL,
            }
        ),
        "Compliance": _obj(
            {
                "asset_id": _STR,
                "conflict_free": _BOOL,
                "failures": _list(failure),
                "assets_checked": _INT64,
                "truncated": _BOOL,
            }
        ),
        "RecallImpact": _obj(
            {
                "lot_id": _STR,
                "recalled": _BOOL,
                "affected": _list(
                    _obj(
                        {
                            "lot_id": _STR,
                            "product": _STR,
                            "mass_grams": _INT64,
                            "status": _STR,
                            "owner": _STR,
                            "custodian": _STR,
                            "destination": _STR,
                            "recalled": _BOOL,
                            "depth": _INT64,
                        }
                    )
                ),
                "holders": _STRS,
                "truncated": _BOOL,
            }
        ),
        "Noncompliant": _obj(
            {
                "assets": _list(
                    _obj(
                        {
                            "asset_id": _STR,
                            "owner": _STR,
                            "status": _STR,
                            "failures": _list(failure),
                        }
                    )
                ),
                "checked": _INT64,
                "truncated": _BOOL,
            }
        ),
        "Sanctions": _obj(
            {
                "sanctions": _list(
                    _obj(
                        {
                            "kind": _STR,
                            "target": _STR,
                            "reason": _STR,
                            "imposed_by": _STR,
                            "height": _INT64,
                            "tainted": _STRS,
                        }
                    )
                ),
                "revocations": _list(
                    _obj(
                        {
                            "kind": {
                                "type": "string",
                                "enum": ["kp_certificate", "grading", "food_certificate", "key"],
                            },
                            "tainted": _STRS,
                        },
                        "A key, KP certificate or grading report carries id, org_id and "
                        "height; a food certificate carries its record's fields.",
                    )
                ),
            }
        ),
        "Activity": _obj(
            {
                "from": _INT64,
                "to": _INT64,
                "orgs": {
                    "type": "object",
                    "additionalProperties": _obj(
                        {
                            "txs": _INT64,
                            "ok": _INT64,
                            "rejected": _INT64,
                            "methods": {"type": "object", "additionalProperties": _INT64},
                        }
                    ),
                },
                "truncated": _BOOL,
            }
        ),
        "Bundle": _obj(
            {
                "format": {"const": "provenet-bundle"},
                "version": {"type": "integer"},
                "chain_id": _STR,
                "asset_id": _STR,
                "validators": _list(_ref("Validator")),
                "as_of": _obj(
                    {"header": _ref("SignedHeader"), "certificate": _list(_ref("Commit"))}
                ),
                "entries": _list(
                    _obj(
                        {
                            "tx": _ref("Hex"),
                            "tx_id": _ref("Digest"),
                            "header": _ref("SignedHeader"),
                            "certificate": _list(_ref("Commit")),
                            "index": _INT64,
                            "count": _INT64,
                            "path": _list(_ref("Digest")),
                        }
                    )
                ),
            },
            "A provenance bundle (format in node/sdk/bundle_verify.py); its canonical msgpack "
            "is the file `provenet verify` checks offline.",
        ),
    }


def _node_schemas() -> dict[str, Schema]:
    common: dict[str, Schema] = {
        "chain_id": _STR,
        "node": _STR,
        "org_id": _STR,
        "height": _INT64,
        "block_hash": {
            "type": "string",
            "pattern": "^([0-9a-f]{64})?$",
            "description": "Empty at height 0.",
        },
        "state_root": _ref("Digest"),
        "mempool": _obj({"size": _INT64}),
        "validator_set": _ref("ValidatorSet"),
    }
    validator = _obj(
        {
            **common,
            "role": {"const": "validator"},
            "replica_id": _INT64,
            "view": _INT64,
            "primary": _INT64,
            "active": _BOOL,
            "peers": {
                "type": "object",
                "additionalProperties": _obj(
                    {"connected": _BOOL, "queued": _INT64, "dropped": _INT64}
                ),
            },
        }
    )
    observer = _obj(
        {
            **common,
            "role": {"const": "observer"},
            "replica_id": {"type": "null"},
            "following": _obj(
                {
                    "source": _STR,
                    "mode": _STR,
                    "source_height": _INT64,
                    "certified_height": _INT64,
                    "certified_by": _STR,
                    "lag_blocks": _INT64,
                }
            ),
            "alerts": _list(
                _obj(
                    {
                        "kind": _STR,
                        "validator": _STR,
                        "height": _INT64,
                        "message": _STR,
                        "time_ms": _INT64,
                    }
                )
            ),
        }
    )
    return {
        "Validator": _obj(
            {
                "replica_id": _INT64,
                "name": _STR,
                "org_id": _STR,
                "public_key": _ref("PublicKey"),
            }
        ),
        "ValidatorSet": _obj(
            {"chain_id": _STR, "quorum": _INT64, "validators": _list(_ref("Validator"))}
        ),
        "Status": {
            "oneOf": [validator, observer],
            "description": "A validator's or an observer's.",
        },
        "Health": _obj({"ok": {"const": True}, "node": _STR, "height": _INT64}),
    }


# ---------------------------------------------------------------- operations


def _errors(codes: tuple[str, ...] | list[str]) -> dict[str, Schema]:
    """Error responses for ``codes`` (plus rate_limited and internal, which any route can give)."""
    by_status: dict[int, list[str]] = {}
    for code in (*codes, "rate_limited", "internal"):
        status = ERROR_STATUS[code]
        if code not in by_status.setdefault(status, []):
            by_status[status].append(code)
    return {str(status): _error_response(status, by_status[status]) for status in sorted(by_status)}


def _error_response(status: int, codes: list[str]) -> Schema:
    listed = ", ".join(f"`{code}`" for code in codes)
    response: Schema = {
        "description": f"{_REASONS[status]}: {listed}.",
        "x-error-codes": codes,
        "content": {
            JSON_TYPE: {"schema": _ref("Error")},
            MSGPACK: {"schema": _ref("Error")},
        },
    }
    if status == 429:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return response


def _ok(schema: Schema, description: str, msgpack: bool = True) -> Schema:
    content = {JSON_TYPE: {"schema": schema}}
    if msgpack:
        content[MSGPACK] = {"schema": schema}
    return {"description": description, "content": content}


def _result(name: str) -> Schema:
    return _obj({"result": _ref(name)})


def _query(name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
        **extra,
    }


def _path(name: str, schema: Schema, description: str, example: object) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
        "example": example,
    }


def _op(
    operation_id: str,
    tag: str,
    summary: str,
    responses: dict[str, Schema],
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    description: str = "",
) -> Schema:
    operation: Schema = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = responses
    return operation


_WAIT = _query(
    "wait",
    {"type": "string"},
    "`1`, `true` or `yes`: wait (up to timeout_ms) for a pending transaction to commit; "
    "any other value does not wait.",
)
_TIMEOUT = _query(
    "timeout_ms",
    _WHOLE,
    "How long wait may take, capped by the node's max_wait_ms (default 10000).",
)
_FROM = _query("from", _WHOLE, "First height (default 1).")
_LIMIT = _query("limit", _WHOLE, "At most this many blocks (capped by max_blocks_per_page).")


def _submit_ops() -> dict[str, Schema]:
    tx_status = _ref("TxStatus")
    submit = _op(
        "submitTx",
        "transactions",
        "Submit one signed transaction",
        {
            "200": _ok(tx_status, "Committed (with receipt and proof) or dropped."),
            "202": _ok(tx_status, "Pending: admitted, not yet committed."),
            **_errors(
                (
                    *_JSON_BODY_400,
                    *_ADMISSION_400,
                    "bad_request",
                    "bad_signature",
                    *_ADMISSION_403,
                    *_ADMISSION_409,
                    "too_large",
                    "unsupported_media_type",
                    "request_timeout",
                    *_ADMISSION_429,
                )
            ),
        },
        [_WAIT, _TIMEOUT],
        {
            "required": True,
            "content": {
                JSON_TYPE: {"schema": _ref("TxSubmission")},
                MSGPACK: {"schema": _ref("TxEnvelope")},
            },
        },
        "Submitting the same bytes again answers what the node knows of them "
        "(idempotent).  A refused transaction changes nothing.",
    )
    batch = _op(
        "submitBatch",
        "transactions",
        "Submit many signed transactions, without waiting",
        {
            "200": _ok(_ref("BatchResults"), "One result per envelope."),
            **_errors(
                (
                    *_JSON_BODY_400,
                    "malformed_msgpack",
                    "malformed_tx",
                    "bad_request",
                    "read_only",
                    "too_large",
                    "unsupported_media_type",
                    "request_timeout",
                )
            ),
        },
        body={
            "required": True,
            "content": {
                JSON_TYPE: {"schema": _ref("BatchSubmission")},
                MSGPACK: {
                    "schema": _list(_ref("Hex"), "A msgpack list of envelopes (raw bytes each).")
                },
            },
        },
        description="A refused envelope is reported in its result; the others go on. "
        "400 `malformed_tx` when an entry of the JSON form is not hex; 413 `too_large` when "
        "the batch has more entries or costs more than the node allows.",
    )
    get_tx = _op(
        "getTx",
        "transactions",
        "A transaction's status, receipt and proof",
        {
            "200": _ok(tx_status, "Committed or dropped."),
            "202": _ok(tx_status, "Pending."),
            **_errors(("bad_request", "not_found")),
        },
        [
            _path("tx_id", _ref("Digest"), "The SHA-256 of the envelope.", "00" * 32),
            _WAIT,
            _TIMEOUT,
        ],
    )
    return {
        "/v1/txs": {"post": submit},
        "/v1/txs/batch": {"post": batch},
        "/v1/txs/{tx_id}": {"get": get_tx},
    }


def _block_ops() -> dict[str, Schema]:
    block = _ok(_ref("Block"), "The block: header, hash, certificate, per-transaction results.")
    height = _path("height", _WHOLE, "A block height.", 1)
    chain_page = {
        "description": "Full blocks from `from`, at most `limit` and the node's "
        "chain_page_bytes (at least one block if any).  Always msgpack.",
        "content": {MSGPACK: {"schema": _ref("ChainPage")}},
    }
    chain_stream = _op(
        "chainStream",
        "blocks",
        "Full blocks pushed to observers as they are stored (websocket)",
        {
            "101": {
                "description": "Switching to the websocket protocol.  Each binary "
                "message is one msgpack ChainPage (components/schemas/ChainPage): with "
                "blocks=1, blocks in order from `from` as they are stored; with blocks=0, "
                "no blocks and the tip when the height grew (at most one per "
                "chain_stream_tip_interval_ms).  A stream that has sent nothing for "
                "chain_stream_heartbeat_ms sends a page with no blocks and no tip.  Each "
                "message is charged to the client's budget like a GET /v1/chain page; a "
                "client out of budget has the stream closed with code 1013 and a reason "
                "starting `rate_limited:`, and one that does not take a message within "
                "chain_stream_send_timeout_ms is disconnected.",
                "x-websocket-frame": _ref("ChainPage"),
            },
            **_errors(("bad_request", "too_many_subscribers")),
        },
        [
            _query("from", _WHOLE, "The first height to send (default: the next)."),
            _LIMIT,
            _query("blocks", _WHOLE, "0: tips only; otherwise full blocks (default 1)."),
            {
                "name": "Upgrade",
                "in": "header",
                "required": True,
                "schema": {"const": "websocket"},
                "description": "A websocket upgrade.",
            },
        ],
        description="A GET that is not a websocket upgrade answers 400 `bad_request`; a node "
        "serving max_chain_streams streams, or max_chain_streams_per_address to the caller's "
        "address, answers 503 `too_many_subscribers`.  See node/api/chain_stream.py.",
    )
    return {
        "/v1/blocks/latest": {
            "get": _op(
                "latestBlock",
                "blocks",
                "The latest block",
                {"200": block, **_errors(("not_found",))},
            )
        },
        "/v1/blocks/{height}": {
            "get": _op(
                "getBlock",
                "blocks",
                "One block",
                {"200": block, **_errors(("bad_request", "not_found"))},
                [height],
            )
        },
        "/v1/blocks": {
            "get": _op(
                "listBlocks",
                "blocks",
                "Consecutive blocks",
                {
                    "200": _ok(_ref("BlockPage"), "Blocks from `from` while they exist."),
                    **_errors(("bad_request",)),
                },
                [_FROM, _LIMIT],
            )
        },
        "/v1/chain": {
            "get": _op(
                "chainPage",
                "blocks",
                "Full blocks for observers (msgpack)",
                {"200": chain_page, **_errors(("bad_request",))},
                [_FROM, _LIMIT],
            )
        },
        "/v1/chain/stream": {"get": chain_stream},
    }


def _query_ops() -> dict[str, Schema]:
    query_errors = _errors(
        (
            *_JSON_BODY_400,
            "malformed_msgpack",
            "bad_request",
            *_QUERY_400,
            "budget_exceeded",
            "unknown_key",
            *_QUERY_404,
            "unknown_proposal",
            "too_large",
            "unsupported_media_type",
            "request_timeout",
        )
    )
    named_errors = _errors(("invalid_argument", "limit_exceeded", "budget_exceeded", *_QUERY_404))
    asset = _path("asset_id", _ref("Identifier"), "A diamond asset's id.", "S-1")
    lot = _path("lot_id", _ref("Identifier"), "A food lot's id.", "W1")
    return {
        "/v1/query": {
            "post": _op(
                "query",
                "queries",
                "Run any contract query",
                {"200": _ok(_ref("QueryResult"), "The query's answer."), **query_errors},
                body={
                    "required": True,
                    "content": {
                        JSON_TYPE: {"schema": _ref("QueryRequest")},
                        MSGPACK: {"schema": _ref("QueryRequest")},
                    },
                },
                description="`membership.key` of an unknown key answers 403 `unknown_key`.",
            )
        },
        "/v1/trace/{asset_id}": {
            "get": _op(
                "trace",
                "queries",
                "A diamond's provenance (diamonds.trace)",
                {"200": _ok(_result("Trace"), "The upstream DAG."), **named_errors},
                [asset],
            )
        },
        "/v1/compliance/{asset_id}": {
            "get": _op(
                "compliance",
                "queries",
                "A diamond's compliance verdict",
                {"200": _ok(_result("Compliance"), "The verdict."), **named_errors},
                [asset],
            )
        },
        "/v1/recall_impact/{lot_id}": {
            "get": _op(
                "recallImpact",
                "queries",
                "Every lot downstream of a food lot",
                {"200": _ok(_result("RecallImpact"), "The impact."), **named_errors},
                [lot],
            )
        },
        "/v1/bundle/{asset_id}": {
            "get": _op(
                "bundle",
                "queries",
                "A diamond's provenance bundle",
                {
                    "200": _ok(_ref("Bundle"), "The bundle (save the msgpack form as the file)."),
                    **_errors(("unknown_asset", "too_large")),
                },
                [asset],
                description="413 `too_large` when the provenance has more assets than the "
                "chain's max_trace_nodes, or finding it would read too many blocks.",
            )
        },
    }


def _audit_ops() -> dict[str, Schema]:
    def audit(operation_id: str, summary: str, name: str, params: list[Schema]) -> Schema:
        errors = _errors(("bad_request",)) if params else _errors(())
        return _op(
            operation_id,
            "audit",
            summary,
            {"200": _ok(_result(name), "The view; `truncated` when it stopped early."), **errors},
            params,
        )

    return {
        "/v1/audit/noncompliant": {
            "get": audit(
                "auditNoncompliant",
                "Diamonds that exist and fail compliance",
                "Noncompliant",
                [_query("limit", _WHOLE, "At most this many assets.")],
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
                    _query("from", _WHOLE, "First height."),
                    _query("to", _WHOLE, "Last height (default: the tip)."),
                ],
            )
        },
    }


def _node_ops() -> dict[str, Schema]:
    events = _op(
        "events",
        "node",
        "The live block stream (websocket)",
        {
            "101": {
                "description": "Switching to the websocket protocol.  Each text frame is "
                "one JSON EventFrame (components/schemas/EventFrame), blocks in order from "
                "from_height.  A subscriber that falls subscriber_queue_blocks behind is "
                "closed with 1013 and resumes from its last height.",
                "x-websocket-frame": _ref("EventFrame"),
            },
            **_errors(("bad_request", "too_many_subscribers")),
        },
        [
            _query("from_height", _WHOLE, "Replay stored blocks from here (default: the next)."),
            {
                "name": "Upgrade",
                "in": "header",
                "required": True,
                "schema": {"const": "websocket"},
                "description": "A websocket upgrade.",
            },
        ],
        description="A GET that is not a websocket upgrade answers 400 `bad_request`; a node "
        "serving max_subscribers streams answers 503 `too_many_subscribers`.",
    )
    return {
        "/v1/nonce/{sender}": {
            "get": _op(
                "nonce",
                "transactions",
                "A key's committed and pending next nonce",
                {"200": _ok(_ref("Nonce"), "The nonces."), **_errors(("bad_request",))},
                [_path("sender", _ref("PublicKey"), "The key.", "00" * 32)],
            )
        },
        "/v1/events": {"get": events},
        "/v1/status": {
            "get": _op(
                "status",
                "node",
                "The node's role, view, height, peers and mempool",
                {"200": _ok(_ref("Status"), "The status."), **_errors(())},
            )
        },
        "/v1/validators": {
            "get": _op(
                "validators",
                "node",
                "The validator set",
                {"200": _ok(_ref("ValidatorSet"), "The set."), **_errors(())},
            )
        },
        "/healthz": {
            "get": _op(
                "healthz",
                "node",
                "Liveness",
                {"200": _ok(_ref("Health"), "The node is live."), **_errors(("unavailable",))},
                description="503 `unavailable` once the replica task has stopped.",
            )
        },
        "/metrics": {
            "get": _op(
                "metrics",
                "node",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "The Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": _STR}},
                    },
                    **_errors(()),
                },
            )
        },
        OPENAPI_PATH: {
            "get": _op(
                "openapi",
                "node",
                "This description",
                {
                    "200": {
                        "description": "The OpenAPI 3.1 document (always JSON).",
                        "content": {JSON_TYPE: {"schema": {"type": "object"}}},
                    },
                    **_errors(()),
                },
            )
        },
    }


def _dashboard_ops() -> dict[str, Schema]:
    page = {"description": "The dashboard page.", "content": {"text/html": {"schema": _STR}}}
    files = {
        "description": "A file of the page (script, style sheet, image).",
        "content": {
            media: {"schema": _STR}
            for media in (
                "text/html",
                "text/javascript",
                "text/css",
                "image/svg+xml",
                "image/png",
                "image/x-icon",
            )
        },
    }
    name = _path(
        "name",
        {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$"},
        "A file name (never a path).",
        "app.js",
    )
    return {
        "/": {
            "get": _op(
                "dashboard",
                "dashboard",
                "The dashboard (HTML)",
                {"200": page, **_errors(("not_found",))},
                description="404 `not_found` when the dashboard is not installed.",
            )
        },
        "/static/{name}": {
            "get": _op(
                "dashboardFile",
                "dashboard",
                "A file of the dashboard",
                {"200": files, **_errors(("not_found",))},
                [name],
            )
        },
    }


_DESCRIPTION = """\
The client API every Provenet node serves (validators and observers alike;
an observer answers 403 `read_only` to every write).

**Encodings.** Request and response bodies are JSON, with bytes as lowercase
hex, unless noted.  Send `Accept: application/msgpack` for the same objects
in canonical msgpack with those fields as raw bytes (each response lists
`application/msgpack` with the JSON schema: the msgpack body is that object
once its bytes are written as hex).  `/v1/chain` is always msgpack;
`/metrics`, `/` and `/static/{name}` are text; `/v1/events` and
`/v1/chain/stream` are websockets.
JSON bodies must not use floats (400 `float_not_allowed`) or repeat a key in
an object (400 `duplicate_key`).

**Errors.** Every error is the `Error` schema, `{"error": {"code",
"message"}}`, with a stable code whose HTTP status never changes; each
error response lists its codes in `x-error-codes`.  Any request can also be
answered, before it reaches an operation: 400 `malformed_http` (the HTTP
parser refused it), 404 `not_found` (no such path), 405
`method_not_allowed` (the path does not take that method), 413 `too_large`
(the declared body is over the node's max_body_bytes) and 429
`rate_limited`; every 429 carries `Retry-After` in seconds.
"""


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a plain dict; see the module docstring)."""
    paths = {
        **_submit_ops(),
        **_block_ops(),
        **_query_ops(),
        **_audit_ops(),
        **_node_ops(),
        **_dashboard_ops(),
    }
    # Answers any request can get before it reaches an operation.
    general = {
        name: {**_error_response(status, [code]), "x-any-request": True, "x-status": status}
        for name, status, code in (
            ("MalformedHttp", 400, "malformed_http"),
            ("UnknownPath", 404, "not_found"),
            ("MethodNotAllowed", 405, "method_not_allowed"),
            ("DeclaredTooLarge", 413, "too_large"),
            ("RateLimited", 429, "rate_limited"),
        )
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Provenet client API",
            "version": "1",
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": name, "description": description}
            for name, description in (
                ("transactions", "Submitting transactions and reading their outcome."),
                ("blocks", "Committed blocks."),
                ("queries", "Contract queries and provenance bundles."),
                ("audit", "A regulator's views."),
                ("node", "The node itself."),
                ("dashboard", "The web page every node serves."),
            )
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": general,
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
        },
    }


def render(spec: dict[str, Any]) -> str:
    """The file's text: stable key order and indentation, so diffs stay readable."""
    return json.dumps(spec, indent=1, ensure_ascii=False) + "\n"


@cache
def spec_bytes() -> bytes:
    """The shipped ``openapi.json``, as every node serves it."""
    return resources.files("node.api").joinpath(SPEC_NAME).read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the client API's OpenAPI description.")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if node/api/openapi.json is stale"
    )
    args = parser.parse_args(argv)
    target = resources.files("node.api").joinpath(SPEC_NAME)
    text = render(build_spec())
    if args.check:
        stale = target.read_text() != text
        if stale:
            sys.stderr.write(f"{target} is stale: run python -m node.api.openapi\n")
        return 1 if stale else 0
    with resources.as_file(target) as path:
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
