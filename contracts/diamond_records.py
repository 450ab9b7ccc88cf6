"""Records of the diamond pack and the loaders that refuse unknown ids.

Theory of operation
-------------------
Four record types: a :class:`Mine`, a :class:`Diamond` (a rough parcel or
a polished stone: one type, because custody, freezing and provenance work
the same way for both), a :class:`KpCertificate` and a
:class:`GradingReport`.  Weights are integer carat points (1 ct = 100
points), values integer US cents.  A diamond's ``country`` is where it
physically is: the country of its custodian, changed for rough only by a
confirmed Kimberley Process import.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import ErrorCode, Rejected
from contracts.records import load_or_reject
from contracts.state import ReadableState

PACK = b"d"
ROUGH = "rough"
POLISHED = "polished"
ACTIVE = "active"
IN_TRANSIT = "in_transit"
CONSUMED = "consumed"
SOLD = "sold"
CERT_ISSUED = "issued"
CERT_SHIPPED = "shipped"
CERT_COMPLETED = "completed"
CERT_REJECTED = "rejected"  # the import was refused and the parcels went back
# Rough diamonds under the KPCS: unsorted; industrial; non-industrial (gem).
KP_HS_CODES = frozenset({"7102.10", "7102.21", "7102.31"})


@dataclass(frozen=True, slots=True)
class Mine:
    mine_id: str
    country: str
    operator: str
    accredited: bool
    registered_by: str
    registered_height: int


@dataclass(frozen=True, slots=True)
class Diamond:
    asset_id: str
    kind: str  # rough | polished
    carats_points: int
    owner: str
    custodian: str
    country: str
    status: str  # active | in_transit | consumed | sold
    frozen: bool
    parents: tuple[str, ...]
    mine_id: str  # set on parcels created by extraction, "" otherwise
    kp_certificates: tuple[str, ...]  # certificates it crossed a border under
    grading_report: str  # a stone is graded once: its one report, or ""
    actors: tuple[str, ...]  # every organisation that acted on or held it
    event_count: int
    created_height: int


@dataclass(frozen=True, slots=True)
class KpCertificate:
    cert_id: str
    issuer: str
    exporter: str
    importer: str
    origin_country: str
    destination_country: str
    parcels: tuple[str, ...]
    parcel_count: int
    hs_code: str  # one of KP_HS_CODES
    carats_points: int
    value_cents: int
    expiry_height: int
    status: str  # issued | shipped | completed | rejected
    revoked: bool
    issued_height: int
    # The importing KP authority that confirmed the import ("" until then):
    # compliance checks it, like the issuer, for later sanctions.
    confirmed_by: str


@dataclass(frozen=True, slots=True)
class GradingReport:
    report_id: str
    lab: str
    asset_id: str
    carats_points: int
    colour: str
    clarity: str
    cut_grade: str
    revoked: bool
    issued_height: int


def mine_key(mine_id: str) -> bytes:
    return PACK + b"/mine/" + mine_id.encode()


def asset_key(asset_id: str) -> bytes:
    return PACK + b"/asset/" + asset_id.encode()


def kp_key(cert_id: str) -> bytes:
    return PACK + b"/kp/" + cert_id.encode()


def grading_key(report_id: str) -> bytes:
    return PACK + b"/grading/" + report_id.encode()


def get_mine(view: ReadableState, mine_id: str) -> Mine:
    return load_or_reject(
        view, mine_key(mine_id), Mine, ErrorCode.UNKNOWN_MINE, f"no mine {mine_id}"
    )


def get_diamond(view: ReadableState, asset_id: str) -> Diamond:
    return load_or_reject(
        view, asset_key(asset_id), Diamond, ErrorCode.UNKNOWN_ASSET, f"no diamond asset {asset_id}"
    )


def get_kp(view: ReadableState, cert_id: str) -> KpCertificate:
    return load_or_reject(
        view,
        kp_key(cert_id),
        KpCertificate,
        ErrorCode.UNKNOWN_CERTIFICATE,
        f"no KP certificate {cert_id}",
    )


def get_grading(view: ReadableState, report_id: str) -> GradingReport:
    return load_or_reject(
        view,
        grading_key(report_id),
        GradingReport,
        ErrorCode.UNKNOWN_CERTIFICATE,
        f"no grading report {report_id}",
    )


def require_new(view: ReadableState, key: bytes, what: str) -> None:
    if view.get(key) is not None:
        raise Rejected(ErrorCode.DUPLICATE, f"{what} already exists")
