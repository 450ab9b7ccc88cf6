"""Genesis: the declared starting point of a chain, and state 0 from it.

Theory of operation
-------------------
A :class:`Genesis` names the chain, its founding organisations (roles,
certifier scopes, country, keys), the governance threshold, the Kimberley
Process participant countries, the maximum cutting yield and every limit.
:func:`genesis_state` turns it into the sorted list of state writes that
make block 0's state; the node applies them to its store.  Founding keys
are valid from height 0.  A malformed genesis is the operator's mistake
and raises ``ValueError`` at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.args import check_country, check_id
from contracts.config import CONFIG_KEY, ChainConfig, ContractLimits
from contracts.errors import Rejected
from contracts.membership_args import check_address
from contracts.orgs import ROLES, SCOPES, KeyRecord, Org, key_key, org_key
from contracts.records import record_to_bytes
from contracts.validators import MAX_VALIDATORS, VALIDATORS_KEY, Validator, ValidatorSetRecord

# Cutting typically keeps 30-50% of a rough stone's weight; 60% leaves
# headroom for exceptional stones while refusing implausible claims.
DEFAULT_MAX_CUTTING_YIELD_BP = 6_000


@dataclass(frozen=True, slots=True)
class GenesisOrg:
    org_id: str
    name: str
    country: str
    roles: tuple[str, ...]
    keys: tuple[bytes, ...]
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GenesisValidator:
    """A founding validator (contracts.validators); ids follow the order given."""

    org_id: str
    public_key: bytes
    tls_identity: str
    peer_address: str
    api_address: str


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    organisations: tuple[GenesisOrg, ...]
    kp_participants: tuple[str, ...] = ()
    threshold_numerator: int = 2
    threshold_denominator: int = 3
    max_cutting_yield_bp: int = DEFAULT_MAX_CUTTING_YIELD_BP
    limits: ContractLimits = field(default_factory=ContractLimits)
    # The founding validators, kept in state so that governance can change
    # them; none leaves the set out of state (fixed by the node's config).
    validators: tuple[GenesisValidator, ...] = ()

    def config(self) -> ChainConfig:
        return ChainConfig(
            chain_id=self.chain_id,
            threshold_numerator=self.threshold_numerator,
            threshold_denominator=self.threshold_denominator,
            kp_participants=tuple(sorted(set(self.kp_participants))),
            max_cutting_yield_bp=self.max_cutting_yield_bp,
            limits=self.limits,
        )


def genesis_state(genesis: Genesis) -> list[tuple[bytes, bytes]]:
    """The state writes of block 0, in key order."""
    _validate(genesis)
    writes: dict[bytes, bytes] = {CONFIG_KEY: genesis.config().to_bytes()}
    for member in genesis.organisations:
        org = Org(
            member.org_id,
            member.name,
            member.country,
            tuple(sorted(member.roles)),
            tuple(sorted(member.scopes)),
            tuple(sorted(member.keys)),
        )
        writes[org_key(org.org_id)] = record_to_bytes(org)
        for public_key in member.keys:
            writes[key_key(public_key)] = record_to_bytes(KeyRecord(org.org_id, 0, None))
    if genesis.validators:
        founding = tuple(
            Validator(n, v.org_id, v.public_key, v.tls_identity, v.peer_address, v.api_address)
            for n, v in enumerate(genesis.validators)
        )
        record = ValidatorSetRecord.of(len(founding), founding)
        writes[VALIDATORS_KEY] = record_to_bytes(record)
    return sorted(writes.items())


def _validate(genesis: Genesis) -> None:
    if not isinstance(genesis.chain_id, str) or not genesis.chain_id:
        raise ValueError("chain_id must be a non-empty string")
    if not 0 < genesis.threshold_numerator <= genesis.threshold_denominator:
        raise ValueError("threshold must be a fraction in (0, 1]")
    if not 0 < genesis.max_cutting_yield_bp <= 10_000:
        raise ValueError("max_cutting_yield_bp must be in 1..10000")
    if not genesis.organisations:
        raise ValueError("genesis needs at least one organisation")
    try:
        for country in genesis.kp_participants:
            check_country(country, "kp participant")
        for member in genesis.organisations:
            check_id(member.org_id, "org_id", genesis.limits)
            check_country(member.country, f"country of {member.org_id}")
    except Rejected as exc:
        raise ValueError(exc.message) from None
    seen_orgs: set[str] = set()
    seen_keys: set[bytes] = set()
    for member in genesis.organisations:
        _validate_member(member, seen_orgs, seen_keys)
    _validate_validators(genesis.validators, seen_orgs)


def _validate_validators(validators: tuple[GenesisValidator, ...], orgs: set[str]) -> None:
    if len(validators) > MAX_VALIDATORS:
        raise ValueError(f"genesis lists more than {MAX_VALIDATORS} validators")
    keys = [v.public_key for v in validators]
    if any(not isinstance(k, bytes) or len(k) != 32 for k in keys) or len(set(keys)) != len(keys):
        raise ValueError("validator keys must be distinct 32-byte Ed25519 public keys")
    for validator in validators:
        if validator.org_id not in orgs:
            raise ValueError(f"validator organisation {validator.org_id} is not a member")
        try:
            check_address(validator.peer_address, "peer_address")
            check_address(validator.api_address, "api_address")
        except Rejected as exc:
            raise ValueError(exc.message) from None


def _validate_member(member: GenesisOrg, seen_orgs: set[str], seen_keys: set[bytes]) -> None:
    if member.org_id in seen_orgs:
        raise ValueError(f"organisation {member.org_id} appears twice")
    seen_orgs.add(member.org_id)
    if not member.roles or not set(member.roles) <= ROLES:
        raise ValueError(f"roles of {member.org_id} must be among {sorted(ROLES)}")
    if not set(member.scopes) <= SCOPES or (member.scopes and "certifier" not in member.roles):
        raise ValueError(
            f"scopes of {member.org_id} need the certifier role and must be among {sorted(SCOPES)}"
        )
    if not member.keys:
        raise ValueError(f"organisation {member.org_id} needs a key")
    for public_key in member.keys:
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise ValueError(f"keys of {member.org_id} must be 32-byte Ed25519 public keys")
        if public_key in seen_keys:
            raise ValueError("a key appears twice in genesis")
        seen_keys.add(public_key)
