"""The network's genesis file (genesis.json) as a typed value.

Every node and every participant reads the same file: a node to build its
initial state and validator set, the SDK and the offline bundle checker to
know which keys may sign a commit certificate.  It is read by a schema
(:mod:`node.sdk.schema`): an unknown key, a missing key, a value of the wrong
type or range, or a key given twice is one :class:`ConfigError` line naming
the file, the key path and what was expected.  Identifiers, countries, roles
and scopes follow the contracts' own rules, and ``genesis_state`` runs last
as a backstop, so a genesis that loads is one the contracts accept.

Genesis JSON (bytes are lowercase hex)::

    {"chain_id": "provenet-local",
     "validators": [{"replica_id": 0, "name": "v0", "org_id": "leadfirm", "public_key": "..."}],
     "organisations": [{"org_id": "...", "name": "...", "country": "BE",
                        "roles": ["certifier"], "scopes": ["kp_authority"], "keys": ["..."]}],
     "kp_participants": ["BE", "BW"], "threshold": [2, 3], "max_cutting_yield_bp": 6000,
     "genesis_time_ms": 0}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.codec import PUBLIC_KEY_SIZE
from consensus.config import ReplicaConfig
from consensus.epochs import EpochRules
from consensus.quorum import ValidatorSet
from contracts.args import check_country, check_id
from contracts.config import ContractLimits
from contracts.errors import Rejected
from contracts.genesis import (
    DEFAULT_MAX_CUTTING_YIELD_BP,
    Genesis,
    GenesisOrg,
    GenesisValidator,
    genesis_state,
)
from contracts.orgs import ROLES, SCOPES
from node.sdk.schema import (
    At,
    Check,
    ConfigError,
    boolean,
    choice,
    hex_bytes,
    integer,
    list_of,
    nested,
    optional,
    read_json_file,
    read_object,
    required,
    text,
    unique,
)

__all__ = [
    "DEFAULT_EPOCH_RULES",
    "ConfigError",
    "NetworkGenesis",
    "ValidatorEntry",
    "genesis_to_json",
    "load_genesis",
]


@dataclass(frozen=True)
class ValidatorEntry:
    replica_id: int
    name: str
    org_id: str
    public_key: bytes
    # Where its peers and clients reach it (host:port), and the name its TLS
    # certificate carries (empty: ``name``): what a governed chain keeps in
    # state (contracts/validators.py).
    peer_address: str = ""
    api_address: str = ""
    tls_identity: str = ""


@dataclass(frozen=True)
class NetworkGenesis:
    """genesis.json: the contract genesis plus the validator set and start time."""

    genesis: Genesis
    validators: tuple[ValidatorEntry, ...]
    genesis_time_ms: int = 0
    # What places a validator-set change, on a governed chain (None: the set
    # is fixed).  Chain-wide, so no node's configuration can fork the set.
    epoch_rules: EpochRules | None = None

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def validator_set(self) -> ValidatorSet:
        ordered = sorted(self.validators, key=lambda v: v.replica_id)
        return ValidatorSet(tuple(entry.public_key for entry in ordered))


# ------------------------------------------------------------------ genesis.json
#
# Each section is a schema (node/sdk/schema.py): key -> check, unknown keys refused.
# Identifiers and countries follow the contracts' own rules (contracts/args.py),
# roles and scopes the contracts' lists (contracts/orgs.py), so a genesis that
# loads is one the contracts accept; genesis_state() runs last as a backstop.

# The words a contract check is given for the value it checks; its message
# "it must be an identifier ..." becomes "expected an identifier ...".
_SUBJECT = "it"


def _by_contract_rule(rule: Callable[[object, str], object]) -> Check:
    def check(value: Any, at: At) -> Any:
        try:
            return rule(value, _SUBJECT)
        except Rejected as exc:
            prefix = f"{_SUBJECT} must be "
            expected = exc.message.removeprefix(prefix)
            raise at.expected(expected, value) from None

    return check


identifier = _by_contract_rule(lambda value, what: check_id(value, what, ContractLimits()))
_country = _by_contract_rule(check_country)


def _threshold(value: Any, at: At) -> tuple[int, int]:
    if (
        type(value) is list
        and len(value) == 2
        and all(type(part) is int for part in value)
        and 0 < value[0] <= value[1]
    ):
        return value[0], value[1]
    raise at.expected("[numerator, denominator]: integers, 0 < numerator <= denominator", value)


ORGANISATION_SCHEMA = {
    "org_id": required(identifier),
    "name": required(text),
    "country": required(_country),
    "roles": required(list_of(choice(ROLES), min_items=1)),
    "scopes": optional(list_of(choice(SCOPES)), ()),
    "keys": required(list_of(hex_bytes(PUBLIC_KEY_SIZE), min_items=1)),
}
VALIDATOR_SCHEMA = {
    "replica_id": required(integer()),
    "name": required(text),
    "org_id": required(identifier),
    "public_key": required(hex_bytes(PUBLIC_KEY_SIZE)),
    "peer_address": optional(text, ""),
    "api_address": optional(text, ""),
    "tls_identity": optional(text, ""),
}
# A governed chain's epoch rules (consensus.epochs): every node's
# consensus.checkpoint_interval and window_size must equal them.
EPOCH_RULES_SCHEMA = {
    "checkpoint_interval": required(integer(1)),
    "window_size": required(integer(1)),
}
# What a governed genesis that names no epoch rules means: the replica defaults.
DEFAULT_EPOCH_RULES = EpochRules(ReplicaConfig.checkpoint_interval, ReplicaConfig.window_size)
GENESIS_SCHEMA = {
    "chain_id": required(text),
    "genesis_time_ms": optional(integer(), 0),
    # True: the validator set lives in state and changes by governance
    # (contracts/validators.py); each validator then needs its addresses.
    "governed_validators": optional(boolean, False),
    "epoch_rules": optional(nested(EPOCH_RULES_SCHEMA), None),
    "validators": required(list_of(nested(VALIDATOR_SCHEMA), min_items=1)),
    "organisations": required(list_of(nested(ORGANISATION_SCHEMA), min_items=1)),
    "kp_participants": optional(list_of(_country), ()),
    # The contracts' default governance threshold: two thirds.
    "threshold": optional(_threshold, (2, 3)),
    "max_cutting_yield_bp": optional(integer(1, 10_000), DEFAULT_MAX_CUTTING_YIELD_BP),
}


def load_genesis(path: Path) -> NetworkGenesis:
    at = At(str(path))
    data = read_object(read_json_file(path), at, GENESIS_SCHEMA)
    _check_organisations(data["organisations"], at.key("organisations"))
    _check_validators(data["validators"], data["organisations"], at.key("validators"))
    numerator, denominator = data["threshold"]
    validators = tuple(ValidatorEntry(**entry) for entry in data["validators"])
    governed = _governed(validators, at) if data["governed_validators"] else ()
    genesis = Genesis(
        chain_id=data["chain_id"],
        organisations=tuple(GenesisOrg(**org) for org in data["organisations"]),
        kp_participants=data["kp_participants"],
        threshold_numerator=numerator,
        threshold_denominator=denominator,
        max_cutting_yield_bp=data["max_cutting_yield_bp"],
        validators=governed,
    )
    try:
        genesis_state(genesis)
    except ValueError as exc:  # a rule the checks above missed: still one line
        raise at.error(f"the contracts refuse this genesis: {exc}") from None
    rules = _epoch_rules(data["epoch_rules"], bool(governed), at.key("epoch_rules"))
    return NetworkGenesis(genesis, validators, data["genesis_time_ms"], rules)


def _epoch_rules(fields: dict[str, int] | None, governed: bool, at: At) -> EpochRules | None:
    if not governed:
        if fields is not None:
            raise at.error("epoch_rules apply only with governed_validators: true")
        return None
    if fields is None:
        return DEFAULT_EPOCH_RULES
    rules = EpochRules(fields["checkpoint_interval"], fields["window_size"])
    if rules.window_size % rules.checkpoint_interval:
        raise at.key("window_size").expected(
            "a multiple of checkpoint_interval (the replica's rule)", rules.window_size
        )
    return rules


def governed_validators(validators: tuple[ValidatorEntry, ...]) -> tuple[GenesisValidator, ...]:
    """The founding validators as the contracts keep them, in replica id
    order (the contracts number them in the order given)."""
    return tuple(
        GenesisValidator(
            org_id=entry.org_id,
            public_key=entry.public_key,
            tls_identity=entry.tls_identity or entry.name,
            peer_address=entry.peer_address,
            api_address=entry.api_address,
        )
        for entry in sorted(validators, key=lambda entry: entry.replica_id)
    )


def _governed(validators: tuple[ValidatorEntry, ...], at: At) -> tuple[GenesisValidator, ...]:
    for entry in validators:
        if not entry.peer_address or not entry.api_address:
            raise at.key("validators").error(
                f"validator {entry.name}: governed_validators needs its peer_address "
                "and api_address (host:port)"
            )
    return governed_validators(validators)


def _check_organisations(orgs: tuple[dict[str, Any], ...], at: At) -> None:
    unique([(at.index(i).key("org_id"), org["org_id"]) for i, org in enumerate(orgs)], "org_id")
    unique(
        [
            (at.index(i).key("keys").index(j), key)
            for i, org in enumerate(orgs)
            for j, key in enumerate(org["keys"])
        ],
        "key",
    )
    for i, org in enumerate(orgs):
        roles_at = at.index(i).key("roles")
        unique([(roles_at.index(j), role) for j, role in enumerate(org["roles"])], "role")
        if org["scopes"] and "certifier" not in org["roles"]:
            raise at.index(i).key("scopes").error("scopes need the 'certifier' role in roles")


def _check_validators(
    validators: tuple[dict[str, Any], ...], orgs: tuple[dict[str, Any], ...], at: At
) -> None:
    count = len(validators)
    org_ids = {org["org_id"] for org in orgs}
    for i, entry in enumerate(validators):
        if entry["replica_id"] >= count:
            raise (
                at.index(i)
                .key("replica_id")
                .expected(
                    f"0..{count - 1} (replica ids number the validators)", entry["replica_id"]
                )
            )
        if entry["org_id"] not in org_ids:
            raise (
                at.index(i)
                .key("org_id")
                .expected("the org_id of one of the organisations", entry["org_id"])
            )
    for key, what in (("replica_id", "replica_id"), ("name", "name"), ("public_key", "key")):
        unique([(at.index(i).key(key), v[key]) for i, v in enumerate(validators)], what)


def genesis_to_json(network: NetworkGenesis) -> dict[str, object]:
    genesis = network.genesis
    return {
        "chain_id": genesis.chain_id,
        "genesis_time_ms": network.genesis_time_ms,
        "validators": [_validator_to_json(entry) for entry in network.validators],
        "organisations": [
            {
                "org_id": org.org_id,
                "name": org.name,
                "country": org.country,
                "roles": list(org.roles),
                "scopes": list(org.scopes),
                "keys": [key.hex() for key in org.keys],
            }
            for org in genesis.organisations
        ],
        "kp_participants": list(genesis.kp_participants),
        "threshold": [genesis.threshold_numerator, genesis.threshold_denominator],
        "max_cutting_yield_bp": genesis.max_cutting_yield_bp,
        # Written only when set, so a fixed-set network's file is as it was.
        **({"governed_validators": True} if genesis.validators else {}),
        **(
            {
                "epoch_rules": {
                    "checkpoint_interval": network.epoch_rules.checkpoint_interval,
                    "window_size": network.epoch_rules.window_size,
                }
            }
            if network.epoch_rules is not None
            else {}
        ),
    }


def _validator_to_json(entry: ValidatorEntry) -> dict[str, object]:
    fields: dict[str, object] = {
        "replica_id": entry.replica_id,
        "name": entry.name,
        "org_id": entry.org_id,
        "public_key": entry.public_key.hex(),
    }
    for key in ("peer_address", "api_address", "tls_identity"):
        if getattr(entry, key):
            fields[key] = getattr(entry, key)
    return fields
