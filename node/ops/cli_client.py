"""Participant commands of ``provenet``: tx, query, trace, demo (through node/sdk).

    provenet tx CONTRACT METHOD ARGS_JSON (--net DIR --as ORG | --node URL --genesis FILE
                --key FILE [--ca FILE]) [--no-wait] [--timeout-s S] [--expiry-height H]
    provenet query CONTRACT NAME ARGS_JSON (--net DIR | --node URL --genesis FILE [--ca FILE])
    provenet trace ASSET (--net DIR | --node URL --genesis FILE [--ca FILE]) [--json]
    provenet state KEY [--hex] [--prove [--min-height H]] (--net DIR | --node URL --genesis FILE)
    provenet demo diamonds|food (--net DIR | --node URL --genesis FILE [--ca FILE] [--keys DIR])

With ``--net`` everything comes from the network directory (node URLs, CA,
genesis, ``orgs/<org>.key``); ``--node NAME`` then names the node to try
first.  Without it, ``--node URL`` (repeatable: later ones are failover)
needs the genesis file, whose validator set every commit proof is checked
against, and the CA file when the nodes use TLS.

ARGS_JSON is a JSON object.  Quantities are integers (carats in points,
mass in grams): a JSON float is refused, since the ledger has no floats.
Bytes are written ``{"$bytes": "<hex>"}``.

``tx`` prints the verified receipt as JSON and exits 1 when the contract
refused the transaction; every node error prints one line and exits 1.

``state`` reads one state key (its text, or its hex with ``--hex``) and
prints its value (hex, and the decoded record when the value is canonical
msgpack) or ``absent``; with ``--prove`` the value is checked against a
certified state root (node/sdk/state_proof.py) and the last line says
``proven at height H``; a proof that does not hold exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeAlias

from consensus.codec import DecodeError, decode
from contracts.tx import args_problem
from node.ops import demo
from node.sdk.client import DEFAULT_WAIT_S, ProvenetClient
from node.sdk.errors import ProvenetError, TransactionRejected
from node.sdk.keys import load_identity
from node.sdk.render import format_trace
from node.sdk.schema import ConfigError

Handler = Callable[[argparse.Namespace], int]
# argparse keeps the subparsers class private; this is its documented use.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _say(text: str, stream: Any = None) -> None:
    (stream or sys.stdout).write(text + "\n")


def _dump(value: object) -> None:
    _say(json.dumps(value, indent=2, sort_keys=True))


# ------------------------------------------------------------------ registration


def add_client_commands(subparsers: SubParsers) -> None:
    """Register tx, query, trace and demo on the ``provenet`` subparsers."""
    _add_tx(subparsers)
    _add_query(subparsers)
    _add_trace(subparsers)
    _add_state(subparsers)
    _add_demo(subparsers)


def add_connection(parser: argparse.ArgumentParser, signing: bool, timeout_s: float = 10.0) -> None:
    """The options that say which network or nodes a participant command talks to."""
    group = parser.add_argument_group("network")
    group.add_argument("--net", type=Path, metavar="DIR", help="network directory (net init)")
    group.add_argument(
        "--node", action="append", metavar="URL", default=[],
        help="node API URL (repeat for failover); with --net, a node name tried first",
    )  # fmt: skip
    group.add_argument("--genesis", type=Path, metavar="FILE", help="genesis.json (with --node)")
    group.add_argument("--ca", type=Path, metavar="FILE", help="network CA (with --node, TLS)")
    group.add_argument("--timeout-s", type=float, default=timeout_s, metavar="S",
                       help=f"per-request timeout (default {timeout_s:g})")  # fmt: skip
    if signing:
        group.add_argument("--as", dest="org", metavar="ORG", help="sign as ORG (with --net)")
        group.add_argument("--key", type=Path, metavar="FILE", help="participant key file")


def _add_tx(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("tx", help="sign and submit a transaction, print its receipt")
    parser.add_argument("contract", metavar="CONTRACT")
    parser.add_argument("method", metavar="METHOD")
    parser.add_argument("args_json", metavar="ARGS_JSON")
    parser.add_argument("--no-wait", dest="wait", action="store_false",
                        help="return once a node accepted it")  # fmt: skip
    parser.add_argument("--wait-s", type=float, default=DEFAULT_WAIT_S, metavar="S",
                        help=f"longest wait for the commit (default {DEFAULT_WAIT_S:g})")  # fmt: skip
    parser.add_argument("--expiry-height", type=int, metavar="H",
                        help="last height the transaction may execute at")  # fmt: skip
    add_connection(parser, signing=True)
    parser.set_defaults(handler=_tx)


def _add_query(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("query", help="run a read-only contract query")
    parser.add_argument("contract", metavar="CONTRACT")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("args_json", metavar="ARGS_JSON", nargs="?", default="{}")
    add_connection(parser, signing=False)
    parser.set_defaults(handler=_query)


def _add_trace(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("trace", help="a diamond's provenance and compliance verdict")
    parser.add_argument("asset", metavar="ASSET")
    parser.add_argument("--json", action="store_true", help="print the raw trace and verdict")
    add_connection(parser, signing=False)
    parser.set_defaults(handler=_trace)


def _add_state(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("state", help="one state key's value, proven on request")
    # Not "key": that is the signing key file of the connection options.
    parser.add_argument("state_key", metavar="KEY", help="the key as text (as hex with --hex)")
    parser.add_argument("--hex", action="store_true", help="KEY is hex")
    parser.add_argument("--prove", action="store_true",
                        help="check the value against a certified state root")  # fmt: skip
    parser.add_argument("--min-height", type=int, metavar="H",
                        help="with --prove, refuse an answer as of a lower height")  # fmt: skip
    add_connection(parser, signing=False)
    parser.set_defaults(handler=_state)


def _add_demo(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("demo", help="run the diamond or food scenario end to end")
    parser.add_argument("scenario", choices=sorted(demo.SCENARIOS), metavar="diamonds|food")
    parser.add_argument("--keys", type=Path, metavar="DIR",
                        help="directory of <org>.key files (with --node; default: beside genesis, orgs/)")  # fmt: skip
    add_connection(parser, signing=False)
    parser.set_defaults(handler=_demo)


# ------------------------------------------------------------------ building clients


def make_client(args: argparse.Namespace, org_id: str | None = None) -> ProvenetClient:
    """The SDK client the connection options describe, signing as ``org_id`` if given."""
    key_file: Path | None = getattr(args, "key", None)
    if args.net is not None:
        first = args.node[0] if args.node else None
        client = ProvenetClient.from_network_dir(args.net, org_id, first, args.timeout_s)
        if key_file is not None and org_id is None:
            client.identity = load_identity(key_file)
        return client
    if not args.node:
        raise ConfigError("say which network: --net DIR, or --node URL with --genesis FILE")
    if args.genesis is None:
        raise ConfigError("--node needs --genesis FILE: proofs are checked against its validators")
    if org_id is not None:
        key_file = _keys_dir(args) / f"{org_id}.key"
    return ProvenetClient.from_url(args.node, key_file, args.genesis, args.ca, args.timeout_s)


def _keys_dir(args: argparse.Namespace) -> Path:
    keys: Path | None = getattr(args, "keys", None)
    return keys if keys is not None else Path(args.genesis).resolve().parent / "orgs"


def parse_args_json(text: str) -> dict[str, object]:
    """ARGS_JSON as transaction arguments: no floats, ``{"$bytes": hex}`` for bytes."""
    try:
        value = json.loads(
            text, parse_float=_refuse_float, parse_constant=_refuse_float, object_hook=_bytes_hook
        )
    except json.JSONDecodeError as exc:
        raise ConfigError(f"ARGS_JSON is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError("ARGS_JSON must be a JSON object")
    problem = args_problem(value)
    if problem is not None:
        raise ConfigError(f"ARGS_JSON {problem}")
    return value


def _refuse_float(text: str) -> object:
    raise ConfigError(
        f"ARGS_JSON holds the float {text}: use integers (carats in points, mass in grams)"
    )


def _bytes_hook(document: dict[str, Any]) -> object:
    if set(document) != {"$bytes"}:
        return document
    try:
        return bytes.fromhex(str(document["$bytes"]))
    except ValueError:
        raise ConfigError('ARGS_JSON: {"$bytes": ...} must hold hex') from None


def _run(work: Coroutine[Any, Any, int]) -> int:
    """Run one command's coroutine; a node's refusal is one line on stderr, exit 1."""
    try:
        return asyncio.run(work)
    except (TypeError, ValueError) as error:
        # The transaction could not be built from what was given (an
        # out-of-range expiry height, say, or a malformed key file): an
        # operator's mistake, one line.  First, as a ConfigError is both.
        _say(f"provenet: error: {error}", sys.stderr)
        return 1
    except ProvenetError as error:
        _say(f"provenet: error: {error.code}: {error.message}", sys.stderr)
        return 1


# ------------------------------------------------------------------ handlers


def _tx(args: argparse.Namespace) -> int:
    if args.net is not None and args.org is None and args.key is None:
        raise ConfigError("say who signs: --as ORG (or --key FILE)")
    if args.net is None and args.key is None:
        raise ConfigError("--node needs --key FILE to sign with")
    client = make_client(args, args.org if args.net is not None else None)
    return _run(_submit(client, args))


async def _submit(client: ProvenetClient, args: argparse.Namespace) -> int:
    tx_args = parse_args_json(args.args_json)
    async with client:
        try:
            result = await client.submit(
                args.contract,
                args.method,
                tx_args,
                wait=args.wait,
                timeout_s=args.wait_s,
                expiry_height=args.expiry_height,
            )
        except TransactionRejected as refusal:
            _dump(refusal.result)
            return 1
    _dump(result)
    return 0


def _query(args: argparse.Namespace) -> int:
    return _run(_run_query(make_client(args), args))


async def _run_query(client: ProvenetClient, args: argparse.Namespace) -> int:
    query_args = parse_args_json(args.args_json)
    async with client:
        _dump(await client.query(args.contract, args.name, query_args))
    return 0


def _trace(args: argparse.Namespace) -> int:
    return _run(_print_trace(make_client(args), args))


async def _print_trace(client: ProvenetClient, args: argparse.Namespace) -> int:
    async with client:
        trace = await client.trace(args.asset)
        compliance = await client.compliance(args.asset)
    if args.json:
        _dump({"trace": trace, "compliance": compliance})
    else:
        _say(format_trace(trace, compliance))
    return 0


def _state(args: argparse.Namespace) -> int:
    if args.hex:
        try:
            key = bytes.fromhex(args.state_key)
        except ValueError:
            raise ConfigError("--hex: KEY must be hex") from None
    else:
        key = args.state_key.encode()
    return _run(_print_state(make_client(args), key, args))


async def _print_state(client: ProvenetClient, key: bytes, args: argparse.Namespace) -> int:
    async with client:
        if args.prove:
            proven = await client.prove_state(key, args.min_height)
            value, footer = proven.value, f"proven at height {proven.height}"
        else:
            answer = await client.read_state(key)
            raw = answer.get("value")
            value = None if raw is None else bytes.fromhex(str(raw))
            footer = f"as of height {answer.get('height')}, unproven"
    _say(f"key {key!r}")
    _say("absent" if value is None else f"value {value.hex()}")
    if value is not None:
        # Records are canonical msgpack; any other value is shown as hex only.
        with contextlib.suppress(DecodeError):
            _say(f"record {json.dumps(_hexed(decode(value)), sort_keys=True)}")
    _say(footer)
    return 0


def _hexed(value: object) -> object:
    """A decoded record for printing: bytes as hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: _hexed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_hexed(item) for item in value]
    return value


def _demo(args: argparse.Namespace) -> int:
    make_client(args)  # checks the connection options before the scenario starts
    scenario = demo.SCENARIOS[args.scenario]
    return _run(_run_demo(scenario, args))


async def _run_demo(scenario: Callable[..., Awaitable[object]], args: argparse.Namespace) -> int:
    await scenario(lambda org_id: make_client(args, org_id), out=_say)
    return 0
