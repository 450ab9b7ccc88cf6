"""Ed25519 through PyNaCl: RFC 8032's bytes and one strict verdict.

Every validator must decide every signature the same way, so these tests
hold ``consensus.ed25519`` to RFC 8032 and to OpenSSL (through
``cryptography``, an independent implementation used here as an oracle):
signatures are the same bytes, tampering fails, and inputs the raw
libraries disagree on (points of small order, non-canonical encodings)
are refused.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import ed25519
from consensus.codec import Ed25519Signer, ed25519_verify

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P

# RFC 8032 section 7.1, TEST 1: the empty message.
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def seed(n: int) -> bytes:
    return hashlib.sha256(b"ed25519 test key %d" % n).digest()


def openssl_verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """OpenSSL's own verdict, without the strict rule: the oracle."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def test_rfc8032_test_vector_1() -> None:
    key = ed25519.key_from_seed(RFC_SEED)
    assert key.public_key == RFC_PUBLIC
    assert key.seed == RFC_SEED
    assert key.sign(b"") == RFC_SIGNATURE
    assert ed25519.verify(RFC_PUBLIC, b"", RFC_SIGNATURE)


def test_codec_signer_and_verifier_use_the_module() -> None:
    signer = Ed25519Signer.from_seed(RFC_SEED)
    assert signer.public_key == RFC_PUBLIC
    assert signer.seed() == RFC_SEED
    assert signer.sign(b"") == RFC_SIGNATURE
    assert ed25519_verify(RFC_PUBLIC, b"", RFC_SIGNATURE)
    assert not ed25519_verify(RFC_PUBLIC, b"x", RFC_SIGNATURE)


def test_a_generated_key_is_fresh_and_round_trips_through_its_seed() -> None:
    fresh = Ed25519Signer.generate()
    assert fresh.public_key != Ed25519Signer.generate().public_key
    assert Ed25519Signer.from_seed(fresh.seed()).public_key == fresh.public_key
    assert ed25519_verify(fresh.public_key, b"m", fresh.sign(b"m"))


@settings(max_examples=60, deadline=None)
@given(key_index=st.integers(0, 1_000), message=st.binary(max_size=300))
def test_signatures_are_openssls_bytes_and_cross_verify(key_index: int, message: bytes) -> None:
    key_seed = seed(key_index)
    key = ed25519.key_from_seed(key_seed)
    by_openssl = Ed25519PrivateKey.from_private_bytes(key_seed)
    assert key.sign(message) == by_openssl.sign(message)
    assert key.public_key == by_openssl.public_key().public_bytes_raw()
    assert ed25519.verify(key.public_key, message, by_openssl.sign(message))
    assert openssl_verifies(key.public_key, message, key.sign(message))


