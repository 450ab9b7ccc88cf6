"""The state root: incremental equals from-scratch, order-free, sensitive."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from snapshot_root import pairs, root_from_snapshot

from consensus.codec import digest
from contracts.state import MemoryState
from contracts.stateroot import EMPTY, MerkleTrie, key_path, leaf_hash

keys = st.binary(min_size=0, max_size=6)
values = st.binary(min_size=0, max_size=8)
operations = st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=120)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_incremental_root_equals_snapshot_root_after_random_workloads(
    ops: list[tuple[bytes, bytes | None]],
) -> None:
    state = MemoryState()
    model: dict[bytes, bytes] = {}
    for index, (key, value) in enumerate(ops):
        if value is None:
            state.delete(key)
            model.pop(key, None)
        else:
            state.put(key, value)
            model[key] = value
        if index % 17 == 0:  # interleave root computations with writes
            assert state.root() == root_from_snapshot(model.items())
    assert state.root() == root_from_snapshot(model.items())
    assert pairs(state) == sorted(model.items())


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(keys, values, max_size=60), st.randoms(use_true_random=False))
def test_root_does_not_depend_on_write_order(content: dict[bytes, bytes], rng: object) -> None:
    items = list(content.items())
    first = MemoryState(items)
    rng.shuffle(items)  # type: ignore[attr-defined]
    second = MemoryState(items)
    assert first.root() == second.root() == root_from_snapshot(content.items())


def test_empty_and_single_key_roots_follow_the_documented_definition() -> None:
    assert MemoryState().root() == EMPTY == root_from_snapshot([])
    state = MemoryState([(b"k", b"v")])
    assert (
        state.root()
        == leaf_hash(key_path(b"k"), b"v")
        == digest(b"\x00" + digest(b"k") + digest(b"v"))
    )


def test_two_keys_root_is_a_node_of_sixteen_children() -> None:
    pairs = [(b"a", b"1"), (b"b", b"2")]
    paths = {key: key_path(key) for key, _ in pairs}
    # Find the first nibble where the paths differ and build the node by hand.
    nibbles = {
        key: [n for byte in path for n in (byte >> 4, byte & 15)] for key, path in paths.items()
    }
    depth = next(i for i in range(64) if nibbles[b"a"][i] != nibbles[b"b"][i])
    children = [EMPTY] * 16
    for key, value in pairs:
        children[nibbles[key][depth]] = leaf_hash(paths[key], value)
    expected = digest(b"\x01" + b"".join(children))
    for _ in range(depth):
        expected_children = [EMPTY] * 16
        expected_children[nibbles[b"a"][depth - 1 - _]] = expected
        expected = digest(b"\x01" + b"".join(expected_children))
    assert root_from_snapshot(pairs) == MemoryState(pairs).root() == expected


def test_any_change_of_a_value_or_key_changes_the_root() -> None:
    base = [(b"key-%d" % i, b"value-%d" % i) for i in range(200)]
    root = root_from_snapshot(base)
    assert root_from_snapshot([*base[:50], (b"key-50", b"VALUE"), *base[51:]]) != root
    assert root_from_snapshot([*base[:50], (b"KEY-50", b"value-50"), *base[51:]]) != root
    assert root_from_snapshot(base[1:]) != root


def test_delete_back_to_a_previous_set_restores_its_root() -> None:
    trie = MerkleTrie()
    for i in range(500):
        trie.set(b"%d" % i, b"x")
    root = trie.root()
    for i in range(500, 800):
        trie.set(b"%d" % i, b"y")
    assert trie.root() != root
    for i in range(500, 800):
        trie.delete(b"%d" % i)
    assert trie.root() == root and len(trie) == 500
    trie.delete(b"absent")
    assert trie.root() == root


def test_snapshot_with_a_repeated_key_is_refused() -> None:
    try:
        root_from_snapshot([(b"a", b"1"), (b"a", b"2")])
    except ValueError:
        return
    raise AssertionError("a repeated key was accepted")


def test_prefix_scan_is_ordered_and_exact() -> None:
    state = MemoryState([(b"a/2", b""), (b"a/10", b""), (b"b/1", b""), (b"a/1", b""), (b"a", b"")])
    assert [key for key, _ in state.scan(b"a/")] == [b"a/1", b"a/10", b"a/2"]
    assert [key for key, _ in state.scan(b"")] == [b"a", b"a/1", b"a/10", b"a/2", b"b/1"]
    state.delete(b"a/10")
    assert [key for key, _ in state.scan(b"a/")] == [b"a/1", b"a/2"]


def test_sorted_index_survives_many_chunks() -> None:
    state = MemoryState()
    keys_written = [digest(b"%d" % i)[:4] for i in range(5000)]
    for key in keys_written:
        state.put(key, b"")
    for key in keys_written[::3]:
        state.delete(key)
    remaining = sorted(set(keys_written) - set(keys_written[::3]))
    assert [key for key, _ in state.scan(b"")] == remaining
    assert state.root() == root_from_snapshot((key, b"") for key in remaining)
