"""Transactions: submitting them (one or a batch) and reading their outcome."""

from __future__ import annotations

from node.api.openapi.common import (
    ADMISSION_400,
    ADMISSION_403,
    ADMISSION_409,
    ADMISSION_429,
    INT64,
    JSON_BODY_400,
    JSON_TYPE,
    MSGPACK,
    STR,
    WHOLE,
    Schema,
    array,
    closed,
    error_responses,
    nullable,
    obj,
    ok,
    operation,
    path_param,
    query_param,
    ref,
)

_WAIT = query_param(
    "wait",
    {"type": "string"},
    "`1`, `true` or `yes`: wait (up to timeout_ms in all) for a pending transaction to "
    "commit, and then for the later block that certifies its results (the anchor of its "
    "receipt_proof); any other value does not wait.",
)
_TIMEOUT = query_param(
    "timeout_ms",
    WHOLE,
    "How long wait may take, capped by the node's max_wait_ms (default 10000).",
)


def submission_schemas() -> dict[str, Schema]:
    """What a client sends: one transaction (as fields or envelope bytes) or a batch."""
    fields = {
        "chain_id": STR,
        "sender": ref("PublicKey"),
        "nonce": INT64,
        "contract": STR,
        "method": STR,
        "args": {
            "type": "object",
            "description": "The method's arguments; integers only (no floats).",
        },
        "expiry_height": nullable(INT64),
        "signature": ref("Signature"),
    }
    optional = ("args", "expiry_height")
    return {
        # The JSON forms ignore fields they do not know (node/api/routes.py reads the ones
        # it needs); a msgpack envelope must hold exactly its fields.
        "TxFields": obj(
            fields,
            "A signed transaction's fields (contracts.tx); other fields are ignored.",
            optional,
        ),
        "TxEnvelope": closed(
            fields,
            "The envelope bytes (contracts.tx.encode_tx): exactly the transaction's fields "
            "as a canonical msgpack map, sender and signature raw.",
            optional,
        ),
        "TxSubmission": {
            "description": "The envelope, or the transaction's fields; `envelope` wins when "
            "both are present, and other fields are ignored.",
            "anyOf": [
                obj({"envelope": ref("Hex")}, "The envelope bytes (contracts.tx.encode_tx)."),
                obj({"tx": ref("TxFields")}, "The transaction's fields."),
            ],
        },
        "BatchSubmission": obj(
            {"envelopes": array(ref("Hex"), "Envelope bytes.")}, "Other fields are ignored."
        ),
    }


def outcome_schemas() -> dict[str, Schema]:
    """What the node answers about a transaction: receipt, proof, status, nonces."""
    return {
        "Receipt": obj(
            {
                "tx_id": ref("Digest"),
                "status": {"type": "string", "enum": ["ok", "rejected", "dropped"]},
                "code": nullable(STR),
                "message": STR,
                "events": array(ref("Event")),
                "writes": INT64,
            },
            "What a transaction did: ok, rejected by a contract rule (code), or dropped "
            "before execution (code).",
        ),
        "Proof": obj(
            {
                "block": ref("BlockHeader"),
                "block_hash": ref("Digest"),
                "certificate": array(ref("Commit")),
                "index": INT64,
                "count": INT64,
                "path": array(ref("Digest")),
            },
            "The block's commit certificate and the transaction's Merkle inclusion path.",
        ),
        "ReceiptLeaf": obj(
            {
                "tx_id": ref("Digest"),
                "status": {"type": "string", "description": "ok, rejected or duplicate"},
                "code": nullable(STR),
                "writes_digest": ref("Digest"),
            },
            "A receipt as its height's receipts tree commits to it (contracts.results).",
        ),
        "ReceiptProof": obj(
            {
                "leaf": ref("ReceiptLeaf"),
                "index": INT64,
                "count": INT64,
                "path": array(ref("Digest"), "The leaf's audit path in the receipts tree."),
                "anchor": nullable(ref("ResultsAnchor")),
            },
            "The receipt under its height's receipts root, and the anchor that certifies "
            "that root; anchor is null while no later block carries the height's results "
            "(node.sdk.receipt_proof).",
        ),
        "TxStatus": obj(
            {
                "tx_id": ref("Digest"),
                "status": {"type": "string", "enum": ["pending", "committed", "dropped"]},
                "height": nullable(INT64),
                "index": nullable(INT64),
                "receipt": nullable(ref("Receipt")),
                "proof": nullable(ref("Proof")),
                "receipt_proof": nullable(ref("ReceiptProof")),
            }
        ),
        "BatchResults": obj(
            {
                "results": array(
                    obj(
                        {
                            "tx_id": ref("Digest"),
                            "status": {
                                "type": "string",
                                "enum": ["pending", "committed", "dropped", "refused"],
                            },
                            "error": nullable(ref("ErrorBody")),
                        }
                    ),
                    "One per envelope, in order.",
                )
            }
        ),
        "Nonce": obj(
            {
                "sender": ref("PublicKey"),
                "next_nonce": INT64,
                "pending_next_nonce": INT64,
            }
        ),
    }


