"""The state interface the contracts run against, and its in-memory form.

Theory of operation
-------------------
State is a map from bytes keys to bytes values with four operations: get,
put, delete and an ordered prefix scan.  Contracts see it only through
:class:`ReadableState` (queries, the transaction buffer's reads) and
:class:`State` (the runtime applying a successful transaction's writes).
:class:`MemoryState` is the one implementation: the node holds its whole
state in one and mirrors it in SQLite (node/runtime/ledger.py), and the
tests, the benchmark and the bundle verifier use it too.

``MemoryState`` keeps three structures in step: a dict for point reads, a
chunked sorted list of keys for ordered scans (insertion costs a bisect
and a short list shift, never a shift of the whole key list), and the
:class:`~contracts.stateroot.MerkleTrie` that maintains the state root
incrementally.  Any other implementation would have to keep a
``MerkleTrie`` in step the same way so that :meth:`MemoryState.root` means
the same thing everywhere.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from typing import Protocol

from contracts.stateroot import MerkleTrie, StateProof


class ReadableState(Protocol):
    """Read-only view of state."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Pairs whose key starts with ``prefix``, in ascending key order."""
        ...


class State(ReadableState, Protocol):
    """State the runtime can write to."""

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def root(self) -> bytes:
        """The state root of the current contents (see contracts.stateroot)."""
        ...


_CHUNK_LOAD = 512


class _SortedKeys:
    """Keys in ascending order, stored as a list of short sorted chunks."""

    __slots__ = ("_chunks", "_maxes")

    def __init__(self) -> None:
        self._chunks: list[list[bytes]] = []
        self._maxes: list[bytes] = []

    def add(self, key: bytes) -> None:
        """Insert a key known to be absent."""
        if not self._chunks:
            self._chunks.append([key])
            self._maxes.append(key)
            return
        index = bisect_left(self._maxes, key)
        if index == len(self._maxes):
            index -= 1
            self._chunks[index].append(key)
            self._maxes[index] = key
        else:
            insort(self._chunks[index], key)
        chunk = self._chunks[index]
        if len(chunk) > 2 * _CHUNK_LOAD:
            low, high = chunk[:_CHUNK_LOAD], chunk[_CHUNK_LOAD:]
            self._chunks[index : index + 1] = [low, high]
            self._maxes[index : index + 1] = [low[-1], high[-1]]

    def remove(self, key: bytes) -> None:
        """Remove a key known to be present."""
        index = bisect_left(self._maxes, key)
        chunk = self._chunks[index]
        position = bisect_left(chunk, key)
        assert chunk[position] == key, "sorted key index lost a key"
        del chunk[position]
        if not chunk:
            del self._chunks[index]
            del self._maxes[index]
        elif position == len(chunk):
            self._maxes[index] = chunk[-1]

    def iter_from(self, start: bytes) -> Iterator[bytes]:
        index = bisect_left(self._maxes, start)
        if index == len(self._maxes):
            return
        chunk = self._chunks[index]
        yield from chunk[bisect_left(chunk, start) :]
        for later in self._chunks[index + 1 :]:
            yield from later


class MemoryState:
    """In-memory :class:`State` with an incrementally maintained root."""

    __slots__ = ("_keys", "_trie", "_values")

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._values: dict[bytes, bytes] = {}
        self._keys = _SortedKeys()
        self._trie = MerkleTrie()
        for key, value in items:
            self.put(key, value)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: bytes) -> bytes | None:
        return self._values.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if not isinstance(key, bytes) or not isinstance(value, bytes):
            raise TypeError("state keys and values are bytes")
        if key not in self._values:
            self._keys.add(key)
        self._values[key] = value
        self._trie.set(key, value)

    def delete(self, key: bytes) -> None:
        if not isinstance(key, bytes):
            raise TypeError("state keys are bytes")
        if key in self._values:
            del self._values[key]
            self._keys.remove(key)
            self._trie.delete(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        # The generator must not outlive a write to this state: the
        # runtime only scans while a transaction is buffered, never while
        # applying writes, so this holds.
        for key in self._keys.iter_from(prefix):
            if not key.startswith(prefix):
                return
            yield key, self._values[key]

    def root(self) -> bytes:
        return self._trie.root()

    def prove(self, key: bytes) -> StateProof:
        """A proof of ``get(key)`` (a value or absence) under :meth:`root`.

        See contracts.stateroot's "State proofs"; the caller reads the value
        and the proof with no write in between.
        """
        return self._trie.prove(key)


def apply_writes(state: State, writes: Iterable[tuple[bytes, bytes | None]]) -> None:
    """Apply (key, value-or-None) writes in order; None deletes."""
    for key, value in writes:
        if value is None:
            state.delete(key)
        else:
            state.put(key, value)
