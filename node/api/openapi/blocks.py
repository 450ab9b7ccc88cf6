"""Blocks: headers, commit certificates, pages of full blocks, the chain stream.

Also the block events (``Event``, ``EventFrame``) that ``/v1/events``
pushes (its operation is in ``node.py``).
"""

from __future__ import annotations

from node.api.openapi.common import (
    INT64,
    MSGPACK,
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

_FROM = query_param("from", WHOLE, "First height (default 1).")
_LIMIT = query_param("limit", WHOLE, "At most this many blocks (capped by max_blocks_per_page).")


def header_schemas() -> dict[str, Schema]:
    """A block's header, the part a certificate signs, and one COMMIT vote."""
    return {
        "BlockHeader": obj(
            {
                "chain_id": STR,
                "height": INT64,
                "prev_block_hash": ref("Digest"),
                "time_ms": INT64,
                "proposer_time_ms": INT64,
                "requests_root": ref("Digest"),
                "request_count": INT64,
                "executed_height": INT64,
                "executed_results_root": ref("Digest"),
            }
        ),
        "SignedHeader": obj(
            {
                "chain_id": STR,
                "height": INT64,
                "proposer_time_ms": INT64,
                "requests_root": ref("Digest"),
                "request_count": INT64,
                "executed_height": INT64,
                "executed_results_root": ref("Digest"),
            },
            "The header fields a commit certificate covers (a bundle carries only these).",
        ),
        "Commit": obj(
            {
                "view": INT64,
                "height": INT64,
                "digest": ref("Digest"),
                "sender": INT64,
                "signature": ref("Signature"),
            },
            "One validator's COMMIT vote; a quorum of them is a block's certificate.",
        ),
    }


def block_schemas() -> dict[str, Schema]:
    """Blocks as the API reads them, and full blocks for observers."""
    return {
        "BlockTx": obj(
            {
                "tx_id": ref("Digest"),
                "status": {"type": "string", "enum": ["ok", "rejected"]},
                "code": nullable(STR),
            }
        ),
        "Block": obj(
            {
                "height": INT64,
                "hash": ref("Digest"),
                "header": ref("BlockHeader"),
                "certificate": array(ref("Commit")),
                "txs": array(ref("BlockTx")),
            }
        ),
        "BlockPage": obj({"blocks": array(ref("Block"))}),
        "FullBlock": obj(
            {
                "header": ref("BlockHeader"),
                "certificate": array(ref("Hex"), "Each COMMIT in its canonical wire bytes."),
                "payloads": array(ref("Hex"), "Each transaction envelope, in block order."),
            }
        ),
        "ChainTip": obj(
            {
                "header": ref("BlockHeader"),
                "certificate": array(ref("Hex"), "Each COMMIT in its canonical wire bytes."),
            },
            "The node's latest block without its payloads: a height its commit certificate proves.",
        ),
        "ChainPage": obj(
            {
                "height": INT64,
                "blocks": array(ref("FullBlock")),
                "tip": nullable(ref("ChainTip")),
            },
            "Full blocks for observers (msgpack only; bytes raw).  `height` is a bare "
            "claim; `tip`, present when the node has a block above the page's last, "
            "proves its height.",
            optional=("tip",),
        ),
    }


def event_schemas() -> dict[str, Schema]:
    """What a committed block did, as ``/v1/events`` pushes it."""
    return {
        "Event": obj(
            {"contract": STR, "kind": STR, "attributes": {"type": "object"}},
            "Something a transaction did.",
        ),
        "EventFrame": obj(
            {
                "type": {"const": "block"},
                "height": INT64,
                "hash": ref("Digest"),
                "time_ms": INT64,
                "txs": array(
                    obj(
                        {
                            "tx_id": ref("Digest"),
                            "status": {"type": "string", "enum": ["ok", "rejected"]},
                            "code": nullable(STR),
                            "events": array(ref("Event")),
                        }
                    )
                ),
            },
            "One websocket text frame of GET /v1/events: a committed block (JSON).",
        ),
    }


def _chain_stream() -> Schema:
    """GET /v1/chain/stream: full blocks or tips pushed over a websocket."""
    return operation(
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
                "x-websocket-frame": ref("ChainPage"),
            },
            **error_responses(("bad_request", "too_many_subscribers")),
        },
        [
            query_param("from", WHOLE, "The first height to send (default: the next)."),
            _LIMIT,
            query_param("blocks", WHOLE, "0: tips only; otherwise full blocks (default 1)."),
            WEBSOCKET_UPGRADE,
        ],
        description="A GET that is not a websocket upgrade answers 400 `bad_request`; a node "
        "serving max_chain_streams streams, or max_chain_streams_per_address to the caller's "
        "address, answers 503 `too_many_subscribers`.  See node/api/chain_stream.py.",
    )


def block_ops() -> dict[str, Schema]:
    """The block reads: latest, one, a run, a page of full blocks, the stream."""
    block = ok(ref("Block"), "The block: header, hash, certificate, per-transaction results.")
    height = path_param("height", WHOLE, "A block height.", 1)
    chain_page = {
        "description": "Full blocks from `from`, at most `limit` and the node's "
        "chain_page_bytes (at least one block if any).  Always msgpack.",
        "content": {MSGPACK: {"schema": ref("ChainPage")}},
    }
    return {
        "/v1/blocks/latest": {
            "get": operation(
                "latestBlock",
                "blocks",
                "The latest block",
                {"200": block, **error_responses(("not_found",))},
            )
        },
        "/v1/blocks/{height}": {
            "get": operation(
                "getBlock",
                "blocks",
                "One block",
                {"200": block, **error_responses(("bad_request", "not_found"))},
                [height],
            )
        },
        "/v1/blocks": {
            "get": operation(
                "listBlocks",
                "blocks",
                "Consecutive blocks",
                {
                    "200": ok(ref("BlockPage"), "Blocks from `from` while they exist."),
                    **error_responses(("bad_request",)),
                },
                [_FROM, _LIMIT],
            )
        },
        "/v1/chain": {
            "get": operation(
                "chainPage",
                "blocks",
                "Full blocks for observers (msgpack)",
                {"200": chain_page, **error_responses(("bad_request",))},
                [_FROM, _LIMIT],
            )
        },
        "/v1/chain/stream": {"get": _chain_stream()},
    }
