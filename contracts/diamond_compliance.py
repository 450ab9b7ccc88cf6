"""Conflict-free compliance and provenance trace of a diamond.

Theory of operation
-------------------
A diamond is conflict-free only if its whole upstream chain is clean.  The
check walks the provenance DAG from the diamond up to the extractions it
came from (bounded by ``max_trace_nodes``) and, for every asset on the way,
applies these rules, each reported as a failing link with the asset's id:

* ``mine_not_accredited`` / ``mine_sanctioned``: the origin mine of an
  extracted parcel has lost its accreditation or is sanctioned;
* ``country_sanctioned``: the mine's country, or either country of a KP
  certificate the asset crossed a border under, is sanctioned;
* ``kp_certificate_revoked``: such a certificate has been revoked;
* ``kp_authority_sanctioned``: the KP authority that issued such a
  certificate, or the one that confirmed the import, is sanctioned: a
  corrupt authority's validations are worth nothing (an authority's
  country is already covered by ``country_sanctioned``);
* ``org_sanctioned``: an organisation that acted on or held the asset is
  sanctioned (directly or through its country);
* ``asset_frozen``: a regulator froze the asset;
* ``grading_certificate_revoked``: the diamond's own grading report was
  revoked (checked for the diamond itself only);
* ``trace_truncated``: the walk hit its limit, so cleanliness is unproven.

The verdict reads state by point reads (``get``) only, never ``scan``: a
light client recomputes it from the reads a node proves, one state proof
per key (contracts/recorded_reads.py), and no point proof shows that a
scan saw every key.  Keep it so (tests/contracts/test_recorded_reads.py
fails on a scan).

Sanctions and revocations are read as they stand now, so a sanction
imposed after a stone was cut still taints the stone: that is what "taints
everything downstream" means, with no write to any downstream record.
"""

from __future__ import annotations

from dataclasses import asdict

from contracts.diamond_records import (
    PACK,
    Diamond,
    GradingReport,
    KpCertificate,
    Mine,
    get_diamond,
    grading_key,
    kp_key,
    mine_key,
)
from contracts.orgs import Org, get_org, org_key, sanction_of
from contracts.provenance import read_events, walk
from contracts.records import load
from contracts.state import ReadableState


class _Upstream:
    """Loads each upstream asset once while walking."""

    def __init__(self, view: ReadableState) -> None:
        self.view = view
        self.assets: dict[str, Diamond] = {}

    def parents(self, asset_id: str) -> list[str]:
        diamond = self.assets.get(asset_id)
        if diamond is None:
            diamond = get_diamond(self.view, asset_id)
            self.assets[asset_id] = diamond
        return sorted(diamond.parents)  # walk() takes neighbours in ascending order


def upstream(view: ReadableState, asset_id: str, max_nodes: int) -> tuple[list[Diamond], bool]:
    """Every asset upstream of (and including) ``asset_id``, nearest first."""
    loader = _Upstream(view)
    order, _, truncated = walk(asset_id, loader.parents, max_nodes)
    for visited in order:
        loader.parents(visited)
    return [loader.assets[visited] for visited in order], truncated


def compliance(view: ReadableState, asset_id: str, max_nodes: int) -> dict[str, object]:
    """The compliance verdict of one diamond; see the module docstring."""
    assets, truncated = upstream(view, asset_id, max_nodes)
    failures: list[dict[str, str]] = []
    for diamond in assets:
        failures.extend(_link_failures(view, diamond))
    report = assets[0].grading_report
    if report:
        grading = load(view, grading_key(report), GradingReport)
        if grading is not None and grading.revoked:
            failures.append(
                _failure(
                    asset_id, "grading_certificate_revoked", f"grading report {report} is revoked"
                )
            )
    if truncated:
        failures.append(
            _failure(asset_id, "trace_truncated", f"upstream exceeds {max_nodes} assets")
        )
    return {
        "asset_id": asset_id,
        "conflict_free": not failures,
        "failures": failures,
        "assets_checked": len(assets),
        "truncated": truncated,
    }


def _failure(asset_id: str, rule: str, detail: str) -> dict[str, str]:
    return {"asset_id": asset_id, "rule": rule, "detail": detail}


def _link_failures(view: ReadableState, diamond: Diamond) -> list[dict[str, str]]:
    failures: list[dict[str, str]] = []
    link = diamond.asset_id
    if diamond.frozen:
        failures.append(_failure(link, "asset_frozen", f"asset {link} is frozen by a regulator"))
    if diamond.mine_id:
        failures.extend(_mine_failures(view, link, diamond.mine_id))
    for cert_id in diamond.kp_certificates:
        failures.extend(_certificate_failures(view, link, cert_id))
    for org_id in diamond.actors:
        failures.extend(_actor_failures(view, link, org_id))
    return failures


