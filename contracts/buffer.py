"""The write buffer and work budget of one transaction (or query).

Theory of operation
-------------------
A transaction never writes to state directly.  It reads through a
:class:`TxBuffer`, which answers from its own pending writes first and from
the underlying state otherwise, and it writes into the buffer.  The runtime
applies the buffered writes, in key order, only when the transaction
succeeds; a rejection simply drops the buffer, so no rule can half-write.

The buffer also meters work: every read, write and scanned item costs one
step, and the number of distinct keys written is capped.  Going over
either budget raises :class:`~contracts.errors.Rejected` with
``budget_exceeded``, which bounds the work of any transaction whatever its
arguments.  Queries use the same class (with no writes) so they are
bounded the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

from contracts.errors import ErrorCode, Rejected
from contracts.state import ReadableState

_DELETED = None


class TxBuffer:
    """Buffered, metered view of a state for one transaction."""

    __slots__ = ("_base", "_max_steps", "_max_writes", "_pending", "steps")

    def __init__(self, base: ReadableState, max_steps: int, max_writes: int) -> None:
        self._base = base
        self._pending: dict[bytes, bytes | None] = {}
        self._max_steps = max_steps
        self._max_writes = max_writes
        self.steps = 0

    def _step(self) -> None:
        self.steps += 1
        if self.steps > self._max_steps:
            raise Rejected(
                ErrorCode.BUDGET_EXCEEDED, f"work exceeds the budget of {self._max_steps} steps"
            )

    def get(self, key: bytes) -> bytes | None:
        self._step()
        if key in self._pending:
            return self._pending[key]
        return self._base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._write(key, value)

    def delete(self, key: bytes) -> None:
        self._write(key, _DELETED)

    def _write(self, key: bytes, value: bytes | None) -> None:
        self._step()
        if key not in self._pending and len(self._pending) >= self._max_writes:
            raise Rejected(
                ErrorCode.BUDGET_EXCEEDED, f"writes exceed the budget of {self._max_writes} keys"
            )
        self._pending[key] = value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Merged ordered scan of pending writes over the base state."""
        pending = sorted(key for key in self._pending if key.startswith(prefix))
        base = self._base.scan(prefix)
        next_pending = 0
        for key, value in base:
            while next_pending < len(pending) and pending[next_pending] < key:
                yield from self._pending_item(pending[next_pending])
                next_pending += 1
            if next_pending < len(pending) and pending[next_pending] == key:
                yield from self._pending_item(key)
                next_pending += 1
                continue
            self._step()
            yield key, value
        for key in pending[next_pending:]:
            yield from self._pending_item(key)

    def _pending_item(self, key: bytes) -> Iterator[tuple[bytes, bytes]]:
        self._step()
        value = self._pending[key]
        if value is not None:
            yield key, value

    def writes(self) -> list[tuple[bytes, bytes | None]]:
        """Pending writes in key order (None deletes)."""
        return sorted(self._pending.items())
