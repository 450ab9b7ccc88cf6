"""The transaction envelope: fields, canonical bytes, signing, decoding.

Theory of operation
-------------------
A transaction names a chain, a sender's Ed25519 public key, the sender's
next nonce, a contract, a method and its arguments, and optionally the last
block height at which it may execute.  The sender signs
``signing_bytes("tx", chain_id, body)`` (codec's domain-separated form), so
a transaction can be replayed neither on another chain nor as another kind
of signed object.  The envelope is the body plus the signature, encoded
canonically; the transaction id is the SHA-256 of those bytes, so two
different signatures over one body are two different transactions (the
nonce rule stops both from executing).

:func:`decode_tx` accepts only canonical bytes within the chain's limits
and exactly the envelope's fields with their types; anything else raises
:class:`~consensus.codec.DecodeError`, which the node maps to a refusal
before the transaction ever reaches a block.

A :class:`Transaction` built in-process must be exactly what decoding its
own bytes would give: ``args`` holds only ``None``, ``bool``, ``int`` (in
the msgpack range), ``str``, ``bytes``, ``list`` and ``dict`` with ``str``
keys, by exact type (no tuples, no subclasses, no floats).  Otherwise a
tuple would give the same bytes, id and signature as its list twin but
execute differently (a rule checking ``isinstance(x, list)``), and a float
could not be encoded at all.  The constructor raises ``TypeError`` (or
``ValueError`` for an out-of-range integer or excess nesting): that is
caller misuse, not a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from consensus.codec import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    DecodeError,
    Limits,
    Signer,
    Verifier,
    decode,
    digest,
    ed25519_verify,
    encode,
    signing_bytes,
)
from contracts.config import ContractLimits

TX_DOMAIN = "tx"
MAX_NONCE = 2**63 - 1
# The codec's integer range (msgpack int64 / uint64).
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
# The codec's nesting bound less the envelope level that holds ``args``.
_MAX_ARGS_NESTING = 31
_SCALAR_TYPES = frozenset({type(None), bool, bytes})
_FIELDS = frozenset(
    {"chain_id", "sender", "nonce", "contract", "method", "args", "expiry_height", "signature"}
)


@dataclass(frozen=True, slots=True)
class Transaction:
    """A signed (or, before signing, unsigned) transaction envelope."""

    chain_id: str
    sender: bytes
    nonce: int
    contract: str
    method: str
    args: dict[str, object] = field(default_factory=dict)
    expiry_height: int | None = None
    signature: bytes = b""

    def __post_init__(self) -> None:
        for name in ("chain_id", "contract", "method"):
            value = getattr(self, name)
            if type(value) is not str or not _is_utf8(value):
                raise TypeError(f"Transaction.{name} must be UTF-8 str")
        if type(self.sender) is not bytes or len(self.sender) != PUBLIC_KEY_SIZE:
            raise TypeError("Transaction.sender must be a 32-byte Ed25519 public key")
        if not _is_int(self.nonce) or not 0 <= self.nonce <= MAX_NONCE:
            raise TypeError("Transaction.nonce must be an int in 0..2**63-1")
        problem = args_problem(self.args)
        if problem is not None:
            error = ValueError if problem.startswith(_RANGE_PREFIX) else TypeError
            raise error(f"Transaction.args {problem}")
        if self.expiry_height is not None and (
            not _is_int(self.expiry_height) or not 0 <= self.expiry_height <= MAX_NONCE
        ):
            raise TypeError("Transaction.expiry_height must be None or an int in 0..2**63-1")
        if type(self.signature) is not bytes:
            raise TypeError("Transaction.signature must be bytes")

    def body(self) -> dict[str, object]:
        """Everything the signature covers."""
        return {
            "chain_id": self.chain_id,
            "sender": self.sender,
            "nonce": self.nonce,
            "contract": self.contract,
            "method": self.method,
            "args": self.args,
            "expiry_height": self.expiry_height,
        }


def _is_int(value: object) -> bool:
    return type(value) is int


_RANGE_PREFIX = "is out of range:"


def _is_utf8(text: str) -> bool:
    """False for a str holding a lone surrogate, which has no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def args_problem(args: object) -> str | None:
    """Why ``args`` is not exactly its own decoded form, or None if it is.

    See the module docstring: exact types only, so that equal bytes always
    mean equal behaviour.
    """
    if type(args) is not dict:
        return "must be a dict with str keys"
    stack: list[tuple[object, str, int]] = [(args, "args", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > _MAX_ARGS_NESTING:
            return f"{_RANGE_PREFIX} {path} nests deeper than {_MAX_ARGS_NESTING}"
        if type(value) in _SCALAR_TYPES:
            continue
        if type(value) is str and isinstance(value, str):
            if not _is_utf8(value):
                return f"is not canonical: {path} holds a lone surrogate, not UTF-8 text"
            continue
        # Exact type checks first; isinstance only narrows for the checker.
        if type(value) is int and isinstance(value, int):
            if not _INT_MIN <= value <= _INT_MAX:
                return f"{_RANGE_PREFIX} {path} is outside the 64-bit integer range"
        elif type(value) is list and isinstance(value, list):
            stack.extend((item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value))
        elif type(value) is dict and isinstance(value, dict):
            for key, item in value.items():
                if type(key) is not str or not _is_utf8(key):
                    return f"is not canonical: {path} has a key {key!r} that is not UTF-8 str"
                stack.append((item, f"{path}[{key!r}]", depth + 1))
        else:
            return (
                f"is not canonical: {path} is a {type(value).__name__}; use only None, bool, "
                "int, str, bytes, list and dict (a tuple or float does not survive encoding)"
            )
    return None


def signing_message(tx: Transaction) -> bytes:
    """The exact bytes the sender signs."""
    return signing_bytes(TX_DOMAIN, tx.chain_id, tx.body())


def sign_tx(
    signer: Signer,
    *,
    chain_id: str,
    nonce: int,
    contract: str,
    method: str,
    args: dict[str, object],
    expiry_height: int | None = None,
) -> Transaction:
    """Build and sign a transaction from ``signer``'s key."""
    unsigned = Transaction(
        chain_id=chain_id,
        sender=signer.public_key,
        nonce=nonce,
        contract=contract,
        method=method,
        args=args,
        expiry_height=expiry_height,
    )
    signature = signer.sign(signing_message(unsigned))
    return replace(unsigned, signature=signature)


def verify_tx(tx: Transaction, verifier: Verifier = ed25519_verify) -> bool:
    """True when the signature is the sender's over the body."""
    return verifier(tx.sender, signing_message(tx), tx.signature)


def encode_tx(tx: Transaction) -> bytes:
    """Canonical bytes of the signed envelope."""
    return encode({**tx.body(), "signature": tx.signature})


def tx_id(tx: Transaction) -> bytes:
    """The transaction id: SHA-256 of the signed envelope's bytes."""
    return digest(encode_tx(tx))


def codec_limits(limits: ContractLimits) -> Limits:
    """Decoder bounds for a transaction under the chain's limits, as execution applies them.

    Execution must decode every envelope exactly as every other version of
    the node did (a block's receipts and state root depend on it), so these
    bounds never change without a change of protocol; a payload in a block
    is at most ``max_tx_bytes``, which bounds the work already.  The node's
    API door applies tighter counts first (:func:`admission_codec_limits`).
    """
    return Limits(
        max_size_bytes=limits.max_tx_bytes,
        # The envelope map and the args map add one level each.
        max_depth=limits.max_args_depth + 1,
        max_collection_len=limits.max_collection_len,
        max_str_len=limits.max_string_len,
        max_bytes_len=limits.max_string_len,
    )


def admission_codec_limits(limits: ContractLimits) -> Limits:
    """:func:`codec_limits` plus value and container counts, for admission only.

    An envelope is 17 values around its arguments.  The largest honest
    arguments are a food process's max_inputs + max_outputs maps of two or
    three fields (at most 7 values and 1 container each), or a list of
    identifiers; the bounds hold both with room to spare and keep the
    decoding work of any envelope to a few milliseconds
    (scripts/bench_decode.py).  A transaction over them is refused at the
    door (``malformed_msgpack``), never ordered; one that reaches a block
    anyway is decoded by :func:`codec_limits` like any other.
    """
    return replace(
        codec_limits(limits),
        max_objects=64 + 8 * (limits.max_inputs + limits.max_outputs) + limits.max_collection_len,
        max_containers=32 + limits.max_inputs + limits.max_outputs,
    )


def decode_tx(data: bytes, limits: ContractLimits | None = None) -> Transaction:
    """Decode a canonical envelope; raise ``DecodeError`` for anything else."""
    return tx_from_value(decode(data, codec_limits(limits or ContractLimits())))


def tx_from_value(value: object) -> Transaction:
    """The transaction of an already decoded envelope value; ``DecodeError`` if it is not one.

    Apart from :func:`decode_tx` so a caller can tell bytes that are not
    canonical msgpack from a canonical value that is not a transaction.
    """
    if not isinstance(value, dict) or set(value) != _FIELDS:
        raise DecodeError("a transaction is a map of exactly the envelope fields")
    signature = value["signature"]
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise DecodeError("signature must be 64 bytes")
    try:
        return Transaction(**value)
    except (TypeError, ValueError) as exc:
        raise DecodeError(str(exc)) from None


def value_depth(value: object) -> int:
    """Nesting depth of a codec value (a scalar is depth 0)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
    return deepest
