"""Reading a client's request body: length, media type and strict JSON, before any work.

Theory of operation
-------------------
Every check here is made before the work it guards, cheapest first:

1. the declared ``Content-Length`` against the body limit, before a byte of
   the body is read (413 ``too_large`` at once, not after the client has
   trickled it in);
2. the media type against the ones the endpoint takes (415
   ``unsupported_media_type``); a body is JSON or msgpack by its
   ``Content-Type`` and never by guessing;
3. the body itself, read with the limit enforced as it arrives and within a
   deadline (408 ``request_timeout``: a client trickling a body holds a
   connection, and the idle timeout does not run while a request is in
   flight);
4. JSON only: the number of values, bounded on the raw bytes before the
   parser allocates any (413 ``too_large``): arrays and objects are at most
   the count of ``[`` and ``{``, and values at most that plus the count of
   ``,`` plus one, which ``bytes.count`` finds in well under a millisecond
   per MiB (text holding those characters only over-counts, the safe way);
   then a strict parse
   that refuses what RFC 8259 leaves to the implementation and a ledger
   cannot: a key repeated in one object (400 ``duplicate_key``: a proxy or
   auditor that keeps the first value would see another transaction than
   the ledger executes), floats and NaN or Infinity (400
   ``float_not_allowed``: amounts are integers), text that is not UTF-8
   (lone surrogates) and nesting deeper than the parser's stack (400
   ``malformed_json``, never a 500).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from node.api.errors import ApiError
from node.sdk.strict_json import RepeatedKey, unique_keys

JSON = "application/json"
MSGPACK = "application/msgpack"
JSON_OR_MSGPACK = frozenset({JSON, MSGPACK})


def check_declared_length(request: web.Request, max_bytes: int) -> None:
    """Refuse a body declared larger than ``max_bytes`` before reading any of it."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise ApiError("too_large", f"a body of {declared} bytes exceeds the limit of {max_bytes}")


def media_type(request: web.Request, accepted: frozenset[str]) -> str:
    """The request's media type if the endpoint takes it; else 415."""
    kind = request.content_type if "Content-Type" in request.headers else ""
    if kind not in accepted:
        wanted = " or ".join(sorted(accepted))
        shown = kind or "no Content-Type"
        raise ApiError("unsupported_media_type", f"send {wanted}, not {shown}")
    return kind


async def read_body(request: web.Request, max_bytes: int, timeout_ms: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``max_bytes``, and
    with 408 if it has not all arrived ``timeout_ms`` after the headers."""
    check_declared_length(request, max_bytes)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            async for chunk in request.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > max_bytes:
                    raise ApiError("too_large", f"the body exceeds the limit of {max_bytes} bytes")
    except TimeoutError:
        raise ApiError(
            "request_timeout", f"the body did not arrive whole within {timeout_ms} ms"
        ) from None
    return bytes(body)


def _reject_float(text: str) -> Any:
    raise ApiError("float_not_allowed", f"{text} is a float; amounts are integers")


def parse_json(raw: bytes, max_containers: int, max_values: int) -> Any:
    """Strictly parse a JSON body; see the module docstring for every refusal."""
    containers = raw.count(b"[") + raw.count(b"{")
    if containers > max_containers:
        raise ApiError(
            "too_large",
            f"the body holds up to {containers} arrays and objects; the limit is {max_containers}",
        )
    values = containers + raw.count(b",") + 1
    if values > max_values:
        raise ApiError(
            "too_large", f"the body holds up to {values} values; the limit is {max_values}"
        )
    try:
        document = json.loads(
            raw,
            parse_float=_reject_float,
            parse_constant=_reject_float,
            object_pairs_hook=unique_keys,
        )
    except RepeatedKey as exc:
        raise ApiError("duplicate_key", str(exc)) from None
    except RecursionError:
        raise ApiError("malformed_json", "the body nests deeper than the parser allows") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError("malformed_json", f"body is not JSON: {exc}") from None
    if b"\\u" in raw:
        _refuse_lone_surrogates(document)
    return document


def _refuse_lone_surrogates(document: Any) -> None:
    """Refuse text with no UTF-8 form, which only a ``\\u`` escape can make.

    A lone surrogate (``"\\ud800"``) parses, but the node could neither hash
    nor store it; it must not get past the door as a 500 later.
    """
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError("malformed_json", "the body holds text that is not UTF-8") from None
    except RecursionError:
        raise ApiError("malformed_json", "the body nests deeper than the parser allows") from None
