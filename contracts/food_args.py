"""The arguments of the food pack's methods, read without any state.

Theory of operation
-------------------
As in contracts.diamond_args: one parse function per method of contract
``food`` reads every argument, calls ``done()`` and returns a frozen
dataclass of typed values, or raises :class:`~contracts.errors.Rejected`
with ``invalid_argument`` or ``limit_exceeded``.  Nothing here reads state
or the block, so admission runs these functions before a transaction is
ordered and execution runs them again before the handler in
contracts.food checks what needs state (that lots exist, who holds them,
recalls, certificates).
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.args import Args, invalid
from contracts.config import ContractLimits
from contracts.food_records import CERT_KINDS


@dataclass(frozen=True, slots=True)
class HarvestArgs:
    lot_id: str
    product: str
    mass_grams: int


def parse_harvest(args: Args, limits: ContractLimits) -> HarvestArgs:
    parsed = HarvestArgs(args.ident("lot_id"), args.ident("product"), args.amount("mass_grams"))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class LotUse:
    """Grams of one input lot that a process step consumes."""

    lot_id: str
    mass_grams: int


@dataclass(frozen=True, slots=True)
class NewLot:
    lot_id: str
    product: str
    mass_grams: int


@dataclass(frozen=True, slots=True)
class ProcessArgs:
    inputs: tuple[LotUse, ...]
    outputs: tuple[NewLot, ...]


def _inputs(args: Args, limits: ContractLimits) -> tuple[LotUse, ...]:
    inputs: list[LotUse] = []
    for item in args.items("inputs", limits.max_inputs):
        reader = args.sub(item, "inputs item")
        lot_id = reader.ident("lot_id")
        used_grams = reader.amount("mass_grams")
        reader.done()
        inputs.append(LotUse(lot_id, used_grams))
    if len({use.lot_id for use in inputs}) != len(inputs):
        raise invalid("inputs repeat a lot")
    return tuple(inputs)


def _outputs(args: Args, limits: ContractLimits) -> tuple[NewLot, ...]:
    outputs: list[NewLot] = []
    for item in args.items("outputs", limits.max_outputs):
        reader = args.sub(item, "outputs item")
        outputs.append(
            NewLot(reader.ident("lot_id"), reader.ident("product"), reader.amount("mass_grams"))
        )
        reader.done()
    if len({lot.lot_id for lot in outputs}) != len(outputs):
        raise invalid("outputs repeat a lot")
    return tuple(outputs)


def parse_process(args: Args, limits: ContractLimits) -> ProcessArgs:
    parsed = ProcessArgs(_inputs(args, limits), _outputs(args, limits))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class ShipArgs:
    lot_id: str
    to_org: str
    claims: tuple[str, ...]  # certificate kinds, sorted


def parse_ship(args: Args, limits: ContractLimits) -> ShipArgs:
    parsed = ShipArgs(
        args.ident("lot_id"),
        args.ident("to_org"),
        args.word_list("claims", CERT_KINDS, optional=True),
    )
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class LotArgs:
    """A method that names one lot and nothing else (``receive``)."""

    lot_id: str


def parse_receive(args: Args, limits: ContractLimits) -> LotArgs:
    parsed = LotArgs(args.ident("lot_id"))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class CertifyArgs:
    cert_id: str
    lot_id: str
    kind: str
    expiry_height: int


def parse_certify(args: Args, limits: ContractLimits) -> CertifyArgs:
    parsed = CertifyArgs(
        args.ident("cert_id"),
        args.ident("lot_id"),
        args.choice("kind", CERT_KINDS),
        args.amount("expiry_height"),
    )
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class RevokeCertificateArgs:
    cert_id: str
    reason: str


def parse_revoke_certificate(args: Args, limits: ContractLimits) -> RevokeCertificateArgs:
    parsed = RevokeCertificateArgs(args.ident("cert_id"), args.text("reason"))
    args.done()
    return parsed


@dataclass(frozen=True, slots=True)
class RecallArgs:
    lot_id: str
    reason: str


def parse_recall(args: Args, limits: ContractLimits) -> RecallArgs:
    parsed = RecallArgs(args.ident("lot_id"), args.text("reason"))
    args.done()
    return parsed
