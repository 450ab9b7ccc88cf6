"""Command line of the simulator: run seeds, print failures, exit 1 on any.

python -m consensus.sim --seeds 300 --validators 4 --faults all
python -m consensus.sim --seed 17 --validators 7 --faults drop,crash -v
python -m consensus.sim --seeds 50 --reconfigure --fake-signatures
"""

from __future__ import annotations

import argparse
import sys

from consensus.sim.cluster import SimConfig, SimResult, reconfiguring, run
from consensus.sim.network import FAULT_KINDS


def parse_faults(text: str) -> frozenset[str]:
    if text in {"", "none"}:
        return frozenset()
    if text == "all":
        return frozenset(FAULT_KINDS)
    kinds = frozenset(part.strip() for part in text.split(","))
    unknown = kinds - set(FAULT_KINDS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault kinds {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)} or all"
        )
    return kinds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m consensus.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed of the range")
    parser.add_argument("--seed", type=int, help="replay exactly this one seed")
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--faults", type=parse_faults, default=frozenset(FAULT_KINDS))
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument(
        "--fake-signatures", action="store_true", help="fast keyed hashes for soaks"
    )
    parser.add_argument(
        "--broken",
        choices=["quorum", "new_view_check", "eager_view_change", "stale_quorum"],
        help="run a deliberately broken replica",
    )
    parser.add_argument(
        "--reconfigure",
        action="store_true",
        help="change the validator set by vote during the run: 4 -> 5 -> 7 -> 4 validators",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="a line for every seed")
    return parser


def replay_command(args: argparse.Namespace, seed: int) -> str:
    faults = ",".join(sorted(args.faults)) or "none"
    command = (
        f"python -m consensus.sim --seed {seed} --validators {args.validators} --faults {faults}"
    )
    if args.requests != 24:
        command += f" --requests {args.requests}"
    if args.fake_signatures:
        command += " --fake-signatures"
    if args.broken:
        command += f" --broken {args.broken}"
    if args.reconfigure:
        command += " --reconfigure"
    return command


def describe(result: SimResult) -> str:
    heights = ",".join(str(h) for h in result.heights.values())
    byzantine = ",".join(f"{r}:{b}" for r, b in sorted(result.byzantine.items())) or "-"
    return (
        f"seed {result.seed}: trace {result.trace_digest} end {result.end_ms}ms "
        f"heights {heights} byzantine {byzantine}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = SimConfig(
        validators=args.validators,
        faults=args.faults,
        requests=args.requests,
        fake_signatures=args.fake_signatures,
        broken=args.broken,
    )
    if args.reconfigure:
        if args.validators != 4:
            build_parser().error("--reconfigure starts from 4 validators")
        config = reconfiguring(config)
    seeds = (
        [args.seed]
        if args.seed is not None
        else range(args.first_seed, args.first_seed + args.seeds)
    )
    safety = liveness = 0
    for seed in seeds:
        result = run(seed, config)
        safety += len(result.safety_violations)
        liveness += len(result.liveness_failures)
        if args.verbose or args.seed is not None:
            print(describe(result))
        if not result.ok:
            problems = "; ".join(result.safety_violations + result.liveness_failures)
            print(f"FAIL seed {seed}: {problems[:300]} -- replay: {replay_command(args, seed)}")
    count = len(seeds)
    print(f"{count} seeds, {safety} safety violations, {liveness} liveness failures")
    return 1 if safety or liveness else 0


if __name__ == "__main__":
    sys.exit(main())
