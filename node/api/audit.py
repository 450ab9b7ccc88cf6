"""Audit views for regulators: what fails compliance, what was sanctioned or
revoked and what that tainted, and who did what over a range of blocks.

Each view reads the node's executed state (or its block store) and is
bounded: at most ``max_assets`` diamonds are checked and at most
``max_blocks`` blocks are read per call, and a ``truncated`` flag says when
a bound cut the answer short.  Observers serve them as well as validators.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from consensus.codec import DecodeError
from contracts.config import ContractLimits
from contracts.diamond_records import Diamond, GradingReport, KpCertificate
from contracts.food_records import FoodCertificate
from contracts.orgs import KeyRecord, Sanction, key_key
from contracts.queries import query
from contracts.records import load, record_from_bytes
from contracts.state import ReadableState
from contracts.tx import decode_tx
from node.runtime.storage import Store

ASSET_PREFIX = b"d/asset/"
KP_PREFIX = b"d/kp/"
GRADING_PREFIX = b"d/grading/"
FOOD_CERT_PREFIX = b"f/cert/"
KEY_PREFIX = b"m/key/"
SANCTION_PREFIX = b"sanction/"


@dataclass(frozen=True)
class AuditLimits:
    # Each view runs on the node's event loop, so each call is kept small.
    max_assets: int = 2_000
    max_blocks: int = 1_000
    max_results: int = 500


def _records(state: ReadableState, prefix: bytes, cls: type, limit: int) -> Iterator[object]:
    for count, (_, raw) in enumerate(state.scan(prefix)):
        if count >= limit:
            return
        yield record_from_bytes(cls, raw)


def noncompliant(state: ReadableState, limits: AuditLimits) -> dict[str, object]:
    """Every diamond that still exists (not consumed) and fails compliance, and why.

    Every asset record read counts against ``max_assets``, consumed or not,
    so the cost of a call is bounded by the limit, not by the chain's size.
    """
    failing: list[dict[str, object]] = []
    read = checked = 0
    truncated = False
    for _, raw in state.scan(ASSET_PREFIX):
        if read >= limits.max_assets or len(failing) >= limits.max_results:
            truncated = True
            break
        read += 1
        diamond = record_from_bytes(Diamond, raw)
        if diamond.status == "consumed":
            continue
        checked += 1
        answer = query(state, "diamonds", "compliance", {"asset_id": diamond.asset_id})
        result = answer.get("result")
        if isinstance(result, dict) and not result.get("conflict_free", True):
            failing.append(
                {
                    "asset_id": diamond.asset_id,
                    "owner": diamond.owner,
                    "status": diamond.status,
                    "failures": result.get("failures", []),
                }
            )
    return {"assets": failing, "checked": checked, "truncated": truncated}


def _tainted(failing: list[dict[str, object]], needle: str) -> list[str]:
    """Assets whose compliance failures name ``needle`` as a whole identifier
    (a sanction on "BW" must not taint an asset failing over "BW-KP-7")."""
    pattern = re.compile(rf"(?<![\w.:-]){re.escape(needle)}(?![\w.:-])")
    tainted = []
    for asset in failing:
        failures = asset.get("failures")
        if isinstance(failures, list) and any(
            isinstance(f, dict) and pattern.search(str(f.get("detail", ""))) for f in failures
        ):
            tainted.append(str(asset["asset_id"]))
    return tainted


def sanctions_and_revocations(state: ReadableState, limits: AuditLimits) -> dict[str, object]:
    assets = noncompliant(state, limits)["assets"]
    failing: list[dict[str, object]] = assets if isinstance(assets, list) else []
    sanctions = [
        {**asdict(sanction), "tainted": _tainted(failing, sanction.target)}
        for sanction in _records(state, SANCTION_PREFIX, Sanction, limits.max_results)
        if isinstance(sanction, Sanction)
    ]
    revocations: list[dict[str, object]] = []
    for cert in _records(state, KP_PREFIX, KpCertificate, limits.max_assets):
        if isinstance(cert, KpCertificate) and cert.revoked:
            revocations.append(
                {
                    "kind": "kp_certificate",
                    "id": cert.cert_id,
                    "org_id": cert.issuer,
                    "height": cert.issued_height,
                    "tainted": _tainted(failing, cert.cert_id),
                }
            )
    for report in _records(state, GRADING_PREFIX, GradingReport, limits.max_assets):
        if isinstance(report, GradingReport) and report.revoked:
            revocations.append(
                {
                    "kind": "grading",
                    "id": report.report_id,
                    "org_id": report.lab,
                    "height": report.issued_height,
                    "tainted": _tainted(failing, report.report_id),
                }
            )
    for food_cert in _records(state, FOOD_CERT_PREFIX, FoodCertificate, limits.max_assets):
        if isinstance(food_cert, FoodCertificate) and food_cert.revoked:
            revocations.append({"kind": "food_certificate", **_plain(food_cert), "tainted": []})
    for count, (key, raw) in enumerate(state.scan(KEY_PREFIX)):
        if count >= limits.max_assets:
            break
        record = record_from_bytes(KeyRecord, raw)
        if record.revoked_from_height is not None:
            revocations.append(
                {
                    "kind": "key",
                    "id": key[len(KEY_PREFIX) :].decode(),
                    "org_id": record.org_id,
                    "height": record.revoked_from_height,
                    "tainted": [],
                }
            )
        if len(revocations) >= limits.max_results:
            break
    return {"sanctions": sanctions, "revocations": revocations}


def _plain(record: object) -> dict[str, object]:
    fields = asdict(record)  # type: ignore[call-overload]
    return {key: value for key, value in fields.items() if not isinstance(value, bytes)}


def activity(
    store: Store,
    state: ReadableState,
    contract_limits: ContractLimits,
    first: int,
    last: int,
    limits: AuditLimits,
) -> dict[str, object]:
    """Transactions per organisation (and per method) in blocks ``first..last``."""
    wanted = last
    last = min(last, store.height(), first + limits.max_blocks - 1)
    orgs: dict[str, dict[str, object]] = {}
    org_of: dict[bytes, str] = {}
    for height in range(max(1, first), last + 1):
        stored = store.block(height)
        if stored is None:
            break
        for request, receipt in zip(stored.block.requests, stored.receipts, strict=True):
            try:
                tx = decode_tx(request.payload, contract_limits)
            except DecodeError:
                continue
            if tx.sender not in org_of:
                record = load(state, key_key(tx.sender), KeyRecord)
                org_of[tx.sender] = record.org_id if record else "unknown"
            row = orgs.setdefault(
                org_of[tx.sender], {"txs": 0, "ok": 0, "rejected": 0, "methods": {}}
            )
            row["txs"] = int(str(row["txs"])) + 1
            status = "ok" if receipt.get("status") == "ok" else "rejected"
            row[status] = int(str(row[status])) + 1
            methods = row["methods"]
            assert isinstance(methods, dict)
            name = f"{tx.contract}.{tx.method}"
            methods[name] = methods.get(name, 0) + 1
    truncated = last < min(wanted, store.height())
    return {"from": max(1, first), "to": last, "orgs": orgs, "truncated": truncated}
