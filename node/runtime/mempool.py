"""The mempool: signed transactions waiting to be ordered, bounded and per sender.

Theory of operation
-------------------
The contract layer accepts a sender's transaction only with exactly the
sender's next nonce, so the mempool hands the replica each sender's
transactions in nonce order and never one whose predecessor it has not
handed over (or seen commit).  Each transaction is in one of two states::

    state      meaning                                   leaves when
    --------   ---------------------------------------   ------------------------------------
    held       waiting for an earlier nonce               the gap fills -> released
                                                          nonce_gap_timeout_ms -> dropped (nonce_gap)
                                                          expiry height passes -> dropped (expired)
    released   given to the replica to order              executed in a block -> removed
                                                          another tx took its nonce -> dropped (nonce_used)

A released transaction not executed within ``resubmit_after_ms`` is offered
to the replica again (a forward to the primary may have been lost in a view
change).

Reordering.  Release keeps a sender's nonce order, but consensus may still
execute a sender's transactions out of it: after a view change PBFT can
commit a batch prepared in the old view at a lower height than an earlier
batch that the new primary proposes again.  The later nonces then execute
as ``rejected bad_nonce`` and leave a hole below the ones still waiting.
So the pool releases *everything consecutive from the committed nonce*:
when a transaction leaves by executing without consuming its nonce, the
release point rewinds to that nonce, and a new transaction filling the
hole (the SDK signs the call again, :mod:`node.sdk.client`) is released at
once instead of waiting behind nonces that already executed.  Nothing is
held behind a nonce that executed as rejected, so a sender is never wedged;
the primary need not (and across a view change cannot) keep per-sender
order itself.  Every transaction that leaves without executing leaves with a
:class:`Dropped` outcome that the node turns into a receipt: nothing is
dropped silently.

Admission refusals raise :class:`Refused` with a stable code; the pool is
unchanged by a refusal.  Duplicate submissions of a transaction already in
the pool return its entry (idempotent).  The pool never reads a clock:
``now_ms`` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from contracts.tx import Transaction
from node.runtime.config import NodeLimits
from node.sdk.errors import ProvenetError


class Refused(ProvenetError):
    """A transaction the pool will not take; ``code`` is the stable API code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, text=message)


@dataclass
class PoolEntry:
    tx: Transaction
    tx_id: bytes
    payload: bytes
    received_ms: int
    released_ms: int | None = None

    @property
    def released(self) -> bool:
        return self.released_ms is not None


@dataclass(frozen=True)
class Dropped:
    tx_id: bytes
    code: str
    message: str


@dataclass
class _Sender:
    by_nonce: dict[int, PoolEntry] = field(default_factory=dict)
    # The next nonce to release: every nonce from the committed one up to this
    # one is released and pending, or committed.  It rewinds when a
    # transaction executes without consuming its nonce (see the docstring).
    next_release: int = 0


