"""Records of the food pack: lots and their certificates.

Theory of operation
-------------------
A :class:`Lot` is an EPCIS quantity of one product class (``product``, a
GTIN or other epcClass) measured in integer grams.  A lot's parents are
the lots consumed to make it; forward edges are stored as separate keys
``f/child/<parent>/<child>`` so that a lot used in any number of
processing runs can be followed forward by an ordered prefix scan, without
a parent record that grows without bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from contracts.errors import ErrorCode
from contracts.records import load_or_reject
from contracts.state import ReadableState

PACK = b"f"
ACTIVE = "active"
IN_TRANSIT = "in_transit"
CONSUMED = "consumed"
CERT_KINDS = frozenset({"organic", "food_safety"})


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    product: str
    mass_grams: int  # what remains of the lot now
    owner: str
    custodian: str
    status: str  # active | in_transit | consumed
    destination: str  # receiving organisation while in transit, else ""
    recalled: bool
    recall_reason: str
    parents: tuple[str, ...]
    certificates: tuple[str, ...]
    event_count: int
    created_height: int


@dataclass(frozen=True, slots=True)
class FoodCertificate:
    cert_id: str
    kind: str  # organic | food_safety
    lot_id: str
    issuer: str
    expiry_height: int
    revoked: bool
    issued_height: int


def lot_key(lot_id: str) -> bytes:
    return PACK + b"/lot/" + lot_id.encode()


def cert_key(cert_id: str) -> bytes:
    return PACK + b"/cert/" + cert_id.encode()


def child_prefix(lot_id: str) -> bytes:
    return PACK + b"/child/" + lot_id.encode() + b"/"


def get_lot(view: ReadableState, lot_id: str) -> Lot:
    return load_or_reject(view, lot_key(lot_id), Lot, ErrorCode.UNKNOWN_ASSET, f"no lot {lot_id}")


def get_certificate(view: ReadableState, cert_id: str) -> FoodCertificate:
    return load_or_reject(
        view,
        cert_key(cert_id),
        FoodCertificate,
        ErrorCode.UNKNOWN_CERTIFICATE,
        f"no food certificate {cert_id}",
    )


def children(view: ReadableState, lot_id: str) -> Iterator[str]:
    """The lots made from ``lot_id``, in ascending order, read lazily."""
    prefix = child_prefix(lot_id)
    for key, _ in view.scan(prefix):
        yield key[len(prefix) :].decode()
