"""The validator set and its quorum arithmetic.

With n validators of which at most f are faulty, f = floor((n - 1) / 3).
A quorum is the smallest set such that any two quorums share at least
f + 1 validators, hence at least one honest one: ceil((n + f + 1) / 2).
For the usual n = 3f + 1 that is 2f + 1; for other n it is larger than
2f + 1 (n = 5 needs 4), which is what keeps those sizes safe too.  A "weak
certificate" of f + 1 matching messages proves one honest validator sent one.

A validator's id is stable for the life of the chain: governance gives a
new validator the next unused id and never reuses the id of one it removed
(consensus.epochs), so a vote names its signer by id in every epoch.  A
set built from keys alone numbers them 0..n-1, as genesis does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise

from consensus.codec import PUBLIC_KEY_SIZE


@dataclass(frozen=True)
class ValidatorSet:
    """Ed25519 public keys and their validators' ids, in id order."""

    public_keys: tuple[bytes, ...]
    # Strictly increasing; empty means 0..n-1 (filled in at construction).
    ids: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.public_keys) < 1:
            raise ValueError("a validator set needs at least one validator")
        if any(len(key) != PUBLIC_KEY_SIZE for key in self.public_keys):
            raise ValueError("validator keys are 32-byte Ed25519 public keys")
        if len(set(self.public_keys)) != len(self.public_keys):
            raise ValueError("a validator key appears twice")
        if not self.ids:
            object.__setattr__(self, "ids", tuple(range(len(self.public_keys))))
        if len(self.ids) != len(self.public_keys):
            raise ValueError("a validator set needs one id per key")
        if self.ids[0] < 0 or any(a >= b for a, b in pairwise(self.ids)):
            raise ValueError("validator ids are non-negative and strictly increasing")

    @cached_property
    def _index(self) -> dict[int, int]:
        return {validator_id: n for n, validator_id in enumerate(self.ids)}

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
        return validator_id in self._index

    def key_of(self, validator_id: int) -> bytes:
        return self.public_keys[self._index[validator_id]]

    def primary(self, view: int) -> int:
        return self.ids[view % self.n]

    def members(self) -> dict[int, bytes]:
        """Each validator's id and key."""
        return dict(zip(self.ids, self.public_keys, strict=True))
