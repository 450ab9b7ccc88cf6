"""Contract ``diamonds``: the Kimberley Process rule pack, Tracr-style.

Theory of operation
-------------------
A rough parcel is born at an accredited, unsanctioned mine (``extract``).
Rough crosses a border only under a Kimberley Process certificate: the
exporting country's KP authority issues it for named parcels of the
exporter (both countries must be KP participants), with the HS code of the
goods (7102.10, 7102.21 or 7102.31) and the number of parcels recorded;
the exporter ships under it, and the importing country's KP authority
confirms the import with the carats it found; only then do the parcels
change country and owner, and the certificate records who confirmed.
``ship`` and ``confirm_import`` check again everything issue checked that
a regulator can change afterwards: both countries still participants and
unsanctioned, the issuing authority, exporter and importer unsanctioned,
so a sanction imposed after issue stops the crossing.

A shipment that cannot be confirmed (certificate expired or revoked after
shipping, carats that never match, a party sanctioned in transit) would
leave its parcels ``in_transit`` for ever, so the destination's KP
authority or a regulator may ``reject_import``: the parcels go back to
the exporter in the origin country, unchanged, and the certificate
becomes ``rejected``.  ``confirm_import`` does apply expiry: the importing
authority confirms against a valid certificate, and a late shipment is
rejected and re-certified.  A certificate covers one shipment and is never
reused, whether completed or rejected.  A ``transfer`` of rough to an
organisation in another country is refused with ``no_kp_certificate``;
polished stones are outside the KPCS and move freely, carrying their
upstream record with them (System of Warranties).

Parcels split and merge with exact mass balance; a manufacturer cuts a
rough parcel into polished stones whose total may not exceed the rough or
the chain's maximum yield (``max_cutting_yield_bp``, basis points).  A
grading lab grades only a stone in its custody (the owner hands it over
with a custody-only ``transfer``), and its report's carats must match the
stone.  A stone is graded once: a second report is refused
(``duplicate``), and so is re-grading after the report was revoked
(``revoked_certificate``): a revocation is final, so compliance keeps
failing on it and no new report can launder it.  A retailer sells a graded
stone only if it is conflict-free (contracts.diamond_compliance), and the
refusal names the failing link.

Regulators sanction countries, mines and organisations, freeze assets and
revoke certificates (contracts.diamond_regulator).  A sanctioned
organisation (or one in a sanctioned country) cannot send any diamond
transaction, a regulator included.

Each handler here receives its arguments already read and typed by its
parse function in contracts.diamond_args (paired in contracts.methods)
and checks only what needs state or the block.
"""

from __future__ import annotations

from dataclasses import replace

from contracts.args import MAX_AMOUNT
from contracts.context import Call
from contracts.diamond_args import (
    CertificateArgs,
    ConfirmImportArgs,
    CutArgs,
    ExtractArgs,
    GradeArgs,
    KpCertificateArgs,
    MergeArgs,
    MineAccreditationArgs,
    NewAsset,
    RegisterMineArgs,
    RejectImportArgs,
    SellArgs,
    SplitArgs,
    TransferArgs,
)
from contracts.diamond_compliance import compliance
from contracts.diamond_records import (
    ACTIVE,
    CERT_COMPLETED,
    CERT_ISSUED,
    CERT_REJECTED,
    CERT_SHIPPED,
    CONSUMED,
    IN_TRANSIT,
    PACK,
    POLISHED,
    ROUGH,
    SOLD,
    Diamond,
    GradingReport,
    KpCertificate,
    Mine,
    asset_key,
    get_diamond,
    get_grading,
    get_kp,
    get_mine,
    grading_key,
    kp_key,
    mine_key,
    require_new,
)
from contracts.errors import ErrorCode, Rejected
from contracts.orgs import (
    get_org,
    require_role,
    require_scope,
    require_unsanctioned_org,
    sanction_of,
)
from contracts.provenance import record_event
from contracts.records import save

# --- helpers ---------------------------------------------------------------


def _save_diamond(call: Call, diamond: Diamond, kind: str, attributes: dict[str, object]) -> None:
    """Write the asset with one more event recorded against it."""
    record_event(call, PACK, diamond.asset_id, diamond.event_count, kind, attributes)
    save(
        call.store,
        asset_key(diamond.asset_id),
        replace(diamond, event_count=diamond.event_count + 1),
    )


