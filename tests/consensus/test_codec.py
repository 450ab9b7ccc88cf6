"""The canonical codec: round trips, canonical-only decoding, limits, signing."""

from __future__ import annotations

from dataclasses import replace

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import codec
from consensus.codec import (
    DEFAULT_LIMITS,
    DecodeError,
    Ed25519Signer,
    EncodeError,
    Limits,
    decode,
    digest,
    ed25519_verify,
    encode,
    signing_bytes,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=30,
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(values)
def test_round_trip_returns_the_value(value: object) -> None:
    assert decode(encode(value)) == value


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(values)
def test_encoding_is_a_function_of_the_value_not_of_key_order(value: object) -> None:
    def reversed_maps(item: object) -> object:
        if isinstance(item, dict):
            return {k: reversed_maps(item[k]) for k in reversed(list(item))}
        if isinstance(item, list):
            return [reversed_maps(x) for x in item]
        return item

    assert encode(reversed_maps(value)) == encode(value)


@pytest.mark.slow
@settings(max_examples=2_000, deadline=None)
@given(st.binary(max_size=200))
def test_only_decode_error_escapes_whatever_the_bytes(data: bytes) -> None:
    try:
        value = decode(data)
    except DecodeError:
        return
    # Whatever decodes must be canonical: it re-encodes to the same bytes.
    assert encode(value) == data


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(values, st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_decodes_to_another_value_or_fails(
    value: object, position: int, new_byte: int
) -> None:
    data = bytearray(encode(value))
    position %= len(data)
    if data[position] == new_byte:
        return
    data[position] = new_byte
    try:
        mutated = decode(bytes(data))
    except DecodeError:
        return
    # Canonical encoding is injective: other canonical bytes are another value
    # (compared by encoding, since Python says 0 == False).
    assert encode(mutated) == bytes(data) != encode(value)


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("uint8 for a fixint", b"\xcc\x05"),
        ("int16 for a small int", b"\xd1\x00\x01"),
        ("unsorted map keys", b"\x82\xa1b\x01\xa1a\x01"),
        ("repeated map key", b"\x82\xa1a\x01\xa1a\x02"),
        ("str8 for a short string", b"\xd9\x01a"),
        ("array16 for a short list", b"\xdc\x00\x01\x01"),
        ("float32", b"\xca\x00\x00\x00\x00"),
        ("float64", b"\xcb" + b"\x00" * 8),
        ("extension type", b"\xd4\x01\x00"),
        ("integer map key", b"\x81\x01\x01"),
        ("bytes map key", b"\x81\xc4\x01a\x01"),
        ("trailing bytes", b"\x01\x02"),
        ("truncated", b"\x92\x01"),
        ("never-used byte", b"\xc1"),
        ("invalid utf-8", b"\xa1\xff"),
        ("empty input", b""),
    ],
)
def test_decode_rejects_non_canonical_or_malformed_input(label: str, data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_decode_enforces_size_depth_and_length_limits() -> None:
    limits = Limits(
        max_size_bytes=64, max_depth=3, max_collection_len=4, max_str_len=8, max_bytes_len=8
    )
    with pytest.raises(DecodeError):
        decode(encode(b"x" * 100), limits)
    with pytest.raises(DecodeError):
        decode(encode([[[[1]]]]), limits)
    with pytest.raises(DecodeError):
        decode(encode([1, 2, 3, 4, 5]), limits)
    with pytest.raises(DecodeError):
        decode(encode("a" * 9), limits)
    with pytest.raises(DecodeError):
        decode(encode(b"a" * 9), limits)
    assert decode(encode([[[1]]]), limits) == [[[1]]]


def test_deep_nesting_is_a_decode_error_not_a_crash() -> None:
    with pytest.raises(DecodeError):
        decode(b"\x91" * 100_000 + b"\x01")


@pytest.mark.parametrize("bad", [1.5, {1: "x"}, 2**64, -(2**63) - 1, object(), {"a": {1, 2}}])
def test_encode_refuses_values_outside_the_canonical_subset(bad: object) -> None:
    with pytest.raises(EncodeError):
        encode(bad)


def test_encode_matches_msgpack_for_canonical_values() -> None:
    value = {"a": [1, -1, 2**40, "s", b"b", None, True], "b": {}}
    assert encode(value) == msgpack.packb(value, use_bin_type=True)


def test_signatures_are_bound_to_domain_and_chain() -> None:
    signer = Ed25519Signer.from_seed(b"\x01" * 32)
    message = signing_bytes("prepare", "chain-a", [1, 2])
    signature = signer.sign(message)
    assert ed25519_verify(signer.public_key, message, signature)
    assert not ed25519_verify(
        signer.public_key, signing_bytes("commit", "chain-a", [1, 2]), signature
    )
    assert not ed25519_verify(
        signer.public_key, signing_bytes("prepare", "chain-b", [1, 2]), signature
    )
    assert not ed25519_verify(signer.public_key, message, signature[:-1] + b"\x00")
    assert not ed25519_verify(b"short", message, signature)


def test_digest_is_sha256() -> None:
    assert (
        digest(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def _nested(levels: int, leaf: object) -> object:
    value = leaf
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


def test_encode_accepts_exactly_what_decode_accepts_at_the_depth_limit() -> None:
    limit = DEFAULT_LIMITS.max_depth
    leaves: tuple[object, ...] = (b"x", "x", 7, None, [], {})
    for leaf in leaves:
        for levels in (limit - 1, limit, limit + 1):
            value = _nested(levels, leaf)
            try:
                encoded = encode(value)
            except EncodeError:
                encoded = None
            try:
                decode(msgpack.packb(value, use_bin_type=True))
                decodable = True
            except DecodeError:
                decodable = False
            assert (encoded is not None) == decodable, (leaf, levels)


# ------------------------------------------------------------ bounded decoding cost

# Small limits, and inputs well over them in values but within their bytes.
COUNTED = Limits(
    max_size_bytes=1 << 20,
    max_depth=4,
    max_collection_len=1_000,
    max_str_len=64,
    max_bytes_len=64,
    max_objects=2_000,
    max_containers=100,
)


def _lists_of(leaf: bytes, leaves: int, per_list: int) -> bytes:
    """``leaves`` copies of ``leaf`` in a list of lists of ``per_list`` each (canonical)."""
    assert leaves % per_list == 0 and per_list < 1 << 16 and leaves // per_list < 1 << 16
    inner = b"\xdc" + per_list.to_bytes(2, "big") + leaf * per_list
    return b"\xdc" + (leaves // per_list).to_bytes(2, "big") + inner * (leaves // per_list)


@pytest.mark.parametrize(
    ("label", "data", "limit"),
    [
        # 40,000 zeros in lists: 40 lists, 40,041 values, within the bytes.
        ("values", _lists_of(b"\x00", 40_000, 1_000), "max_objects"),
        # 10,000 empty maps: 10,011 containers, 10 KB.
        ("containers", _lists_of(b"\x80", 10_000, 1_000), "max_containers"),
        ("depth", b"\x91" * 5_000 + b"\xc0", "max_depth"),
        ("collection length", b"\xdc\x07\xd0" + b"\x00" * 2_000, "max_collection_len"),
    ],
)
def test_decode_refuses_an_input_over_a_count_limit_before_building_anything(
    label: str, data: bytes, limit: str, unpack_calls: list[int]
) -> None:
    assert len(data) <= COUNTED.max_size_bytes
    with pytest.raises(DecodeError, match=limit):
        decode(data, COUNTED)
    assert unpack_calls == [], f"the {label} limit was checked only after unpacking"


@pytest.mark.slow
def test_the_default_limits_bound_values_and_containers() -> None:
    # A 2 MB list of lists of zeros, and a 1.1 MB list of empty maps: inside
    # the default 16 MiB, but over the default value and container counts.
    with pytest.raises(DecodeError, match="max_objects"):
        decode(_lists_of(b"\x00", 2_000_000, 40_000))
    with pytest.raises(DecodeError, match="max_containers"):
        decode(_lists_of(b"\x80", 1_100_000, 50_000))


def test_inputs_at_the_count_limits_still_decode() -> None:
    # 1,995 values (1 + 2 lists + 1,992 zeros) and 3 containers; then 99 containers.
    zeros = b"\x92" + (b"\xdc\x03\xe4" + b"\x00" * 996) * 2
    assert decode(zeros, COUNTED) == [[0] * 996, [0] * 996]
    maps = b"\x92" + (b"\xdc\x00\x30" + b"\x80" * 48) * 2 + b""
    assert decode(maps, replace(COUNTED, max_containers=99)) == [[{}] * 48, [{}] * 48]


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=80) | values.map(encode),
    st.integers(min_value=0, max_value=6),
)
def test_the_header_walk_and_the_tree_walk_accept_and_refuse_alike(
    data: bytes, max_depth: int
) -> None:
    """An input no longer than the count limits is unpacked at once and its
    tree checked; a longer one has its headers walked first.  Where the
    counts do not bind, both routes agree on every input."""
    limits = replace(COUNTED, max_depth=max_depth, max_str_len=40, max_bytes_len=40)

    def outcome(walk_headers: bool) -> object:
        try:
            if walk_headers:
                codec._check_shape(data, limits)
            value = codec._unpack(data, limits)
            if not walk_headers:
                codec._check_tree(value, limits)
            return ("ok", encode(value) == data, encode(value))
        except (DecodeError, EncodeError):
            return "refused"

    assert outcome(walk_headers=True) == outcome(walk_headers=False)
