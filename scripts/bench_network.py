#!/usr/bin/env python3
"""Benchmark of a real local network: validators as processes, load from client processes.

Prints one JSON document on stdout (progress goes to stderr).  Run it through
``scripts/bench``, which makes ``.venv`` and installs the project first.

What it does
------------
1. Measures this machine's Ed25519 verifications per second on one core
   (``scripts/bench_verify.verify_rate`` for the hot-path backend) before
   anything else runs, and derives the ceiling ``2 cores x verify rate / N``:
   every validator verifies every transaction's signature once, so on a
   two-core host N validators cannot commit more than that even if
   verification were all they did.
2. Creates a network of ``--validators`` nodes in a temporary directory with
   ``node.ops.netinit.init_network`` and starts it with ``node.ops.netctl.up``: each
   node is its own ``provenet node run`` process, as a user starts them.
3. Signs the whole workload in advance (``benchkit.workload.build_workload``,
   a run tag and the senders' ``pending_next_nonce``), so signing never
   competes with the nodes, and commits the workload's setup transactions.
4. Throughput run: ``--clients`` client processes, each owning whole senders
   (a lane of ``Workload.lanes``), POST batches of envelopes
   (``POST /v1/txs/batch``, msgpack) to their own node (client i -> node
   i mod N) and keep at most ``--window`` of their transactions in flight
   (submitted, not yet committed): the node's mempool keeps each sender's
   nonce order, so a lane pipelines.  A subscriber on ``GET /v1/events``
   (websocket, one frame per block) sees every commit; it timestamps each
   transaction and tells each client how many of its lane's transactions
   committed (over a pipe, so flow control costs the nodes nothing).
   The default window (200 per client, 100 per POST) keeps requests in
   flight for well under a second: a longer backlog outwaits the nodes' 1 s
   re-broadcast of pending requests and 2 s view-change timer, and then the
   run measures view changes, not throughput.  Throughput is committed transactions per second between the first and
   the last commit; latency is commit-seen time minus the client's submit
   time (``time.monotonic`` is one clock for every process on Linux).
5. Latency run: one client process offers ``--rate`` tx/s for
   ``--duration-s`` seconds, one ``POST /v1/txs`` per transaction at a steady
   pace, to a backup (``--latency-node``, so the forward to the primary
   counts), with the realistic mixed diamond workload in one lane.
6. Checks that every validator reports the same height, block hash and state
   root, and that every observer holds that state root, and always stops the
   network (``node.ops.netctl.down``) at the end.

Observers (``--observers M``, default 1): the network also runs M observer
nodes (``o0``...), which follow the validators over ``GET /v1/chain`` and
re-execute every block.  During both runs an event watcher process
subscribes to ``GET /v1/events`` on ``v0`` and on ``o0`` at once and stamps
every block's arrival on each with its own ``time.monotonic()``; it also
samples ``o0``'s ``/v1/status`` (``following.lag_blocks``) every 0.1 s.
Each run then gets an ``observer`` section: the lag in blocks (the sampled
``lag_blocks``, and v0's height minus o0's latest at every v0 block
arrival), the lag in milliseconds (o0's arrival minus v0's for the same
height), whether o0 reached the validators' height and state root after the
run, and o0's CPU seconds (over the run, and including its catch-up).  The
observers' and the watcher's CPU are not in ``cpu_s_per_node`` (validators
only) but count as the bench's own in ``cpu_s_outside_bench_processes``.

CPU seconds per node are utime + stime deltas of each node process from
``/proc/<pid>/stat`` over each run; the clients' and this process's own CPU
and the machine's busy fraction (``/proc/stat``) are reported alongside, so
the JSON says whether the host's cores were the limit; ``cpu_budget_per_tx``
puts the node CPU per committed transaction next to the part of it that
signature verification must take.

Usage: scripts/bench [--validators N] [--observers M] [--clients C] [--chains K]
                     [--mode independent|mixed] [--rate R] [--duration-s S] [--tls] [--keep] ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit.console import log
from benchkit.network import run_in_network_dir
from benchkit.procstat import busy_cores, machine_cpu
from benchkit.report import finish
from benchkit.runs import Settings, bench, verify_ceiling
from benchkit.workload import INDEPENDENT, MIXED, MODES

from consensus import ed25519

# The host should be idle when the benchmark starts: more busy cores than this
# in the second before it, and the figures will be low and noisy.
IDLE_BUSY_CORES = 0.25


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4, help="validator processes (4)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (4)")
    parser.add_argument(
        "--chains", type=int, default=1000, help="workload chains (15 or 16 txs each)"
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=INDEPENDENT,
        help="throughput workload (independent: every tx succeeds in any "
        "interleaving; mixed: the diamond chain, cross-sender dependencies "
        "make some txs rejected when lanes interleave)",
    )
    parser.add_argument(
        "--latency-mode",
        choices=MODES,
        default=MIXED,
        help="latency-run workload, in one lane (mixed: the diamond chain)",
    )
    parser.add_argument("--rate", type=float, default=100.0, help="latency run: offered tx/s")
    parser.add_argument("--duration-s", type=float, default=10.0, help="latency run length")
    parser.add_argument(
        "--latency-node",
        type=int,
        default=1,
        help="index of the node the latency client submits to (1: a backup)",
    )
    parser.add_argument("--batch", type=int, default=100, help="envelopes per batch POST")
    parser.add_argument(
        "--window",
        type=int,
        default=200,
        help="transactions in flight per client (submitted, not committed); "
        "keep clients x window under about 1 s of throughput, or requests "
        "outwait the nodes' 1 s re-broadcast and 2 s view-change timers",
    )
    parser.add_argument(
        "--observers",
        type=int,
        default=0,
        help="observer nodes (default 0: validators only, the issue's figure); "
        "with 1 or more the runs compare o0's block stream with v0's",
    )
    parser.add_argument("--base-port", type=int, default=7700)
    parser.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="TLS on API and peer links (default off)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the network directory")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the temporary network directory goes (default: $TMPDIR)",
    )
    parser.add_argument(
        "--max-run-s", type=float, default=90.0, help="stop the throughput run after this long"
    )
    parser.add_argument(
        "--stall-s",
        type=float,
        default=10.0,
        help="end a run when nothing of it commits for this long",
    )
    parser.add_argument(
        "--verify-count",
        type=int,
        default=5000,
        help="signatures per Ed25519 verify-rate measurement",
    )
    args = parser.parse_args(argv)
    if args.validators < 1 or args.clients < 1 or args.chains < 1:
        parser.error("--validators, --clients and --chains must be at least 1")
    if args.observers < 0:
        parser.error("--observers must be at least 0")
    if args.batch < 1 or args.window < args.batch:
        parser.error("--batch must be at least 1 and --window at least --batch")
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings(
        validators=args.validators,
        observers=args.observers,
        clients=args.clients,
        chains=args.chains,
        mode=args.mode,
        latency_mode=args.latency_mode,
        rate=args.rate,
        duration_s=args.duration_s,
        latency_node=args.latency_node,
        batch=args.batch,
        window=args.window,
        base_port=args.base_port,
        tls=args.tls,
        max_run_s=args.max_run_s,
        stall_s=args.stall_s,
    )


def busy_cores_now() -> float | None:
    """Cores busy on average over the next second, before anything of ours runs."""
    before = machine_cpu()
    time.sleep(1.0)
    cores = busy_cores(before, machine_cpu())
    return round(cores, 2) if cores is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    busy = busy_cores_now()
    report: dict[str, Any] = {
        "bench": "provenet network",
        "validators": args.validators,
        "observers": args.observers,
        "tls": args.tls,
        "host": {
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "busy_cores_before_start": busy,
        },
    }
    if (busy or 0) > IDLE_BUSY_CORES:
        log(
            f"warning: the host is already busy ({busy} cores) before the benchmark starts; "
            "results will be lower and noisier"
        )
    log(f"measuring Ed25519 verify rate ({ed25519.BACKEND})")
    report["ed25519"] = verify_ceiling(args.validators, args.verify_count)
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="provenet-bench-", dir=args.work_dir))
    settings = settings_of(args)
    status = run_in_network_dir(
        lambda: bench(settings, root, report), root, report, keep=bool(args.keep)
    )
    finish(report)
    print(json.dumps(report, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
