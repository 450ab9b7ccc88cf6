"""Read sets: record what a query reads, and answer it again from proven reads only.

Theory of operation
-------------------
A verdict a node computes (a diamond's compliance, say) is a pure function
of the state keys it reads.  If the node hands over each of those keys
with its value, or with None for a key that is absent, and proves each
pair against one certified state root, anyone can run the same contract
code over exactly those pairs and must get the same verdict.

* :class:`RecordingState` wraps the node's state and records every point
  read (the first value seen per key; state does not change during a
  query).  ``scan`` raises :class:`UnprovableRead`: a scan reads "every
  key with this prefix", and a list of present keys proves nothing about
  the keys left out, so a query that scans cannot be served with proofs.
* :class:`ProvenState` is the state a checker rebuilds from the verified
  pairs.  A ``get`` of a key that was not proven raises
  :class:`UnprovenRead` naming the key: the server left out a read the
  verdict depends on (omitting a sanction is exactly this), and answering
  None instead would turn that omission into a clean verdict.

Both exceptions derive from :class:`ReadSetError`, never from
:class:`~contracts.errors.Rejected`, so the query machinery cannot turn
them into an ordinary refusal: they propagate to the caller.  This module
is pure (no I/O), so the node and the SDK share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from contracts.state import ReadableState


class ReadSetError(Exception):
    """A read that cannot be recorded or answered from proven reads."""


class UnprovableRead(ReadSetError):
    """The code scanned a prefix; a scan's completeness has no point proof."""

    def __init__(self, prefix: bytes) -> None:
        super().__init__(f"a scan of prefix {prefix!r} cannot be proven by point reads")
        self.prefix = prefix


class UnprovenRead(ReadSetError):
    """The code read a key that is not among the proven reads."""

    def __init__(self, key: bytes) -> None:
        super().__init__(f"key {key!r} was read but not proven")
        self.key = key


class RecordingState:
    """A :class:`ReadableState` that records each key read and its value (or None)."""

    __slots__ = ("_base", "_max_reads", "_reads")

    def __init__(self, base: ReadableState, max_reads: int) -> None:
        self._base = base
        self._reads: dict[bytes, bytes | None] = {}
        self._max_reads = max_reads

    def get(self, key: bytes) -> bytes | None:
        if key in self._reads:
            return self._reads[key]
        if len(self._reads) >= self._max_reads:
            raise TooManyReads(self._max_reads)
        value = self._base.get(key)
        self._reads[key] = value
        return value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        raise UnprovableRead(prefix)

    def reads(self) -> list[tuple[bytes, bytes | None]]:
        """Every (key, value-or-None) read so far, in ascending key order."""
        return sorted(self._reads.items())


class TooManyReads(ReadSetError):
    """More distinct keys were read than the recorder may prove."""

    def __init__(self, max_reads: int) -> None:
        super().__init__(f"the answer reads more than {max_reads} keys")
        self.max_reads = max_reads


class ProvenState:
    """A :class:`ReadableState` holding only proven (key, value-or-None) pairs."""

    __slots__ = ("_reads",)

    def __init__(self, reads: Iterable[tuple[bytes, bytes | None]]) -> None:
        self._reads: dict[bytes, bytes | None] = {}
        for key, value in reads:
            if key in self._reads:
                raise ValueError(f"key {key!r} is proven twice")
            self._reads[key] = value

    def get(self, key: bytes) -> bytes | None:
        if key not in self._reads:
            raise UnprovenRead(key)
        return self._reads[key]

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        raise UnprovableRead(prefix)