class Mempool:
    """Pending transactions; ``committed_nonce(sender)`` reads executed state."""

    def __init__(self, limits: NodeLimits, committed_nonce: Callable[[bytes], int]) -> None:
        self._limits = limits
        self._committed_nonce = committed_nonce
        self._entries: dict[bytes, PoolEntry] = {}
        self._senders: dict[bytes, _Sender] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, tx_id: bytes) -> PoolEntry | None:
        return self._entries.get(tx_id)

    def pending_next_nonce(self, sender: bytes) -> int:
        """The nonce a client should use next: past everything held or committed."""
        committed = self._committed_nonce(sender)
        queue = self._senders.get(sender)
        if queue is None or not queue.by_nonce:
            return committed
        return max(committed, max(queue.by_nonce) + 1)

    # ------------------------------------------------------------ admission

    def admit(self, entry: PoolEntry) -> PoolEntry:
        """Take ``entry`` or raise :class:`Refused`; a known id returns the held entry."""
        held = self._entries.get(entry.tx_id)
        if held is not None:
            return held
        tx = entry.tx
        committed = self._committed_nonce(tx.sender)
        if tx.nonce < committed:
            raise Refused("nonce_used", f"nonce {tx.nonce} is used; the next is {committed}")
        if tx.nonce > committed + self._limits.max_nonce_gap:
            raise Refused(
                "nonce_gap",
                f"nonce {tx.nonce} is more than {self._limits.max_nonce_gap} past the next, {committed}",
            )
        queue = self._senders.get(tx.sender)
        if queue is not None and tx.nonce in queue.by_nonce:
            raise Refused("nonce_conflict", f"another transaction with nonce {tx.nonce} is pending")
        if len(self._entries) >= self._limits.mempool_max_txs:
            raise Refused("mempool_full", f"the mempool holds {len(self._entries)} transactions")
        if queue is not None and len(queue.by_nonce) >= self._limits.mempool_max_per_sender:
            raise Refused("sender_queue_full", "this sender has too many pending transactions")
        if queue is None:
            queue = self._senders[tx.sender] = _Sender(next_release=committed)
        queue.by_nonce[tx.nonce] = entry
        self._entries[entry.tx_id] = entry
        return entry

    def release(self, sender: bytes, now_ms: int) -> list[PoolEntry]:
        """The sender's transactions that may go to the replica now, in nonce order."""
        queue = self._senders.get(sender)
        if queue is None:
            return []
        queue.next_release = max(queue.next_release, self._committed_nonce(sender))
        released: list[PoolEntry] = []
        while (entry := queue.by_nonce.get(queue.next_release)) is not None:
            if not entry.released:
                entry.released_ms = now_ms
                released.append(entry)
            queue.next_release += 1
        return released

    # ------------------------------------------------------------ outcomes

    def on_executed(self, tx_ids: tuple[bytes, ...], senders: frozenset[bytes]) -> list[Dropped]:
        """Forget executed transactions; drop ones whose nonce another transaction used.

        A transaction that executed without consuming its nonce (rejected
        ``bad_nonce`` after a reordering) leaves a hole: the release point
        rewinds to it, so whatever fills it next is released at once.
        """
        left: dict[bytes, list[int]] = {}
        for tx_id in tx_ids:
            entry = self._entries.get(tx_id)
            if entry is not None:
                self._remove(entry)
                left.setdefault(entry.tx.sender, []).append(entry.tx.nonce)
        dropped: list[Dropped] = []
        for sender in senders:
            queue = self._senders.get(sender)
            if queue is None:
                continue
            committed = self._committed_nonce(sender)
            hole = min((n for n in left.get(sender, ()) if n >= committed), default=None)
            if hole is not None:
                queue.next_release = min(queue.next_release, hole)
            for nonce in [n for n in queue.by_nonce if n < committed]:
                stale = queue.by_nonce[nonce]
                self._remove(stale)
                dropped.append(
                    Dropped(
                        stale.tx_id, "nonce_used", f"nonce {nonce} was used by another transaction"
                    )
                )
        return dropped

    def expire(self, next_height: int, now_ms: int) -> list[Dropped]:
        """Drop held transactions that can no longer execute or wait too long."""
        dropped: list[Dropped] = []
        for entry in list(self._entries.values()):
            expiry = entry.tx.expiry_height
            if expiry is not None and expiry < next_height and not entry.released:
                dropped.append(Dropped(entry.tx_id, "expired", f"expired at height {expiry}"))
            elif (
                not entry.released
                and now_ms - entry.received_ms >= self._limits.nonce_gap_timeout_ms
            ):
                dropped.append(
                    Dropped(
                        entry.tx_id, "nonce_gap", "an earlier nonce of this sender never arrived"
                    )
                )
            else:
                continue
            self._remove(entry)
        return dropped

    def due_for_resubmit(self, now_ms: int) -> list[PoolEntry]:
        """Released transactions the replica has held too long: offer them again.

        Only each sender's oldest released transaction is offered (its later
        ones cannot execute before it, and go when it has), at most
        ``max_resubmit_per_turn`` of them, so a stalled or overloaded network
        is not flooded with retransmissions that crowd out the view change
        that would unstall it.
        """
        due: list[PoolEntry] = []
        for queue in self._senders.values():
            head = min(
                (e for e in queue.by_nonce.values() if e.released_ms is not None),
                key=lambda entry: entry.tx.nonce,
                default=None,
            )
            if (
                head is not None
                and head.released_ms is not None
                and now_ms - head.released_ms >= self._limits.resubmit_after_ms
            ):
                due.append(head)
                if len(due) >= self._limits.max_resubmit_per_turn:
                    break
        for entry in due:
            entry.released_ms = now_ms
        return due

    def _remove(self, entry: PoolEntry) -> None:
        del self._entries[entry.tx_id]
        queue = self._senders[entry.tx.sender]
        if queue.by_nonce.get(entry.tx.nonce) is entry:
            del queue.by_nonce[entry.tx.nonce]
        if not queue.by_nonce:
            del self._senders[entry.tx.sender]
