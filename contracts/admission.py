"""Stateless admission: the checks a node runs before a transaction is ordered.

Theory of operation
-------------------
Like CometBFT's ``CheckTx`` and Fabric's endorsement, a node refuses at
its door a transaction that can never execute successfully, so it never
costs a block slot, a receipt or the sender's nonce.
:func:`check_stateless` runs, in execution's own order, every check that
needs no state:

1. the envelope: canonical ``args`` (``invalid_argument``), size and
   nesting within the chain's limits (``too_large``);
2. the contract and the method exist (``unknown_contract``,
   ``unknown_method``);
3. the method's parse function from contracts.methods: argument types,
   ranges, required fields, identifier formats, list sizes
   (``invalid_argument``, ``limit_exceeded``).

They are the same functions :func:`contracts.runtime.execute` runs, so a
transaction this refuses with code C would be refused by execution with
the same code C (the property test in tests/contracts checks it), and a
transaction it accepts may still be refused at execution by a check that
reads state.

*Stateless* means fixed for the life of the chain: the arguments, the
constants of the code and the genesis ``ContractLimits`` (no transaction
writes the config record).  The chain id, the expiry height, the sender's
key and nonce and the signature are checked by the node's admission
against its current state and again at execution; every rule that reads
state (members, roles, sanctions, assets, certificates, KP participants,
block height) runs only at execution.
"""

from __future__ import annotations

from contracts.config import ContractLimits
from contracts.errors import ErrorCode, Rejected
from contracts.methods import lookup
from contracts.tx import Transaction, args_problem, encode_tx, value_depth


def check_envelope(tx: Transaction, size_bytes: int, limits: ContractLimits) -> None:
    """Refuse an envelope over the chain's size or nesting limit (``too_large``)."""
    if size_bytes > limits.max_tx_bytes:
        raise Rejected(
            ErrorCode.TOO_LARGE, f"transaction of {size_bytes} bytes exceeds {limits.max_tx_bytes}"
        )
    if value_depth(tx.args) > limits.max_args_depth:
        raise Rejected(ErrorCode.TOO_LARGE, f"arguments nest deeper than {limits.max_args_depth}")


def check_stateless(tx: Transaction, limits: ContractLimits) -> Rejected | None:
    """The refusal execution would give ``tx`` whatever the state, or None.

    ``limits`` are the chain's genesis limits.  Pure: reads no state, clock
    or randomness, and never raises ``Rejected`` (it returns it).
    """
    if not isinstance(tx, Transaction):
        raise TypeError("check_stateless() takes a contracts.tx.Transaction")
    problem = args_problem(tx.args)
    if problem is not None:
        return Rejected(ErrorCode.INVALID_ARGUMENT, f"transaction args {problem}")
    try:
        check_envelope(tx, len(encode_tx(tx)), limits)
        lookup(tx.contract, tx.method).read(tx.args, limits)
    except Rejected as refusal:
        return refusal
    return None
