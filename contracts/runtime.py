"""Deterministic execution of one transaction: ``execute(state, tx, block)``.

Theory of operation
-------------------
Execution happens in two stages.

*Admission* checks the envelope against state, cheapest check first: size
and nesting within the chain's limits (``too_large``), the chain id
(``wrong_chain``), the expiry height (``expired`` when ``expiry_height <
block height``), the sender's key (``unknown_key``, or ``key_revoked``
from the block after its revocation), the nonce and the signature.  A
transaction refused here changes nothing at all, not even its nonce:
nothing proves the sender sent it, or it is a replay.

*Nonce rule*: a sender's first nonce is 0 and each admitted transaction
must carry exactly the sender's next nonce (``bad_nonce`` otherwise).  An
admitted transaction consumes its nonce whether its contract call succeeds
or is rejected, so a client's later transactions never wait on a refused
one and a refused transaction cannot be replayed.

*Dispatch* looks the method up in the table of contracts.methods
(``unknown_contract``, ``unknown_method``), runs its stateless parse
function (``invalid_argument``, ``limit_exceeded``: the checks a node
also runs at its door, contracts.admission) and then its handler against
a metered :class:`~contracts.buffer.TxBuffer`.  If either raises
:class:`~contracts.errors.Rejected`, the buffer is dropped and the receipt
carries the code; otherwise its writes are applied in key order.  Either
way the nonce is then bumped.  The receipt's ``writes`` counts the keys
written, nonce included.

Only a :class:`~contracts.receipt.Receipt` ever leaves ``execute`` for a
successfully constructed transaction.  The constructor guarantees
canonical ``args`` (contracts.tx), but the ``args`` dict stays mutable; a
transaction whose ``args`` were changed into a non-canonical value after
construction is refused with ``invalid_argument`` and an empty ``tx_id``
(it has no canonical bytes, hence no id), changing nothing, not even its
nonce.

Nothing here reads a clock, draws randomness or performs I/O, and all
iteration is over sorted keys, so equal state and equal transactions give
equal receipts and equal state on every node.
"""

from __future__ import annotations

from consensus.codec import Verifier, digest, ed25519_verify, encode
from contracts.admission import check_envelope
from contracts.buffer import TxBuffer
from contracts.config import CONFIG_KEY, ChainConfig, load_config
from contracts.context import Call
from contracts.errors import ErrorCode, Rejected
from contracts.methods import dispatch
from contracts.orgs import KeyRecord, Org, key_key, nonce_key, org_key
from contracts.receipt import STATUS_OK, STATUS_REJECTED, BlockContext, Receipt
from contracts.records import load, load_int
from contracts.results import writes_digest
from contracts.state import ReadableState, State, apply_writes
from contracts.tx import Transaction, args_problem, encode_tx, signing_message


def execute(
    state: State, tx: Transaction, block: BlockContext, verifier: Verifier = ed25519_verify
) -> Receipt:
    """Execute ``tx`` in ``block`` against ``state``; see the module docstring.

    ``verifier`` checks the signature; the node may pass a caching verifier
    for transactions it already checked at admission to its mempool.
    """
    if not isinstance(tx, Transaction):
        raise TypeError("execute() takes a contracts.tx.Transaction")
    if not isinstance(block, BlockContext):
        raise TypeError("execute() takes a contracts.receipt.BlockContext")
    config = load_config(state.get(CONFIG_KEY))
    problem = args_problem(tx.args)
    if problem is not None:
        # Only reachable by mutating tx.args after construction.
        message = f"transaction args {problem}"
        return Receipt(b"", STATUS_REJECTED, ErrorCode.INVALID_ARGUMENT, message)
    raw = encode_tx(tx)
    transaction_id = digest(raw)
    try:
        org_id = _admit(state, tx, len(raw), block, config, verifier)
    except Rejected as refusal:
        return Receipt(transaction_id, STATUS_REJECTED, refusal.code, refusal.message)
    limits = config.limits
    buffer = TxBuffer(state, limits.max_steps_per_tx, limits.max_writes_per_tx)
    sender_org = load(state, org_key(org_id), Org)
    assert sender_org is not None, "every registered key belongs to a member"
    call = Call(tx, transaction_id, block, config, sender_org, buffer)
    try:
        dispatch(call)
    except Rejected as refusal:
        nonce_write = _consume_nonce(state, tx)
        return Receipt(
            transaction_id,
            STATUS_REJECTED,
            refusal.code,
            refusal.message,
            (),
            1,
            writes_digest([nonce_write]),
        )
    writes = buffer.writes()
    apply_writes(state, writes)
    nonce_write = _consume_nonce(state, tx)
    return Receipt(
        transaction_id,
        STATUS_OK,
        None,
        "",
        tuple(call.events),
        len(writes) + 1,
        writes_digest([*writes, nonce_write]),
    )


def _admit(
    state: ReadableState,
    tx: Transaction,
    size_bytes: int,
    block: BlockContext,
    config: ChainConfig,
    verifier: Verifier,
) -> str:
    """Check the envelope; return the sending organisation's id."""
    check_envelope(tx, size_bytes, config.limits)
    if tx.chain_id != config.chain_id:
        raise Rejected(ErrorCode.WRONG_CHAIN, f"transaction is for chain {tx.chain_id!r}")
    if tx.expiry_height is not None and tx.expiry_height < block.height:
        raise Rejected(ErrorCode.EXPIRED, f"transaction expired at height {tx.expiry_height}")
    record = load(state, key_key(tx.sender), KeyRecord)
    if record is None or record.valid_from_height > block.height:
        raise Rejected(
            ErrorCode.UNKNOWN_KEY, f"key {tx.sender.hex()[:16]} is not an active member key"
        )
    if record.revoked_from_height is not None and block.height >= record.revoked_from_height:
        raise Rejected(
            ErrorCode.KEY_REVOKED,
            f"key {tx.sender.hex()[:16]} of {record.org_id} is revoked from height {record.revoked_from_height}",
        )
    expected = load_int(state, nonce_key(tx.sender))
    if tx.nonce != expected:
        raise Rejected(ErrorCode.BAD_NONCE, f"nonce {tx.nonce}, expected {expected}")
    if not verifier(tx.sender, signing_message(tx), tx.signature):
        raise Rejected(ErrorCode.BAD_SIGNATURE, "signature does not verify")
    return record.org_id


def _consume_nonce(state: State, tx: Transaction) -> tuple[bytes, bytes]:
    """Bump the sender's nonce; the write it made."""
    write = (nonce_key(tx.sender), encode(tx.nonce + 1))
    state.put(*write)
    return write