def _submit_tx() -> Schema:
    """POST /v1/txs: one signed transaction, waiting for it if asked."""
    return operation(
        "submitTx",
        "transactions",
        "Submit one signed transaction",
        {
            "200": ok(ref("TxStatus"), "Committed (with receipt and proof) or dropped."),
            "202": ok(ref("TxStatus"), "Pending: admitted, not yet committed."),
            **error_responses(
                (
                    *JSON_BODY_400,
                    *ADMISSION_400,
                    "bad_request",
                    "bad_signature",
                    *ADMISSION_403,
                    *ADMISSION_409,
                    "too_large",
                    "unsupported_media_type",
                    "request_timeout",
                    *ADMISSION_429,
                )
            ),
        },
        [_WAIT, _TIMEOUT],
        {
            "required": True,
            "content": {
                JSON_TYPE: {"schema": ref("TxSubmission")},
                MSGPACK: {"schema": ref("TxEnvelope")},
            },
        },
        "Submitting the same bytes again answers what the node knows of them "
        "(idempotent).  A refused transaction changes nothing.",
    )


def _submit_batch() -> Schema:
    """POST /v1/txs/batch: many envelopes, each answered on its own, without waiting."""
    return operation(
        "submitBatch",
        "transactions",
        "Submit many signed transactions, without waiting",
        {
            "200": ok(ref("BatchResults"), "One result per envelope."),
            **error_responses(
                (
                    *JSON_BODY_400,
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
                JSON_TYPE: {"schema": ref("BatchSubmission")},
                MSGPACK: {
                    "schema": array(ref("Hex"), "A msgpack list of envelopes (raw bytes each).")
                },
            },
        },
        description="A refused envelope is reported in its result; the others go on. "
        "400 `malformed_tx` when an entry of the JSON form is not hex; 413 `too_large` when "
        "the batch has more entries or costs more than the node allows.",
    )


def _get_tx() -> Schema:
    """GET /v1/txs/{tx_id}: a transaction's status, waiting for it if asked."""
    return operation(
        "getTx",
        "transactions",
        "A transaction's status, receipt and proof",
        {
            "200": ok(ref("TxStatus"), "Committed or dropped."),
            "202": ok(ref("TxStatus"), "Pending."),
            **error_responses(("bad_request", "not_found")),
        },
        [
            path_param("tx_id", ref("Digest"), "The SHA-256 of the envelope.", "00" * 32),
            _WAIT,
            _TIMEOUT,
        ],
    )


def submit_ops() -> dict[str, Schema]:
    return {
        "/v1/txs": {"post": _submit_tx()},
        "/v1/txs/batch": {"post": _submit_batch()},
        "/v1/txs/{tx_id}": {"get": _get_tx()},
    }
