"""Merkle trees over digests, in the style of RFC 6962 (Certificate Transparency).

A block header carries the Merkle root of its request digests, so a
transaction's inclusion in a committed block can be proved with a path of
log2(n) hashes instead of the whole batch.  Leaves and inner nodes are
hashed with different one-byte prefixes, so a leaf can never pass for an
inner node (the second-preimage attack on naive Merkle trees).  The tree is
split at the largest power of two below n, exactly as RFC 6962 does, so any
number of leaves works without padding.
"""

from __future__ import annotations

from consensus.codec import digest

EMPTY_ROOT = digest(b"")


def leaf_hash(item: bytes) -> bytes:
    return digest(b"\x00" + item)


def node_hash(left: bytes, right: bytes) -> bytes:
    return digest(b"\x01" + left + right)


def _split(count: int) -> int:
    """Largest power of two strictly below ``count`` (count >= 2)."""
    k = 1
    while k * 2 < count:
        k *= 2
    return k


def merkle_root(items: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Root of the tree whose leaves are ``items`` in order."""
    if not items:
        return EMPTY_ROOT
    level = [leaf_hash(item) for item in items]
    return _root_of_hashes(level)


def _root_of_hashes(hashes: list[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node_hash(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def inclusion_proof(items: list[bytes] | tuple[bytes, ...], index: int) -> list[bytes]:
    """Audit path for ``items[index]``, from the leaf's sibling up to the root."""
    if not 0 <= index < len(items):
        raise IndexError(f"leaf {index} is outside a tree of {len(items)}")
    return _path([leaf_hash(item) for item in items], index)


def _path(hashes: list[bytes], index: int) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return [*_path(hashes[:k], index), _root_of_hashes(hashes[k:])]
    return [*_path(hashes[k:], index - k), _root_of_hashes(hashes[:k])]


def verify_inclusion(item: bytes, index: int, count: int, proof: list[bytes], root: bytes) -> bool:
    """True when ``proof`` shows ``item`` is leaf ``index`` of ``count`` under ``root``."""
    if not 0 <= index < count:
        return False
    try:
        return _root_from_path(leaf_hash(item), index, count, list(proof)) == root
    except IndexError:
        return False


def _root_from_path(node: bytes, index: int, count: int, proof: list[bytes]) -> bytes:
    if count == 1:
        if proof:
            raise IndexError("proof is longer than the tree is deep")
        return node
    k = _split(count)
    if not proof:
        raise IndexError("proof is shorter than the tree is deep")
    sibling = proof.pop()
    if index < k:
        return node_hash(_root_from_path(node, index, k, proof), sibling)
    return node_hash(sibling, _root_from_path(node, index - k, count - k, proof))