def _with_actor(diamond: Diamond, *org_ids: str) -> Diamond:
    return replace(diamond, actors=tuple(sorted({*diamond.actors, *org_ids})))


def _usable(call: Call, asset_id: str, owner: str | None = None) -> Diamond:
    """Load an asset that is active, not frozen and, if given, owned by ``owner``."""
    diamond = get_diamond(call.store, asset_id)
    if diamond.status != ACTIVE:
        raise Rejected(ErrorCode.NOT_AVAILABLE, f"asset {asset_id} is {diamond.status}")
    if diamond.frozen:
        raise Rejected(ErrorCode.FROZEN, f"asset {asset_id} is frozen by a regulator")
    if owner is not None and diamond.owner != owner:
        raise Rejected(
            ErrorCode.NOT_OWNER, f"asset {asset_id} is owned by {diamond.owner}, not {owner}"
        )
    return diamond


def _new_asset(
    call: Call,
    asset_id: str,
    kind: str,
    carats_points: int,
    parents: tuple[str, ...],
    like: Diamond,
) -> Diamond:
    return Diamond(
        asset_id=asset_id,
        kind=kind,
        carats_points=carats_points,
        owner=like.owner,
        custodian=like.custodian,
        country=like.country,
        status=ACTIVE,
        frozen=False,
        parents=parents,
        mine_id="",
        kp_certificates=(),
        grading_report="",
        actors=(call.sender_org.org_id,),
        event_count=0,
        created_height=call.block.height,
    )


def _require_new_assets(call: Call, outputs: tuple[NewAsset, ...]) -> None:
    for output in outputs:
        require_new(call.store, asset_key(output.asset_id), f"asset {output.asset_id}")


def _require_kp_participant(call: Call, country: str) -> None:
    if country not in call.config.kp_participants:
        raise Rejected(
            ErrorCode.NOT_KP_PARTICIPANT,
            f"country {country} is not a Kimberley Process participant",
        )
    if sanction_of(call.store, "country", country) is not None:
        raise Rejected(ErrorCode.SANCTIONED, f"country {country} is sanctioned")


def _require_authority(call: Call, country: str) -> None:
    """The sender is the KP authority of ``country`` or a regulator."""
    if not call.sender_org.has_role("regulator"):
        require_scope(call.sender_org, "kp_authority", country)


# --- mines and extraction ---------------------------------------------------


def register_mine(call: Call, args: RegisterMineArgs) -> None:
    mine_id = args.mine_id
    country = args.country
    operator = get_org(call.store, args.operator)
    _require_authority(call, country)
    _require_kp_participant(call, country)
    if operator.country != country:
        raise Rejected(
            ErrorCode.WRONG_LOCATION,
            f"operator {operator.org_id} is in {operator.country}, not {country}",
        )
    require_new(call.store, mine_key(mine_id), f"mine {mine_id}")
    mine = Mine(mine_id, country, operator.org_id, True, call.sender_org.org_id, call.block.height)
    save(call.store, mine_key(mine_id), mine)
    call.emit(
        "mine_registered", {"mine_id": mine_id, "country": country, "operator": operator.org_id}
    )


def set_mine_accreditation(call: Call, args: MineAccreditationArgs) -> None:
    mine = get_mine(call.store, args.mine_id)
    accredited = args.accredited
    _require_authority(call, mine.country)
    save(call.store, mine_key(mine.mine_id), replace(mine, accredited=accredited))
    call.emit("mine_accreditation", {"mine_id": mine.mine_id, "accredited": accredited})


def extract(call: Call, args: ExtractArgs) -> None:
    mine = get_mine(call.store, args.mine_id)
    parcel_id = args.parcel_id
    carats_points = args.carats_points
    if call.sender_org.org_id != mine.operator:
        raise Rejected(
            ErrorCode.UNAUTHORIZED, f"only operator {mine.operator} extracts at mine {mine.mine_id}"
        )
    if not mine.accredited:
        raise Rejected(ErrorCode.MINE_NOT_ACCREDITED, f"mine {mine.mine_id} is not accredited")
    for kind, target in (("mine", mine.mine_id), ("country", mine.country)):
        if sanction_of(call.store, kind, target) is not None:
            raise Rejected(ErrorCode.SANCTIONED, f"{kind} {target} is sanctioned")
    require_new(call.store, asset_key(parcel_id), f"asset {parcel_id}")
    operator = call.sender_org.org_id
    parcel = Diamond(
        parcel_id,
        ROUGH,
        carats_points,
        operator,
        operator,
        mine.country,
        ACTIVE,
        False,
        (),
        mine.mine_id,
        (),
        "",
        (operator,),
        0,
        call.block.height,
    )
    _save_diamond(
        call, parcel, "extracted", {"mine_id": mine.mine_id, "carats_points": carats_points}
    )


