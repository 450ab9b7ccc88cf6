"""Human-readable text for query answers: a diamond's provenance, a recall's reach.

Pure functions from the JSON the node returns to lines of text, shared by
``provenet trace`` and the demos, so both print a stone's story the same
way: from the mine to the shop, with every certificate on the way and the
compliance verdict at the end.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

JSON = dict[str, Any]
_POINTS_PER_CARAT = 100
_GRAMS_PER_KG = 1_000


def carats(points: object) -> str:
    """Carats from points (hundredths of a carat), e.g. 1500 -> '15.00 ct'."""
    value = points if isinstance(points, int) else 0
    return f"{value // _POINTS_PER_CARAT}.{value % _POINTS_PER_CARAT:02d} ct"


def kilograms(grams: object) -> str:
    """Kilograms from grams, e.g. 1_500 -> '1.500 kg'."""
    value = grams if isinstance(grams, int) else 0
    return f"{value // _GRAMS_PER_KG:,}.{value % _GRAMS_PER_KG:03d} kg"


def money(cents: object) -> str:
    value = cents if isinstance(cents, int) else 0
    return f"{value // 100:,}.{value % 100:02d}"


def block_time(time_ms: object) -> str:
    """A block time (ms since the epoch) as UTC; blank when absent."""
    if not isinstance(time_ms, int) or time_ms <= 0:
        return ""
    moment = datetime.datetime.fromtimestamp(time_ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _attributes(attributes: object) -> str:
    if not isinstance(attributes, dict):
        return ""
    parts = []
    for key, value in sorted(attributes.items()):
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        parts.append(f"{key}={shown}")
    return " ".join(parts)


# ------------------------------------------------------------------ diamonds


def format_trace(trace: JSON, compliance: JSON | None = None) -> str:
    """A diamond's provenance from mine to its present holder, then the verdict."""
    nodes = list(trace.get("nodes", []))
    lines = [_headline(trace.get("asset_id", "?"), nodes[0] if nodes else {}), ""]
    mines = [_mine_line(mine) for mine in trace.get("mines", [])]
    lines.extend([*mines, ""] if mines else [])
    for step, node in enumerate(reversed(nodes), start=1):
        if step > 1:
            lines.append("      |")
        lines.extend(_asset_lines(step, node))
    lines.extend(_certificate_lines(trace))
    if trace.get("truncated"):
        lines.append("(trace truncated: the upstream is larger than the node's query limit)")
    if compliance is not None:
        lines.extend(["", *format_compliance(compliance).splitlines()])
    return "\n".join(lines)


def _headline(asset_id: str, node: JSON) -> str:
    return (
        f"Provenance of {asset_id}: {node.get('kind', '?')} {carats(node.get('carats_points'))}, "
        f"{node.get('status', '?')}, owned by {node.get('owner', '?')}, "
        f"held by {node.get('custodian', '?')} in {node.get('country', '?')}"
    )


def _mine_line(mine: JSON) -> str:
    accredited = "accredited" if mine.get("accredited") else "NOT accredited"
    return (
        f"Mine {mine.get('mine_id')} ({mine.get('country')}), operated by {mine.get('operator')}, "
        f"{accredited}, registered by {mine.get('registered_by')} at block "
        f"{mine.get('registered_height')}"
    )


def _asset_lines(step: int, node: JSON) -> list[str]:
    notes = []
    if node.get("mine_id"):
        notes.append(f"from mine {node['mine_id']}")
    if node.get("kp_certificates"):
        notes.append("KP " + ", ".join(node["kp_certificates"]))
    if node.get("grading_report"):
        notes.append(f"graded {node['grading_report']}")
    if node.get("frozen"):
        notes.append("FROZEN")
    head = (
        f"[{step}] {node.get('asset_id')}  {node.get('kind')} {carats(node.get('carats_points'))}"
        f"  now {node.get('status')} in {node.get('country')}"
    )
    lines = [head + (f"  ({'; '.join(notes)})" if notes else "")]
    for event in node.get("events", []):
        lines.append(
            f"      block {event.get('height'):>5}  {block_time(event.get('time_ms')):19}  "
            f"{event.get('actor', ''):<10} {event.get('kind', ''):<14} "
            f"{_attributes(event.get('attributes'))}".rstrip()
        )
    return lines


def _certificate_lines(trace: JSON) -> list[str]:
    lines: list[str] = []
    kp = list(trace.get("kp_certificates", []))
    if kp:
        lines.extend(["", "Kimberley Process certificates:"])
        lines.extend(_kp_line(cert) for cert in kp)
    grading = list(trace.get("grading_reports", []))
    if grading:
        lines.extend(["", "Grading reports:"])
        lines.extend(_grading_line(report) for report in grading)
    return lines


def _kp_line(cert: JSON) -> str:
    revoked = "  REVOKED" if cert.get("revoked") else ""
    confirmed = cert.get("confirmed_by") or "not yet"
    return (
        f"  {cert.get('cert_id')}: {cert.get('origin_country')} -> "
        f"{cert.get('destination_country')}, issued by {cert.get('issuer')} at block "
        f"{cert.get('issued_height')}, exporter {cert.get('exporter')}, importer "
        f"{cert.get('importer')}, HS {cert.get('hs_code')}, {carats(cert.get('carats_points'))}, "
        f"value {money(cert.get('value_cents'))}, {cert.get('status')}, import confirmed by "
        f"{confirmed}{revoked}"
    )


