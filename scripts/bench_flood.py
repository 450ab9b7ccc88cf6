"""Blocks per window on a 4-validator network, quiet and under an API flood.

Usage: .venv/bin/python scripts/bench_flood.py [--window-s 20] [--interval-ms 50] [--no-tls]

Starts a network with ``provenet net init`` / ``net up`` in a temporary
directory, runs an honest sender (one transaction every ``--interval-ms`` to
every validator) for one quiet window and then for one window per flood kind
(junk JSON envelopes, an object-dense msgpack list, full batches of
well-formed transactions from a non-member key), with one flooding
client per validator, and prints one JSON document: blocks and blocks per
second per window, the flooded-to-quiet ratio, and what the flooders were
answered.  The scenario is tests/node/flood.py's; the pass/fail version is
tests/node/test_flood.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "node"))

from flood import (  # noqa: E402
    HonestSender,
    Window,
    dense_msgpack_body,
    junk_json_body,
    loopback_aliases_usable,
    measure_window,
    stranger_batch_body,
)
from netfixture import local_network  # noqa: E402


def _window_json(window: Window, quiet: Window) -> dict[str, object]:
    result: dict[str, object] = {
        "blocks": window.blocks,
        "seconds": round(window.seconds, 2),
        "blocks_per_s": round(window.blocks_per_s, 2),
        "ratio_to_quiet": round(window.blocks_per_s / quiet.blocks_per_s, 3)
        if quiet.blocks_per_s
        else None,
    }
    if window.flood is not None:
        result["flood_requests"] = window.flood.requests
        result["flood_statuses"] = {str(k): v for k, v in sorted(window.flood.statuses.items())}
        result["flood_errors"] = window.flood.errors
    return result


async def _run(
    args: argparse.Namespace, net_dir: Path, urls: list[str], context: ssl.SSLContext | bool
) -> dict[str, object]:
    chain_id = json.loads((net_dir / "genesis.json").read_text())["chain_id"]
    sender = HonestSender(net_dir, chain_id)
    interval_s = args.interval_ms / 1000
    quiet = await measure_window("quiet", urls, context, sender, args.window_s, interval_s, None)
    junk = await measure_window(
        "junk_json", urls, context, sender, args.window_s, interval_s,
        [(junk_json_body(), "application/json")],
    )  # fmt: skip
    dense = await measure_window(
        "dense_msgpack", urls, context, sender, args.window_s, interval_s,
        [(dense_msgpack_body(), "application/msgpack")],
    )  # fmt: skip
    strangers = await measure_window(
        "stranger_batches", urls, context, sender, args.window_s, interval_s,
        [(stranger_batch_body(chain_id, args.batch), "application/msgpack")],
    )  # fmt: skip
    return {
        "window_s": args.window_s,
        "honest_interval_ms": args.interval_ms,
        "tls": not args.no_tls,
        "load_average": os.getloadavg(),
        "quiet": _window_json(quiet, quiet),
        "junk_json": _window_json(junk, quiet),
        "dense_msgpack": _window_json(dense, quiet),
        "stranger_batches": _window_json(strangers, quiet),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--interval-ms", type=float, default=50.0)
    parser.add_argument("--no-tls", action="store_true")
    parser.add_argument("--batch", type=int, default=1024, help="envelopes per stranger batch")
    args = parser.parse_args()
    if not loopback_aliases_usable():
        print(
            "this host cannot bind 127.0.0.2; the flooders need their own address", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory() as tmp, local_network(Path(tmp), tls=not args.no_tls) as net:
        urls = [net.api_url(node.name) for node in net.nodes]
        report = asyncio.run(_run(args, net.dir, urls, net.ssl()))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