@settings(max_examples=60, deadline=None)
@given(
    message=st.binary(min_size=1, max_size=200),
    part=st.sampled_from(["key", "message", "signature"]),
    bit=st.integers(0, 2**16),
)
def test_a_flipped_bit_fails(message: bytes, part: str, bit: int) -> None:
    key = ed25519.key_from_seed(seed(7))
    fields = {"key": key.public_key, "message": message, "signature": key.sign(message)}
    target = bytearray(fields[part])
    position = bit % (8 * len(target))
    target[position // 8] ^= 1 << (position % 8)
    fields[part] = bytes(target)
    assert not ed25519.verify(fields["key"], fields["message"], fields["signature"])


def test_malformed_inputs_are_false_not_errors() -> None:
    verify = ed25519.verify
    key = ed25519.key_from_seed(seed(1))
    good = key.sign(b"m")
    assert verify(key.public_key, b"m", good)
    for length in (0, 1, 31, 33, 64):
        assert not verify(b"\x01" * length, b"m", good)
        assert not verify((key.public_key * 2)[:length], b"m", good)
    for length in (0, 1, 32, 63, 65, 128):
        assert not verify(key.public_key, b"m", (good * 3)[:length])
    # 0xff..: y above p, not a point encoding at all.
    assert not verify(b"\xff" * 32, b"m", good)
    assert not verify(key.public_key, b"m", b"\xff" * 64)
    assert not verify(key.public_key, b"m", b"\x00" * 64)


def test_non_canonical_s_is_refused() -> None:
    key = ed25519.key_from_seed(seed(2))
    good = key.sign(b"m")
    s = int.from_bytes(good[32:], "little")
    malleated = good[:32] + (s + L).to_bytes(32, "little")
    assert not ed25519.verify(key.public_key, b"m", malleated)


def _encode(y: int, sign: int) -> bytes:
    return (y | sign << 255).to_bytes(32, "little")


@pytest.mark.parametrize("y", sorted(ed25519.SMALL_ORDER_Y))
@pytest.mark.parametrize("sign", [0, 1])
def test_small_order_keys_cannot_sign_everything(y: int, sign: int) -> None:
    # With a small-order key A and R = A, S = 0 satisfies the equation
    # whenever H(R, A, M) + 1 is a multiple of A's order: for the identity
    # that is every message.  OpenSSL accepts these; the strict rule refuses
    # them, so no crafted key splits the validators.
    forged = _encode(y, sign)
    for message in (b"", b"any message", b"another"):
        assert not ed25519.verify(forged, message, forged + bytes(32))


def test_small_order_r_is_refused() -> None:
    # An honest signer may choose R = identity and S = H(R, A, M) * a: a
    # valid equation that libsodium refuses and OpenSSL would accept.
    key_seed = seed(3)
    public = ed25519.key_from_seed(key_seed).public_key
    expanded = hashlib.sha512(key_seed).digest()
    scalar = int.from_bytes(expanded[:32], "little") & ((1 << 254) - 8) | (1 << 254)
    identity = _encode(1, 0)
    challenge = int.from_bytes(hashlib.sha512(identity + public + b"m").digest(), "little") % L
    signature = identity + (challenge * scalar % L).to_bytes(32, "little")
    assert openssl_verifies(public, b"m", signature)
    assert not ed25519.verify(public, b"m", signature)


def test_non_canonical_key_encoding_is_refused() -> None:
    # p + 1 encodes y = 1, the identity, non-canonically.
    assert not ed25519.verify(_encode(P + 1, 0), b"m", _encode(1, 0) + bytes(32))
    assert not ed25519.verify(_encode(P + 3, 0), b"m", _encode(1, 0) + bytes(32))


def _x_of(y: int) -> int | None:
    """An x with (x, y) on the curve (RFC 8032 5.1.3), or None."""
    x2 = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    return x if (x * x - x2) % P == 0 else None


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return (
        (x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
        (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P,
    )


def test_the_blocklist_is_exactly_the_eight_points_of_small_order() -> None:
    # The torsion subgroup has eight points; the blocklist's canonical y
    # values must give eight distinct points, each with 8P = identity, and
    # its non-canonical values must be p and p + 1 (y = 0 and y = 1 again).
    canonical = {y for y in ed25519.SMALL_ORDER_Y if y < P}
    assert ed25519.SMALL_ORDER_Y - canonical == {P, P + 1}
    points = set()
    for y in canonical:
        x = _x_of(y)
        assert x is not None
        for point in {(x, y), (-x % P, y)}:
            multiple = point
            for _ in range(7):
                multiple = _add(multiple, point)
            assert multiple == (0, 1)
            points.add(point)
    assert len(points) == 8


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_nothing_openssl_refuses_is_accepted(data: st.DataObject) -> None:
    key = ed25519.key_from_seed(seed(data.draw(st.integers(0, 20))))
    message = data.draw(st.binary(max_size=64))
    signature = key.sign(message)
    public = key.public_key
    choice = data.draw(st.integers(0, 4))
    if choice == 0:
        public = data.draw(st.binary(min_size=32, max_size=32))
    elif choice == 1:
        signature = data.draw(st.binary(min_size=64, max_size=64))
    elif choice == 2:
        signature = signature[:32] + data.draw(st.binary(min_size=32, max_size=32))
    elif choice == 3:
        signature = data.draw(st.binary(min_size=32, max_size=32)) + signature[32:]
    # The strict rule only ever refuses more than OpenSSL's equation check.
    if ed25519.verify(public, message, signature):
        assert openssl_verifies(public, message, signature)


def test_a_short_seed_is_an_error() -> None:
    with pytest.raises(ValueError):
        ed25519.key_from_seed(b"short")