# --- Kimberley Process export and import -------------------------------------


def issue_kp_certificate(call: Call, args: KpCertificateArgs) -> None:
    cert = _new_certificate(call, args)
    require_scope(call.sender_org, "kp_authority", cert.origin_country)
    for country in (cert.origin_country, cert.destination_country):
        _require_kp_participant(call, country)
    require_new(call.store, kp_key(cert.cert_id), f"KP certificate {cert.cert_id}")
    _check_parties(call, cert)
    if cert.expiry_height <= call.block.height:
        raise Rejected(
            ErrorCode.EXPIRED_CERTIFICATE, f"KP certificate {cert.cert_id} would already be expired"
        )
    total_points = 0
    for parcel_id in cert.parcels:
        total_points += _exportable(call, parcel_id, cert).carats_points
    if total_points != cert.carats_points:
        raise Rejected(
            ErrorCode.CARATS_MISMATCH,
            f"certificate declares {cert.carats_points} points, parcels weigh {total_points}",
        )
    save(call.store, kp_key(cert.cert_id), cert)
    call.emit("kp_certificate_issued", {"cert_id": cert.cert_id, "parcels": list(cert.parcels)})


def _new_certificate(call: Call, args: KpCertificateArgs) -> KpCertificate:
    return KpCertificate(
        cert_id=args.cert_id,
        issuer=call.sender_org.org_id,
        exporter=args.exporter,
        importer=args.importer,
        origin_country=args.origin_country,
        destination_country=args.destination_country,
        parcels=args.parcels,
        parcel_count=len(args.parcels),
        hs_code=args.hs_code,
        carats_points=args.carats_points,
        value_cents=args.value_cents,
        expiry_height=args.expiry_height,
        status=CERT_ISSUED,
        revoked=False,
        issued_height=call.block.height,
        confirmed_by="",
    )


def _recheck_crossing(call: Call, cert: KpCertificate) -> None:
    """Re-run, at ship and at confirm, every check of issue that a regulator
    can change afterwards: suspensions and sanctions imposed after issue
    must stop the crossing, not just taint it once it is done."""
    for country in (cert.origin_country, cert.destination_country):
        _require_kp_participant(call, country)
    if sanction_of(call.store, "org", cert.issuer) is not None:
        raise Rejected(
            ErrorCode.SANCTIONED,
            f"KP authority {cert.issuer} that issued {cert.cert_id} is sanctioned",
        )
    _check_parties(call, cert)


def _check_parties(call: Call, cert: KpCertificate) -> None:
    for org_id, country in (
        (cert.exporter, cert.origin_country),
        (cert.importer, cert.destination_country),
    ):
        org = get_org(call.store, org_id)
        if org.country != country:
            raise Rejected(
                ErrorCode.WRONG_LOCATION,
                f"organisation {org_id} is in {org.country}, not {country}",
            )
        require_unsanctioned_org(call.store, org)


def _exportable(call: Call, parcel_id: str, cert: KpCertificate) -> Diamond:
    parcel = _usable(call, parcel_id, owner=cert.exporter)
    if parcel.kind != ROUGH:
        raise Rejected(
            ErrorCode.NOT_ROUGH, f"asset {parcel_id} is not rough: KP certificates cover rough"
        )
    if parcel.country != cert.origin_country:
        raise Rejected(
            ErrorCode.WRONG_LOCATION,
            f"parcel {parcel_id} is in {parcel.country}, not {cert.origin_country}",
        )
    verdict = compliance(call.store, parcel_id, call.config.limits.max_trace_nodes)
    if not verdict["conflict_free"]:
        raise Rejected(ErrorCode.NOT_CONFLICT_FREE, _first_failure(verdict))
    return parcel


