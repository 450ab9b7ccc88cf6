"""Exceptions the Provenet SDK raises.

Every error a node reports (``{"error": {"code", "message"}}`` with an HTTP
status) becomes a :class:`ProvenetError` carrying the node's stable ``code``,
so callers branch on ``error.code`` rather than on message text::

    try:
        await client.submit("diamonds", "sell", {...})
    except TransactionRejected as refused:
        print(refused.code, refused.receipt["message"])   # e.g. not_conflict_free
    except ProvenetError as error:
        if error.code == "mempool_full":
            await asyncio.sleep(error.retry_after_s or 1)

The subclasses mark outcomes that are not plain API errors: a transaction
that committed but the contract refused, one the node dropped before
execution, a proof that does not verify, and no node answering at all.
"""

from __future__ import annotations


class ProvenetError(Exception):
    """An error reported by a node, or by the SDK about a node's answer.

    ``code`` is the node's stable error code (see the API reference), ``status``
    the HTTP status when the error came from an HTTP answer, and
    ``retry_after_s`` the node's Retry-After hint on a 429.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
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
