"""The client API's error: a stable code, a message, and the HTTP status of each code.

Every refusal of the client API leaves as ``{"error": {"code", "message"}}``
with the status :data:`STATUS_OF` gives its code.  The codes are part of the
public interface (node/api/openapi.json lists them): never renamed or reused.
"""

from __future__ import annotations

STATUS_OF = {
    "malformed_json": 400,
    "malformed_msgpack": 400,
    "malformed_tx": 400,
    "malformed_http": 400,
    "duplicate_key": 400,
    "float_not_allowed": 400,
    "bad_request": 400,
    "wrong_chain": 400,
    "expired": 400,
    "unknown_query": 400,
    "unknown_contract": 400,
    "unknown_method": 400,
    "invalid_argument": 400,
    "limit_exceeded": 400,
    # A query that ran out of its step budget (contracts/queries.py).
    "budget_exceeded": 400,
    "bad_signature": 401,
    "unknown_key": 403,
    "key_revoked": 403,
    "read_only": 403,
    "not_found": 404,
    "unknown_asset": 404,
    "unknown_mine": 404,
    "unknown_org": 404,
    "unknown_certificate": 404,
    "unknown_proposal": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "nonce_used": 409,
    "nonce_conflict": 409,
    "nonce_gap": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "mempool_full": 429,
    "sender_queue_full": 429,
    "too_many_subscribers": 503,
    "unavailable": 503,
    "internal": 500,
}


class ApiError(Exception):
    """A refusal to send to the client; ``retry_after_s`` goes out as Retry-After."""

    def __init__(self, code: str, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def status(self) -> int:
        return STATUS_OF.get(self.code, 400)
