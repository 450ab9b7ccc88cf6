"""The method table: every contract method, its stateless parse and its handler.

Theory of operation
-------------------
A contract method is two functions.  Its *parse* function reads the
transaction's arguments through an :class:`~contracts.args.Args` reader
and the chain's :class:`~contracts.config.ContractLimits` alone (types,
ranges, required fields, identifier formats, list sizes, and rules that
relate arguments only to one another), calls ``done()`` and returns a
frozen dataclass of typed values, or raises
:class:`~contracts.errors.Rejected`.  Its *handler* takes the
:class:`~contracts.context.Call` and those typed values and does every
check that needs state or the block, then writes.

:data:`METHODS` is the one table from contract and method to that pair,
in the manner of h11's state table: execution (:func:`dispatch`) and
admission (contracts.admission) both look methods up here, so a method
cannot exist without its stateless check, and admission cannot run a
check that execution would not run in the same order.  Execution parses
first, then, for the methods marked ``unsanctioned_sender``, refuses a
sanctioned sender, then runs the handler.

The parse functions read ``ContractLimits`` but nothing else of the chain
config: the limits are written by genesis and no transaction writes the
config record, so they are the same at admission and at execution.
Everything governance or a regulator can change (members, keys, roles,
sanctions, Kimberley Process participants, the cutting yield) and
everything that depends on the block height is checked by the handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from contracts import (
    diamond_args,
    diamond_regulator,
    diamonds,
    food,
    food_args,
    membership,
    membership_args,
)
from contracts.args import Args
from contracts.config import ContractLimits
from contracts.context import Call
from contracts.errors import ErrorCode, Rejected
from contracts.orgs import require_unsanctioned_org

Parsed = TypeVar("Parsed")


@dataclass(frozen=True, slots=True)
class Method(Generic[Parsed]):
    """One contract method; see the module docstring."""

    parse: Callable[[Args, ContractLimits], Parsed]
    run: Callable[[Call, Parsed], None]
    # Refuse a sanctioned sender (or one in a sanctioned country) once the
    # arguments parse and before the handler reads anything else.  The
    # regulator actions check it themselves, after their own checks.
    unsanctioned_sender: bool

    def read(self, raw: dict[str, object], limits: ContractLimits) -> Parsed:
        """Run the stateless checks; return the typed arguments or raise ``Rejected``."""
        reader = Args(raw, limits)
        parsed = self.parse(reader, limits)
        assert reader.finished, "a parse function reads every argument and calls done()"
        return parsed

    def execute(self, call: Call) -> None:
        parsed = self.read(call.tx.args, call.config.limits)
        if self.unsanctioned_sender:
            require_unsanctioned_org(call.store, call.sender_org)
        self.run(call, parsed)


def _method(
    parse: Callable[[Args, ContractLimits], Parsed],
    run: Callable[[Call, Parsed], None],
    *,
    unsanctioned_sender: bool,
) -> Method[Any]:
    """Pair a parse function with its handler, checking that their types agree.

    A function rather than ``Method(...)`` in the table because there the
    table's element type would let mypy infer ``Parsed`` as ``Any`` and
    accept a handler that takes another method's arguments.
    """
    method: Method[Parsed] = Method(parse, run, unsanctioned_sender)
    return method


_d = diamond_args
_r = diamond_regulator
_f = food_args
_m = membership_args

# fmt: off
METHODS: Mapping[str, Mapping[str, Method[Any]]] = {
    "membership": {
        "propose":        _method(_m.parse_propose, membership.propose, unsanctioned_sender=True),
        "vote":           _method(_m.parse_vote, membership.vote, unsanctioned_sender=True),
        "revoke_own_key": _method(_m.parse_revoke_own_key, membership.revoke_own_key, unsanctioned_sender=False),
    },
    "diamonds": {
        "register_mine":          _method(_d.parse_register_mine, diamonds.register_mine, unsanctioned_sender=True),
        "set_mine_accreditation": _method(_d.parse_set_mine_accreditation, diamonds.set_mine_accreditation, unsanctioned_sender=True),
        "extract":                _method(_d.parse_extract, diamonds.extract, unsanctioned_sender=True),
        "issue_kp_certificate":   _method(_d.parse_issue_kp_certificate, diamonds.issue_kp_certificate, unsanctioned_sender=True),
        "ship":                   _method(_d.parse_ship, diamonds.ship, unsanctioned_sender=True),
        "confirm_import":         _method(_d.parse_confirm_import, diamonds.confirm_import, unsanctioned_sender=True),
        "reject_import":          _method(_d.parse_reject_import, diamonds.reject_import, unsanctioned_sender=True),
        "transfer":               _method(_d.parse_transfer, diamonds.transfer, unsanctioned_sender=True),
        "split":                  _method(_d.parse_split, diamonds.split, unsanctioned_sender=True),
        "merge":                  _method(_d.parse_merge, diamonds.merge, unsanctioned_sender=True),
        "cut":                    _method(_d.parse_cut, diamonds.cut, unsanctioned_sender=True),
        "grade":                  _method(_d.parse_grade, diamonds.grade, unsanctioned_sender=True),
        "sell":                   _method(_d.parse_sell, diamonds.sell, unsanctioned_sender=True),
        "sanction":               _method(_d.parse_sanction, _r.sanction, unsanctioned_sender=False),
        "lift_sanction":          _method(_d.parse_lift_sanction, _r.lift_sanction, unsanctioned_sender=False),
        "freeze":                 _method(_d.parse_freeze, _r.freeze, unsanctioned_sender=False),
        "unfreeze":               _method(_d.parse_freeze, _r.unfreeze, unsanctioned_sender=False),
        "revoke_certificate":     _method(_d.parse_revoke_certificate, _r.revoke_certificate, unsanctioned_sender=False),
    },
    "food": {
        "harvest":            _method(_f.parse_harvest, food.harvest, unsanctioned_sender=True),
        "process":            _method(_f.parse_process, food.process, unsanctioned_sender=True),
        "ship":               _method(_f.parse_ship, food.ship, unsanctioned_sender=True),
        "receive":            _method(_f.parse_receive, food.receive, unsanctioned_sender=True),
        "certify":            _method(_f.parse_certify, food.certify, unsanctioned_sender=True),
        "revoke_certificate": _method(_f.parse_revoke_certificate, food.revoke_certificate, unsanctioned_sender=True),
        "recall":             _method(_f.parse_recall, food.recall, unsanctioned_sender=True),
    },
}
# fmt: on


def lookup(contract: str, method: str) -> Method[Any]:
    """The table entry, or ``unknown_contract`` / ``unknown_method``."""
    methods = METHODS.get(contract)
    if methods is None:
        raise Rejected(ErrorCode.UNKNOWN_CONTRACT, f"no contract {contract!r}")
    entry = methods.get(method)
    if entry is None:
        raise Rejected(ErrorCode.UNKNOWN_METHOD, f"{contract} has no method {method!r}")
    return entry


def dispatch(call: Call) -> None:
    """Run the transaction's method: stateless parse, sender check, handler."""
    lookup(call.tx.contract, call.tx.method).execute(call)
