"""Executing committed blocks through contracts/ against the node's state.

Theory of operation
-------------------
The whole state lives in a :class:`~contracts.state.MemoryState` (which keeps
the Merkle root up to date as keys change) and is mirrored in SQLite.  A
block executes against a :class:`TrackingState` that records every key it
changes; :meth:`Ledger.execute_block` then hands the block, its receipts and
exactly those writes to :meth:`Store.commit_block` in one SQLite
transaction.  A crash before that commit loses nothing that was durable:
the restarted node reloads the last committed state and the replica
delivers the block again.

Transactions are decoded and their signatures verified once per node: the
mempool or the replica's request check leaves the decoded transaction in
:class:`TxCache` and the signature answer in the shared caching verifier,
and execution reuses both.  A transaction id that already committed in an
earlier block is not executed again (PBFT may deliver a request twice across
view changes); its position in the later block gets a ``duplicate`` result.
A payload that does not decode gets a ``malformed_tx`` result.  Both are
deterministic, so every node reaches the same state root.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from consensus.blocks import CommittedBlock
from consensus.codec import DecodeError, Verifier
from consensus.epochs import EpochRules, ValidatorHistory
from consensus.quorum import ValidatorSet
from contracts.config import ContractLimits
from contracts.receipt import STATUS_REJECTED, BlockContext
from contracts.results import (
    EMPTY_WRITES_DIGEST,
    HeightResults,
    receipt_leaf_of,
    receipts_root,
)
from contracts.runtime import execute
from contracts.state import MemoryState
from contracts.tx import Transaction, decode_tx, verify_tx
from contracts.validators import VALIDATORS_KEY, validator_set
from node.runtime.storage import Store, ValidatorChange

STATUS_DUPLICATE = "duplicate"
CODE_MALFORMED_TX = "malformed_tx"
CODE_DUPLICATE = "duplicate_tx"


class TxCache:
    """Decoded transactions by id, bounded; the oldest are forgotten first."""

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[bytes, Transaction] = OrderedDict()
        self._max_entries = max(1, max_entries)

    def put(self, tx_id: bytes, tx: Transaction) -> None:
        self._entries[tx_id] = tx
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._entries

    def take(self, tx_id: bytes) -> Transaction | None:
        return self._entries.pop(tx_id, None)


class TrackingState:
    """A :class:`State` over a MemoryState that remembers what a block changed."""

    def __init__(self, inner: MemoryState) -> None:
        self.inner = inner
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(prefix)

    def put(self, key: bytes, value: bytes) -> None:
        self.inner.put(key, value)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.inner.delete(key)
        self.writes[key] = None

    def root(self) -> bytes:
        return self.inner.root()


@dataclass(frozen=True)
class ExecutedBlock:
    height: int
    block_hash: bytes
    time_ms: int
    results: HeightResults
    tx_ids: tuple[bytes, ...]
    receipts: tuple[dict[str, object], ...]
    # Senders whose nonce this block moved, for the mempool.
    senders: frozenset[bytes]
    # The validator set in state after this block when the block changed
    # the record (contracts/validators.py), else None: what the replica is
    # told in ``Executed``.
    validators: ValidatorSet | None = None

    @property
    def results_root(self) -> bytes:
        """What consensus carries and certifies for this height."""
        return self.results.results_root


class Ledger:
    """The executed chain: state in memory, everything durable in the Store."""

    def __init__(
        self,
        store: Store,
        state: MemoryState,
        verifier: Verifier,
        tx_cache: TxCache,
        limits: ContractLimits,
        results_root: bytes,
        history: ValidatorHistory | None = None,
        epoch_rules: EpochRules | None = None,
    ) -> None:
        self.store = store
        # The validator set in force at every height executed here, on a
        # chain whose set is governed (None: the configured set, fixed).  It
        # is stored with the block that changes it, in the same transaction.
        self.history = history
        self._epoch_rules = epoch_rules
        self.state = state
        # The results root of the last executed height (contracts.results).
        self.results_root = results_root
        self._verifier = verifier
        self._tx_cache = tx_cache
        self._limits = limits

    @property
    def epoch_rules(self) -> EpochRules:
        assert self._epoch_rules is not None, "only a governed chain has epoch rules"
        return self._epoch_rules

    @property
    def contract_limits(self) -> ContractLimits:
        return self._limits

    def verify(self, tx: Transaction) -> bool:
        return verify_tx(tx, self._verifier)

    def _decode(self, tx_id: bytes, payload: bytes) -> tuple[Transaction | None, Verifier]:
        """The transaction and the verifier execution should use for it.

        A cached transaction was verified by this node on its way in, so its
        signature is not checked a second time.
        """
        cached = self._tx_cache.take(tx_id)
        if cached is not None:
            return cached, _already_verified
        try:
            return decode_tx(payload, self._limits), self._verifier
        except DecodeError:
            return None, self._verifier

    def execute_block(self, block: CommittedBlock) -> ExecutedBlock:
        header = block.header
        context = BlockContext(height=header.height, time_ms=header.time_ms, proposer="")
        tracking = TrackingState(self.state)
        receipts: list[dict[str, object]] = []
        positions: list[tuple[bytes, int]] = []
        senders: set[bytes] = set()
        seen_here: set[bytes] = set()
        for index, request in enumerate(block.requests):
            tx_id = request.digest
            if tx_id in seen_here or self.store.has_tx(tx_id):
                receipts.append(
                    _result(tx_id, STATUS_DUPLICATE, CODE_DUPLICATE, "already executed")
                )
                continue
            seen_here.add(tx_id)
            positions.append((tx_id, index))
            tx, verifier = self._decode(tx_id, request.payload)
            if tx is None:
                receipts.append(
                    _result(
                        tx_id, STATUS_REJECTED, CODE_MALFORMED_TX, "payload is not a transaction"
                    )
                )
                continue
            receipt = execute(tracking, tx, context, verifier)
            senders.add(tx.sender)
            receipts.append(receipt.to_dict())
        results = HeightResults(
            header.height,
            self.state.root(),
            receipts_root([receipt_leaf_of(receipt) for receipt in receipts]),
            self.results_root,
        )
        validators, history = self._observe_validators(header.height, tracking.writes)
        self.store.commit_block(
            block,
            receipts,
            positions,
            tracking.writes,
            results,
            history if self._changes_epochs(history) else None,
            self._validator_change(header.height, tracking.writes),
        )
        self.results_root = results.results_root
        self.history = history
        return ExecutedBlock(
            height=header.height,
            block_hash=header.hash,
            time_ms=header.time_ms,
            results=results,
            tx_ids=tuple(request.digest for request in block.requests),
            receipts=tuple(receipts),
            senders=frozenset(senders),
            validators=validators,
        )

    def _validator_change(
        self, height: int, writes: dict[bytes, bytes | None]
    ) -> ValidatorChange | None:
        """The record's new value and its proof under this height's state
        root, when a governed chain's block wrote it."""
        if self.history is None or VALIDATORS_KEY not in writes:
            return None
        value = self.state.get(VALIDATORS_KEY)
        assert value is not None, "governance never deletes the validator set"
        return ValidatorChange(height, value, self.state.prove(VALIDATORS_KEY).to_dict())

    def _changes_epochs(self, history: ValidatorHistory | None) -> bool:
        return (
            history is not None
            and self.history is not None
            and history.epochs != self.history.epochs
        )

    def _observe_validators(
        self, height: int, writes: dict[bytes, bytes | None]
    ) -> tuple[ValidatorSet | None, ValidatorHistory | None]:
        """The set in state after ``height`` if this block wrote it, and the
        history once that is observed."""
        if self.history is None:
            return None, None
        validators = None
        if VALIDATORS_KEY in writes:
            record = validator_set(self.state)
            assert record is not None, "governance never deletes the validator set"
            validators = ValidatorSet(record.public_keys, record.ids)
        assert self._epoch_rules is not None, "a governed chain needs its epoch rules"
        rules = self._epoch_rules
        history = self.history.observe(
            height, validators, rules.checkpoint_interval, rules.window_size
        )
        return validators, history


def _already_verified(public_key: bytes, message: bytes, signature: bytes) -> bool:
    return True


def _result(tx_id: bytes, status: str, code: str, message: str) -> dict[str, object]:
    return {
        "tx_id": tx_id,
        "status": status,
        "error": code,
        "message": message,
        "events": [],
        "writes": 0,
        "writes_digest": EMPTY_WRITES_DIGEST,
    }
