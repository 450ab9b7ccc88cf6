"""The validator set and its quorum arithmetic.

With n validators of which at most f are faulty, f = floor((n - 1) / 3).
A quorum is the smallest set such that any two quorums share at least
f + 1 validators, hence at least one honest one: ceil((n + f + 1) / 2).
For the usual n = 3f + 1 that is 2f + 1; for other n it is larger than
2f + 1 (n = 5 needs 4), which is what keeps those sizes safe too.  A "weak
certificate" of f + 1 matching messages proves one honest validator sent one.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.codec import PUBLIC_KEY_SIZE


@dataclass(frozen=True)
class ValidatorSet:
    """Ordered Ed25519 public keys; a validator's id is its index here."""

    public_keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.public_keys) < 1:
            raise ValueError("a validator set needs at least one validator")
        if any(len(key) != PUBLIC_KEY_SIZE for key in self.public_keys):
            raise ValueError("validator keys are 32-byte Ed25519 public keys")
        if len(set(self.public_keys)) != len(self.public_keys):
            raise ValueError("a validator key appears twice")

    @property
    def n(self) -> int:
        return len(self.public_keys)

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        return (self.n + self.f) // 2 + 1

    @property
    def weak(self) -> int:
        return self.f + 1

    def contains(self, validator_id: int) -> bool:
        return 0 <= validator_id < self.n

    def key_of(self, validator_id: int) -> bytes:
        return self.public_keys[validator_id]

    def primary(self, view: int) -> int:
        return view % self.n
