"""``provenet validators`` and ``provenet governance``: the governed validator set.

    provenet validators list (--net DIR | --node URL --genesis FILE) [--json]
    provenet validators remove NAME --net DIR --as ORG
    provenet governance vote PROPOSAL --as ORG (--net DIR | --node URL ...)

``validators list`` prints the set in state (the membership pack's
``validators`` query, contracts/validators.py).  ``validators remove``
proposes removing the validator whose consensus key is in
``nodes/NAME/node.key`` and prints the proposal id; each organisation then
votes with ``governance vote``.  The removal orders blocks from the height
consensus.epochs computes once the vote passes.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from node.ops.cli_client import SubParsers, add_connection, make_client
from node.ops.cli_client import _run as run_client
from node.ops.cli_client import _say as say
from node.sdk.client import DEFAULT_WAIT_S, ProvenetClient
from node.sdk.errors import TransactionRejected
from node.sdk.keys import load_identity
from node.sdk.schema import ConfigError


def add_validator_commands(subparsers: SubParsers) -> None:
    validators = subparsers.add_parser("validators", help="the validator set in state")
    commands = validators.add_subparsers(title="commands", metavar="COMMAND")
    listing = commands.add_parser("list", help="the validators in force after the latest block")
    listing.add_argument("--json", action="store_true", help="print the query's JSON")
    add_connection(listing, signing=False)
    listing.set_defaults(handler=_list)
    remove = commands.add_parser("remove", help="propose removing validator NAME")
    remove.add_argument("name", metavar="NAME", help="the node name (nodes/NAME/node.key)")
    add_connection(remove, signing=True)
    remove.set_defaults(handler=_remove)

    governance = subparsers.add_parser("governance", help="vote on membership proposals")
    votes = governance.add_subparsers(title="commands", metavar="COMMAND")
    vote = votes.add_parser("vote", help="approve proposal PROPOSAL as ORG")
    vote.add_argument("proposal", metavar="PROPOSAL", help="the proposal id (64 hex digits)")
    vote.add_argument("--reject", action="store_true", help="vote against it")
    add_connection(vote, signing=True)
    vote.set_defaults(handler=_vote)


def format_validators(answer: dict[str, Any]) -> str:
    rows = [("id", "org", "key", "tls identity", "peer", "api")]
    for v in answer.get("validators", []):
        key = str(v.get("public_key", ""))
        rows.append(
            (
                str(v.get("validator_id")),
                str(v.get("org_id")),
                key[:16] + ("..." if len(key) > 16 else ""),
                str(v.get("tls_identity")),
                str(v.get("peer_address")),
                str(v.get("api_address")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(f"{len(rows) - 1} validators; the next gets id {answer.get('next_id')}")
    return "\n".join(line.rstrip() for line in lines)


def _list(args: argparse.Namespace) -> int:
    return run_client(_print_list(make_client(args), args))


async def _print_list(client: ProvenetClient, args: argparse.Namespace) -> int:
    async with client:
        answer = await client.query("membership", "validators", {})
    if not isinstance(answer, dict) or not answer.get("validators"):
        raise ConfigError(
            "this network's genesis lists no governed validators: its set is the "
            "genesis.json one, fixed"
        )
    say(json.dumps(answer, indent=2, sort_keys=True) if args.json else format_validators(answer))
    return 0


def _signing_client(args: argparse.Namespace) -> ProvenetClient:
    if args.net is None or args.org is None:
        raise ConfigError("say the network and who signs: --net DIR --as ORG")
    return make_client(args, args.org)


def _remove(args: argparse.Namespace) -> int:
    key_file = args.net / "nodes" / args.name / "node.key"
    key = load_identity(key_file).public_key
    params: dict[str, object] = {"action": "remove_validator", "params": {"key": key}}
    return run_client(_file(_signing_client(args), "propose", params))


def _vote(args: argparse.Namespace) -> int:
    fields: dict[str, object] = {"proposal_id": args.proposal}
    if args.reject:
        fields["approve"] = False
    return run_client(_file(_signing_client(args), "vote", fields))


async def _file(client: ProvenetClient, method: str, fields: dict[str, object]) -> int:
    async with client:
        try:
            receipt = await client.submit("membership", method, fields, timeout_s=DEFAULT_WAIT_S)
        except TransactionRejected as refusal:
            say(json.dumps(refusal.result, indent=2, sort_keys=True, default=str))
            return 1
    for event in receipt.get("events", []) or []:
        attributes = event.get("attributes", {}) if isinstance(event, dict) else {}
        if "proposal_id" in attributes:
            say(f"{event.get('kind')}: proposal {attributes['proposal_id']}")
    say(f"{receipt.get('status')} at height {receipt.get('height')}")
    return 0
