"""Read-only queries: ``query(state, contract, name, args) -> dict``.

Theory of operation
-------------------
A query is a pure function of state.  It reads through a
:class:`~contracts.buffer.TxBuffer` that is never applied, so it cannot
write, and whose step budget (``max_query_steps``) bounds its work; DAG
walks are further bounded by ``max_trace_nodes`` and answer with a
``truncated`` flag.  The answer is ``{"ok": True, "result": {...}}`` or
``{"ok": False, "error": code, "message": ...}`` with the same stable
error codes transactions use, and is codec-encodable.
"""

from __future__ import annotations

from dataclasses import asdict

from contracts import diamond_compliance, diamond_scope, food_queries
from contracts.args import Args
from contracts.buffer import TxBuffer
from contracts.config import CONFIG_KEY, ChainConfig, load_config
from contracts.diamond_records import get_diamond, get_grading, get_kp, get_mine
from contracts.errors import ErrorCode, Rejected
from contracts.food_records import get_certificate, get_lot
from contracts.membership import Proposal, proposal_key
from contracts.orgs import KeyRecord, get_org, key_key, nonce_key
from contracts.records import load, load_int
from contracts.state import ReadableState
from contracts.validators import validator_set


def query(
    state: ReadableState,
    contract: str,
    name: str,
    args: dict[str, object],
    max_steps: int | None = None,
) -> dict[str, object]:
    """Answer one query; see the module docstring.

    ``max_steps`` lowers the chain's ``max_query_steps`` for this call (a
    node bounds how long one client's query may hold it).  The answer says
    how many ``steps`` the query took, refused or not.
    """
    if not isinstance(contract, str) or not isinstance(name, str) or not isinstance(args, dict):
        raise TypeError("query(state, contract: str, name: str, args: dict)")
    config = load_config(state.get(CONFIG_KEY))
    budget = config.limits.max_query_steps
    if max_steps is not None:
        budget = min(budget, max_steps)
    view = TxBuffer(state, budget, 0)
    reader = Args(args, config.limits)
    try:
        match contract:
            case "membership":
                result = _membership(view, name, reader)
            case "diamonds":
                result = _diamonds(view, config, name, reader)
            case "food":
                result = _food(view, config, name, reader)
            case _:
                raise Rejected(ErrorCode.UNKNOWN_CONTRACT, f"no contract {contract!r}")
        reader.done()
    except Rejected as refusal:
        return {
            "ok": False,
            "error": str(refusal.code),
            "message": refusal.message,
            "steps": view.steps,
        }
    return {"ok": True, "result": result, "steps": view.steps}


def _unknown(contract: str, name: str) -> Rejected:
    return Rejected(ErrorCode.UNKNOWN_QUERY, f"{contract} has no query {name!r}")


def _membership(view: TxBuffer, name: str, args: Args) -> dict[str, object]:
    match name:
        case "org":
            return asdict(get_org(view, args.ident("org_id")))
        case "key":
            record = load(view, key_key(args.key("key")), KeyRecord)
            if record is None:
                raise Rejected(ErrorCode.UNKNOWN_KEY, "no such key")
            return asdict(record)
        case "nonce":
            return {"next_nonce": load_int(view, nonce_key(args.key("key")))}
        case "validators":
            validators = validator_set(view)
            if validators is None:
                raise Rejected(ErrorCode.VALIDATORS_NOT_GOVERNED, "no validator set in state")
            return validators.to_fields()
        case "proposal":
            proposal = load(view, proposal_key(args.digest_hex("proposal_id")), Proposal)
            if proposal is None:
                raise Rejected(ErrorCode.UNKNOWN_PROPOSAL, "no such proposal")
            return asdict(proposal)
        case _:
            raise _unknown("membership", name)


def _diamonds(view: TxBuffer, config: ChainConfig, name: str, args: Args) -> dict[str, object]:
    limits = config.limits
    match name:
        case "asset":
            return asdict(get_diamond(view, args.ident("asset_id")))
        case "mine":
            return asdict(get_mine(view, args.ident("mine_id")))
        case "kp_certificate":
            return asdict(get_kp(view, args.ident("cert_id")))
        case "grading_report":
            return asdict(get_grading(view, args.ident("report_id")))
        case "trace":
            asset_id = args.ident("asset_id")
            return diamond_compliance.trace(
                view, asset_id, limits.max_trace_nodes, limits.max_events_per_node
            )
        case "compliance":
            return diamond_compliance.compliance(
                view, args.ident("asset_id"), limits.max_trace_nodes
            )
        case "provenance_scope":
            return diamond_scope.scope(view, args.ident("asset_id"), limits.max_trace_nodes)
        case "attestations":
            return diamond_scope.attestations(view, args.ident("asset_id"), limits.max_trace_nodes)
        case _:
            raise _unknown("diamonds", name)


def _food(view: TxBuffer, config: ChainConfig, name: str, args: Args) -> dict[str, object]:
    limits = config.limits
    match name:
        case "lot":
            return asdict(get_lot(view, args.ident("lot_id")))
        case "certificate":
            return asdict(get_certificate(view, args.ident("cert_id")))
        case "trace_back" | "trace_forward":
            direction = "back" if name == "trace_back" else "forward"
            lot_id = args.ident("lot_id")
            return food_queries.trace(
                view, lot_id, direction, limits.max_trace_nodes, limits.max_events_per_node
            )
        case "recall_impact":
            return food_queries.recall_impact(view, args.ident("lot_id"), limits.max_trace_nodes)
        case _:
            raise _unknown("food", name)
