"""The state root: one SHA-256 digest that commits to the whole state.

Theory of operation
-------------------
The root is a 16-ary Merkle trie over the hashes of the keys, with cached
internal nodes and single leaves lifted as high as they can go (the shape
of Diem's Jellyfish Merkle tree, without its versioning).

Definitions, for a state holding pairs ``(key, value)`` of bytes:

* ``path(key) = SHA-256(key)``, read as 64 nibbles (high nibble first);
* ``leaf(key, value) = SHA-256(0x00 || path(key) || SHA-256(value))``;
* for a set ``S`` of pairs whose paths share their first ``d`` nibbles,
  ``node(S, d)`` is ``EMPTY`` (32 zero bytes) when ``S`` is empty, the
  leaf hash when ``S`` holds one pair, and otherwise
  ``SHA-256(0x01 || node(S_0, d+1) || ... || node(S_15, d+1))`` where
  ``S_i`` holds the pairs whose nibble ``d`` is ``i``;
* the state root is ``node(whole state, 0)``.

The root depends only on the set of pairs, never on the order in which
they were written, so every node holding equal state computes equal roots.
Security rests on SHA-256 alone: a leaf binds its full key path and the
value's digest, the 0x00 / 0x01 prefixes keep leaves and internal nodes
apart, and the empty marker is not a hash anyone can produce.

Cost: :class:`MerkleTrie` keeps every internal node with its cached hash.
Writing a key walks one path (expected depth ``log16(n) + 1``, about 6 at
a million keys) and marks it dirty; :meth:`MerkleTrie.root` rehashes only
dirty nodes, 513 bytes each.  The cost per block therefore grows with the
block's writes (times a depth that grows with the logarithm of the state,
one level per sixteenfold growth), not with the size of the state.

The tests check the incremental trie against a from-scratch computation
of the same root over a full list of pairs, which shares no code path with
it but the leaf hash (tests/contracts/snapshot_root.py).
"""

from __future__ import annotations

from consensus.codec import digest

EMPTY = bytes(32)
_LEAF_TAG = b"\x00"
_NODE_TAG = b"\x01"
_MAX_DEPTH = 64  # nibbles in a SHA-256 path


def key_path(key: bytes) -> bytes:
    """The trie path of a key: its SHA-256."""
    return digest(key)


def leaf_hash(path: bytes, value: bytes) -> bytes:
    """Hash of one (key, value) pair, binding the key's full path."""
    return digest(_LEAF_TAG + path + digest(value))


def _nibble(path: bytes, depth: int) -> int:
    byte = path[depth >> 1]
    return byte >> 4 if depth % 2 == 0 else byte & 0x0F


class _Node:
    """An internal node.  A child is None, a leaf entry or a node.

    A leaf entry is the 64 bytes ``path || leaf hash``: one bytes object is
    a third of the memory of a small object holding the same two fields,
    which matters at millions of keys.
    """

    __slots__ = ("cached", "children")

    def __init__(self) -> None:
        self.children: list[_Node | bytes | None] = [None] * 16
        self.cached: bytes | None = None


class MerkleTrie:
    """Incremental state root: ``set`` and ``delete`` keys, then ``root``."""

    __slots__ = ("_size", "_top")

    def __init__(self) -> None:
        self._top = _Node()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def set(self, key: bytes, value: bytes) -> None:
        """Record that ``key`` now holds ``value``."""
        path = key_path(key)
        entry = path + leaf_hash(path, value)
        node = self._top
        depth = 0
        while True:
            node.cached = None
            slot = _nibble(path, depth)
            child = node.children[slot]
            if child is None:
                node.children[slot] = entry
                self._size += 1
                return
            if isinstance(child, _Node):
                node = child
                depth += 1
                continue
            if child[:32] == path:
                node.children[slot] = entry
                return
            node.children[slot] = _split(child, entry, depth + 1)
            self._size += 1
            return

    def delete(self, key: bytes) -> None:
        """Record that ``key`` is absent.  Deleting an absent key is a no-op."""
        path = key_path(key)
        trail: list[tuple[_Node, int]] = []
        node = self._top
        depth = 0
        while True:
            slot = _nibble(path, depth)
            child = node.children[slot]
            trail.append((node, slot))
            if child is None:
                return
            if isinstance(child, _Node):
                node = child
                depth += 1
                continue
            if child[:32] != path:
                return
            break
        for visited, _ in trail:
            visited.cached = None
        last, slot = trail[-1]
        last.children[slot] = None
        self._size -= 1
        _collapse(trail)

    def root(self) -> bytes:
        """The state root; rehashes only the nodes written since last time."""
        present = [child for child in self._top.children if child is not None]
        if not present:
            return EMPTY
        if len(present) == 1 and isinstance(present[0], bytes):
            return present[0][32:]
        return _hash_node(self._top)


def _split(existing: bytes, entry: bytes, depth: int) -> _Node:
    """A subtree holding two leaves whose paths agree up to ``depth``."""
    assert depth < _MAX_DEPTH, "two distinct keys share a full SHA-256 path"
    node = _Node()
    old_slot = _nibble(existing, depth)
    new_slot = _nibble(entry, depth)
    if old_slot == new_slot:
        node.children[old_slot] = _split(existing, entry, depth + 1)
    else:
        node.children[old_slot] = existing
        node.children[new_slot] = entry
    return node


def _collapse(trail: list[tuple[_Node, int]]) -> None:
    """After a delete, lift a lone leaf into its parent, level by level.

    A subtree holding a single pair is represented by the leaf itself, so a
    node left with one leaf child and nothing else is replaced by that leaf.
    The top node is never replaced: :meth:`MerkleTrie.root` handles it.
    """
    for index in range(len(trail) - 1, 0, -1):
        node, _ = trail[index]
        present = [child for child in node.children if child is not None]
        if len(present) != 1 or not isinstance(present[0], bytes):
            return
        parent, parent_slot = trail[index - 1]
        parent.children[parent_slot] = present[0]


def _hash_node(node: _Node) -> bytes:
    if node.cached is not None:
        return node.cached
    parts = [_NODE_TAG]
    for child in node.children:
        if child is None:
            parts.append(EMPTY)
        elif isinstance(child, bytes):
            parts.append(child[32:])
        else:
            parts.append(_hash_node(child))
    node.cached = digest(b"".join(parts))
    return node.cached
