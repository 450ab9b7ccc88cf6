"""The client API's error: a stable code, a message, and the HTTP status of its code.

Every refusal of the client API leaves as ``{"error": {"code", "message"}}``
with the status :data:`~node.sdk.errors.HTTP_STATUS` gives its code (the
one table, beside the SDK's errors, which read the same answers).  The codes
are part of the public interface (node/api/openapi.json lists them): never
renamed or reused.
"""

from __future__ import annotations

from node.sdk.errors import ProvenetError, status_of


class ApiError(ProvenetError):
    """A refusal to send to the client; ``retry_after_s`` goes out as Retry-After."""

    retry_after_s: int | None

    def __init__(self, code: str, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(code, message, status_of(code), retry_after_s, text=message)
