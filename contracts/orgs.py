"""Participants: organisations, their roles and keys, and sanctions.

Theory of operation
-------------------
Every transaction is sent by a key, every key belongs to one organisation,
and rules are written in terms of organisations and their roles: a
``certifier`` carries scopes saying what it may certify (``kp_authority``
for a country's Kimberley Process authority, ``grading_lab``, ``organic``,
``food_safety``).  An organisation has one country, which is where its
custody of goods is located.

A key is valid from ``valid_from_height`` and, once revoked, invalid from
``revoked_from_height`` on.  Governance sets both to the block after the
one that decided, so every transaction of a block is authenticated against
the same key set whatever its position in the block.

Sanctions (of a country, a mine or an organisation) live here because every
rule pack consults them; the diamond pack's regulator actions write them.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import ErrorCode, Rejected
from contracts.records import load
from contracts.state import ReadableState

ROLES = frozenset(
    {"lead_firm", "supplier", "manufacturer", "trader", "retailer", "certifier", "regulator"}
)
SCOPES = frozenset({"kp_authority", "grading_lab", "organic", "food_safety"})
SANCTION_KINDS = frozenset({"country", "mine", "org"})


@dataclass(frozen=True, slots=True)
class Org:
    org_id: str
    name: str
    country: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    keys: tuple[bytes, ...]

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def has_scope(self, scope: str) -> bool:
        return "certifier" in self.roles and scope in self.scopes


@dataclass(frozen=True, slots=True)
class KeyRecord:
    org_id: str
    valid_from_height: int
    revoked_from_height: int | None


@dataclass(frozen=True, slots=True)
class Sanction:
    kind: str
    target: str
    reason: str
    imposed_by: str
    height: int


def org_key(org_id: str) -> bytes:
    return b"m/org/" + org_id.encode()


def key_key(public_key: bytes) -> bytes:
    return b"m/key/" + public_key.hex().encode()


def nonce_key(public_key: bytes) -> bytes:
    return b"m/nonce/" + public_key.hex().encode()


def sanction_key(kind: str, target: str) -> bytes:
    return b"sanction/" + kind.encode() + b"/" + target.encode()


ORG_PREFIX = b"m/org/"


def get_org(store: ReadableState, org_id: str) -> Org:
    org = load(store, org_key(org_id), Org)
    if org is None:
        raise Rejected(ErrorCode.UNKNOWN_ORG, f"organisation {org_id} is not a member")
    return org


def sanction_of(store: ReadableState, kind: str, target: str) -> Sanction | None:
    return load(store, sanction_key(kind, target), Sanction)


def is_sanctioned_org(store: ReadableState, org: Org) -> bool:
    """Whether the organisation or its country is sanctioned."""
    return (
        sanction_of(store, "org", org.org_id) is not None
        or sanction_of(store, "country", org.country) is not None
    )


def require_unsanctioned_org(store: ReadableState, org: Org) -> None:
    """Refuse an organisation that is sanctioned or sits in a sanctioned country."""
    if sanction_of(store, "org", org.org_id) is not None:
        raise Rejected(ErrorCode.SANCTIONED, f"organisation {org.org_id} is sanctioned")
    if sanction_of(store, "country", org.country) is not None:
        raise Rejected(
            ErrorCode.SANCTIONED, f"organisation {org.org_id}'s country {org.country} is sanctioned"
        )


def require_role(org: Org, *roles: str) -> None:
    if not any(org.has_role(role) for role in roles):
        raise Rejected(
            ErrorCode.UNAUTHORIZED,
            f"organisation {org.org_id} lacks role {' or '.join(roles)}",
        )


def require_scope(org: Org, scope: str, country: str | None = None) -> None:
    """Require a certifier with ``scope`` (in ``country`` when given)."""
    if not org.has_scope(scope):
        raise Rejected(ErrorCode.UNAUTHORIZED, f"organisation {org.org_id} is not a {scope}")
    if country is not None and org.country != country:
        raise Rejected(
            ErrorCode.UNAUTHORIZED,
            f"organisation {org.org_id} is a {scope} of {org.country}, not of {country}",
        )
