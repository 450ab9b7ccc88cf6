"""Worst-case decoding cost per input kind, and honest decoding speed; prints JSON.

For each kind of input a node or an SDK decodes from someone else (a client's
API body, a peer's frame, a validator's chain page, a provenance bundle), this
builds hostile inputs at that kind's largest allowed size, under the limits of
the code under test, and decodes each through the kind's real entry point in a
fresh subprocess, reporting wall time and peak RSS (``ru_maxrss``):

* ``empty_maps``: lists of ``{}`` (one byte, one dict each);
* ``zeros``: lists of ``0`` (one byte each, few containers);
* ``lists_of_zero``: lists of ``[0]`` (two bytes, one list each);
* ``negative_ints``: lists of ``-32`` (one byte, a fresh int object each);
* ``tiny_bytes``: lists of one-byte ``bin`` values (a fresh bytes object each);
* ``max_len_maps``: maps with as many distinct keys as a collection may hold;
* ``deep_nesting``: chains of single-item lists as deep as msgpack allows;
* for API batch bodies, also ``envelopes_of_<shape>``: a batch of the
  largest hostile envelopes, each decoded as a transaction.

Each shape comes as ``dense`` (the whole size in that shape: refused early
when it passes a count limit) and ``at_limit`` (as many values and
containers as the limits allow, padded to the size with bytes values: the
most work an input can cause and still reach the canonical check).  Where
the two coincide (code without count limits) only ``dense`` runs.

Inputs larger than ``--max-input-bytes`` are built at that size and their
time and RSS growth extrapolated linearly to the full size (marked
``extrapolated_from_bytes``): the code before the limits took minutes and
gigabytes per input at full size.

``--honest`` instead times the decoding of honest traffic in this process:
the largest honest state-transfer frame (16 blocks of 512 signed
transactions, 256 KiB each), a batch body of 512 signed transactions (the
body, then each envelope as the API admits it), and a 64-block chain page.

Usage::

    .venv/bin/python scripts/bench_decode.py [--repo DIR] [--kinds api_tx,bundle]
        [--shapes empty_maps,zeros] [--max-input-bytes N] [--timeout-s N]
    .venv/bin/python scripts/bench_decode.py --honest [--repo DIR] [--repeat N]

``--repo`` points at the source tree to measure (default: this one), so the
same script measures an older checkout (``git worktree add /tmp/old REV``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

HERE = Path(__file__).resolve().parents[1]


def _use_repo(repo: Path) -> None:
    sys.path.insert(0, str(repo))


# ------------------------------------------------------------------ msgpack bytes


def _array(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def _map(count: int) -> bytes:
    if count < 16:
        return bytes([0x80 | count])
    if count < 1 << 16:
        return b"\xde" + count.to_bytes(2, "big")
    return b"\xdf" + count.to_bytes(4, "big")


def _bin_header(size: int) -> bytes:
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _bin(size: int) -> bytes:
    return _bin_header(size) + b"\x00" * size


def _str(text: str) -> bytes:
    raw = text.encode()
    if len(raw) < 32:
        return bytes([0xA0 | len(raw)]) + raw
    return b"\xd9" + bytes([len(raw)]) + raw


@dataclass(frozen=True)
class Leaf:
    """One repeated item of a hostile input and what it costs to hold."""

    data: bytes
    objects: int
    containers: int
    depth: int  # levels of containers inside the leaf (0 for a scalar)


@dataclass(frozen=True)
class Tree:
    data: bytes
    objects: int
    containers: int
    depth: int


def _group(items: list[tuple[bytes, int]], fanout: int) -> list[tuple[bytes, int]]:
    """Items (bytes, repeat count) grouped into lists of ``fanout``, as (bytes, count)."""
    groups: list[tuple[bytes, int]] = []
    pending: list[tuple[bytes, int]] = []
    pending_len = 0
    for data, count in items:
        while count:
            if not pending and count >= fanout:
                full, count = divmod(count, fanout)
                groups.append((_array(fanout) + data * fanout, full))
                continue
            take = min(count, fanout - pending_len)
            pending.append((data, take))
            pending_len += take
            count -= take
            if pending_len == fanout:
                groups.append((_array(fanout) + b"".join(d * c for d, c in pending), 1))
                pending, pending_len = [], 0
    if pending:
        groups.append((_array(pending_len) + b"".join(d * c for d, c in pending), 1))
    return groups


def build_tree(items: list[tuple[Leaf, int]], fanout: int) -> Tree:
    """Every leaf in nested lists of at most ``fanout`` items (one root list)."""
    fanout = max(1, fanout)
    level = [(leaf.data, count) for leaf, count in items if count]
    objects = sum(leaf.objects * count for leaf, count in items)
    containers = sum(leaf.containers * count for leaf, count in items)
    depth = max((leaf.depth for leaf, count in items if count), default=0)
    while True:
        lists = sum(count for _, count in level)
        grouped = _group(level, fanout)
        objects += sum(count for _, count in grouped)
        containers += sum(count for _, count in grouped)
        depth += 1
        if sum(count for _, count in grouped) == 1 or lists <= 1:
            root = grouped[0][0]
            return Tree(root, objects, containers, depth)
        level = grouped


# ------------------------------------------------------------------ shapes


def _max_len_map(keys: int) -> Leaf:
    entries = b"".join(_str(format(index, "x")) + b"\x00" for index in range(keys))
    return Leaf(_map(keys) + entries, 1 + 2 * keys, 1, 1)


SHAPES: dict[str, Callable[[Any], Leaf]] = {
    "empty_maps": lambda limits: Leaf(b"\x80", 1, 1, 0),
    "zeros": lambda limits: Leaf(b"\x00", 1, 0, 0),
    "lists_of_zero": lambda limits: Leaf(b"\x91\x00", 2, 1, 1),
    "negative_ints": lambda limits: Leaf(b"\xe0", 1, 0, 0),
    "tiny_bytes": lambda limits: Leaf(b"\xc4\x01\x00", 1, 0, 0),
    "max_len_maps": lambda limits: _max_len_map(min(limits.max_collection_len, 100_000)),
    "deep_nesting": lambda limits: Leaf(b"\x91" * 1000 + b"\xc0", 1001, 1000, 1000),
}


def _at_limit_leaf(shape: str, limits: Any) -> Leaf:
    """The shape's leaf, made no deeper than the limits allow (for ``at_limit``)."""
    leaf = SHAPES[shape](limits)
    if shape == "deep_nesting":
        depth = max(0, min(1000, limits.max_depth - 2))
        return Leaf(b"\x91" * depth + b"\xc0", depth + 1, depth, depth)
    return leaf


