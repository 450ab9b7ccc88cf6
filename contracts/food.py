"""Contract ``food``: the food traceability and recall pack (EPCIS-style).

Theory of operation
-------------------
Each method is one EPCIS business step on lots measured in grams:

* ``harvest`` (commissioning): a supplier creates a lot;
* ``process`` (a TransformationEvent): a manufacturer consumes part or all
  of several lots and produces several new lots; the output mass may not
  exceed the mass consumed, so quantity is never created (the difference
  is waste or water loss); every output's parents are all the inputs;
* ``ship`` and ``receive`` (shipping / receiving): ownership and custody
  pass to the receiver only when it confirms receipt; a shipment may
  claim certificates (``organic``...), each of which must be valid now;
* ``certify`` and ``revoke_certificate``: a certifier whose scope matches
  the kind attests a lot until an expiry height;
* ``recall``: a regulator or a food_safety certifier recalls a lot.  A
  recalled lot, and every lot made from it however many steps downstream,
  can no longer be shipped or processed (``recalled``); the
  ``recall_impact`` query lists them all with their holders.

Each handler receives its arguments already read and typed by its parse
function in contracts.food_args (paired in contracts.methods).
"""

from __future__ import annotations

from dataclasses import replace

from contracts.context import Call
from contracts.errors import ErrorCode, Rejected
from contracts.food_args import (
    CertifyArgs,
    HarvestArgs,
    LotArgs,
    ProcessArgs,
    RecallArgs,
    RevokeCertificateArgs,
    ShipArgs,
)
from contracts.food_queries import recalled_upstream
from contracts.food_records import (
    ACTIVE,
    CONSUMED,
    IN_TRANSIT,
    PACK,
    FoodCertificate,
    Lot,
    cert_key,
    child_prefix,
    get_certificate,
    get_lot,
    lot_key,
)
from contracts.orgs import get_org, require_role, require_scope, require_unsanctioned_org
from contracts.provenance import record_event
from contracts.records import save

_EDGE_MARKER = b"\xc0"  # the canonical encoding of nil: an edge has no value


def _save_lot(call: Call, lot: Lot, kind: str, attributes: dict[str, object]) -> None:
    record_event(call, PACK, lot.lot_id, lot.event_count, kind, attributes)
    save(call.store, lot_key(lot.lot_id), replace(lot, event_count=lot.event_count + 1))


def _require_new_lot(call: Call, lot_id: str) -> None:
    if call.store.get(lot_key(lot_id)) is not None:
        raise Rejected(ErrorCode.DUPLICATE, f"lot {lot_id} already exists")


def _held(call: Call, lot_id: str) -> Lot:
    """A lot the sender owns and holds, active and clear of any recall."""
    lot = get_lot(call.store, lot_id)
    if lot.owner != call.sender_org.org_id or lot.custodian != call.sender_org.org_id:
        raise Rejected(
            ErrorCode.NOT_OWNER, f"lot {lot_id} is owned by {lot.owner} and held by {lot.custodian}"
        )
    if lot.status != ACTIVE:
        raise Rejected(ErrorCode.NOT_AVAILABLE, f"lot {lot_id} is {lot.status}")
    recalled_upstream(call.store, lot_id, call.config.limits.max_trace_nodes)
    return lot


def _new_lot(
    call: Call, lot_id: str, product: str, mass_grams: int, parents: tuple[str, ...]
) -> Lot:
    org_id = call.sender_org.org_id
    return Lot(
        lot_id,
        product,
        mass_grams,
        org_id,
        org_id,
        ACTIVE,
        "",
        False,
        "",
        parents,
        (),
        0,
        call.block.height,
    )


def harvest(call: Call, args: HarvestArgs) -> None:
    lot_id, product, mass_grams = args.lot_id, args.product, args.mass_grams
    require_role(call.sender_org, "supplier")
    _require_new_lot(call, lot_id)
    lot = _new_lot(call, lot_id, product, mass_grams, ())
    _save_lot(call, lot, "harvested", {"product": product, "mass_grams": mass_grams})


def process(call: Call, args: ProcessArgs) -> None:
    inputs = [(_held(call, use.lot_id), use.mass_grams) for use in args.inputs]
    for new_lot in args.outputs:
        _require_new_lot(call, new_lot.lot_id)
    outputs = [(lot.lot_id, lot.product, lot.mass_grams) for lot in args.outputs]
    require_role(call.sender_org, "manufacturer")
    for lot, used_grams in inputs:
        if used_grams > lot.mass_grams:
            raise Rejected(
                ErrorCode.MASS_BALANCE,
                f"lot {lot.lot_id} holds {lot.mass_grams} g, not {used_grams} g",
            )
    consumed_grams = sum(used for _, used in inputs)
    produced_grams = sum(mass for _, _, mass in outputs)
    if produced_grams > consumed_grams:
        raise Rejected(
            ErrorCode.MASS_BALANCE, f"processing makes {produced_grams} g from {consumed_grams} g"
        )
    parents = tuple(sorted(lot.lot_id for lot, _ in inputs))
    output_ids = [lot_id for lot_id, _, _ in outputs]
    for lot, used_grams in inputs:
        remaining = lot.mass_grams - used_grams
        updated = replace(lot, mass_grams=remaining, status=CONSUMED if remaining == 0 else ACTIVE)
        _save_lot(
            call, updated, "transformed_input", {"mass_grams": used_grams, "outputs": output_ids}
        )
        for lot_id in output_ids:
            call.store.put(child_prefix(lot.lot_id) + lot_id.encode(), _EDGE_MARKER)
    for lot_id, product, mass_grams in outputs:
        lot = _new_lot(call, lot_id, product, mass_grams, parents)
        _save_lot(
            call,
            lot,
            "transformed_output",
            {"product": product, "mass_grams": mass_grams, "inputs": list(parents)},
        )


