"""The transaction envelope: canonical round trip, limits, signatures."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import DecodeError, Ed25519Signer, decode, digest, encode
from contracts.config import ContractLimits
from contracts.tx import (
    Transaction,
    admission_codec_limits,
    decode_tx,
    encode_tx,
    sign_tx,
    tx_from_value,
    tx_id,
    verify_tx,
)

SIGNER = Ed25519Signer.from_seed(b"s" * 32)


def signed(**changes: object) -> Transaction:
    fields: dict[str, object] = {
        "chain_id": "c",
        "nonce": 3,
        "contract": "diamonds",
        "method": "extract",
        "args": {"mine_id": "M1", "carats_points": 100},
        "expiry_height": 50,
    }
    fields.update(changes)
    return sign_tx(SIGNER, **fields)  # type: ignore[arg-type]


def test_round_trip_is_exact_and_the_id_is_the_envelope_digest() -> None:
    tx = signed()
    data = encode_tx(tx)
    assert decode_tx(data) == tx
    assert tx_id(tx) == digest(data)
    assert verify_tx(tx)


def test_signature_covers_every_field_and_the_chain() -> None:
    tx = signed()
    for change in (
        {"nonce": 4},
        {"args": {"mine_id": "M2", "carats_points": 100}},
        {"expiry_height": None},
        {"chain_id": "other"},
        {"method": "ship"},
        {"contract": "food"},
    ):
        forged = Transaction(**{**tx.body(), "signature": tx.signature, **change})  # type: ignore[arg-type]
        assert not verify_tx(forged), change


def test_non_canonical_bytes_are_refused() -> None:
    tx = signed()
    fields = {**tx.body(), "signature": tx.signature}
    unsorted = msgpack.packb(dict(reversed(list(fields.items()))), use_bin_type=True)
    with pytest.raises(DecodeError):
        decode_tx(unsorted)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: f.pop("signature"),
        lambda f: f.update(extra=1),
        lambda f: f.update(nonce=-1),
        lambda f: f.update(nonce=True),
        lambda f: f.update(sender=b"short"),
        lambda f: f.update(signature=b"x" * 10),
        lambda f: f.update(args=[1, 2]),
        lambda f: f.update(expiry_height="soon"),
    ],
)
def test_wrong_fields_or_types_are_refused(mutate: object) -> None:
    tx = signed()
    fields = {**tx.body(), "signature": tx.signature}
    mutate(fields)  # type: ignore[operator]
    with pytest.raises(DecodeError):
        decode_tx(encode(fields))


def test_size_and_depth_limits_are_enforced_by_decode() -> None:
    big = signed(args={"note": "x" * 2000})
    with pytest.raises(DecodeError):
        decode_tx(encode_tx(big), ContractLimits(max_tx_bytes=1000))
    deep: object = 1
    for _ in range(8):
        deep = [deep]
    nested = signed(args={"deep": deep})
    with pytest.raises(DecodeError):
        decode_tx(encode_tx(nested), ContractLimits(max_args_depth=4))


def test_the_largest_honest_arguments_decode_at_admission() -> None:
    """A food process with the most inputs and outputs the chain allows, and
    a list argument as long as a collection may be, pass the door's counts."""
    limits = ContractLimits()
    inputs = [{"lot_id": f"L{n:05d}", "mass_grams": 10**12} for n in range(limits.max_inputs)]
    outputs = [
        {"lot_id": f"O{n:05d}", "product": "flour", "mass_grams": 10**12}
        for n in range(limits.max_outputs)
    ]
    process = signed(contract="food", method="process", args={"inputs": inputs, "outputs": outputs})
    ids = signed(args={"parcels": [f"P{n}" for n in range(limits.max_collection_len)]})
    for tx in (process, ids):
        assert tx_from_value(decode(encode_tx(tx), admission_codec_limits(limits))) == tx
        assert decode_tx(encode_tx(tx), limits) == tx


def test_an_envelope_dense_in_values_is_refused_at_admission_and_decoded_at_execution() -> None:
    # 60 KB of one-byte values in lists, within max_tx_bytes and every list
    # and depth bound, but far more values than any honest transaction holds:
    # the door refuses it; execution decodes it as every version of the node
    # did, so a block that carries one anyway executes the same everywhere.
    limits = ContractLimits()
    dense = signed(args={"values": [[0] * 1_000 for _ in range(60)]})
    maps = signed(args={"maps": [[{} for _ in range(1_000)] for _ in range(2)]})
    for tx, count in ((dense, "max_objects"), (maps, "max_containers")):
        with pytest.raises(DecodeError, match=count):
            decode(encode_tx(tx), admission_codec_limits(limits))
        assert decode_tx(encode_tx(tx), limits) == tx


def test_api_misuse_raises_type_error() -> None:
    with pytest.raises(TypeError):
        Transaction(chain_id="c", sender=b"x", nonce=0, contract="a", method="b")
    with pytest.raises(TypeError):
        Transaction(chain_id="c", sender=SIGNER.public_key, nonce=1.5, contract="a", method="b")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        signed(args={"weight": 1.5})  # floats never enter canonical bytes


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_decode_never_raises_anything_but_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_tx(data)


def nested_list(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"inputs": ("A", "B")}, TypeError),  # same bytes as a list, other behaviour
        ({"carats_points": 1.5}, TypeError),  # no float survives encoding
        ({"nested": [{"ok": [b"x", None, True, -1]}, (1,)]}, TypeError),
        ({"flag": bytearray(b"x")}, TypeError),
        ({1: "non-str key"}, TypeError),
        ({"text": "\ud800"}, TypeError),  # a lone surrogate has no UTF-8 form
        ({"big": 2**64}, ValueError),
        ({"deep": nested_list(40)}, ValueError),  # deeper than the codec allows
    ],
)
def test_transaction_args_must_be_exactly_their_decoded_form(
    args: dict[object, object], error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"Transaction\.args"):
        Transaction("c", SIGNER.public_key, 0, "diamonds", "merge", args)  # type: ignore[arg-type]
    with pytest.raises(error, match=r"Transaction\.args"):
        signed(args=args)


def test_canonical_args_round_trip_to_an_equal_transaction() -> None:
    args: dict[str, object] = {
        "inputs": ["A", "B"],
        "nested": [{"ok": [b"x", None, True, -(2**63), 2**64 - 1]}],
        "text": "caf\u00e9",
    }
    tx = signed(args=args)
    assert decode_tx(encode_tx(tx)) == tx