def hostile_input(shape: str, variant: str, limits: Any, size_bytes: int) -> bytes:
    """One hostile input of about ``size_bytes`` (see the module docstring)."""
    max_objects = getattr(limits, "max_objects", None)
    max_containers = getattr(limits, "max_containers", None)
    fanout = min(limits.max_collection_len, 1 << 20)
    if variant == "dense":
        leaf = SHAPES[shape](limits)
        count = max(1, (size_bytes - 64) // len(leaf.data))
        data = build_tree([(leaf, count)], fanout).data
        # The lists' own headers take a little room: shrink to fit the size.
        while len(data) > size_bytes and count > 1:
            count = max(1, count * size_bytes // len(data) - 16)
            data = build_tree([(leaf, count)], fanout).data
        return data
    leaf = _at_limit_leaf(shape, limits)
    # Keep under both count limits with room for the lists and the padding.
    count = (size_bytes - 64) // len(leaf.data)
    # Values left for the padding and the lists around everything.
    slack = 2 * (size_bytes // max(1, limits.max_bytes_len)) + 64
    if max_objects is not None:
        per_leaf = leaf.objects + 1 / max(1, fanout - 1)
        count = min(count, int((max_objects * 0.98 - slack) / per_leaf))
    if max_containers is not None and leaf.containers:
        count = min(count, int((max_containers * 0.98 - slack) / (leaf.containers + 1 / fanout)))
    count = max(0, count)
    room = size_bytes - count * len(leaf.data) - 64
    # Few padding values (within the slack), each as long as allowed.
    pieces = max(1, min(fanout - 1, slack // 2))
    blob_size = max(1, min(limits.max_bytes_len, room // pieces + 1))
    blobs = max(0, room // (blob_size + 5))
    blob = Leaf(_bin(blob_size), 1, 0, 0)
    if not count and not blobs:
        return _array(0)
    return build_tree([(leaf, count), (blob, blobs)], fanout).data


def shapes_for(kind: str) -> list[str]:
    shapes = list(SHAPES)
    if kind == "api_batch":
        shapes += [f"envelopes_of_{shape}" for shape in SHAPES]
    return shapes


# ------------------------------------------------------------------ entry points


def _validators(count: int = 4) -> Any:
    from consensus.quorum import ValidatorSet

    return ValidatorSet(tuple(bytes([index + 1]) * 32 for index in range(count)))


def _replica_config() -> Any:
    from consensus.config import ReplicaConfig
    from node.runtime.config import NODE_CONSENSUS_DEFAULTS

    return ReplicaConfig("bench", _validators(), 0, **NODE_CONSENSUS_DEFAULTS)


def peer_wire_limits() -> Any:
    """The limits a validator decodes peer frames with (as node/runtime/peers.py builds them)."""
    import consensus.wire as wire
    from consensus.codec import Limits
    from node.runtime.config import NodeLimits

    frame_bytes = NodeLimits().max_frame_bytes
    if hasattr(wire, "frame_limits"):
        return wire.frame_limits(_replica_config(), frame_bytes)
    return wire.WireLimits(codec=Limits(max_size_bytes=frame_bytes, max_bytes_len=frame_bytes))


def chain_page_limits() -> Any:
    """The limits an observer decodes a chain page with (node/runtime/follower.py)."""
    import node.runtime.follower as follower
    from consensus.codec import DEFAULT_LIMITS
    from node.runtime.config import NodeLimits

    if hasattr(follower, "page_limits"):
        return follower.page_limits(NodeLimits(), 4, {})
    return DEFAULT_LIMITS


def batch_body_limits() -> Any:
    import node.api.routes as api
    from consensus.codec import DEFAULT_LIMITS
    from node.runtime.config import NodeLimits

    if hasattr(api, "batch_limits"):
        return api.batch_limits(NodeLimits())
    return DEFAULT_LIMITS


def tx_limits() -> Any:
    """The envelope bounds at the API door (the ones the hostile inputs aim at)."""
    from contracts import tx
    from contracts.config import ContractLimits

    if hasattr(tx, "admission_codec_limits"):
        return tx.admission_codec_limits(ContractLimits())
    return tx.codec_limits(ContractLimits())


def _engine() -> Any:
    from contracts.config import ContractLimits

    return SimpleNamespace(ledger=SimpleNamespace(contract_limits=ContractLimits()))


def decode_api_tx(data: bytes) -> object:
    """POST /v1/txs with a msgpack body: node/api/routes.py decode_payload."""
    from node.api.routes import decode_payload

    return decode_payload(data, _engine())


def decode_api_batch(data: bytes) -> object:
    """POST /v1/txs/batch with a msgpack body: the body, then each envelope."""
    from node.api.errors import ApiError
    from node.api.routes import ClientApi, decode_payload
    from node.runtime.config import NodeLimits

    owner = SimpleNamespace(limits=NodeLimits())
    request = SimpleNamespace(content_type="application/msgpack")
    payloads = ClientApi._batch_payloads(owner, request, data)  # type: ignore[arg-type]
    engine = _engine()
    refused = 0
    for payload in payloads:
        try:
            decode_payload(payload, engine)
        except ApiError:
            refused += 1
    return f"{len(payloads)} envelopes, {refused} refused"


def decode_peer_frame(data: bytes) -> object:
    from consensus.wire import message_from_wire

    return message_from_wire(data, peer_wire_limits())


def decode_chain_page(data: bytes) -> object:
    """An observer's page: decode, then check_block on each block until one fails."""
    from consensus.blocks import ChainTip
    from consensus.codec import decode
    from node.runtime.follower import BlockRejected, check_block

    page = decode(data, chain_page_limits())
    blocks = page.get("blocks") if isinstance(page, dict) else None
    tip = ChainTip(0, b"\x00" * 32, 0, b"")
    for served in blocks if isinstance(blocks, list) else []:
        try:
            check_block(served, tip, "bench", _validators(), {})
        except BlockRejected as rejected:
            return f"block rejected: {rejected.kind}"
    return page


def _genesis() -> Any:
    from contracts.genesis import Genesis
    from node.sdk.genesis import NetworkGenesis, ValidatorEntry

    validators = tuple(
        ValidatorEntry(index, f"v{index}", "org", bytes([index + 1]) * 32) for index in range(4)
    )
    return NetworkGenesis(Genesis("bench", ()), validators)


def decode_bundle(data: bytes) -> object:
    from node.sdk.bundle_verify import verify_bundle

    return verify_bundle(data, _genesis())


@dataclass(frozen=True)
class Kind:
    decoder: Callable[[bytes], object]
    limits: Callable[[], Any]
    size_bytes: Callable[[], int]


def _api_body_bytes() -> int:
    from node.runtime.config import NodeLimits

    return NodeLimits().max_body_bytes


def _tx_bytes() -> int:
    from contracts.config import ContractLimits

    return ContractLimits().max_tx_bytes


def _bundle_limits() -> Any:
    from node.sdk.bundle_verify import BUNDLE_LIMITS

    return BUNDLE_LIMITS


def _bundle_bytes() -> int:
    return int(_bundle_limits().max_size_bytes)


KINDS: dict[str, Kind] = {
    "api_tx": Kind(decode_api_tx, tx_limits, _tx_bytes),
    "api_batch": Kind(decode_api_batch, batch_body_limits, _api_body_bytes),
    "peer_frame": Kind(
        decode_peer_frame,
        lambda: peer_wire_limits().codec,
        lambda: peer_wire_limits().codec.max_size_bytes,
    ),
    "chain_page": Kind(
        decode_chain_page, chain_page_limits, lambda: chain_page_limits().max_size_bytes
    ),
    "bundle": Kind(decode_bundle, _bundle_limits, _bundle_bytes),
}


def build_input(kind: str, shape: str, variant: str, size_bytes: int) -> bytes:
    spec = KINDS[kind]
    if not shape.startswith("envelopes_of_"):
        return hostile_input(shape, variant, spec.limits(), size_bytes)
    inner = shape.removeprefix("envelopes_of_")
    envelope = hostile_input(inner, variant, tx_limits(), _tx_bytes() - 8)
    item = _bin_header(len(envelope)) + envelope
    max_collection_len: int = spec.limits().max_collection_len
    count = min(max_collection_len, max(1, (size_bytes - 8) // len(item)))
    return _array(count) + item * count


# ------------------------------------------------------------------ running


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, path: str) -> None:
    """Decode one input file as ``kind``; print time, RSS and outcome as JSON."""
    decoder = KINDS[kind].decoder
    # Import everything on the decoder's path before measuring (every kind
    # refuses an empty list).
    with contextlib.suppress(Exception):
        decoder(b"\x90")
    data = Path(path).read_bytes()
    before = _rss_mib()
    started = time.perf_counter()
    try:
        result = decoder(data)
        outcome = "accepted" if not isinstance(result, str) else result
    except Exception as exc:  # the outcome is reported, whatever it is
        outcome = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": round(seconds, 4),
                "rss_before_mib": round(before, 1),
                "peak_rss_mib": round(_rss_mib(), 1),
                "outcome": outcome[:200],
            }
        )
    )


def _run(command: list[str], repo: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run(
        [sys.executable, __file__, *command, "--repo", str(repo)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )


def run_case(
    repo: Path,
    kind: str,
    shape: str,
    variant: str,
    full_bytes: int,
    cap_bytes: int,
    timeout_s: float,
) -> dict[str, object]:
    """Build one input in a subprocess, decode it in another; extrapolate if capped.

    Neither this process nor the decoding one ever holds a large input
    before the decoder starts: ``ru_maxrss`` survives ``exec``, so a parent
    that held the input would set the child's floor.
    """
    size = min(full_bytes, cap_bytes)
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as folder:
        path = str(Path(folder) / "input")
        built = _run(["--build", kind, shape, variant, str(size), path], repo, timeout_s)
        if built.returncode != 0:
            return {"shape": shape, "variant": variant, "error": built.stderr.splitlines()[-1:]}
        input_bytes = Path(path).stat().st_size
        try:
            done = _run(["--child", kind, path], repo, timeout_s)
            if done.returncode != 0:
                result: dict[str, object] = {"error": done.stderr.strip().splitlines()[-1:]}
            else:
                result = json.loads(done.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            result = {"error": f"timed out after {timeout_s} s"}
    result = {"shape": shape, "variant": variant, "input_bytes": input_bytes, **result}
    if size < full_bytes and "seconds" in result:
        # The code without count limits does work in proportion to the input.
        scale = full_bytes / input_bytes
        grown = float(result["peak_rss_mib"]) - float(result["rss_before_mib"])  # type: ignore[arg-type]
        result["extrapolated_from_bytes"] = input_bytes
        result["input_bytes"] = full_bytes
        result["seconds"] = round(float(result["seconds"]) * scale, 2)  # type: ignore[arg-type]
        result["peak_rss_mib"] = round(float(result["rss_before_mib"]) + grown * scale, 1)  # type: ignore[arg-type]
    return result


def _limits_view(limits: Any) -> dict[str, object]:
    names = (
        "max_size_bytes",
        "max_depth",
        "max_collection_len",
        "max_str_len",
        "max_bytes_len",
        "max_objects",
        "max_containers",
    )
    return {name: getattr(limits, name) for name in names if hasattr(limits, name)}


def hostile(args: argparse.Namespace) -> dict[str, object]:
    report: dict[str, object] = {}
    for kind in args.kinds.split(","):
        spec = KINDS[kind]
        limits = spec.limits()
        full = spec.size_bytes()
        variants = ["dense"] + (["at_limit"] if hasattr(limits, "max_objects") else [])
        cases = []
        for shape in shapes_for(kind):
            if args.shapes and shape not in args.shapes.split(","):
                continue
            for variant in variants:
                case = run_case(
                    args.repo, kind, shape, variant, full, args.max_input_bytes, args.timeout_s
                )
                print(json.dumps({"kind": kind, **case}), file=sys.stderr)
                cases.append(case)
        timed = [case for case in cases if "seconds" in case]
        worst_time = max(timed, key=lambda case: float(case["seconds"]), default=None)  # type: ignore[arg-type]
        worst_rss = max(timed, key=lambda case: float(case["peak_rss_mib"]), default=None)  # type: ignore[arg-type]
        report[kind] = {
            "size_bytes": full,
            "limits": _limits_view(limits),
            "worst_seconds": worst_time
            and {k: worst_time[k] for k in ("shape", "variant", "seconds")},
            "worst_peak_rss_mib": worst_rss
            and {k: worst_rss[k] for k in ("shape", "variant", "peak_rss_mib")},
            "cases": cases,
        }
    return report


# ------------------------------------------------------------------ honest traffic


def _signed_payloads(count: int, pad_to_bytes: int) -> list[bytes]:
    from consensus.codec import Ed25519Signer, digest
    from contracts.tx import encode_tx, sign_tx

    signers = [Ed25519Signer.from_seed(digest(b"bench %d" % n)) for n in range(16)]
    payloads = []
    for index in range(count):
        args: dict[str, object] = {"asset_id": f"bench-P{index}a", "to_org": "bw-trader"}
        tx = sign_tx(
            signers[index % 16],
            chain_id="bench",
            nonce=index,
            contract="diamonds",
            method="transfer",
            args=args,
        )
        size = len(encode_tx(tx))
        if size < pad_to_bytes:
            args["note"] = "x" * (pad_to_bytes - size - 8)
            tx = sign_tx(
                signers[index % 16],
                chain_id="bench",
                nonce=index,
                contract="diamonds",
                method="transfer",
                args=args,
            )
        payloads.append(encode_tx(tx))
    return payloads


def _best_ms(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


def honest(args: argparse.Namespace) -> dict[str, object]:
    from consensus.codec import encode
    from consensus.messages import Batch, CertifiedBatch, Commit, Request, StateResponse
    from consensus.wire import message_from_wire, message_to_wire

    payloads = _signed_payloads(512, 500)
    requests = tuple(Request.of(payload) for payload in payloads)
    commits = tuple(Commit(0, 1, b"\x01" * 32, sender, b"\x02" * 64) for sender in range(3))
    blocks = tuple(
        CertifiedBatch(
            Batch(height, requests, 1_700_000_000_000, height - 1, b"\x03" * 32), commits
        )
        for height in range(1, 17)
    )
    frame = message_to_wire(StateResponse(blocks, 1))
    limits = peer_wire_limits()
    batch_payloads = _signed_payloads(512, 0)
    body = encode(batch_payloads)
    header = {
        "chain_id": "bench",
        "height": 1,
        "prev_block_hash": b"\x00" * 32,
        "time_ms": 1,
        "proposer_time_ms": 1,
        "requests_root": b"\x00" * 32,
        "request_count": 512,
        "executed_height": 0,
        "executed_results_root": b"",
    }
    page = encode(
        {
            "height": 64,
            "blocks": [
                {
                    "header": header,
                    "certificate": [message_to_wire(commit) for commit in commits],
                    "payloads": batch_payloads,
                }
                for _ in range(64)
            ],
        }
    )
    import node.runtime.follower  # noqa: F401  (the page limits live there)
    from consensus.codec import decode

    page_limits = chain_page_limits()
    body_limits = batch_body_limits()
    tx = tx_limits()
    # Each entry: the whole entry point, and the codec's share of it (the
    # typed checks after decoding, such as request digests, are the rest).
    return {
        "state_response_16x512_tx": {
            "bytes": len(frame),
            "entry_point_ms": _best_ms(lambda: message_from_wire(frame, limits), args.repeat),
            "codec_decode_ms": _best_ms(lambda: decode(frame, limits.codec), args.repeat),
        },
        "batch_body_512_tx": {
            "bytes": len(body),
            "entry_point_ms": _best_ms(lambda: decode_api_batch(body), args.repeat),
            "codec_decode_ms": _best_ms(
                lambda: [decode(p, tx) for p in cast(list[bytes], decode(body, body_limits))],
                args.repeat,
            ),
        },
        "chain_page_64x512_tx": {
            "bytes": len(page),
            "entry_point_ms": _best_ms(lambda: decode(page, page_limits), args.repeat),
            "codec_decode_ms": _best_ms(lambda: decode(page, page_limits), args.repeat),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=HERE)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--shapes", default="", help="only these shapes (comma-separated)")
    parser.add_argument("--max-input-bytes", type=int, default=1 << 40)
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--honest", action="store_true")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.repo = args.repo.resolve()
    _use_repo(args.repo)
    if args.child:
        child(*args.child)
        return
    if args.build:
        kind, shape, variant, size, path = args.build
        Path(path).write_bytes(build_input(kind, shape, variant, int(size)))
        return
    report = honest(args) if args.honest else hostile(args)
    print(json.dumps({"repo": str(args.repo), **report}, indent=1))


if __name__ == "__main__":
    main()
