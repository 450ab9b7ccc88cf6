"""Contract queries: any query by name, the provenance views, and bundles."""

from __future__ import annotations

from node.api.openapi.common import (
    BOOL,
    INT64,
    JSON_BODY_400,
    JSON_TYPE,
    MSGPACK,
    QUERY_400,
    QUERY_404,
    STR,
    STRS,
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
    result_of,
)

# One rule an asset fails (in a compliance verdict and the audit views).
COMPLIANCE_FAILURE = obj({"asset_id": STR, "rule": STR, "detail": STR})


def query_schemas() -> dict[str, Schema]:
    """Any query's request and answer."""
    return {
        "QueryRequest": obj(
            {"contract": STR, "name": STR, "args": {"type": "object"}},
            "Any contract query (contracts/queries.py); other fields are ignored.",
            optional=("args",),
        )
        | {
            "examples": [
                {"contract": "diamonds", "name": "compliance", "args": {"asset_id": "S-1"}}
            ]
        },
        "QueryResult": obj(
            {"result": {"description": "The query's answer; its shape depends on the query."}}
        ),
    }


def provenance_schemas() -> dict[str, Schema]:
    """A diamond's upstream and verdict, and a food lot's downstream."""
    trace_node = {
        "allOf": [ref("Diamond"), obj({"events": array(ref("AssetEvent"))})],
    }
    return {
        "Trace": obj(
            {
                "asset_id": STR,
                "nodes": array(trace_node, "The asset and its upstream, nearest first."),
                "edges": array(array(STR), "[parent, child] pairs."),
                "kp_certificates": array(ref("KpCertificate")),
                "grading_reports": array(ref("GradingReport")),
                "mines": array(ref("Mine")),
                "actors": array(ref("Org")),
                "truncated": BOOL,
            }
        ),
        "Compliance": obj(
            {
                "asset_id": STR,
                "conflict_free": BOOL,
                "failures": array(COMPLIANCE_FAILURE),
                "assets_checked": INT64,
                "truncated": BOOL,
            }
        ),
        "ProvenCompliance": obj(
            {
                "verdict": ref("Compliance"),
                "height": INT64,
                "reads": array(
                    obj(
                        {
                            "key": ref("Hex"),
                            "value": nullable(ref("Hex")),
                            "proof": {
                                "type": "object",
                                "description": "The key's state proof (contracts/stateroot.py "
                                "StateProof): of its value, or of its absence when value is null.",
                            },
                        }
                    ),
                    "Every state key the verdict read, in ascending key order.",
                ),
                "anchor": {
                    "type": "object",
                    "description": "The results anchor that certifies height's state root "
                    "(node/sdk/results_proof.py ResultsAnchor): results, links, header, "
                    "certificate.",
                },
            },
            "A verdict with every state read it depends on, proven against the state root "
            "of `height`, which `anchor` certifies.  A light client checks each proof, "
            "recomputes the verdict with the contract code over the proven reads alone, and "
            "compares (node/sdk/compliance_proof.py).",
        ),
        "RecallImpact": obj(
            {
                "lot_id": STR,
                "recalled": BOOL,
                "affected": array(
                    obj(
                        {
                            "lot_id": STR,
                            "product": STR,
                            "mass_grams": INT64,
                            "status": STR,
                            "owner": STR,
                            "custodian": STR,
                            "destination": STR,
                            "recalled": BOOL,
                            "depth": INT64,
                        }
                    )
                ),
                "holders": STRS,
                "truncated": BOOL,
            }
        ),
    }


def bundle_schemas() -> dict[str, Schema]:
    """The provenance bundle a client saves and verifies offline."""
    return {
        "Bundle": obj(
            {
                "format": {"const": "provenet-bundle"},
                "version": {"const": 2},
                "chain_id": STR,
                "asset_id": STR,
                "validators": array(ref("Validator")),
                "as_of": obj(
                    {
                        "height": INT64,
                        "anchor": ref("ResultsAnchor"),
                        "reads": array(
                            obj(
                                {
                                    "key": ref("Hex"),
                                    "value": nullable(ref("Hex")),
                                    "proof": ref("StateProof"),
                                }
                            ),
                            "Every state key the offline check reads, in ascending key order: "
                            "the compliance verdict's reads and each signer's key and "
                            "organisation records; value null: proven absent.",
                        ),
                    },
                    "The certified point the verdict is proven at: anchor certifies "
                    "height's state root, which every read's proof is checked against.",
                ),
                "entries": array(
                    obj(
                        {
                            "tx": ref("Hex"),
                            "tx_id": ref("Digest"),
                            "header": ref("SignedHeader"),
                            "certificate": array(ref("Commit")),
                            "index": INT64,
                            "count": INT64,
                            "path": array(ref("Digest")),
                            "receipt": ref("ReceiptProof"),
                        }
                    ),
                    "Each transaction with its inclusion proof and its receipt proof "
                    "(whose anchor is never null here).",
                ),
            },
            "A provenance bundle, version 2 (format in node/sdk/bundle_verify.py); its "
            "canonical msgpack is the file `provenet verify` checks offline.",
        ),
    }


