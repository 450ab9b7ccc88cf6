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

Layout: ``common.py`` holds the vocabulary (shapes, error codes, responses,
parameters); one module per area holds that area's schemas and operations
(``transactions``, ``blocks``, ``records``, ``queries``, ``audit``,
``node``, ``dashboard``); ``build.py`` assembles the document in a fixed
order (the file is compared byte for byte) and holds the CLI.
"""

from node.api.openapi.build import SPEC_NAME, build_spec, main, render, spec_bytes
from node.api.openapi.common import ERROR_STATUS, OPENAPI_PATH

__all__ = [
    "ERROR_STATUS",
    "OPENAPI_PATH",
    "SPEC_NAME",
    "build_spec",
    "main",
    "render",
    "spec_bytes",
]
