"""State proofs: presence and absence against the from-scratch root, and nothing else."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from snapshot_root import root_from_snapshot

from consensus.codec import DecodeError, ShapeError, decode, digest, encode
from contracts.state import MemoryState
from contracts.stateroot import (
    EMPTY,
    MerkleTrie,
    ProofLevel,
    StateProof,
    key_path,
    verify_state_proof,
)

keys = st.binary(min_size=0, max_size=6)
values = st.binary(min_size=0, max_size=8)
operations = st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=80)


def _nibbles(key: bytes) -> list[int]:
    return [n for byte in key_path(key) for n in (byte >> 4, byte & 15)]


def _shared_nibbles(first: bytes, second: bytes) -> int:
    a, b = _nibbles(first), _nibbles(second)
    return next(i for i in range(64) if a[i] != b[i])


def _round_trips(proof: StateProof) -> None:
    assert StateProof.from_dict(decode(encode(proof.to_dict()))) == proof
    assert StateProof.from_json(proof.to_json()) == proof


@settings(max_examples=120, deadline=None)
@given(operations, st.lists(keys, max_size=8))
def test_presence_and_absence_verify_against_the_from_scratch_root(
    ops: list[tuple[bytes, bytes | None]], probes: list[bytes]
) -> None:
    state = MemoryState()
    model: dict[bytes, bytes] = {}
    for key, value in ops:
        if value is None:
            state.delete(key)
            model.pop(key, None)
        else:
            state.put(key, value)
            model[key] = value
    root = root_from_snapshot(model.items())
    for key in [*model, *probes, *(key for key, _ in ops)]:
        proof = state.prove(key)
        _round_trips(proof)
        held = model.get(key)
        assert verify_state_proof(root, key, held, proof)
        # The same proof never shows another answer for the same key.
        assert not verify_state_proof(root, key, None if held is not None else b"", proof)
        if held is not None:
            assert not verify_state_proof(root, key, held + b"\x00", proof)


def test_a_proof_for_one_key_never_verifies_another() -> None:
    content = {b"k%d" % i: b"v%d" % (i % 3) for i in range(40)}
    state = MemoryState(content.items())
    root = state.root()
    probes = [*content, b"absent-1", b"absent-2", b""]
    for key in probes:
        proof = state.prove(key)
        for other in probes:
            if other == key:
                continue
            for claimed in {content.get(key), content.get(other), None}:
                assert not verify_state_proof(root, other, claimed, proof), (key, other)


def _absent_keys_by_ending(state: MemoryState, root: bytes) -> tuple[bytes, bytes]:
    """An absent key whose path ends at an empty slot and one ending at another leaf."""
    at_empty = at_leaf = None
    for i in range(10_000):
        key = b"absent-%d" % i
        proof = state.prove(key)
        assert verify_state_proof(root, key, None, proof)
        if proof.other_leaf is None:
            at_empty = at_empty or key
        else:
            at_leaf = at_leaf or key
        if at_empty and at_leaf:
            return at_empty, at_leaf
    raise AssertionError("no absent key of each kind among 10000 tries")


def _refused(root: bytes, key: bytes, value: bytes | None, raw: bytes) -> bool:
    try:
        proof = StateProof.from_dict(decode(raw))
    except DecodeError:
        return True
    return not verify_state_proof(root, key, value, proof)


# Single-bit flips plus the msgpack markers most likely to keep a frame
# decodable (nil, false, true, fixint 0, 0xff): every byte of a proof is
# tried with each.  The fuzz run tries all 255 other values of every byte.
_DEFAULT_REPLACEMENTS = (0x00, 0xC0, 0xC2, 0xC3, 0xFF)


def _check_every_tamper(exhaustive: bool) -> None:
    content = {b"k%d" % i: b"v%d" % i for i in range(24)}
    state = MemoryState(content.items())
    root = state.root()
    at_empty, at_leaf = _absent_keys_by_ending(state, root)
    cases = [(b"k7", b"v7"), (at_empty, None), (at_leaf, None)]
    for key, value in cases:
        raw = encode(state.prove(key).to_dict())
        assert not _refused(root, key, value, raw)
        for position, original in enumerate(raw):
            if exhaustive:
                replacements = set(range(256))
            else:
                flips = {original ^ (1 << bit) for bit in range(8)}
                replacements = flips | set(_DEFAULT_REPLACEMENTS)
            for replacement in replacements - {original}:
                tampered = raw[:position] + bytes([replacement]) + raw[position + 1 :]
                assert _refused(root, key, value, tampered), (key, position, replacement)
        assert _refused(root, key, value, raw[:-1])
        assert _refused(root, key, value, raw + b"\x00")


def test_every_byte_of_a_proof_tampered_is_refused() -> None:
    _check_every_tamper(exhaustive=False)


@pytest.mark.fuzz
@pytest.mark.skipif(not os.environ.get("PROVENET_FUZZ"), reason="set PROVENET_FUZZ=1 -m fuzz")
def test_every_single_byte_tamper_of_a_proof_is_refused() -> None:
    _check_every_tamper(exhaustive=True)


def test_absence_at_another_leaf_carries_that_leaf_and_needs_its_prefix() -> None:
    state = MemoryState((b"k%d" % i, b"v") for i in range(24))
    root = state.root()
    _, at_leaf = _absent_keys_by_ending(state, root)
    proof = state.prove(at_leaf)
    assert proof.other_leaf is not None
    other_path, other_value_digest = proof.other_leaf
    assert other_value_digest == digest(b"v")
    depth = len(proof.levels)
    assert (
        _nibbles(at_leaf)[:depth]
        == [n for byte in other_path for n in (byte >> 4, byte & 15)][:depth]
    )
    # A leaf named at the key's own path is a presence, never an absence.
    own = StateProof(proof.levels, (key_path(at_leaf), other_value_digest))
    assert not verify_state_proof(root, at_leaf, None, own)
    # A presence claim cannot come with another leaf.
    assert not verify_state_proof(root, at_leaf, b"v", proof)


def test_empty_and_single_key_states_prove_with_no_levels() -> None:
    empty = MemoryState()
    proof = empty.prove(b"x")
    assert proof == StateProof(()) and verify_state_proof(EMPTY, b"x", None, proof)
    single = MemoryState([(b"k", b"v")])
    root = single.root()
    assert single.prove(b"k") == StateProof(())
    assert verify_state_proof(root, b"k", b"v", single.prove(b"k"))
    absent = single.prove(b"x")
    assert absent.levels == () and absent.other_leaf == (key_path(b"k"), digest(b"v"))
    assert verify_state_proof(root, b"x", None, absent)
    assert not verify_state_proof(root, b"x", None, StateProof(()))


def _pair_sharing_nibbles(count: int) -> tuple[bytes, bytes]:
    """Two keys whose paths agree on at least ``count`` leading nibbles."""
    seen: dict[bytes, bytes] = {}
    for i in range(200_000):
        key = b"p%d" % i
        prefix = bytes(_nibbles(key)[:count])
        if prefix in seen:
            return seen[prefix], key
        seen[prefix] = key
    raise AssertionError("no pair found")


def test_deleting_a_neighbour_lifts_the_survivor_and_proofs_follow() -> None:
    first, second = _pair_sharing_nibbles(3)
    depth = _shared_nibbles(first, second)
    others = [(b"o%d" % i, b"o") for i in range(20)]
    trie_state = MemoryState([*others, (first, b"1"), (second, b"2")])
    deep = trie_state.prove(first)
    assert len(deep.levels) == depth + 1
    trie_state.delete(second)
    model = [*others, (first, b"1")]
    root = root_from_snapshot(model)
    assert trie_state.root() == root
    lifted = trie_state.prove(first)
    assert len(lifted.levels) < depth
    assert verify_state_proof(root, first, b"1", lifted)
    assert not verify_state_proof(root, first, b"1", deep)
    gone = trie_state.prove(second)
    assert verify_state_proof(root, second, None, gone)
    assert gone.other_leaf == (key_path(first), digest(b"1"))
    # The old proof of the deleted key's presence no longer verifies.
    trie_state.put(second, b"2")
    old_presence = trie_state.prove(second)
    trie_state.delete(second)
    assert not verify_state_proof(root, second, b"2", old_presence)


def test_delete_down_to_one_key_and_to_none() -> None:
    trie = MerkleTrie()
    for i in range(50):
        trie.set(b"%d" % i, b"x")
    for i in range(1, 50):
        trie.delete(b"%d" % i)
    root = trie.root()
    assert root == root_from_snapshot([(b"0", b"x")])
    assert trie.prove(b"0") == StateProof(())
    assert verify_state_proof(root, b"0", b"x", trie.prove(b"0"))
    assert verify_state_proof(root, b"1", None, trie.prove(b"1"))
    trie.delete(b"0")
    assert verify_state_proof(trie.root(), b"0", None, trie.prove(b"0"))


def test_a_level_claiming_the_paths_own_slot_is_refused() -> None:
    state = MemoryState((b"k%d" % i, b"v") for i in range(24))
    root = state.root()
    proof = state.prove(b"k1")
    top = proof.levels[0]
    slot = _nibbles(b"k1")[0]
    claimed = ProofLevel(top.bitmap | 1 << slot, (*top.siblings, digest(b"x")))
    assert not verify_state_proof(root, b"k1", b"v", StateProof((claimed, *proof.levels[1:])))


def test_proofs_grow_with_the_logarithm_of_the_state() -> None:
    state = MemoryState((b"%d" % i, b"") for i in range(4096))
    deepest = max(len(state.prove(b"%d" % i).levels) for i in range(0, 4096, 7))
    assert deepest <= 7  # log16(4096) = 3, plus a few levels of shared prefixes


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([], "not a map"),
        ({"levels": []}, "fields missing"),
        ({"levels": [], "other_leaf": None, "x": 1}, "unknown"),
        ({"levels": [[0, b""]] * 65, "other_leaf": None}, "at most 64"),
        ({"levels": [[0xFFFF, b"\x01" * 512]], "other_leaf": None}, "at most 15"),
        ({"levels": [[True, b"\x01" * 32]], "other_leaf": None}, "bitmap"),
        ({"levels": [[-1, b""]], "other_leaf": None}, "bitmap"),
        ({"levels": [[3, b"\x01" * 32]], "other_leaf": None}, "64 bytes"),
        ({"levels": [[1, bytes(32)]], "other_leaf": None}, "empty slot"),
        ({"levels": [[1]], "other_leaf": None}, "bitmap, sibling"),
        ({"levels": [], "other_leaf": [b"\x01" * 32]}, "other_leaf"),
        ({"levels": [], "other_leaf": [b"\x01" * 32, b"\x01" * 31]}, "other_leaf[1]"),
        ({"levels": "x", "other_leaf": None}, "levels"),
    ],
)
def test_malformed_proofs_are_shape_errors(value: object, problem: str) -> None:
    with pytest.raises(ShapeError, match=problem.replace("[", r"\[")):
        StateProof.from_dict(value)


def test_json_form_wants_hex() -> None:
    proof = MemoryState([(b"a", b"1"), (b"b", b"2")]).prove(b"a")
    assert StateProof.from_json(proof.to_json()) == proof
    with pytest.raises(ShapeError):
        StateProof.from_json(proof.to_dict())
    with pytest.raises(ShapeError):
        StateProof.from_json({"levels": [[1, "zz" * 32]], "other_leaf": None})


def test_a_hand_built_inconsistent_level_is_refused_not_raised() -> None:
    state = MemoryState((b"k%d" % i, b"v") for i in range(24))
    root = state.root()
    proof = state.prove(b"k1")
    top = proof.levels[0]
    for broken in (
        ProofLevel(top.bitmap, top.siblings[:-1]),
        ProofLevel(top.bitmap, (*top.siblings, digest(b"x"))),
        ProofLevel(top.bitmap | 1 << 16, top.siblings),
    ):
        assert not verify_state_proof(root, b"k1", b"v", StateProof((broken, *proof.levels[1:])))
