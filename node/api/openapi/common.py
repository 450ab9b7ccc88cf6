"""The building blocks of the OpenAPI description: shapes, codes, responses, parameters.

Every area module (transactions, blocks, records, queries, audit, node,
dashboard) builds its schemas and operations from these, so the whole
document speaks one vocabulary: objects whose listed properties are
required, bytes as hex, and error responses that list their codes.
"""

from __future__ import annotations

from typing import Any

from node.sdk.errors import HTTP_STATUS

JSON_TYPE = "application/json"
MSGPACK = "application/msgpack"
OPENAPI_PATH = "/v1/openapi.json"
Schema = dict[str, Any]

# Every error code a client can receive, with its HTTP status: the node's
# own table, so the spec cannot promise a status the node would not give.
ERROR_STATUS: dict[str, int] = dict(HTTP_STATUS)

REASONS = {
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
QUERY_400 = ("unknown_contract", "unknown_query", "invalid_argument", "limit_exceeded")
QUERY_404 = ("unknown_asset", "unknown_mine", "unknown_org", "unknown_certificate")
# Refusals of one transaction at admission (decode, stateless checks, mempool).
ADMISSION_400 = (
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
ADMISSION_403 = ("unknown_key", "key_revoked", "read_only")
ADMISSION_409 = ("nonce_used", "nonce_conflict", "nonce_gap")
ADMISSION_429 = ("mempool_full", "sender_queue_full")
JSON_BODY_400 = ("malformed_json", "duplicate_key", "float_not_allowed")

# ---------------------------------------------------------------- schemas

WHOLE = {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999}
INT64 = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(
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


def closed(
    properties: dict[str, Schema], description: str = "", optional: tuple[str, ...] = ()
) -> Schema:
    """An object with exactly these properties (request bodies and the error shape)."""
    return {**obj(properties, description, optional), "additionalProperties": False}


def array(items: Schema, description: str = "") -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if description:
        schema["description"] = description
    return schema


def nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
BOOL = {"type": "boolean"}
STRS = array(STR)


def scalar_schemas() -> dict[str, Schema]:
    return {
        "ErrorBody": closed(
            {
                "code": {
                    "type": "string",
                    "enum": sorted(ERROR_STATUS),
                    "description": "Stable: clients match on it.",
                },
                "message": {"type": "string", "description": "For people: may change."},
            }
        ),
        "Error": closed({"error": ref("ErrorBody")}, "Every error answer of the API."),
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


# ---------------------------------------------------------------- operations


def error_responses(codes: tuple[str, ...] | list[str]) -> dict[str, Schema]:
    """Error responses for ``codes`` (plus rate_limited and internal, which any route can give)."""
    by_status: dict[int, list[str]] = {}
    for code in (*codes, "rate_limited", "internal"):
        status = ERROR_STATUS[code]
        if code not in by_status.setdefault(status, []):
            by_status[status].append(code)
    return {str(status): error_response(status, by_status[status]) for status in sorted(by_status)}


def error_response(status: int, codes: list[str]) -> Schema:
    listed = ", ".join(f"`{code}`" for code in codes)
    response: Schema = {
        "description": f"{REASONS[status]}: {listed}.",
        "x-error-codes": codes,
        "content": {
            JSON_TYPE: {"schema": ref("Error")},
            MSGPACK: {"schema": ref("Error")},
        },
    }
    if status == 429:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return response


def ok(schema: Schema, description: str, msgpack: bool = True) -> Schema:
    content = {JSON_TYPE: {"schema": schema}}
    if msgpack:
        content[MSGPACK] = {"schema": schema}
    return {"description": description, "content": content}


def result_of(name: str) -> Schema:
    return obj({"result": ref(name)})


def query_param(name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
        **extra,
    }


def path_param(name: str, schema: Schema, description: str, example: object) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
        "example": example,
    }


def operation(
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


# The header every websocket operation requires.
WEBSOCKET_UPGRADE: Schema = {
    "name": "Upgrade",
    "in": "header",
    "required": True,
    "schema": {"const": "websocket"},
    "description": "A websocket upgrade.",
}
