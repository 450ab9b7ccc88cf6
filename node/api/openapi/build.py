"""Assemble the OpenAPI document from the areas, and the ``python -m node.api.openapi`` CLI."""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from importlib import resources
from typing import Any

from node.api.openapi import (
    audit,
    blocks,
    dashboard,
    node,
    queries,
    records,
    state,
    transactions,
)
from node.api.openapi.common import Schema, error_response, scalar_schemas

SPEC_NAME = "openapi.json"

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


def _schemas() -> dict[str, Schema]:
    """Every named schema, in the order the file lists them."""
    return {
        **scalar_schemas(),
        **blocks.header_schemas(),
        **blocks.block_schemas(),
        **blocks.event_schemas(),
        **transactions.submission_schemas(),
        **transactions.outcome_schemas(),
        **records.asset_schemas(),
        **records.registry_schemas(),
        **queries.query_schemas(),
        **queries.provenance_schemas(),
        **audit.audit_schemas(),
        **queries.bundle_schemas(),
        **node.node_schemas(),
        **state.state_schemas(),
    }


def _paths() -> dict[str, Schema]:
    """Every operation, by path, in the order the file lists them."""
    return {
        **transactions.submit_ops(),
        **blocks.block_ops(),
        **queries.query_ops(),
        **audit.audit_ops(),
        **node.node_ops(),
        **dashboard.dashboard_ops(),
        **state.state_ops(),
    }


def _any_request_responses() -> dict[str, Schema]:
    """Answers any request can get before it reaches an operation."""
    return {
        name: {**error_response(status, [code]), "x-any-request": True, "x-status": status}
        for name, status, code in (
            ("MalformedHttp", 400, "malformed_http"),
            ("UnknownPath", 404, "not_found"),
            ("MethodNotAllowed", 405, "method_not_allowed"),
            ("DeclaredTooLarge", 413, "too_large"),
            ("RateLimited", 429, "rate_limited"),
        )
    }


_TAGS = (
    ("transactions", "Submitting transactions and reading their outcome."),
    ("blocks", "Committed blocks."),
    ("queries", "Contract queries and provenance bundles."),
    ("audit", "A regulator's views."),
    ("node", "The node itself."),
    ("dashboard", "The web page every node serves."),
)


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a plain dict; see the package docstring)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Provenet client API",
            "version": "1",
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": name, "description": description} for name, description in _TAGS],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _any_request_responses(),
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