def _open_certificate(call: Call, cert_id: str, expected_status: str) -> KpCertificate:
    cert = get_kp(call.store, cert_id)
    if cert.revoked:
        raise Rejected(ErrorCode.REVOKED_CERTIFICATE, f"KP certificate {cert_id} is revoked")
    if cert.status != expected_status:
        raise Rejected(
            ErrorCode.CERTIFICATE_USED,
            f"KP certificate {cert_id} is {cert.status}, expected {expected_status}",
        )
    if call.block.height > cert.expiry_height:
        raise Rejected(
            ErrorCode.EXPIRED_CERTIFICATE,
            f"KP certificate {cert_id} expired at height {cert.expiry_height}",
        )
    return cert


def ship(call: Call, args: CertificateArgs) -> None:
    cert = _open_certificate(call, args.cert_id, CERT_ISSUED)
    if call.sender_org.org_id != cert.exporter:
        raise Rejected(
            ErrorCode.UNAUTHORIZED, f"only exporter {cert.exporter} ships under {cert.cert_id}"
        )
    _recheck_crossing(call, cert)
    parcels = [_exportable(call, parcel_id, cert) for parcel_id in cert.parcels]
    for parcel in parcels:
        _save_diamond(
            call, replace(parcel, status=IN_TRANSIT), "shipped", {"cert_id": cert.cert_id}
        )
    save(call.store, kp_key(cert.cert_id), replace(cert, status=CERT_SHIPPED))


def confirm_import(call: Call, args: ConfirmImportArgs) -> None:
    cert = _open_certificate(call, args.cert_id, CERT_SHIPPED)
    received_points = args.carats_points
    require_scope(call.sender_org, "kp_authority", cert.destination_country)
    _recheck_crossing(call, cert)
    if received_points != cert.carats_points:
        raise Rejected(
            ErrorCode.CARATS_MISMATCH,
            f"shipment under {cert.cert_id} weighs {received_points} points, certificate says {cert.carats_points}",
        )
    parcels = [get_diamond(call.store, parcel_id) for parcel_id in cert.parcels]
    for parcel in parcels:
        assert parcel.status == IN_TRANSIT, "a shipped certificate's parcels are in transit"
        if parcel.frozen:
            raise Rejected(ErrorCode.FROZEN, f"parcel {parcel.asset_id} was frozen in transit")
    for parcel in parcels:
        imported = replace(
            _with_actor(parcel, cert.importer),
            status=ACTIVE,
            owner=cert.importer,
            custodian=cert.importer,
            country=cert.destination_country,
            kp_certificates=(*parcel.kp_certificates, cert.cert_id),
        )
        _save_diamond(
            call, imported, "imported", {"cert_id": cert.cert_id, "importer": cert.importer}
        )
    confirmed = replace(cert, status=CERT_COMPLETED, confirmed_by=call.sender_org.org_id)
    save(call.store, kp_key(cert.cert_id), confirmed)


def reject_import(call: Call, args: RejectImportArgs) -> None:
    """Refuse a shipped import and send its parcels back to the exporter.

    Deliberately ignores expiry and revocation: those are the usual reasons
    to reject, and the parcels must never stay in transit for ever.
    """
    cert = get_kp(call.store, args.cert_id)
    reason = args.reason
    _require_authority(call, cert.destination_country)
    if cert.status != CERT_SHIPPED:
        raise Rejected(
            ErrorCode.CERTIFICATE_USED,
            f"KP certificate {cert.cert_id} is {cert.status}: only a shipped import can be rejected",
        )
    for parcel_id in cert.parcels:
        parcel = get_diamond(call.store, parcel_id)
        assert parcel.status == IN_TRANSIT, "a shipped certificate's parcels are in transit"
        # Owner, custodian and country never changed while in transit, so
        # reactivating the parcel returns it to the exporter where it was.
        returned = replace(parcel, status=ACTIVE)
        _save_diamond(
            call, returned, "import_rejected", {"cert_id": cert.cert_id, "reason": reason}
        )
    save(call.store, kp_key(cert.cert_id), replace(cert, status=CERT_REJECTED))


# --- custody, split, merge, cut, grade, sell ---------------------------------


