"""Reading one state key, with a proof of its value or absence (node/api/state_read.py)."""

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

_BITMAP = {"type": "integer", "minimum": 0, "maximum": 0xFFFE}


def state_schemas() -> dict[str, Schema]:
    """A state proof, the results anchor that certifies its root, and the answer."""
    digest_pair = {**array(ref("Digest")), "minItems": 2, "maxItems": 2}
    return {
        "StateProof": obj(
            {
                "levels": {
                    **array(
                        {
                            **array({"oneOf": [_BITMAP, ref("Hex")]}),
                            "minItems": 2,
                            "maxItems": 2,
                        },
                        "From the top of the trie down the key's path: per internal node, "
                        "[bitmap, hashes]: bit i of the bitmap is set when child i is a "
                        "non-empty slot off the path, and hashes are those children's "
                        "32-byte hashes in slot order, concatenated.",
                    ),
                    "maxItems": 64,
                },
                "other_leaf": nullable(digest_pair),
            },
            "What a key holds under a state root (contracts/stateroot.py).  The path ends "
            "at the key's leaf (the value is present), an empty slot (absent), or "
            "other_leaf: [path, value digest] of another key's leaf (absent).",
        ),
        "ResultsAnchor": obj(
            {
                "results": obj(
                    {
                        "height": INT64,
                        "state_root": ref("Digest"),
                        "receipts_root": ref("Digest"),
                        "previous_results_root": ref("Digest"),
                    }
                ),
                "links": array(digest_pair, "[state_root, receipts_root] of each later height."),
                "header": ref("SignedHeader"),
                "certificate": array(ref("Commit")),
            },
            "The commit certificate that certifies one height's results "
            "(node/sdk/results_proof.py).",
        ),
        "StateValue": obj(
            {
                "key": ref("Hex"),
                "value": nullable(ref("Hex")),
                "height": INT64,
                "proof": ref("StateProof"),
                "anchor": nullable(ref("ResultsAnchor")),
            },
            "A key's value (null if absent) at the node's executed height; with prove=1 "
            "also its proof under that height's state root and the anchor that certifies "
            "the root (null if the certifying block did not come within timeout_ms).",
            optional=("proof", "anchor"),
        ),
    }


def state_ops() -> dict[str, Schema]:
    return {
        "/v1/state/{key}": {
            "get": operation(
                "getState",
                "queries",
                "One state key's value, with its proof on request",
                {
                    "200": ok(ref("StateValue"), "The value (null when absent)."),
                    **error_responses(("bad_request", "limit_exceeded")),
                },
                [
                    path_param(
                        "key",
                        {"type": "string", "pattern": "^([0-9a-fA-F]{2})+$"},
                        "The state key's bytes as hex (at most the node's "
                        "max_state_key_bytes, 1024 by default).",
                        "6d2f6f72672f6d696e6572",
                    ),
                    query_param(
                        "prove",
                        {"type": "string"},
                        "`1`, `true` or `yes`: add the proof and the results anchor.",
                    ),
                    query_param(
                        "timeout_ms",
                        WHOLE,
                        "How long prove may wait for the certifying block, capped by the "
                        "node's max_wait_ms (default 10000).",
                    ),
                ],
                description="400 `bad_request` when the key is not hex; 400 "
                "`limit_exceeded` when it is longer than max_state_key_bytes.",
            )
        }
    }
