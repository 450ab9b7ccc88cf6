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

State proofs
------------
:meth:`MerkleTrie.prove` answers "what does ``key`` hold under this root"
with a :class:`StateProof`: the internal nodes on the key's path from the
top, each given as its non-empty children other than the one on the path
(a 16-bit bitmap saying which slots they fill, then their hashes in slot
order), and how the path ends.  The path ends at the first slot that is
not an internal node, which is one of:

* the key's own leaf: the key is present, and the verifier recomputes the
  leaf hash from the key and the claimed value;
* ``EMPTY``: the key is absent;
* the leaf of another key, whose path shares the nibbles walked so far:
  the key is absent, because a leaf stands for a subtree holding exactly
  one pair, and every key whose path starts with those nibbles would be in
  that subtree.  The proof carries that leaf's path and value digest.

:func:`verify_state_proof` rebuilds the hashes from that end up to the top
and compares the result with the root.  Soundness rests on SHA-256 alone,
as the root's does: a proof that verifies for a wrong answer would give
two different preimages of some node on the path.  The proof holds one
level per internal node on the path (expected ``log16(n) + 1``) and at
most 15 hashes per level, so its size and the time to check it grow with
the logarithm of the state; :meth:`StateProof.from_dict` refuses more
than 64 levels (a SHA-256 path has 64 nibbles), a level claiming 16
siblings, or a sibling equal to ``EMPTY`` (an empty slot is only ever
said with the bitmap, so each proof has one encoding).  The benchmark is
scripts/bench_proofs.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from consensus.codec import DIGEST_SIZE, FieldReader, ShapeError, digest, read_blob