def _mine_failures(view: ReadableState, link: str, mine_id: str) -> list[dict[str, str]]:
    mine = load(view, mine_key(mine_id), Mine)
    assert mine is not None, "an extracted parcel names a registered mine"
    failures = []
    if not mine.accredited:
        failures.append(
            _failure(link, "mine_not_accredited", f"origin mine {mine_id} is not accredited")
        )
    if sanction_of(view, "mine", mine_id) is not None:
        failures.append(_failure(link, "mine_sanctioned", f"origin mine {mine_id} is sanctioned"))
    if sanction_of(view, "country", mine.country) is not None:
        failures.append(
            _failure(link, "country_sanctioned", f"origin country {mine.country} is sanctioned")
        )
    return failures


def _certificate_failures(view: ReadableState, link: str, cert_id: str) -> list[dict[str, str]]:
    cert = load(view, kp_key(cert_id), KpCertificate)
    assert cert is not None, "an asset names only issued certificates"
    failures = []
    if cert.revoked:
        failures.append(
            _failure(link, "kp_certificate_revoked", f"KP certificate {cert_id} is revoked")
        )
    for verb, authority in (("issued", cert.issuer), ("confirmed", cert.confirmed_by)):
        if authority and sanction_of(view, "org", authority) is not None:
            failures.append(
                _failure(
                    link,
                    "kp_authority_sanctioned",
                    f"KP authority {authority} that {verb} certificate {cert_id} is sanctioned",
                )
            )
    for country in sorted({cert.origin_country, cert.destination_country}):
        if sanction_of(view, "country", country) is not None:
            failures.append(
                _failure(
                    link,
                    "country_sanctioned",
                    f"country {country} of KP certificate {cert_id} is sanctioned",
                )
            )
    return failures


def _actor_failures(view: ReadableState, link: str, org_id: str) -> list[dict[str, str]]:
    if sanction_of(view, "org", org_id) is not None:
        return [_failure(link, "org_sanctioned", f"organisation {org_id} is sanctioned")]
    org = load(view, org_key(org_id), Org)
    assert org is not None, "actors are member organisations"
    if sanction_of(view, "country", org.country) is not None:
        return [
            _failure(
                link,
                "org_sanctioned",
                f"organisation {org_id}'s country {org.country} is sanctioned",
            )
        ]
    return []


def trace(view: ReadableState, asset_id: str, max_nodes: int, max_events: int) -> dict[str, object]:
    """The whole upstream provenance DAG of a diamond, with every event,
    certificate and actor, nearest asset first."""
    assets, truncated = upstream(view, asset_id, max_nodes)
    nodes: list[dict[str, object]] = []
    edges: list[list[str]] = []
    kp_ids: set[str] = set()
    grading_ids: set[str] = set()
    mine_ids: set[str] = set()
    actor_ids: set[str] = set()
    for diamond in assets:
        events, more = read_events(view, PACK, diamond.asset_id, max_events)
        truncated = truncated or more
        node: dict[str, object] = asdict(diamond)
        node["events"] = [event.to_dict() for event in events]
        nodes.append(node)
        edges.extend([parent, diamond.asset_id] for parent in diamond.parents)
        kp_ids.update(diamond.kp_certificates)
        if diamond.grading_report:
            grading_ids.add(diamond.grading_report)
        if diamond.mine_id:
            mine_ids.add(diamond.mine_id)
        actor_ids.update(diamond.actors)
        actor_ids.update(event.actor for event in events)
    return {
        "asset_id": asset_id,
        "nodes": nodes,
        "edges": sorted(edges),
        "kp_certificates": [_as_dict(view, kp_key(cert), KpCertificate) for cert in sorted(kp_ids)],
        "grading_reports": [
            _as_dict(view, grading_key(rep), GradingReport) for rep in sorted(grading_ids)
        ],
        "mines": [_as_dict(view, mine_key(mine), Mine) for mine in sorted(mine_ids)],
        "actors": [asdict(get_org(view, org_id)) for org_id in sorted(actor_ids)],
        "truncated": truncated,
    }


def _as_dict(
    view: ReadableState, key: bytes, cls: type[KpCertificate] | type[GradingReport] | type[Mine]
) -> dict[str, object]:
    record = load(view, key, cls)
    assert record is not None, "trace follows only existing records"
    return asdict(record)
