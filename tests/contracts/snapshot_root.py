"""A from-scratch state root, the reference the incremental trie is checked against.

:func:`root_from_snapshot` computes the root of contracts/stateroot.py's
definition over a full list of (key, value) pairs, sharing no code path
with :class:`~contracts.stateroot.MerkleTrie` but the leaf hash.  It lives
with the tests because only they use it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from consensus.codec import digest
from contracts.state import ReadableState
from contracts.stateroot import EMPTY, key_path, leaf_hash

# The tag of an internal node's preimage (contracts/stateroot.py's _NODE_TAG).
NODE_TAG = b"\x01"


def pairs(state: ReadableState) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of ``state`` in key order, through its public scan."""
    return list(state.scan(b""))


def root_from_snapshot(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The state root of a full list of (key, value) pairs, from scratch.

    Raises ``ValueError`` if a key repeats: a snapshot is a set of pairs.
    """
    entries: list[tuple[bytes, bytes]] = []
    for key, value in items:
        if not isinstance(key, bytes) or not isinstance(value, bytes):
            raise TypeError("snapshot keys and values are bytes")
        path = key_path(key)
        entries.append((path, leaf_hash(path, value)))
    entries.sort()
    paths = [path for path, _ in entries]
    for index in range(1, len(paths)):
        if paths[index] == paths[index - 1]:
            raise ValueError("a key repeats in the snapshot")
    return _subtree_root(paths, entries, 0, len(entries), 0)


def _subtree_root(
    paths: list[bytes], entries: list[tuple[bytes, bytes]], lo: int, hi: int, depth: int
) -> bytes:
    """``node(S, depth)`` for the sorted slice ``entries[lo:hi]``."""
    if hi == lo:
        return EMPTY
    if hi - lo == 1:
        return entries[lo][1]
    parts = [NODE_TAG]
    start = lo
    for slot in range(16):
        end = _slice_end(paths, start, hi, depth, slot)
        parts.append(_subtree_root(paths, entries, start, end, depth + 1))
        start = end
    return digest(b"".join(parts))


def _slice_end(paths: list[bytes], lo: int, hi: int, depth: int, slot: int) -> int:
    """First index in ``paths[lo:hi]`` whose nibble ``depth`` exceeds ``slot``.

    Paths in the slice share their first ``depth`` nibbles, so the first
    path above the slot's range is found by bisecting on a bound built from
    the shared prefix with the nibble set to ``slot + 1``.
    """
    if slot == 15 or lo >= hi:
        return hi
    prefix = paths[lo]
    byte_index = depth >> 1
    head = prefix[:byte_index]
    if depth % 2 == 0:
        bound = head + bytes([(slot + 1) << 4])
    else:
        bound = head + bytes([(prefix[byte_index] & 0xF0) | (slot + 1)])
    return bisect_left(paths, bound, lo, hi)