EMPTY = bytes(32)
_LEAF_TAG = b"\x00"
_NODE_TAG = b"\x01"
_MAX_DEPTH = 64  # nibbles in a SHA-256 path
_LEAF_HASH_AT = 64  # a leaf entry is path || value digest || leaf hash


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

    A leaf entry is the 96 bytes ``path || value digest || leaf hash``: one
    bytes object is a third of the memory of a small object holding the
    same fields, which matters at millions of keys.  The value digest is
    there for proofs of absence (which name another key's leaf); the leaf
    hash is kept rather than recomputed so that rehashing a node costs one
    SHA-256, not one per leaf child.
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
        value_digest = digest(value)
        entry = path + value_digest + digest(_LEAF_TAG + path + value_digest)
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
            return present[0][_LEAF_HASH_AT:]
        return _hash_node(self._top)

    def prove(self, key: bytes) -> StateProof:
        """A proof of what ``key`` holds (or that it is absent) under :meth:`root`.

        Costs one walk down the key's path; sibling hashes come from the
        node caches (a node written since the last :meth:`root` is hashed
        now and cached).
        """
        return _prove(self._top, key_path(key))


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
            parts.append(child[_LEAF_HASH_AT:])
        else:
            parts.append(_hash_node(child))
    node.cached = digest(b"".join(parts))
    return node.cached


# --- State proofs -----------------------------------------------------------

_FULL_BITMAP = 0xFFFF


@dataclass(frozen=True)
class ProofLevel:
    """One internal node on a key's path: its other non-empty children.

    Bit ``i`` of ``bitmap`` is set when slot ``i`` holds a child other than
    the one on the path; ``siblings`` are those children's hashes in slot
    order.
    """

    bitmap: int
    siblings: tuple[bytes, ...]

    def children(self, slot: int, on_path: bytes) -> bytes | None:
        """The node's preimage with ``on_path`` at ``slot``; None if ``slot`` is
        taken or the level is inconsistent (possible only for one built by hand)."""
        if self.bitmap >> slot & 1 or not 0 <= self.bitmap < _FULL_BITMAP:
            return None
        if len(self.siblings) != self.bitmap.bit_count():
            return None
        parts = [_NODE_TAG]
        remaining = iter(self.siblings)
        for index in range(16):
            if index == slot:
                parts.append(on_path)
            elif self.bitmap >> index & 1:
                parts.append(next(remaining))
            else:
                parts.append(EMPTY)
        return b"".join(parts)


@dataclass(frozen=True)
class StateProof:
    """What a key holds under a state root (see "State proofs" above).

    ``other_leaf`` is ``(path, value_digest)`` of the leaf of another key
    that ends the path of an absent key, else None.
    """

    levels: tuple[ProofLevel, ...]
    other_leaf: tuple[bytes, bytes] | None = None

    FIELDS: ClassVar[frozenset[str]] = frozenset({"levels", "other_leaf"})
    MAX_LEVELS: ClassVar[int] = _MAX_DEPTH

    def to_dict(self) -> dict[str, object]:
        """The msgpack form: each level is ``[bitmap, concatenated sibling hashes]``."""
        other = None if self.other_leaf is None else [self.other_leaf[0], self.other_leaf[1]]
        return {
            "levels": [[level.bitmap, b"".join(level.siblings)] for level in self.levels],
            "other_leaf": other,
        }

    def to_json(self) -> dict[str, object]:
        """The JSON form: :meth:`to_dict` with bytes as lowercase hex."""
        other = None if self.other_leaf is None else [part.hex() for part in self.other_leaf]
        return {
            "levels": [[level.bitmap, b"".join(level.siblings).hex()] for level in self.levels],
            "other_leaf": other,
        }

    @classmethod
    def from_dict(cls, value: object, what: str = "proof") -> StateProof:
        return cls._read(FieldReader.of(value, cls.FIELDS, what))

    @classmethod
    def from_json(cls, value: object, what: str = "proof") -> StateProof:
        return cls._read(FieldReader.of(value, cls.FIELDS, what, hex_bytes=True))

    @classmethod
    def _read(cls, fields: FieldReader) -> StateProof:
        what, as_hex = fields.what, fields.hex_bytes
        levels = fields.values["levels"]
        if not isinstance(levels, list) or len(levels) > cls.MAX_LEVELS:
            raise ShapeError(f"{what}.levels must be a list of at most {cls.MAX_LEVELS} levels")
        other = fields.values["other_leaf"]
        other_leaf = None
        if other is not None:
            if not isinstance(other, list) or len(other) != 2:
                raise ShapeError(f"{what}.other_leaf must be null or [path, value_digest]")
            other_leaf = (
                read_blob(other[0], f"{what}.other_leaf[0]", (DIGEST_SIZE,), as_hex),
                read_blob(other[1], f"{what}.other_leaf[1]", (DIGEST_SIZE,), as_hex),
            )
        return cls(
            levels=tuple(
                _read_level(level, f"{what}.levels[{n}]", as_hex) for n, level in enumerate(levels)
            ),
            other_leaf=other_leaf,
        )


def _read_level(value: object, what: str, as_hex: bool) -> ProofLevel:
    if not isinstance(value, list) or len(value) != 2:
        raise ShapeError(f"{what} must be [bitmap, sibling hashes]")
    bitmap = value[0]
    # bool is an int subclass; a decoded true is never a bitmap.
    if type(bitmap) is not int or not 0 <= bitmap < _FULL_BITMAP:
        raise ShapeError(f"{what}[0] must be a bitmap of at most 15 of 16 slots")
    count = bitmap.bit_count()
    joined = read_blob(value[1], f"{what}[1]", (count * DIGEST_SIZE,), as_hex)
    siblings = tuple(joined[i : i + DIGEST_SIZE] for i in range(0, len(joined), DIGEST_SIZE))
    if EMPTY in siblings:
        raise ShapeError(f"{what}[1] lists an empty slot as a sibling")
    return ProofLevel(bitmap, siblings)


def verify_state_proof(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> bool:
    """True when ``proof`` shows that, under ``root``, ``key`` holds ``value``.

    ``value`` None claims that ``key`` is absent.  Never raises on a
    well-typed proof: any mismatch is False.
    """
    path = key_path(key)
    depth = len(proof.levels)
    if depth > _MAX_DEPTH:
        return False
    if value is not None:
        if proof.other_leaf is not None:
            return False
        node = leaf_hash(path, value)
    elif proof.other_leaf is None:
        node = EMPTY
    else:
        other_path, other_value_digest = proof.other_leaf
        if other_path == path or not _shares_nibbles(other_path, path, depth):
            return False
        node = digest(_LEAF_TAG + other_path + other_value_digest)
    for level_depth in range(depth - 1, -1, -1):
        preimage = proof.levels[level_depth].children(_nibble(path, level_depth), node)
        if preimage is None:
            return False
        node = digest(preimage)
    return node == root


def _shares_nibbles(first: bytes, second: bytes, count: int) -> bool:
    """Whether two paths agree on their first ``count`` nibbles."""
    whole = count >> 1
    if first[:whole] != second[:whole]:
        return False
    return count % 2 == 0 or first[whole] >> 4 == second[whole] >> 4


def _prove(top: _Node, path: bytes) -> StateProof:
    """The proof for ``path`` in the trie under ``top`` (see MerkleTrie.prove)."""
    present = [child for child in top.children if child is not None]
    if not present:
        return StateProof(())
    if len(present) == 1 and isinstance(present[0], bytes):
        return StateProof((), _other_leaf(present[0], path))
    levels: list[ProofLevel] = []
    node = top
    depth = 0
    while True:
        slot = _nibble(path, depth)
        levels.append(_level_of(node, slot))
        child = node.children[slot]
        if child is None:
            return StateProof(tuple(levels))
        if isinstance(child, bytes):
            return StateProof(tuple(levels), _other_leaf(child, path))
        node = child
        depth += 1


def _level_of(node: _Node, slot: int) -> ProofLevel:
    bitmap = 0
    siblings: list[bytes] = []
    for index, child in enumerate(node.children):
        if index == slot or child is None:
            continue
        bitmap |= 1 << index
        siblings.append(child[_LEAF_HASH_AT:] if isinstance(child, bytes) else _hash_node(child))
    return ProofLevel(bitmap, tuple(siblings))


def _other_leaf(entry: bytes, path: bytes) -> tuple[bytes, bytes] | None:
    """None when ``entry`` is the leaf of ``path`` itself, else its (path, value digest)."""
    if entry[:32] == path:
        return None
    return entry[:32], entry[32:_LEAF_HASH_AT]
