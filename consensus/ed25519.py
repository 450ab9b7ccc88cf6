"""Ed25519 signing and verification behind one small interface, two backends.

Theory of operation
-------------------
Provenet signs and verifies with Ed25519 only, and two libraries implement
it: ``cryptography`` (OpenSSL), which the node needs anyway for TLS and
certificates, and PyNaCl (libsodium).  Keys, seeds and signatures are the
same bytes in both (RFC 8032), so the choice is a local speed decision and
never shows on the wire.  libsodium verifies roughly twice as fast as
OpenSSL from Python and signs about half again as fast
(``scripts/bench_verify.py`` measures both), so :data:`BACKEND` is PyNaCl
whenever it can be imported, and ``cryptography`` otherwise.  The choice is
made once at import, with no I/O and no measurement, so it is the same on
every run of the same installation.

One acceptance rule for both backends
-------------------------------------
A signature check decides whether a transaction executes, so every
validator must reach the same verdict on every input, even a crafted one.
The two libraries do not: OpenSSL accepts a public key or a signature
``R`` of small order (for example the identity point, with which a
"signature" of ``S = 0`` verifies for every message), and a non-canonical
encoding of a key, all of which libsodium refuses.  So both backends first
apply :func:`_acceptable`, which is libsodium's strict rule written out:

* the key is 32 bytes and the signature 64;
* ``S`` (the signature's second half) is below the group order ``L``;
* the key encodes its ``y`` coordinate canonically (below ``p``);
* neither the key nor ``R`` is one of the eight points of small order,
  whatever the sign bit (the seven ``y`` values libsodium blocks).

Only then does the library check the equation.  The library call is also
guarded so that nothing leaves :func:`verify_with_nacl` or
:func:`verify_with_cryptography` but ``True`` or ``False``: a malformed
key or signature is simply an invalid signature.

Both backends are thread-safe: neither keeps state between calls, and the
key objects are immutable.  Both libraries release the GIL while they
compute, so a pool of threads verifies in parallel (about 1.8 times the
one-thread rate on two cores).  Key generation (the one use of randomness)
stays in :meth:`consensus.codec.Ed25519Signer.generate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

try:
    from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
    from nacl.exceptions import BadSignatureError, CryptoError

    _HAVE_NACL = True
except ImportError:  # pragma: no cover - PyNaCl is a declared dependency.
    _HAVE_NACL = False

NACL = "pynacl"
CRYPTOGRAPHY = "cryptography"

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
    """The strict rule both backends apply before the library's check."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    if int.from_bytes(signature[32:], "little") >= _L:
        return False
    key_y = int.from_bytes(public_key, "little") & _Y_MASK
    if key_y >= _P or key_y in SMALL_ORDER_Y:
        return False
    return int.from_bytes(signature[:32], "little") & _Y_MASK not in SMALL_ORDER_Y


def verify_with_cryptography(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Verify with OpenSSL through ``cryptography``; never raises."""
    if not _acceptable(public_key, signature):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_with_nacl(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Verify with libsodium through PyNaCl; never raises.

    PyNaCl exposes only combined-mode verification, so the signature is
    prepended to the message.  The length checks in :func:`_acceptable`
    are also what keeps libsodium from reading past a short key, which
    the binding itself does not check.
    """
    if not _HAVE_NACL:
        raise RuntimeError("PyNaCl is not installed")
    if not _acceptable(public_key, signature):
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except (CryptoError, BadSignatureError, ValueError, TypeError):
        return False
    return True


class Ed25519Key(Protocol):
    """A private key ready to sign; the same seed gives the same bytes in any backend."""

    @property
    def public_key(self) -> bytes: ...

    @property
    def seed(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class NaclKey:
    """A libsodium key: the 64-byte expanded secret libsodium signs with."""

    __slots__ = ("_public", "_secret", "_seed")

    def __init__(self, seed: bytes) -> None:
        if not _HAVE_NACL:
            raise RuntimeError("PyNaCl is not installed")
        _check_seed(seed)
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


class CryptographyKey:
    """An OpenSSL key held by ``cryptography``."""

    __slots__ = ("_key", "_public", "_seed")

    def __init__(self, seed: bytes) -> None:
        _check_seed(seed)
        self._seed = bytes(seed)
        self._key = Ed25519PrivateKey.from_private_bytes(self._seed)
        self._public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def seed(self) -> bytes:
        return self._seed

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def _check_seed(seed: bytes) -> None:
    if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_SIZE:
        raise ValueError("an Ed25519 seed is 32 bytes")


BACKENDS: tuple[str, ...] = (NACL, CRYPTOGRAPHY) if _HAVE_NACL else (CRYPTOGRAPHY,)
"""The backends importable here, fastest first."""

BACKEND: str = BACKENDS[0]
"""The backend of the hot path: :func:`verify` and :func:`key_from_seed`."""

VerifyFunction = Callable[[bytes, bytes, bytes], bool]

_VERIFIERS: dict[str, VerifyFunction] = {
    NACL: verify_with_nacl,
    CRYPTOGRAPHY: verify_with_cryptography,
}
_KEY_TYPES: dict[str, type[NaclKey] | type[CryptographyKey]] = {
    NACL: NaclKey,
    CRYPTOGRAPHY: CryptographyKey,
}

verify: VerifyFunction = _VERIFIERS[BACKEND]
"""Verify with :data:`BACKEND`: True only for a valid signature, never raises."""


def verifier_for(backend: str) -> VerifyFunction:
    """The verify function of ``backend`` (``"pynacl"`` or ``"cryptography"``)."""
    if backend not in BACKENDS:
        raise ValueError(f"Ed25519 backend {backend!r} is not available here: {BACKENDS}")
    return _VERIFIERS[backend]


def key_from_seed(seed: bytes, backend: str = BACKEND) -> Ed25519Key:
    """A signing key from a 32-byte seed, held by ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"Ed25519 backend {backend!r} is not available here: {BACKENDS}")
    return _KEY_TYPES[backend](seed)


def sign_with_nacl(seed: bytes, message: bytes) -> bytes:
    """Sign once with libsodium (builds the key; hold a :class:`NaclKey` to sign many)."""
    return NaclKey(seed).sign(message)


def sign_with_cryptography(seed: bytes, message: bytes) -> bytes:
    """Sign once with OpenSSL (builds the key; hold a :class:`CryptographyKey` to sign many)."""
    return CryptographyKey(seed).sign(message)