def ship(call: Call, args: ShipArgs) -> None:
    lot = _held(call, args.lot_id)
    receiver = get_org(call.store, args.to_org)
    claims = args.claims
    require_unsanctioned_org(call.store, receiver)
    for kind in claims:
        _require_valid_claim(call, lot, kind)
    shipped = replace(lot, status=IN_TRANSIT, destination=receiver.org_id)
    _save_lot(call, shipped, "shipped", {"to_org": receiver.org_id, "claims": list(claims)})


def _require_valid_claim(call: Call, lot: Lot, kind: str) -> None:
    """A claimed certificate kind must be held by the lot, unrevoked and unexpired."""
    found = [get_certificate(call.store, cert_id) for cert_id in lot.certificates]
    matching = [cert for cert in found if cert.kind == kind]
    if not matching:
        raise Rejected(ErrorCode.MISSING_CERTIFICATE, f"lot {lot.lot_id} has no {kind} certificate")
    live = [cert for cert in matching if not cert.revoked]
    if not live:
        raise Rejected(
            ErrorCode.REVOKED_CERTIFICATE, f"lot {lot.lot_id}'s {kind} certificate is revoked"
        )
    if all(call.block.height > cert.expiry_height for cert in live):
        raise Rejected(
            ErrorCode.EXPIRED_CERTIFICATE, f"lot {lot.lot_id}'s {kind} certificate has expired"
        )


def receive(call: Call, args: LotArgs) -> None:
    lot = get_lot(call.store, args.lot_id)
    if lot.status != IN_TRANSIT:
        raise Rejected(ErrorCode.NOT_AVAILABLE, f"lot {lot.lot_id} is {lot.status}, not in transit")
    if lot.destination != call.sender_org.org_id:
        raise Rejected(
            ErrorCode.UNAUTHORIZED, f"lot {lot.lot_id} is addressed to {lot.destination}"
        )
    receiver = call.sender_org.org_id
    received = replace(lot, status=ACTIVE, owner=receiver, custodian=receiver, destination="")
    _save_lot(call, received, "received", {"from_org": lot.owner})


def certify(call: Call, args: CertifyArgs) -> None:
    cert_id = args.cert_id
    lot = get_lot(call.store, args.lot_id)
    kind = args.kind
    expiry_height = args.expiry_height
    require_scope(call.sender_org, kind)
    if call.store.get(cert_key(cert_id)) is not None:
        raise Rejected(ErrorCode.DUPLICATE, f"certificate {cert_id} already exists")
    if expiry_height <= call.block.height:
        raise Rejected(
            ErrorCode.EXPIRED_CERTIFICATE, f"certificate {cert_id} would already be expired"
        )
    if len(lot.certificates) >= call.config.limits.max_inputs:
        raise Rejected(ErrorCode.LIMIT_EXCEEDED, f"lot {lot.lot_id} holds too many certificates")
    cert = FoodCertificate(
        cert_id, kind, lot.lot_id, call.sender_org.org_id, expiry_height, False, call.block.height
    )
    save(call.store, cert_key(cert_id), cert)
    certified = replace(lot, certificates=(*lot.certificates, cert_id))
    _save_lot(
        call,
        certified,
        "certified",
        {"cert_id": cert_id, "kind": kind, "expiry_height": expiry_height},
    )


def revoke_certificate(call: Call, args: RevokeCertificateArgs) -> None:
    cert = get_certificate(call.store, args.cert_id)
    reason = args.reason
    if call.sender_org.org_id != cert.issuer:
        require_role(call.sender_org, "regulator")
    if cert.revoked:
        raise Rejected(
            ErrorCode.REVOKED_CERTIFICATE, f"certificate {cert.cert_id} is already revoked"
        )
    save(call.store, cert_key(cert.cert_id), replace(cert, revoked=True))
    call.emit("certificate_revoked", {"cert_id": cert.cert_id, "reason": reason})


def recall(call: Call, args: RecallArgs) -> None:
    lot = get_lot(call.store, args.lot_id)
    reason = args.reason
    if not call.sender_org.has_role("regulator"):
        require_scope(call.sender_org, "food_safety")
    if lot.recalled:
        raise Rejected(ErrorCode.DUPLICATE, f"lot {lot.lot_id} is already recalled")
    recalled = replace(lot, recalled=True, recall_reason=reason)
    _save_lot(call, recalled, "recalled", {"reason": reason})
