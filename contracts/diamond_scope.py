"""What a diamond's provenance rests on: its transactions and its attestations.

Theory of operation
-------------------
Two read-only queries of the diamond pack, answered from state like
``trace`` and ``compliance``, so that whoever builds or checks a
provenance bundle (node/api/bundle.py, node/sdk/bundle_verify.py) asks the
pack instead of keeping a second model of its rules.

:func:`scope` says which transactions the history of an asset is made of.
Its assets are the asset's upstream (every parent, recursively) closed
under two more rules, because replaying that history needs them: every
parcel that crossed a border under a KP certificate one of them names (a
certificate is issued, shipped and confirmed for all its parcels at once),
and every input merged together with one of them (a merge consumes all its
inputs in one transaction).  The transactions are

* every event of those assets (``tx_ids``: events keep their transaction);
* ``records``: the transactions behind records that keep a height but no
  transaction id, each named by the event its transaction emitted
  (``contract``, ``kind``, ``attributes``), the block ``height`` of the
  record and ``at``: the event is in that block (``"height"``), or is the
  first (``"first_from"``) or the last (``"last_from"``) such event from
  that block on.  They are the registration of every origin mine and the
  issuance of every KP certificate named, and what makes the verdict as
  it stands: the revocation of a revoked KP certificate or grading report,
  the last withdrawal of accreditation of a mine that is not accredited,
  and every sanction in force on an origin mine, on an organisation that
  acted on or held an asset in scope or issued or confirmed one of its
  certificates, or on any of their countries.

The walk stops after ``max_nodes`` assets and says ``truncated``.

:func:`attestations` says who vouched for the origin and the border
crossings of an asset in scope: each origin mine's registration (by the
KP authority of its country, or a regulator) and each confirmed KP
crossing (issued by the exporting country's KP authority, confirmed by the
importing one's), judged with the organisations as they stand now.  Each
mine names its registration the way ``records`` do, each crossing the
transaction that confirmed the import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.codec import decode
from contracts.diamond_records import (
    PACK,
    Diamond,
    KpCertificate,
    get_diamond,
    get_grading,
    get_kp,
    get_mine,
)
from contracts.orgs import Org, get_org, org_key, sanction_of
from contracts.provenance import ProvEvent, read_events
from contracts.records import load
from contracts.state import ReadableState

CONTRACT = "diamonds"
AT_HEIGHT = "height"
FIRST_FROM = "first_from"
LAST_FROM = "last_from"


@dataclass
class _Walk:
    """The assets in an asset's scope, with what they name."""

    view: ReadableState
    assets: dict[str, Diamond] = field(default_factory=dict)
    events: dict[str, list[ProvEvent]] = field(default_factory=dict)
    certs: dict[str, KpCertificate] = field(default_factory=dict)
    orgs: set[str] = field(default_factory=set)

    def collect(self, asset_id: str, max_nodes: int) -> bool:
        """Walk from ``asset_id``; True when it stopped at ``max_nodes`` assets."""
        queue = [asset_id]
        while queue:
            current = queue.pop()
            if current in self.assets:
                continue
            if len(self.assets) >= max_nodes:
                return True
            diamond = get_diamond(self.view, current)
            self.assets[current] = diamond
            self.orgs.update(diamond.actors)
            queue.extend(diamond.parents)
            certs = set(diamond.kp_certificates)
            events, _ = read_events(self.view, PACK, current, diamond.event_count)
            self.events[current] = events
            for event in events:
                attributes = decode(event.attributes)
                assert isinstance(attributes, dict), "event attributes are a map"
                cert_id = attributes.get("cert_id")
                if isinstance(cert_id, str):
                    certs.add(cert_id)
                if event.kind == "merged":
                    # Replaying the merge needs every input merged with this one.
                    for output in attributes.get("outputs", []):
                        queue.extend(get_diamond(self.view, output).parents)
            for cert_id in sorted(certs - set(self.certs)):
                cert = get_kp(self.view, cert_id)
                self.certs[cert_id] = cert
                queue.extend(cert.parcels)
                self.orgs.update(org for org in (cert.issuer, cert.confirmed_by) if org)
        return False

    def mines(self) -> list[str]:
        return sorted({diamond.mine_id for diamond in self.assets.values() if diamond.mine_id})

    def tx_ids(self) -> list[bytes]:
        return sorted({event.tx_id for events in self.events.values() for event in events})

    def records(self) -> list[dict[str, object]]:
        found: list[dict[str, object]] = []
        countries: set[str] = set()
        for mine_id in self.mines():
            mine = get_mine(self.view, mine_id)
            countries.add(mine.country)
            height = mine.registered_height
            found.append(_record("mine_registered", {"mine_id": mine_id}, height, AT_HEIGHT))
            if not mine.accredited:
                attributes = {"mine_id": mine_id, "accredited": False}
                found.append(_record("mine_accreditation", attributes, height, LAST_FROM))
        for cert_id, cert in sorted(self.certs.items()):
            countries.update((cert.origin_country, cert.destination_country))
            height = cert.issued_height
            found.append(_record("kp_certificate_issued", {"cert_id": cert_id}, height, AT_HEIGHT))
            if cert.revoked:
                attributes = {"kind": "kp", "cert_id": cert_id}
                found.append(_record("certificate_revoked", attributes, height, FIRST_FROM))
        for report_id in sorted({d.grading_report for d in self.assets.values()} - {""}):
            report = get_grading(self.view, report_id)
            if report.revoked:
                attributes = {"kind": "grading", "cert_id": report_id}
                found.append(
                    _record("certificate_revoked", attributes, report.issued_height, FIRST_FROM)
                )
        for org_id in sorted(self.orgs):
            org = load(self.view, org_key(org_id), Org)
            if org is not None:
                countries.add(org.country)
        targets = (
            [("mine", mine) for mine in self.mines()]
            + [("org", org) for org in sorted(self.orgs)]
            + [("country", country) for country in sorted(countries)]
        )
        for kind, target in targets:
            sanction = sanction_of(self.view, kind, target)
            if sanction is not None:
                attributes = {"kind": kind, "target": target}
                found.append(_record("sanctioned", attributes, sanction.height, AT_HEIGHT))
        return found