def _grading_line(report: JSON) -> str:
    revoked = "  REVOKED" if report.get("revoked") else ""
    return (
        f"  {report.get('report_id')}: {report.get('lab')} graded {report.get('asset_id')} "
        f"{carats(report.get('carats_points'))}, colour {report.get('colour')}, clarity "
        f"{report.get('clarity')}, cut {report.get('cut_grade')} at block "
        f"{report.get('issued_height')}{revoked}"
    )


def format_compliance(compliance: JSON) -> str:
    """The verdict, and every failing link when the stone is not conflict-free."""
    checked = compliance.get("assets_checked", "?")
    asset_id = compliance.get("asset_id", "?")
    if compliance.get("conflict_free"):
        return f"Verdict: {asset_id} is CONFLICT-FREE ({checked} upstream assets checked)"
    lines = [f"Verdict: {asset_id} is NOT conflict-free ({checked} upstream assets checked):"]
    for failure in compliance.get("failures", []):
        lines.append(
            f"  - {failure.get('asset_id')}: {failure.get('rule')}: {failure.get('detail')}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ transactions


def _outputs_text(value: object) -> str:
    if not isinstance(value, list):
        return "?"
    return ", ".join(
        f"{item.get('asset_id')} ({carats(item.get('carats_points'))})"
        for item in value
        if isinstance(item, dict)
    )


_CALL_SUMMARIES: dict[str, Callable[[JSON], str]] = {
    "register_mine": lambda a: (
        f"mine {a.get('mine_id')} in {a.get('country')}, operated by {a.get('operator')}"
    ),
    "set_mine_accreditation": lambda a: (
        f"mine {a.get('mine_id')} accredited={a.get('accredited', True)}"
    ),
    "extract": lambda a: (
        f"{a.get('parcel_id')} {carats(a.get('carats_points'))} from mine {a.get('mine_id')}"
    ),
    "split": lambda a: f"{a.get('asset_id')} -> {_outputs_text(a.get('outputs'))}",
    "merge": lambda a: f"{', '.join(map(str, a.get('inputs') or []))} -> {a.get('output_id')}",
    "cut": lambda a: f"{a.get('asset_id')} -> {_outputs_text(a.get('stones'))}",
    "transfer": lambda a: (
        f"{a.get('asset_id')} to {a.get('to_org')}"
        + (" (custody only)" if a.get("custody_only") else "")
    ),
    "issue_kp_certificate": lambda a: (
        f"KP {a.get('cert_id')} {a.get('origin_country')} -> {a.get('destination_country')}, "
        f"{a.get('exporter')} to {a.get('importer')}, {', '.join(map(str, a.get('parcels') or []))}, "
        f"{carats(a.get('carats_points'))}, HS {a.get('hs_code')}"
    ),
    "ship": lambda a: f"shipped under {a.get('cert_id')}",
    "confirm_import": lambda a: (
        f"import under {a.get('cert_id')} confirmed, {carats(a.get('carats_points'))}"
    ),
    "reject_import": lambda a: f"import under {a.get('cert_id')} rejected: {a.get('reason')}",
    "grade": lambda a: (
        f"{a.get('asset_id')} report {a.get('report_id')}: {a.get('colour')} {a.get('clarity')} "
        f"{a.get('cut_grade')}"
    ),
    "sell": lambda a: f"{a.get('asset_id')} sold to {a.get('buyer_ref')}",
    "sanction": lambda a: f"{a.get('kind')} {a.get('target')} sanctioned: {a.get('reason')}",
    "lift_sanction": lambda a: f"sanction on {a.get('kind')} {a.get('target')} lifted",
    "freeze": lambda a: f"{a.get('asset_id')} frozen",
    "unfreeze": lambda a: f"{a.get('asset_id')} unfrozen",
    "revoke_certificate": lambda a: (
        f"{a.get('kind')} certificate {a.get('cert_id')} revoked: {a.get('reason')}"
    ),
}


def call_summary(method: str, args: JSON) -> str:
    """One line saying what a transaction's call does, from its method and arguments."""
    describe = _CALL_SUMMARIES.get(method)
    if describe is not None:
        return describe(args)
    return " ".join(f"{key}={value}" for key, value in sorted(args.items()))


# ------------------------------------------------------------------ food


def format_recall(impact: JSON) -> str:
    """Every lot downstream of a recalled lot, and who holds each one now."""
    affected = list(impact.get("affected", []))
    state = "recalled" if impact.get("recalled") else "NOT recalled"
    lines = [
        f"Recall impact of lot {impact.get('lot_id')} ({state}): {len(affected)} downstream lots",
        f"  {'depth':>5}  {'lot':<20} {'product':<10} {'mass':>14}  {'status':<10} "
        f"{'owner':<10} {'custodian':<10} destination",
    ]
    for lot in affected:
        lines.append(
            f"  {lot.get('depth'):>5}  {lot.get('lot_id', ''):<20} {lot.get('product', ''):<10} "
            f"{kilograms(lot.get('mass_grams')):>14}  {lot.get('status', ''):<10} "
            f"{lot.get('owner', ''):<10} {lot.get('custodian', ''):<10} "
            f"{lot.get('destination') or '-'}"
        )
    lines.append("  holders to notify: " + (", ".join(impact.get("holders", [])) or "none"))
    if impact.get("truncated"):
        lines.append("  (truncated: more lots lie downstream than the node's query limit)")
    return "\n".join(lines)