def transfer(call: Call, args: TransferArgs) -> None:
    diamond = _usable(call, args.asset_id, owner=call.sender_org.org_id)
    recipient = get_org(call.store, args.to_org)
    custody_only = args.custody_only
    require_unsanctioned_org(call.store, recipient)
    if diamond.kind == ROUGH and recipient.country != diamond.country:
        raise Rejected(
            ErrorCode.NO_KP_CERTIFICATE,
            f"rough {diamond.asset_id} cannot move from {diamond.country} to {recipient.country} without a KP certificate",
        )
    owner = diamond.owner if custody_only else recipient.org_id
    moved = replace(
        _with_actor(diamond, recipient.org_id),
        owner=owner,
        custodian=recipient.org_id,
        country=recipient.country,
    )
    _save_diamond(
        call, moved, "transferred", {"to_org": recipient.org_id, "custody_only": custody_only}
    )


def split(call: Call, args: SplitArgs) -> None:
    parcel = _usable(call, args.asset_id, owner=call.sender_org.org_id)
    _require_new_assets(call, args.outputs)
    outputs = [(output.asset_id, output.carats_points) for output in args.outputs]
    if parcel.kind != ROUGH:
        raise Rejected(
            ErrorCode.NOT_ROUGH, f"only rough parcels split; {parcel.asset_id} is {parcel.kind}"
        )
    total_points = sum(points for _, points in outputs)
    if total_points != parcel.carats_points:
        raise Rejected(
            ErrorCode.MASS_BALANCE,
            f"split of {parcel.asset_id} ({parcel.carats_points} points) into {total_points} points",
        )
    _consume(call, parcel, "split", [asset_id for asset_id, _ in outputs])
    for asset_id, points in outputs:
        child = _new_asset(call, asset_id, ROUGH, points, (parcel.asset_id,), parcel)
        _save_diamond(
            call, child, "split_from", {"parent": parcel.asset_id, "carats_points": points}
        )


def _consume(call: Call, diamond: Diamond, kind: str, outputs: list[str]) -> None:
    _save_diamond(call, replace(diamond, status=CONSUMED), kind, {"outputs": outputs})


def merge(call: Call, args: MergeArgs) -> None:
    input_ids = args.inputs
    output_id = args.output_id
    require_new(call.store, asset_key(output_id), f"asset {output_id}")
    parcels = [_usable(call, asset_id, owner=call.sender_org.org_id) for asset_id in input_ids]
    for parcel in parcels:
        if parcel.kind != ROUGH:
            raise Rejected(
                ErrorCode.NOT_ROUGH, f"only rough parcels merge; {parcel.asset_id} is {parcel.kind}"
            )
        if (parcel.country, parcel.custodian) != (parcels[0].country, parcels[0].custodian):
            raise Rejected(
                ErrorCode.WRONG_LOCATION,
                f"parcel {parcel.asset_id} is not held with {parcels[0].asset_id}",
            )
    total_points = sum(parcel.carats_points for parcel in parcels)
    if total_points > MAX_AMOUNT:
        raise Rejected(
            ErrorCode.LIMIT_EXCEEDED, f"merged parcel would weigh over {MAX_AMOUNT} points"
        )
    for parcel in parcels:
        _consume(call, parcel, "merged", [output_id])
    merged = _new_asset(call, output_id, ROUGH, total_points, tuple(sorted(input_ids)), parcels[0])
    _save_diamond(
        call, merged, "merged_from", {"parents": sorted(input_ids), "carats_points": total_points}
    )


def cut(call: Call, args: CutArgs) -> None:
    rough = _usable(call, args.asset_id, owner=call.sender_org.org_id)
    _require_new_assets(call, args.stones)
    stones = [(stone.asset_id, stone.carats_points) for stone in args.stones]
    require_role(call.sender_org, "manufacturer")
    if rough.kind != ROUGH:
        raise Rejected(ErrorCode.NOT_ROUGH, f"asset {rough.asset_id} is already polished")
    polished_points = sum(points for _, points in stones)
    if polished_points > rough.carats_points:
        raise Rejected(
            ErrorCode.MASS_BALANCE,
            f"cutting {rough.asset_id} ({rough.carats_points} points) cannot yield {polished_points} points",
        )
    max_yield_bp = call.config.max_cutting_yield_bp
    if polished_points * 10_000 > rough.carats_points * max_yield_bp:
        raise Rejected(
            ErrorCode.YIELD_EXCEEDED,
            f"cutting {rough.asset_id} yields {polished_points}/{rough.carats_points} points, over {max_yield_bp} bp",
        )
    _consume(call, rough, "cut", [asset_id for asset_id, _ in stones])
    for asset_id, points in stones:
        stone = _new_asset(call, asset_id, POLISHED, points, (rough.asset_id,), rough)
        _save_diamond(call, stone, "cut_from", {"parent": rough.asset_id, "carats_points": points})