def _record(kind: str, attributes: dict[str, object], height: int, at: str) -> dict[str, object]:
    return {
        "contract": CONTRACT,
        "kind": kind,
        "attributes": attributes,
        "height": height,
        "at": at,
    }


def scope(view: ReadableState, asset_id: str, max_nodes: int) -> dict[str, object]:
    """The transactions the history of ``asset_id`` is made of; see the module docstring."""
    walk = _Walk(view)
    truncated = walk.collect(asset_id, max_nodes)
    return {
        "asset_id": asset_id,
        "assets": sorted(walk.assets),
        "tx_ids": walk.tx_ids(),
        "records": walk.records(),
        "truncated": truncated,
    }


def attestations(view: ReadableState, asset_id: str, max_nodes: int) -> dict[str, object]:
    """Who registered each origin mine and certified each border crossing of
    the assets in scope of ``asset_id``; see the module docstring."""
    walk = _Walk(view)
    truncated = walk.collect(asset_id, max_nodes)
    mines = [_mine_registration(view, mine_id) for mine_id in walk.mines()]
    crossings = [
        _kp_crossing(walk, cert) for _, cert in sorted(walk.certs.items()) if cert.confirmed_by
    ]
    return {
        "asset_id": asset_id,
        "mine_registrations": mines,
        "kp_crossings": crossings,
        "truncated": truncated,
    }


def _is_kp_authority(org: Org, country: str) -> bool:
    return org.has_scope("kp_authority") and org.country == country


def _mine_registration(view: ReadableState, mine_id: str) -> dict[str, object]:
    mine = get_mine(view, mine_id)
    registrar = get_org(view, mine.registered_by)
    # The rule of register_mine: the KP authority of the country, or a regulator.
    if _is_kp_authority(registrar, mine.country):
        entitled_as = "kp_authority"
    elif registrar.has_role("regulator"):
        entitled_as = "regulator"
    else:
        entitled_as = ""
    return {
        "mine_id": mine_id,
        "country": mine.country,
        "registered_by": mine.registered_by,
        "registered_height": mine.registered_height,
        "entitled_as": entitled_as,
        "registration": _record(
            "mine_registered", {"mine_id": mine_id}, mine.registered_height, AT_HEIGHT
        ),
    }


def _kp_crossing(walk: _Walk, cert: KpCertificate) -> dict[str, object]:
    issuer = get_org(walk.view, cert.issuer)
    confirmer = get_org(walk.view, cert.confirmed_by)
    imported = _import_event(walk.view, cert)
    return {
        "cert_id": cert.cert_id,
        "parcels": list(cert.parcels),
        "origin_country": cert.origin_country,
        "destination_country": cert.destination_country,
        "issuer": cert.issuer,
        "issuer_is_authority": _is_kp_authority(issuer, cert.origin_country),
        "issued_height": cert.issued_height,
        "confirmed_by": cert.confirmed_by,
        "confirmer_is_authority": _is_kp_authority(confirmer, cert.destination_country),
        "confirmed_height": imported.height,
        "confirmed_tx_id": imported.tx_id,
    }


def _import_event(view: ReadableState, cert: KpCertificate) -> ProvEvent:
    """The import of a confirmed certificate, as its first parcel recorded it."""
    parcel = get_diamond(view, cert.parcels[0])
    events, _ = read_events(view, PACK, parcel.asset_id, parcel.event_count)
    for event in events:
        attributes = decode(event.attributes)
        assert isinstance(attributes, dict), "event attributes are a map"
        if event.kind == "imported" and attributes.get("cert_id") == cert.cert_id:
            return event
    raise AssertionError(f"confirmed KP certificate {cert.cert_id} has no import event")
