"""The arguments of the diamond pack's methods, read without any state.

Theory of operation
-------------------
Each method of contract ``diamonds`` has one parse function here: it takes
the :class:`~contracts.args.Args` reader over the transaction's arguments
and the chain's :class:`~contracts.config.ContractLimits`, reads every
argument (type, range, identifier format, list sizes, and the rules that
relate arguments to one another only), calls ``done()`` and returns a
frozen dataclass of typed values, or raises
:class:`~contracts.errors.Rejected` with ``invalid_argument`` or
``limit_exceeded``.  Nothing here reads state or the block, so admission
(contracts.admission) runs these very functions before a transaction is
ordered, and execution runs them again before the handler
(contracts.diamonds, contracts.diamond_regulator) does the checks that
need state.  The table in contracts.methods pairs each method with its
parse function.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.args import Args, invalid
from contracts.config import ContractLimits
from contracts.diamond_records import KP_HS_CODES
from contracts.orgs import SANCTION_KINDS

GRADE_TEXT_LIMIT = 32
CERTIFICATE_KINDS = frozenset({"kp", "grading"})


@dataclass(frozen=True, slots=True)
class NewAsset:
    """One asset a split or a cut creates."""

    asset_id: str
    carats_points: int


def _new_assets(args: Args, name: str, limits: ContractLimits) -> tuple[NewAsset, ...]:
    """Read a list of {asset_id, carats_points} for new assets."""
    outputs: list[NewAsset] = []
    for item in args.items(name, limits.max_outputs):
        reader = args.sub(item, f"{name} item")
        asset_id = reader.ident("asset_id")
        carats_points = reader.amount("carats_points")
        reader.done()
        outputs.append(NewAsset(asset_id, carats_points))
    if len({output.asset_id for output in outputs}) != len(outputs):
        raise invalid(f"{name} repeats an asset id")
    return tuple(outputs)


# --- mines and extraction ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterMineArgs:
    mine_id: str
    country: str
    operator: str


def parse_register_mine(args: Args, limits: ContractLimits) -> RegisterMineArgs:
    parsed = RegisterMineArgs(
        args.ident("mine_id"), args.country("country"), args.ident("operator")
    )
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class MineAccreditationArgs:
    mine_id: str
    accredited: bool


def parse_set_mine_accreditation(args: Args, limits: ContractLimits) -> MineAccreditationArgs:
    parsed = MineAccreditationArgs(args.ident("mine_id"), args.flag("accredited", default=True))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class ExtractArgs:
    mine_id: str
    parcel_id: str
    carats_points: int


def parse_extract(args: Args, limits: ContractLimits) -> ExtractArgs:
    parsed = ExtractArgs(
        args.ident("mine_id"), args.ident("parcel_id"), args.amount("carats_points")
    )
    args.done()
    return parsed


# --- Kimberley Process export and import -------------------------------------


@dataclass(frozen=True, slots=True)
class KpCertificateArgs:
    cert_id: str
    exporter: str
    importer: str
    origin_country: str
    destination_country: str
    parcels: tuple[str, ...]
    hs_code: str
    carats_points: int
    value_cents: int
    expiry_height: int


def parse_issue_kp_certificate(args: Args, limits: ContractLimits) -> KpCertificateArgs:
    parcels = args.ident_list("parcels", limits.max_inputs)
    parsed = KpCertificateArgs(
        cert_id=args.ident("cert_id"),
        exporter=args.ident("exporter"),
        importer=args.ident("importer"),
        origin_country=args.country("origin_country"),
        destination_country=args.country("destination_country"),
        parcels=parcels,
        hs_code=args.choice("hs_code", KP_HS_CODES),
        carats_points=args.amount("carats_points"),
        value_cents=args.amount("value_cents", minimum=0),
        expiry_height=args.amount("expiry_height"),
    )
    args.done()
    # KPCS: the certificate number starts with the issuing country's code.
    if not parsed.cert_id.startswith(parsed.origin_country):
        raise invalid(f"certificate id {parsed.cert_id} must start with {parsed.origin_country}")
    if parsed.origin_country == parsed.destination_country:
        raise invalid("an export certificate needs two different countries")
    return parsed


@dataclass(frozen=True, slots=True)
class CertificateArgs:
    """A method that names one KP certificate and nothing else (``ship``)."""

    cert_id: str


def parse_ship(args: Args, limits: ContractLimits) -> CertificateArgs:
    parsed = CertificateArgs(args.ident("cert_id"))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class ConfirmImportArgs:
    cert_id: str
    carats_points: int


def parse_confirm_import(args: Args, limits: ContractLimits) -> ConfirmImportArgs:
    parsed = ConfirmImportArgs(args.ident("cert_id"), args.amount("carats_points"))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class RejectImportArgs:
    cert_id: str
    reason: str


def parse_reject_import(args: Args, limits: ContractLimits) -> RejectImportArgs:
    parsed = RejectImportArgs(args.ident("cert_id"), args.text("reason"))
    args.done()
    return parsed


# --- custody, split, merge, cut, grade, sell ---------------------------------


@dataclass(frozen=True, slots=True)
class TransferArgs:
    asset_id: str
    to_org: str
    custody_only: bool


def parse_transfer(args: Args, limits: ContractLimits) -> TransferArgs:
    parsed = TransferArgs(
        args.ident("asset_id"), args.ident("to_org"), args.flag("custody_only", default=False)
    )
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class SplitArgs:
    asset_id: str
    outputs: tuple[NewAsset, ...]


def parse_split(args: Args, limits: ContractLimits) -> SplitArgs:
    parsed = SplitArgs(args.ident("asset_id"), _new_assets(args, "outputs", limits))
    args.done()
    if len(parsed.outputs) < 2:
        raise invalid("a split makes at least two parcels")
    return parsed


@dataclass(frozen=True, slots=True)
class MergeArgs:
    inputs: tuple[str, ...]
    output_id: str


def parse_merge(args: Args, limits: ContractLimits) -> MergeArgs:
    parsed = MergeArgs(args.ident_list("inputs", limits.max_inputs), args.ident("output_id"))
    args.done()
    if len(parsed.inputs) < 2:
        raise invalid("a merge takes at least two parcels")
    return parsed


@dataclass(frozen=True, slots=True)
class CutArgs:
    asset_id: str
    stones: tuple[NewAsset, ...]


def parse_cut(args: Args, limits: ContractLimits) -> CutArgs:
    parsed = CutArgs(args.ident("asset_id"), _new_assets(args, "stones", limits))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class GradeArgs:
    asset_id: str
    report_id: str
    carats_points: int
    colour: str
    clarity: str
    cut_grade: str


def _grade_text(args: Args, name: str) -> str:
    value = args.text(name)
    if not 1 <= len(value) <= GRADE_TEXT_LIMIT:
        raise invalid(f"{name} must be 1-{GRADE_TEXT_LIMIT} characters")
    return value


def parse_grade(args: Args, limits: ContractLimits) -> GradeArgs:
    parsed = GradeArgs(
        asset_id=args.ident("asset_id"),
        report_id=args.ident("report_id"),
        carats_points=args.amount("carats_points"),
        colour=_grade_text(args, "colour"),
        clarity=_grade_text(args, "clarity"),
        cut_grade=_grade_text(args, "cut_grade"),
    )
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class SellArgs:
    asset_id: str
    buyer_ref: str
    price_cents: int


def parse_sell(args: Args, limits: ContractLimits) -> SellArgs:
    parsed = SellArgs(
        args.ident("asset_id"), args.ident("buyer_ref"), args.amount("price_cents", minimum=0)
    )
    args.done()
    return parsed


# --- regulator actions -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SanctionArgs:
    kind: str  # country | mine | org
    target: str
    reason: str


def _sanction_target(args: Args) -> tuple[str, str]:
    kind = args.choice("kind", SANCTION_KINDS)
    target = args.country("target") if kind == "country" else args.ident("target")
    return kind, target


def parse_sanction(args: Args, limits: ContractLimits) -> SanctionArgs:
    kind, target = _sanction_target(args)
    parsed = SanctionArgs(kind, target, args.text("reason"))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class LiftSanctionArgs:
    kind: str
    target: str


def parse_lift_sanction(args: Args, limits: ContractLimits) -> LiftSanctionArgs:
    parsed = LiftSanctionArgs(*_sanction_target(args))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class FreezeArgs:
    """``freeze`` and ``unfreeze`` take the same arguments."""

    asset_id: str
    reason: str


def parse_freeze(args: Args, limits: ContractLimits) -> FreezeArgs:
    parsed = FreezeArgs(args.ident("asset_id"), args.text("reason", optional=True))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class RevokeCertificateArgs:
    kind: str  # kp | grading
    cert_id: str
    reason: str


def parse_revoke_certificate(args: Args, limits: ContractLimits) -> RevokeCertificateArgs:
    parsed = RevokeCertificateArgs(
        args.choice("kind", CERTIFICATE_KINDS), args.ident("cert_id"), args.text("reason")
    )
    args.done()
    return parsed
