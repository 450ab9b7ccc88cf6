"""Provenet's errors: one base with a stable code, and the HTTP status of each code.

Every error Provenet raises on purpose is a :class:`ProvenetError` with a
stable ``code`` and a ``message`` for people, so callers branch on
``error.code`` rather than on message text.  Every error a node reports
(``{"error": {"code", "message"}}`` with an HTTP status) becomes one::

    try:
        await client.submit("diamonds", "sell", {...})
    except TransactionRejected as refused:
        print(refused.code, refused.receipt["message"])   # e.g. not_conflict_free
    except ProvenetError as error:
        if error.code == "mempool_full":
            await asyncio.sleep(error.retry_after_s or 1)

The subclasses here mark outcomes that are not plain API errors: a
transaction that committed but the contract refused, one the node dropped
before execution, a proof that does not verify, and no node answering at
all.  The other layers subclass it too: the client API's refusal
(``node.api.errors.ApiError``), a malformed configuration or key file
(``ConfigError``, ``KeyFileError``), a bundle that does not verify
(``BundleError``) and so on, each keeping the name callers catch.

:data:`HTTP_STATUS` is the one table from a client API error code to its
HTTP status: the node answers with it and its OpenAPI description lists it.
The codes are part of the public interface: never renamed or reused.
"""

from __future__ import annotations

# The HTTP status of every error code the client API answers with.
HTTP_STATUS: dict[str, int] = {
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
    # A governance removal naming a key not in the validator set.
    "unknown_validator": 404,
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


def status_of(code: str) -> int:
    """The HTTP status the client API answers ``code`` with (400 for a code not listed)."""
    return HTTP_STATUS.get(code, 400)


class ProvenetError(Exception):
    """The base of Provenet's errors: a stable ``code`` and a ``message``.

    ``status`` is the HTTP status when the error came from (or goes out as)
    an HTTP answer, and ``retry_after_s`` the Retry-After hint of a 429.
    ``str()`` of the error is ``text``, by default ``"code: message"``.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        retry_after_s: float | None = None,
        *,
        text: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if text is None else text)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s


class TransactionRejected(ProvenetError):
    """The transaction committed (its nonce is used) but the contract refused it.

    ``receipt`` is the committed receipt; ``code`` is its stable refusal code.
    """

    def __init__(self, receipt: dict[str, object], result: dict[str, object] | None = None) -> None:
        code = str(receipt.get("code") or receipt.get("error") or "rejected")
        super().__init__(code, str(receipt.get("message", "")), 200)
        self.receipt = receipt
        # The verified result (receipt plus height, index and block hash).
        self.result = result if result is not None else receipt


class TransactionDropped(ProvenetError):
    """The node dropped the transaction before executing it (expired, nonce gap...).

    Its nonce is not used; ``tx_status`` is the node's TxStatus answer.
    """

    def __init__(self, tx_status: dict[str, object]) -> None:
        receipt = tx_status.get("receipt")
        details = receipt if isinstance(receipt, dict) else {}
        code = str(details.get("code") or details.get("error") or "dropped")
        super().__init__(code, str(details.get("message", "dropped before execution")), 200)
        self.tx_status = tx_status


class TransactionTimeout(ProvenetError):
    """The transaction was still pending when the wait ran out; it may commit later.

    Ask again with ``tx_status(tx_id, wait=True)``: the id is ``tx_id``.
    """

    def __init__(self, tx_id: bytes) -> None:
        super().__init__("timeout", f"transaction {tx_id.hex()} still pending when the wait ended")
        self.tx_id = tx_id


class ProofError(ProvenetError):
    """A node's commit proof does not verify; ``part`` names what failed.

    Parts: ``malformed`` (the JSON is not a proof), ``chain_id``, ``block_hash``,
    ``header`` (internally inconsistent), ``certificate`` (not a quorum of valid
    validator signatures over this block), ``inclusion`` (the transaction is not
    at that place under the block's requests root), ``transactions`` (a block's
    listed transactions do not match its requests root).
    """

    def __init__(self, part: str, message: str) -> None:
        super().__init__("bad_proof", f"{part}: {message}")
        self.part = part


class Unavailable(ProvenetError):
    """No node answered (connection failures, timeouts or 5xx from every node).

    ``errors`` lists what each node said, as ``(url, reason)`` pairs.
    """

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        # Each node is named once, with the last thing it said.
        last = dict(errors)
        summary = "; ".join(f"{url}: {reason}" for url, reason in last.items()) or "no nodes"
        super().__init__("unavailable", f"no node answered ({summary})")
        self.errors = errors
