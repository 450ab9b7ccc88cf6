"""Certified results: a height's results, its receipts' outcomes and the certificate over them."""

from __future__ import annotations

from node.api.openapi.common import (
    INT64,
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


def results_schemas() -> dict[str, Schema]:
    """HeightResults and the anchor that certifies them."""
    return {
        "HeightResults": obj(
            {
                "height": INT64,
                "state_root": ref("Digest"),
                "receipts_root": ref("Digest"),
                "previous_results_root": ref("Digest"),
            },
            "What a height's results root is made of (contracts/results.py): its hash "
            "chains every height up to it.",
        ),
        "ResultsAnchor": obj(
            {
                "results": ref("HeightResults"),
                "links": array(
                    array(ref("Digest")),
                    "The [state_root, receipts_root] of each later height up to the one "
                    "the certifying block carries.",
                ),
                "header": ref("SignedHeader"),
                "certificate": array(ref("Commit")),
            },
            "The commit certificate of the lowest later block whose header carries "
            "executed_height >= the height, and the links that roll the results chain to it.",
        ),
        "Results": obj(
            {
                "height": INT64,
                "results": ref("HeightResults"),
                "receipts": array(ref("ReceiptLeaf"), "One per request of the block, in order."),
                "anchor": nullable(ref("ResultsAnchor")),
            },
            "A height's results; `anchor` is null until a block certifying them is stored.",
        ),
    }


def results_ops() -> dict[str, Schema]:
    """GET /v1/results/{height}."""
    return {
        "/v1/results/{height}": {
            "get": operation(
                "results",
                "blocks",
                "A height's certified results and every receipt's outcome",
                {
                    "200": ok(ref("Results"), "The results, receipts and their anchor."),
                    **error_responses(("bad_request", "not_found")),
                },
                [
                    path_param("height", WHOLE, "An executed height (1 or more).", 1),
                    query_param(
                        "wait",
                        {"type": "string"},
                        "`1`, `true` or `yes`: wait (up to timeout_ms) for the block that "
                        "certifies these results when it is not stored yet.",
                    ),
                    query_param(
                        "timeout_ms",
                        WHOLE,
                        "How long wait may take, capped by the node's max_wait_ms (default 10000).",
                    ),
                ],
                description="404 `not_found` for a height this node has not executed.  "
                "A light client verifies `anchor` against the validator set and that the "
                "receipts' leaves hash to `results.receipts_root` (node/sdk/certified_results.py).",
            )
        }
    }
