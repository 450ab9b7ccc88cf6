"""The arguments of the membership methods and of governance actions.

Theory of operation
-------------------
As in contracts.diamond_args: one parse function per method of contract
``membership`` reads every argument, calls ``done()`` and returns a frozen
dataclass of typed values, or raises :class:`~contracts.errors.Rejected`
with ``invalid_argument`` or ``limit_exceeded``, without reading state.

A proposal's ``params`` are read in full when it is proposed, by the
parse function of its action (:func:`parse_action`), so a malformed
proposal is refused at admission.  The proposal stores the canonical
bytes of the map as given, and the deciding vote parses them again with
the same function before it applies the action.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.codec import encode
from contracts.args import Args, invalid
from contracts.config import ContractLimits
from contracts.orgs import ROLES, SCOPES

ACTIONS = frozenset(
    {
        "add_org",
        "add_key",
        "rotate_key",
        "revoke_key",
        "set_roles",
        "add_validator",
        "remove_validator",
    }
)
MAX_KEYS_PER_ORG = 8


@dataclass(frozen=True, slots=True)
class AddOrgParams:
    org_id: str
    name: str
    country: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    keys: tuple[bytes, ...]  # as given: unique 32-byte Ed25519 keys


@dataclass(frozen=True, slots=True)
class AddKeyParams:
    org_id: str
    key: bytes


@dataclass(frozen=True, slots=True)
class RotateKeyParams:
    org_id: str
    old_key: bytes
    new_key: bytes


@dataclass(frozen=True, slots=True)
class RevokeKeyParams:
    org_id: str
    key: bytes


@dataclass(frozen=True, slots=True)
class SetRolesParams:
    org_id: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AddValidatorParams:
    org_id: str
    key: bytes  # the validator's consensus Ed25519 key
    tls_identity: str  # its TLS certificate's fingerprint or CA-issued name
    peer_address: str  # host:port of its peer (validator-to-validator) endpoint
    api_address: str  # host:port of its client API


@dataclass(frozen=True, slots=True)
class RemoveValidatorParams:
    key: bytes


ActionParams = (
    AddOrgParams
    | AddKeyParams
    | RotateKeyParams
    | RevokeKeyParams
    | SetRolesParams
    | AddValidatorParams
    | RemoveValidatorParams
)


def _roles(params: Args) -> tuple[tuple[str, ...], tuple[str, ...]]:
    roles = params.word_list("roles", ROLES)
    scopes = params.word_list("scopes", SCOPES, optional=True)
    if scopes and "certifier" not in roles:
        raise invalid("scopes are only meaningful for a certifier")
    return roles, scopes


def _add_org(params: Args) -> AddOrgParams:
    org_id = params.ident("org_id")
    name = params.text("name")
    country = params.country("country")
    roles, scopes = _roles(params)
    raw_keys = params.items("keys", MAX_KEYS_PER_ORG)
    params.done()
    keys: list[bytes] = []
    for raw in raw_keys:
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise invalid("keys must be 32-byte Ed25519 public keys")
        keys.append(raw)
    if len(set(keys)) != len(keys):
        raise invalid("keys repeat")
    return AddOrgParams(org_id, name, country, roles, scopes, tuple(keys))


def _add_key(params: Args) -> AddKeyParams:
    parsed = AddKeyParams(params.ident("org_id"), params.key("key"))
    params.done()
    return parsed


def _rotate_key(params: Args) -> RotateKeyParams:
    parsed = RotateKeyParams(params.ident("org_id"), params.key("old_key"), params.key("new_key"))
    params.done()
    return parsed


def _revoke_key(params: Args) -> RevokeKeyParams:
    parsed = RevokeKeyParams(params.ident("org_id"), params.key("key"))
    params.done()
    return parsed


def _set_roles(params: Args) -> SetRolesParams:
    org_id = params.ident("org_id")
    roles, scopes = _roles(params)
    params.done()
    return SetRolesParams(org_id, roles, scopes)


def check_address(value: str, name: str) -> str:
    """A ``host:port`` address: a non-empty host without spaces, a port 1..65535."""
    host, _, port = value.rpartition(":")
    if not host or " " in value or not port.isdigit() or not 0 < int(port) < 65_536:
        raise invalid(f"{name} must be host:port")
    return value


def _add_validator(params: Args) -> AddValidatorParams:
    org_id = params.ident("org_id")
    key = params.key("key")
    tls_identity = params.text("tls_identity")
    peer_address = check_address(params.text("peer_address"), "peer_address")
    api_address = check_address(params.text("api_address"), "api_address")
    params.done()
    if not tls_identity:
        raise invalid("tls_identity must not be empty")
    return AddValidatorParams(org_id, key, tls_identity, peer_address, api_address)


def _remove_validator(params: Args) -> RemoveValidatorParams:
    parsed = RemoveValidatorParams(params.key("key"))
    params.done()
    return parsed


def parse_action(action: str, params: Args) -> ActionParams:
    """The typed parameters of governance ``action`` (one of :data:`ACTIONS`)."""
    match action:
        case "add_org":
            return _add_org(params)
        case "add_key":
            return _add_key(params)
        case "rotate_key":
            return _rotate_key(params)
        case "revoke_key":
            return _revoke_key(params)
        case "set_roles":
            return _set_roles(params)
        case "add_validator":
            return _add_validator(params)
        case "remove_validator":
            return _remove_validator(params)
        case _:
            raise AssertionError(f"action {action} passed validation")


@dataclass(frozen=True, slots=True)
class ProposeArgs:
    action: str
    params: ActionParams
    # The canonical encoding of the params map as given, which the
    # proposal stores and the deciding vote parses again.
    params_bytes: bytes


def parse_propose(args: Args, limits: ContractLimits) -> ProposeArgs:
    action = args.choice("action", ACTIONS)
    params = args.map("params")
    args.done()
    return ProposeArgs(action, parse_action(action, params), encode(params.raw()))


@dataclass(frozen=True, slots=True)
class VoteArgs:
    proposal_id: str
    approve: bool


def parse_vote(args: Args, limits: ContractLimits) -> VoteArgs:
    parsed = VoteArgs(args.digest_hex("proposal_id"), args.flag("approve", default=True))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class RevokeOwnKeyArgs:
    key: bytes


def parse_revoke_own_key(args: Args, limits: ContractLimits) -> RevokeOwnKeyArgs:
    parsed = RevokeOwnKeyArgs(args.key("key"))
    args.done()
    return parsed
