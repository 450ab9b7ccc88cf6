"""schemathesis hooks for the API fuzz run (tests/node/test_openapi.py).

schemathesis loads this module by name from ``SCHEMATHESIS_HOOKS`` in its
own process.  It teaches schemathesis the node's second encoding and adds
one check of our own:

* requests with ``Content-Type: application/msgpack`` are the generated
  value packed with msgpack (values msgpack cannot pack, such as integers
  past 64 bits in negative cases, are sent as the never-used byte 0xc1, a
  malformed body the node must refuse with a 4xx all the same);
* msgpack answers are unpacked and every raw byte string written as
  lowercase hex, which is exactly the object the JSON answer would hold, so
  the spec's one schema checks both encodings;
* ``error_code_documented``: every error answer's ``error.code`` is one the
  spec lists for that operation and status (``x-error-codes``), or one it
  lists for any request (``x-any-request``: unknown path, method not
  allowed, malformed HTTP, declared body too large, rate limited);
* ``undeclared_media_type_refused``: a body of a media type the operation
  does not list is answered 415 (schemathesis sends text/plain and
  multipart bodies in its coverage phase, and its own checks let them pass).
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import schemathesis

MSGPACK = "application/msgpack"
# msgpack's one never-used byte: a body no msgpack decoder accepts.
UNPACKABLE = b"\xc1"


@schemathesis.serializer(MSGPACK)
def pack_body(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    # schemathesis puts the bytes a serializer returns in the request's body
    # itself (it wraps them as {"data": ...} for the transport).
    if isinstance(value, bytes):
        return value
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return UNPACKABLE
    return packed


def _hex(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: _hex(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_hex(item) for item in value]
    return value


@schemathesis.deserializer(MSGPACK)
def unpack_answer(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> Any:
    return _hex(msgpack.unpackb(response.content, raw=False, strict_map_key=False))


def _error_code(response: schemathesis.Response) -> object:
    content_type = response.headers.get("content-type", [""])[0]
    if content_type.startswith(MSGPACK):
        body = _hex(msgpack.unpackb(response.content, raw=False, strict_map_key=False))
    else:
        body = json.loads(response.content)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), (
        f"a {response.status_code} answer that is not an Error: {response.content[:200]!r}"
    )
    return body["error"].get("code")


@schemathesis.check
def error_code_documented(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    if response.status_code < 400:
        return None
    code = _error_code(response)
    status = str(response.status_code)
    documented = case.operation.definition.raw.get("responses", {}).get(status, {})
    allowed = set(documented.get("x-error-codes", []))
    raw_schema = case.operation.schema.raw_schema
    for general in raw_schema.get("components", {}).get("responses", {}).values():
        if general.get("x-any-request") and general.get("x-status") == response.status_code:
            allowed.update(general["x-error-codes"])
    assert code in allowed, (
        f"{case.operation.label} answered {status} with code {code!r}; "
        f"the spec lists {sorted(allowed)} for {status}"
    )
    return None


def _media_type(value: str) -> str:
    return value.split(";")[0].strip().lower()


@schemathesis.check
def undeclared_media_type_refused(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    body = case.operation.definition.raw.get("requestBody")
    header = response.request.headers.get("Content-Type")
    sent = header.decode("latin-1") if isinstance(header, bytes) else header
    if body is None or not sent or response.status_code in (413, 429):
        return None
    declared = {_media_type(media) for media in body["content"]}
    if _media_type(sent) not in declared:
        assert response.status_code == 415, (
            f"{case.operation.label} answered {response.status_code} to a {sent} body; "
            f"it takes {sorted(declared)}, so it must answer 415"
        )
    return None