def _query() -> Schema:
    """POST /v1/query: any contract query by name."""
    errors = error_responses(
        (
            *JSON_BODY_400,
            "malformed_msgpack",
            "bad_request",
            *QUERY_400,
            "budget_exceeded",
            "unknown_key",
            *QUERY_404,
            "unknown_proposal",
            "unknown_validator",
            "too_large",
            "unsupported_media_type",
            "request_timeout",
        )
    )
    return operation(
        "query",
        "queries",
        "Run any contract query",
        {"200": ok(ref("QueryResult"), "The query's answer."), **errors},
        body={
            "required": True,
            "content": {
                JSON_TYPE: {"schema": ref("QueryRequest")},
                MSGPACK: {"schema": ref("QueryRequest")},
            },
        },
        description="`membership.key` of an unknown key answers 403 `unknown_key`.",
    )


def query_ops() -> dict[str, Schema]:
    """Any query, and the named views of one asset or lot."""
    named_errors = error_responses(
        ("invalid_argument", "limit_exceeded", "budget_exceeded", *QUERY_404)
    )
    proven_errors = error_responses(
        (
            "invalid_argument",
            "limit_exceeded",
            "budget_exceeded",
            "bad_request",
            "unavailable",
            *QUERY_404,
        )
    )
    asset = path_param("asset_id", ref("Identifier"), "A diamond asset's id.", "S-1")
    lot = path_param("lot_id", ref("Identifier"), "A food lot's id.", "W1")
    return {
        "/v1/query": {"post": _query()},
        "/v1/trace/{asset_id}": {
            "get": operation(
                "trace",
                "queries",
                "A diamond's provenance (diamonds.trace)",
                {"200": ok(result_of("Trace"), "The upstream DAG."), **named_errors},
                [asset],
            )
        },
        "/v1/compliance/{asset_id}": {
            "get": operation(
                "compliance",
                "queries",
                "A diamond's compliance verdict, with proofs on request",
                {
                    "200": ok(
                        {"oneOf": [result_of("Compliance"), ref("ProvenCompliance")]},
                        "The verdict; with prove=1, a ProvenCompliance.",
                    ),
                    **proven_errors,
                },
                [
                    asset,
                    query_param(
                        "prove",
                        {"type": "string"},
                        "`1`, `true` or `yes`: answer a ProvenCompliance, waiting (up to "
                        "timeout_ms) for the certificate of the node's current height.",
                    ),
                    query_param(
                        "timeout_ms",
                        WHOLE,
                        "How long prove may wait for the certificate, capped by the node's "
                        "max_wait_ms (default 10000).",
                    ),
                ],
                description="With prove=1: 400 `limit_exceeded` when the verdict reads more "
                "keys than the node's max_proven_reads; 503 `unavailable` when the "
                "certificate did not come within timeout_ms (retry).",
            )
        },
        "/v1/recall_impact/{lot_id}": {
            "get": operation(
                "recallImpact",
                "queries",
                "Every lot downstream of a food lot",
                {"200": ok(result_of("RecallImpact"), "The impact."), **named_errors},
                [lot],
            )
        },
        "/v1/bundle/{asset_id}": {
            "get": operation(
                "bundle",
                "queries",
                "A diamond's provenance bundle",
                {
                    "200": ok(ref("Bundle"), "The bundle (save the msgpack form as the file)."),
                    **error_responses(
                        (
                            "bad_request",
                            "unknown_asset",
                            "too_large",
                            "limit_exceeded",
                            "unavailable",
                        )
                    ),
                },
                [
                    asset,
                    query_param(
                        "timeout_ms",
                        WHOLE,
                        "How long to wait for the certificate of the height the bundle is "
                        "read at, capped by the node's max_wait_ms (default 10000).",
                    ),
                ],
                description="413 `too_large` when the provenance has more assets than the "
                "chain's max_trace_nodes, or finding it would read too many blocks; 400 "
                "`limit_exceeded` when its as-of point reads more keys than the node's "
                "max_proven_reads; 503 `unavailable` when the certificate did not come "
                "within timeout_ms (retry).",
            )
        },
    }
