"""The validator set in state: who orders blocks, changed only by governance.

Theory of operation
-------------------
One record, at :data:`VALIDATORS_KEY`, lists every validator in force after
the latest block: its id, organisation, consensus Ed25519 key, TLS identity
(the fingerprint or CA-issued name of its certificate) and its peer and API
addresses, in id order.  One record, so that a single state proof under a
certificate shows a light client the whole set (consensus.epochs says from
which height a set orders blocks).

Genesis seeds it (contracts.genesis, ids 0..n-1 in the order given); the
membership pack's ``add_validator`` and ``remove_validator`` actions change
it once a proposal passes the governance threshold.  A new validator gets
``next_id``, and ids are never reused, so a vote signed under an id always
means one key.  A chain whose genesis lists no validators keeps its set out
of state (the node's configured set, fixed), and refuses both actions
(``validators_not_governed``).

Rules: a key already in the set cannot be added again (``duplicate``); the
validator's organisation must be a member (``unknown_org``); removing an
unknown key is refused (``unknown_validator``); at most
:data:`MAX_VALIDATORS` validators; and a removal must leave at least
:data:`MIN_VALIDATORS` (``validator_set_too_small``): with four, f = 1 and
the network still tolerates a faulty validator, which is the point of BFT.
A chain that started with fewer may add validators but not remove them.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.records import load
from contracts.state import ReadableState

VALIDATORS_KEY = b"m/validators"
MIN_VALIDATORS = 4
# Frames, certificates and view changes grow with n; the node's wire limits
# are sized for at most this many.
MAX_VALIDATORS = 64


@dataclass(frozen=True, slots=True)
class Validator:
    """One validator as governance registered it."""

    validator_id: int
    org_id: str
    public_key: bytes
    tls_identity: str
    peer_address: str
    api_address: str


@dataclass(frozen=True, slots=True)
class ValidatorSetRecord:
    """The stored form: parallel tuples in id order (records hold scalars and
    tuples of them)."""

    next_id: int
    ids: tuple[int, ...]
    org_ids: tuple[str, ...]
    public_keys: tuple[bytes, ...]
    tls_identities: tuple[str, ...]
    peer_addresses: tuple[str, ...]
    api_addresses: tuple[str, ...]

    @classmethod
    def of(cls, next_id: int, validators: tuple[Validator, ...]) -> ValidatorSetRecord:
        ordered = sorted(validators, key=lambda v: v.validator_id)
        return cls(
            next_id,
            tuple(v.validator_id for v in ordered),
            tuple(v.org_id for v in ordered),
            tuple(v.public_key for v in ordered),
            tuple(v.tls_identity for v in ordered),
            tuple(v.peer_address for v in ordered),
            tuple(v.api_address for v in ordered),
        )

    def validators(self) -> tuple[Validator, ...]:
        return tuple(
            Validator(*fields)
            for fields in zip(
                self.ids,
                self.org_ids,
                self.public_keys,
                self.tls_identities,
                self.peer_addresses,
                self.api_addresses,
                strict=True,
            )
        )

    def find(self, public_key: bytes) -> Validator | None:
        return next((v for v in self.validators() if v.public_key == public_key), None)

    def members(self) -> tuple[tuple[int, bytes], ...]:
        """(id, consensus key) of each validator, in id order: what the node
        turns into consensus.quorum.ValidatorSet(keys, ids)."""
        return tuple(zip(self.ids, self.public_keys, strict=True))

    def to_fields(self) -> dict[str, object]:
        return {
            "next_id": self.next_id,
            "validators": [
                {
                    "validator_id": v.validator_id,
                    "org_id": v.org_id,
                    "public_key": v.public_key,
                    "tls_identity": v.tls_identity,
                    "peer_address": v.peer_address,
                    "api_address": v.api_address,
                }
                for v in self.validators()
            ],
        }


def validator_set(store: ReadableState) -> ValidatorSetRecord | None:
    """The set in state, or None on a chain whose validators are not governed."""
    return load(store, VALIDATORS_KEY, ValidatorSetRecord)
