"""``provenet bundle`` and ``provenet verify``: provenance bundles on the command line.

    provenet bundle ASSET -o FILE (--net DIR | --node URL --genesis FILE [--ca FILE])
    provenet verify FILE --genesis GENESIS [--json]
    provenet verify --compliance ASSET [--min-height H] (--net DIR | --node URL --genesis FILE
                    [--ca FILE]) [--json]

``bundle`` fetches the asset's bundle from a node (``GET /v1/bundle/ASSET``),
checks it against the genesis before writing anything (a node that serves a
bundle that does not verify is reported, and no file is written), and writes
the exact bytes to FILE.

``verify`` needs no node: it checks FILE against GENESIS alone and prints
the provenance, every Kimberley Process crossing and mine registration, and
the conflict-free verdict with the height it is proven as of (and the
block whose certificate proves it); or one line naming the proof that
failed.

``verify --compliance`` asks one node, trusted for nothing, for the
asset's verdict with every state read it depends on proven against one
certified state root, recomputes the verdict here
(node/sdk/compliance_proof.py) and prints it with the height it is as of
and the block whose certificate it was verified against; or one line
naming the proof that failed.

Exit codes of ``verify``: 0 the bundle (or proven verdict) verifies and
the asset is conflict-free; 3 it verifies but the asset is not
conflict-free; 1 a proof failed (or the file or genesis cannot be read).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, TypeAlias

from node.ops.cli_client import add_connection
from node.runtime.views import to_json
from node.sdk.bundle_verify import BundleError, Verdict, verify_bundle
from node.sdk.errors import ProvenetError
from node.sdk.genesis import NetworkGenesis, load_genesis
from node.sdk.schema import ConfigError

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_CONFLICT_FREE = 3


def _say(text: str, stream: Any = None) -> None:
    (stream or sys.stdout).write(text + "\n")


def add_bundle_commands(subparsers: SubParsers) -> None:
    """Register ``bundle`` and ``verify`` on the ``provenet`` subparsers."""
    bundle = subparsers.add_parser(
        "bundle",
        help="fetch a diamond's provenance bundle (every upstream transaction with proofs)",
    )
    bundle.add_argument("asset", metavar="ASSET")
    bundle.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    # Bundles are large: a longer per-request timeout than other participant commands.
    add_connection(bundle, signing=False, timeout_s=30.0)
    bundle.set_defaults(handler=_bundle)

    verify = subparsers.add_parser(
        "verify",
        help="check a provenance bundle offline against a genesis file, or (--compliance) "
        "a node's proven verdict",
    )
    verify.add_argument("file", type=Path, metavar="FILE", nargs="?")
    verify.add_argument(
        "--compliance",
        metavar="ASSET",
        help="verify ASSET's verdict as served, with proofs, by a node",
    )
    verify.add_argument(
        "--min-height",
        type=int,
        metavar="H",
        help="with --compliance: refuse a verdict as of a height below H (a stale node)",
    )
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    add_connection(verify, signing=False, timeout_s=30.0)
    verify.set_defaults(handler=_verify)


# ------------------------------------------------------------------ bundle


def _genesis_of(args: argparse.Namespace) -> NetworkGenesis:
    if args.net is not None:
        return load_genesis(args.net / "genesis.json")
    if args.genesis is None:
        raise ConfigError("--node needs --genesis FILE: the bundle is checked against it")
    return load_genesis(args.genesis)


def _bundle(args: argparse.Namespace) -> int:
    from node.ops.cli_client import make_client
    from node.sdk.bundle import fetch_bundle

    genesis = _genesis_of(args)
    client = make_client(args)

    async def fetch() -> bytes:
        async with client:
            return await fetch_bundle(client, args.asset)

    try:
        data = asyncio.run(fetch())
    except ProvenetError as error:
        _say(f"provenet: error: {error.code}: {error.message}", sys.stderr)
        return EXIT_FAILED
    try:
        verdict = verify_bundle(data, genesis)
    except BundleError as error:
        _say(f"provenet: error: the node's bundle does not verify: {error}", sys.stderr)
        return EXIT_FAILED
    _write_atomically(args.output, data)
    verdict_text = "conflict-free" if verdict.conflict_free else "NOT conflict-free"
    _say(
        f"wrote {args.output}: {len(data):,} bytes, {len(verdict.steps)} transactions of "
        f"{args.asset}'s provenance as of block {verdict.as_of_height}; verified against the "
        f"genesis: {verdict_text}"
    )
    _say(f"check it anywhere with: provenet verify {args.output} --genesis GENESIS")
    return EXIT_OK


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


# ------------------------------------------------------------------ verify


def _verify(args: argparse.Namespace) -> int:
    if args.compliance is not None:
        if args.file is not None:
            raise ConfigError("give FILE (a bundle) or --compliance ASSET, not both")
        return _verify_compliance(args)
    if args.file is None:
        raise ConfigError("say what to verify: FILE (a bundle) or --compliance ASSET")
    if args.genesis is None:
        raise ConfigError("verify FILE needs --genesis GENESIS: the bundle is checked against it")
    genesis = load_genesis(args.genesis)
    data = args.file.read_bytes()
    try:
        verdict = verify_bundle(data, genesis)
    except BundleError as error:
        if args.json:
            _say(json.dumps({"verified": False, "kind": error.kind, "message": error.message}))
        _say(f"provenet: bundle {args.file} does not verify: {error}", sys.stderr)
        return EXIT_FAILED
    _print_verdict(verdict, args.json)
    return EXIT_OK if verdict.conflict_free else EXIT_NOT_CONFLICT_FREE


def _print_verdict(verdict: Verdict, as_json: bool) -> None:
    if as_json:
        document = to_json(verdict.to_dict())
        assert isinstance(document, dict)
        _say(json.dumps({"verified": True, **document}, indent=2, sort_keys=True))
    else:
        _say(verdict.format())


def _verify_compliance(args: argparse.Namespace) -> int:
    from node.ops.cli_client import make_client

    client = make_client(args)

    async def fetch() -> dict[str, Any]:
        async with client:
            return await client.verified_compliance(args.compliance, args.min_height)

    try:
        proven = asyncio.run(fetch())
    except ProvenetError as error:
        if args.json:
            _say(json.dumps({"verified": False, "code": error.code, "message": error.message}))
        _say(f"provenet: {args.compliance}'s verdict does not verify: {error}", sys.stderr)
        return EXIT_FAILED
    verdict = proven["verdict"]
    assert isinstance(verdict, dict), "a verified verdict is a map"
    if args.json:
        _say(json.dumps({"verified": True, **proven}, indent=2, sort_keys=True))
    else:
        _say(format_proven_verdict(proven))
    return EXIT_OK if verdict.get("conflict_free") is True else EXIT_NOT_CONFLICT_FREE


def format_proven_verdict(proven: dict[str, Any]) -> str:
    """The lines ``provenet verify --compliance`` prints."""
    verdict = proven["verdict"]
    state = "conflict-free" if verdict["conflict_free"] is True else "NOT conflict-free"
    lines = [
        f"{verdict['asset_id']}: {state} as of height {proven['height']} "
        f"({verdict['assets_checked']} assets checked, {proven['reads']} state reads proven)"
    ]
    lines.extend(
        f"  failed {failure['rule']} at {failure['asset_id']}: {failure['detail']}"
        for failure in verdict["failures"]
    )
    lines.append(f"verified against the certificate of block {proven['certified_by']}")
    return "\n".join(lines)