def grade(call: Call, args: GradeArgs) -> None:
    stone = _usable(call, args.asset_id)
    report = GradingReport(
        report_id=args.report_id,
        lab=call.sender_org.org_id,
        asset_id=stone.asset_id,
        carats_points=args.carats_points,
        colour=args.colour,
        clarity=args.clarity,
        cut_grade=args.cut_grade,
        revoked=False,
        issued_height=call.block.height,
    )
    require_scope(call.sender_org, "grading_lab")
    if stone.kind != POLISHED:
        raise Rejected(
            ErrorCode.NOT_POLISHED,
            f"asset {stone.asset_id} is rough: only polished stones are graded",
        )
    if stone.custodian != report.lab:
        raise Rejected(
            ErrorCode.NOT_OWNER,
            f"stone {stone.asset_id} is held by {stone.custodian}, not {report.lab}: "
            "its owner hands it to the lab with a custody-only transfer",
        )
    _require_ungraded(call, stone)
    if report.carats_points != stone.carats_points:
        raise Rejected(
            ErrorCode.CARATS_MISMATCH,
            f"report {report.report_id} says {report.carats_points} points, stone {stone.asset_id} weighs {stone.carats_points}",
        )
    require_new(call.store, grading_key(report.report_id), f"grading report {report.report_id}")
    save(call.store, grading_key(report.report_id), report)
    graded = replace(_with_actor(stone, report.lab), grading_report=report.report_id)
    _save_diamond(call, graded, "graded", {"report_id": report.report_id})


def _require_ungraded(call: Call, stone: Diamond) -> None:
    """A stone is graded once; a revoked report is final (no laundering)."""
    if not stone.grading_report:
        return
    if get_grading(call.store, stone.grading_report).revoked:
        raise Rejected(
            ErrorCode.REVOKED_CERTIFICATE,
            f"grading report {stone.grading_report} of stone {stone.asset_id} was revoked: "
            "a revoked grading is final and the stone cannot be graded again",
        )
    raise Rejected(
        ErrorCode.DUPLICATE,
        f"stone {stone.asset_id} already carries grading report {stone.grading_report}",
    )


def sell(call: Call, args: SellArgs) -> None:
    stone = _usable(call, args.asset_id, owner=call.sender_org.org_id)
    buyer_ref = args.buyer_ref
    price_cents = args.price_cents
    require_role(call.sender_org, "retailer")
    if stone.kind != POLISHED:
        raise Rejected(
            ErrorCode.NOT_POLISHED, f"asset {stone.asset_id} is rough: retail sells polished stones"
        )
    if not stone.grading_report:
        raise Rejected(ErrorCode.NOT_GRADED, f"stone {stone.asset_id} has no grading report")
    if get_grading(call.store, stone.grading_report).revoked:
        raise Rejected(
            ErrorCode.REVOKED_CERTIFICATE, f"grading report {stone.grading_report} is revoked"
        )
    verdict = compliance(call.store, stone.asset_id, call.config.limits.max_trace_nodes)
    if not verdict["conflict_free"]:
        raise Rejected(ErrorCode.NOT_CONFLICT_FREE, _first_failure(verdict))
    sold = replace(stone, status=SOLD)
    _save_diamond(call, sold, "sold", {"buyer_ref": buyer_ref, "price_cents": price_cents})


def _first_failure(verdict: dict[str, object]) -> str:
    failures = verdict["failures"]
    assert isinstance(failures, list) and failures
    count = len(failures)
    first = failures[0]
    return f"link {first['asset_id']} fails {first['rule']}: {first['detail']}" + (
        f" (and {count - 1} more)" if count > 1 else ""
    )
