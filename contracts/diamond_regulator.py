"""Regulator actions of the diamond pack: sanctions, freezes, revocations.

Theory of operation
-------------------
Only an organisation with the ``regulator`` role may sanction or lift a
sanction on a country, mine or organisation, or freeze and unfreeze an
asset.  A certificate may be revoked by a regulator or by its own issuer.
Every one of these actions is refused (``sanctioned``) when the sender is
itself sanctioned, directly or through its country: a sanction removes a
regulator's powers too.  No regulator may lift a sanction on itself or on
its own country (``unauthorized``), even once its own sanction is gone:
that is for another regulator to decide.  None of these actions rewrites downstream records: compliance reads
sanctions, freezes and revocations as they stand when it runs, so the
taint reaches every descendant at once and lifting a sanction clears it
just as fast.  A frozen asset additionally refuses every transaction on
it (``frozen``).
"""

from __future__ import annotations

from dataclasses import replace

from contracts.args import invalid
from contracts.context import Call
from contracts.diamond_args import (
    FreezeArgs,
    LiftSanctionArgs,
    RevokeCertificateArgs,
    SanctionArgs,
)
from contracts.diamond_records import (
    PACK,
    asset_key,
    get_diamond,
    get_grading,
    get_kp,
    get_mine,
    grading_key,
    kp_key,
)
from contracts.errors import ErrorCode, Rejected
from contracts.orgs import (
    Sanction,
    get_org,
    require_role,
    require_unsanctioned_org,
    sanction_key,
    sanction_of,
)
from contracts.provenance import record_event
from contracts.records import save


def _require_target(call: Call, kind: str, target: str) -> None:
    """A sanctioned mine or organisation must exist; a country need not."""
    if kind == "mine":
        get_mine(call.store, target)
    elif kind == "org":
        get_org(call.store, target)


def sanction(call: Call, args: SanctionArgs) -> None:
    kind, target, reason = args.kind, args.target, args.reason
    _require_target(call, kind, target)
    _require_acting_regulator(call)
    if sanction_of(call.store, kind, target) is not None:
        raise Rejected(ErrorCode.DUPLICATE, f"{kind} {target} is already sanctioned")
    record = Sanction(kind, target, reason, call.sender_org.org_id, call.block.height)
    save(call.store, sanction_key(kind, target), record)
    call.emit("sanctioned", {"kind": kind, "target": target, "reason": reason})


def lift_sanction(call: Call, args: LiftSanctionArgs) -> None:
    kind, target = args.kind, args.target
    _require_target(call, kind, target)
    _refuse_lifting_own_sanction(call, kind, target)
    _require_acting_regulator(call)
    if sanction_of(call.store, kind, target) is None:
        raise invalid(f"{kind} {target} is not sanctioned")
    call.store.delete(sanction_key(kind, target))
    call.emit("sanction_lifted", {"kind": kind, "target": target})


def freeze(call: Call, args: FreezeArgs) -> None:
    set_frozen(call, args, frozen=True)


def unfreeze(call: Call, args: FreezeArgs) -> None:
    set_frozen(call, args, frozen=False)


def set_frozen(call: Call, args: FreezeArgs, frozen: bool) -> None:
    diamond = get_diamond(call.store, args.asset_id)
    reason = args.reason
    _require_acting_regulator(call)
    if diamond.frozen == frozen:
        raise invalid(f"asset {diamond.asset_id} is already {'frozen' if frozen else 'unfrozen'}")
    kind = "frozen" if frozen else "unfrozen"
    record_event(call, PACK, diamond.asset_id, diamond.event_count, kind, {"reason": reason})
    updated = replace(diamond, frozen=frozen, event_count=diamond.event_count + 1)
    save(call.store, asset_key(diamond.asset_id), updated)


def revoke_certificate(call: Call, args: RevokeCertificateArgs) -> None:
    kind, cert_id, reason = args.kind, args.cert_id, args.reason
    if kind == "kp":
        kp = get_kp(call.store, cert_id)
        _require_regulator_or(call, kp.issuer)
        if kp.revoked:
            raise Rejected(
                ErrorCode.REVOKED_CERTIFICATE, f"KP certificate {cert_id} is already revoked"
            )
        save(call.store, kp_key(cert_id), replace(kp, revoked=True))
    else:
        report = get_grading(call.store, cert_id)
        _require_regulator_or(call, report.lab)
        if report.revoked:
            raise Rejected(
                ErrorCode.REVOKED_CERTIFICATE, f"grading report {cert_id} is already revoked"
            )
        save(call.store, grading_key(cert_id), replace(report, revoked=True))
    call.emit("certificate_revoked", {"kind": kind, "cert_id": cert_id, "reason": reason})


def _require_acting_regulator(call: Call) -> None:
    require_role(call.sender_org, "regulator")
    require_unsanctioned_org(call.store, call.sender_org)


def _require_regulator_or(call: Call, issuer: str) -> None:
    if call.sender_org.org_id != issuer:
        require_role(call.sender_org, "regulator")
    require_unsanctioned_org(call.store, call.sender_org)


def _refuse_lifting_own_sanction(call: Call, kind: str, target: str) -> None:
    """Checked before anything else so the refusal says why."""
    sender = call.sender_org
    if (kind, target) in (("org", sender.org_id), ("country", sender.country)):
        raise Rejected(
            ErrorCode.UNAUTHORIZED,
            f"{sender.org_id} may not lift a sanction on itself or its own country",
        )
