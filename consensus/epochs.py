"""Validator-set changes: when each takes effect, and the set at a height.

Theory of operation
-------------------
The validator set lives in the execution layer's state (the membership
pack's governance votes change it).  After executing height ``d`` the host
tells the replica the set now in state (``Executed.validators``).  When it
differs from the latest set known, the change takes effect at

    H_eff = b + 1,  b = the first checkpoint boundary (a multiple of the
                        checkpoint interval K) with b >= d + W,

W being the window size.  Every replica executes the same chain, so every
replica computes the same H_eff.  Why there:

* no honest replica votes at or above H_eff under the old set: one that
  has executed ``d`` knows of the change, and one that has not yet settles
  (below) no height above ``d + W < H_eff``, and votes on none;
* a primary proposes nothing at or above H_eff until the checkpoint at ``b``
  is stable (and a backup accepts nothing there), so at every replica the
  whole window (low, low + W] lies in one epoch: the one in force at
  low + 1.  The old set orders, executes and checkpoints every height up to
  ``b``; the checkpoint at ``b``, certified by the old set, hands over to
  the new set, which starts from it.  A joining validator catches up to
  ``b`` by state transfer; a removed one sees itself absent from the set in
  force and stops voting, and its messages stop counting.
* the table is final through ``through_height + W + 1``: a change not yet
  seen is decided above ``through_height`` (the last height whose set was
  observed) and so takes effect above that.  A replica verifies nothing at
  a height beyond what its table settles.

:class:`ValidatorHistory` is that table: the genesis set and each later
(first height, set), with :meth:`~ValidatorHistory.set_at`.  It is a pure
value: the node, observers, the SDK and ``provenet verify`` use it to check
a commit certificate at height h against the set in force at h, and the
replica keeps one (pruned below its stable checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

from consensus.codec import FieldReader, ShapeError
from consensus.quorum import ValidatorSet

HISTORY_FIELDS = frozenset({"through_height", "epochs"})
EPOCH_FIELDS = frozenset({"first_height", "ids", "keys"})


@dataclass(frozen=True)
class EpochRules:
    """What places a validator-set change (:func:`effective_height`).  Chain-wide:
    a governed chain's genesis.json names them, so that every node, observer
    and light client computes the same set at every height."""

    checkpoint_interval: int
    window_size: int


def effective_height(decided_height: int, checkpoint_interval: int, window_size: int) -> int:
    """The first height ordered by a set decided by executing ``decided_height``."""
    if decided_height < 0 or checkpoint_interval < 1 or window_size < 1:
        raise ValueError("heights are non-negative and intervals positive")
    reach = decided_height + window_size
    boundary = -(-reach // checkpoint_interval) * checkpoint_interval
    return boundary + 1


@dataclass(frozen=True)
class Epoch:
    """``validators`` order every height from ``first_height`` until the next epoch."""

    first_height: int
    validators: ValidatorSet


@dataclass(frozen=True)
class ValidatorHistory:
    """The validator set in force at every height, as far as it is known."""

    epochs: tuple[Epoch, ...]
    # The last height whose resulting set has been observed: every change
    # decided at or below it is in ``epochs``.
    through_height: int = 0

    def __post_init__(self) -> None:
        if not self.epochs:
            raise ValueError("a validator history needs a first epoch")
        firsts = [epoch.first_height for epoch in self.epochs]
        if firsts[0] < 0 or any(a >= b for a, b in pairwise(firsts)):
            raise ValueError("epochs start at increasing heights")
        keys: dict[int, bytes] = {}
        for epoch in self.epochs:
            for validator_id, key in epoch.validators.members().items():
                if keys.setdefault(validator_id, key) != key:
                    raise ValueError(f"validator id {validator_id} names two keys")

    @classmethod
    def genesis(cls, validators: ValidatorSet, through_height: int = 0) -> ValidatorHistory:
        return cls((Epoch(0, validators),), through_height)

    @property
    def latest(self) -> ValidatorSet:
        return self.epochs[-1].validators

    def set_at(self, height: int) -> ValidatorSet:
        """The set in force at ``height`` (the first epoch's for heights before it)."""
        found = self.epochs[0].validators
        for epoch in self.epochs:
            if epoch.first_height > height:
                break
            found = epoch.validators
        return found

    def epoch_start(self, height: int) -> int:
        """The first height of the epoch in force at ``height``."""
        found = self.epochs[0].first_height
        for epoch in self.epochs:
            if epoch.first_height > height:
                break
            found = epoch.first_height
        return found

    def next_change_after(self, height: int) -> int | None:
        """The first height above ``height`` where another set takes over."""
        for epoch in self.epochs:
            if epoch.first_height > height:
                return epoch.first_height
        return None

    def settled_through(self, window_size: int) -> int:
        """The highest height whose set no later observation can change."""
        return self.through_height + window_size + 1

    def observe(
        self,
        height: int,
        validators: ValidatorSet | None,
        checkpoint_interval: int,
        window_size: int,
    ) -> ValidatorHistory:
        """The history once the set in state after executing ``height`` is
        known (None: unchanged).  Heights already observed change nothing."""
        if height <= self.through_height:
            return self
        epochs = self.epochs
        if validators is not None and validators != self.latest:
            first = effective_height(height, checkpoint_interval, window_size)
            # A change decided earlier that takes effect at the same height
            # is superseded: the later decision is the state at that boundary.
            kept = tuple(epoch for epoch in epochs if epoch.first_height < first)
            epochs = (*kept, Epoch(first, validators))
        return ValidatorHistory(epochs, height)

    def pruned(self, height: int) -> ValidatorHistory:
        """Forget epochs that end at or below ``height``."""
        keep = [
            n
            for n, epoch in enumerate(self.epochs)
            if n + 1 == len(self.epochs) or self.epochs[n + 1].first_height > height
        ]
        if keep[0] == 0:
            return self
        return ValidatorHistory(self.epochs[keep[0] :], self.through_height)

    def members(self) -> dict[int, bytes]:
        """Every validator of any epoch kept, by id: who may talk to us.
        (One shared dict: read it, do not change it.)"""
        return self._members

    @cached_property
    def _members(self) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for epoch in self.epochs:
            found.update(epoch.validators.members())
        return found

    @classmethod
    def from_fields(cls, value: object) -> ValidatorHistory:
        """Read :meth:`to_fields`' form; ``ShapeError`` (or ``ValueError`` for
        an impossible history) if it is not one."""
        fields = FieldReader.of(value, HISTORY_FIELDS, "validator history", hex_bytes=False)
        through = fields.integer("through_height")
        raw_epochs = fields.values["epochs"]
        if not isinstance(raw_epochs, list) or not raw_epochs:
            raise ShapeError("validator history epochs must be a non-empty list")
        epochs = []
        for n, item in enumerate(raw_epochs):
            epoch = FieldReader.of(item, EPOCH_FIELDS, f"epochs[{n}]", hex_bytes=False)
            ids, keys = epoch.values["ids"], epoch.values["keys"]
            if not isinstance(ids, list) or not all(type(i) is int for i in ids):
                raise ShapeError(f"epochs[{n}].ids must be a list of integers")
            if not isinstance(keys, list) or not all(isinstance(k, bytes) for k in keys):
                raise ShapeError(f"epochs[{n}].keys must be a list of keys")
            validators = ValidatorSet(tuple(keys), tuple(ids))
            epochs.append(Epoch(epoch.integer("first_height"), validators))
        return cls(tuple(epochs), through)

    def to_fields(self) -> dict[str, object]:
        """A plain form for storage and the API (bytes stay bytes)."""
        return {
            "through_height": self.through_height,
            "epochs": [
                {
                    "first_height": epoch.first_height,
                    "ids": list(epoch.validators.ids),
                    "keys": list(epoch.validators.public_keys),
                }
                for epoch in self.epochs
            ],
        }
