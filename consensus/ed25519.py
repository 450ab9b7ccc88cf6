"""Ed25519 signing and verification through PyNaCl (libsodium), under one strict rule.

Theory of operation
-------------------
Provenet signs and verifies with Ed25519 only (RFC 8032), through PyNaCl,
a required dependency: libsodium verifies roughly twice as fast as OpenSSL
from Python and signs about half again as fast (``scripts/bench_verify.py``
measures both).  ``cryptography`` (OpenSSL) stays a dependency of the node
for TLS and certificates, never for signatures.  Keys, seeds and
signatures are the same bytes in any RFC 8032 implementation, so the
library never shows on the wire.

The acceptance rule
-------------------
A signature check decides whether a transaction executes, so every
validator must reach the same verdict on every input, even a crafted one.
Ed25519 libraries differ on edge cases: OpenSSL accepts a public key or a
signature ``R`` of small order (for example the identity point, with which
a "signature" of ``S = 0`` verifies for every message) and a
non-canonical encoding of a key, which libsodium refuses.  So
:func:`verify` first applies :func:`_acceptable`, libsodium's strict rule
written out, so that the rule is fixed here, not by whichever release of
the library is installed:

* the key is 32 bytes and the signature 64;
* ``S`` (the signature's second half) is below the group order ``L``;
* the key encodes its ``y`` coordinate canonically (below ``p``);
* neither the key nor ``R`` is one of the eight points of small order,
  whatever the sign bit (the seven ``y`` values libsodium blocks).

Only then does libsodium check the equation.  The call is also guarded so
that nothing leaves :func:`verify` but ``True`` or ``False``: a malformed
key or signature is simply an invalid signature.

Keys are thread-safe: they keep no state between calls and are immutable.
libsodium releases the GIL while it computes, so a pool of threads
verifies in parallel (about 1.8 times the one-thread rate on two cores).
Key generation (the one use of randomness) is :func:`generate_key`, called
only by :meth:`consensus.codec.Ed25519Signer.generate` in node/.
"""

from __future__ import annotations

from collections.abc import Callable

from nacl.bindings import (
    crypto_sign,
    crypto_sign_keypair,
    crypto_sign_open,
    crypto_sign_seed_keypair,
)
from nacl.exceptions import BadSignatureError, CryptoError

# The library behind this module, named in benchmark reports.
BACKEND = "pynacl"

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

# The field prime p and the order L of the base point's group (RFC 8032).
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
# The low 255 bits of an encoded point are its y coordinate; the top bit
# is the sign of x.
_Y_MASK = 2**255 - 1
# y of a point of order 8 (the other order-8 y is p minus this one).
_Y_ORDER_8 = int.from_bytes(
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"
)
# Every y coordinate, canonical or not, of the eight points of small
# order: libsodium's blocklist (0 and p are order 4, 1 and p + 1 the
# identity, p - 1 order 2, the last two order 8).
SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _P, _P + 1, _Y_ORDER_8, _P - _Y_ORDER_8})


def _acceptable(public_key: bytes, signature: bytes) -> bool:
    """The strict acceptance rule, applied before libsodium's check."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    if int.from_bytes(signature[32:], "little") >= _L:
        return False
    key_y = int.from_bytes(public_key, "little") & _Y_MASK
    if key_y >= _P or key_y in SMALL_ORDER_Y:
        return False
    return int.from_bytes(signature[:32], "little") & _Y_MASK not in SMALL_ORDER_Y


VerifyFunction = Callable[[bytes, bytes, bytes], bool]


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True only for a valid signature under the strict rule; never raises.

    PyNaCl exposes only combined-mode verification, so the signature is
    prepended to the message.  The length checks in :func:`_acceptable`
    are also what keeps libsodium from reading past a short key, which
    the binding itself does not check.
    """
    if not _acceptable(public_key, signature):
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except (CryptoError, BadSignatureError, ValueError, TypeError):
        return False
    return True


class Ed25519Key:
    """A private key ready to sign: the 64-byte expanded secret libsodium signs with."""

    __slots__ = ("_public", "_secret", "_seed")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_SIZE:
            raise ValueError("an Ed25519 seed is 32 bytes")
        public, secret = crypto_sign_seed_keypair(bytes(seed))
        self._seed = bytes(seed)
        self._public: bytes = public
        self._secret: bytes = secret

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def seed(self) -> bytes:
        return self._seed

    def sign(self, message: bytes) -> bytes:
        # Combined mode returns signature || message; the signature leads.
        signed: bytes = crypto_sign(message, self._secret)
        return signed[:SIGNATURE_SIZE]


def key_from_seed(seed: bytes) -> Ed25519Key:
    """A signing key from a 32-byte seed (the same seed gives the same key anywhere)."""
    return Ed25519Key(seed)


def generate_key() -> Ed25519Key:
    """A fresh key from libsodium's randomness (node/ only: consensus stays deterministic)."""
    _, secret = crypto_sign_keypair()
    # libsodium's secret key is the seed followed by the public key.
    return Ed25519Key(secret[:SEED_SIZE])
