#!/usr/bin/env python3
"""Benchmark of the pure consensus core (not a test): prints JSON.

* blocks/s and requests/s that four replicas, pumping messages to each other
  in one process with real Ed25519 signing and verification (every replica
  verifies every message itself, no shared cache), commit and deliver at
  batch sizes 1, 64 and 512.  Request validity is a stub here: checking
  transaction signatures is the node's cost, measured by scripts/bench.
* seeds per second of the simulator with every fault kind.

Usage: .venv/bin/python scripts/bench_consensus.py [--blocks N] [--sim-seeds N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque

from consensus.blocks import ChainTip
from consensus.codec import Ed25519Signer, digest, ed25519_verify
from consensus.config import ReplicaConfig
from consensus.events import (
    Broadcast,
    ClientRequest,
    Deliver,
    Effect,
    Executed,
    Received,
    Send,
    Tick,
)
from consensus.messages import Request
from consensus.quorum import ValidatorSet
from consensus.replica import Replica
from consensus.sim.cluster import SimConfig, run
from consensus.sim.network import FAULT_KINDS


def bench_core(batch_size: int, blocks: int, n: int = 4) -> dict[str, float]:
    signers = [Ed25519Signer.from_seed(bytes([i + 1]) * 32) for i in range(n)]
    validators = ValidatorSet(tuple(s.public_key for s in signers))
    genesis = ChainTip.genesis(digest(b"bench"))
    replicas = [
        Replica(
            ReplicaConfig(
                chain_id="bench",
                validators=validators,
                replica_id=i,
                max_batch_size=batch_size,
                batch_timeout_ms=0,
                checkpoint_interval=16,
                window_size=64,
            ),
            signers[i],
            ed25519_verify,
            lambda payload: True,
            genesis,
        )
        for i in range(n)
    ]
    roots = [genesis.results_root] * n
    delivered = [0] * n
    inbox: deque[tuple[int, object]] = deque()

    def carry_out(i: int, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Broadcast(message=message):
                    inbox.extend((j, Received(i, message)) for j in range(n) if j != i)
                case Send(to=to, message=message):
                    inbox.append((to, Received(i, message)))
                case Deliver(block=block):
                    delivered[i] += 1
                    roots[i] = digest(roots[i] + block.header.hash)
                    inbox.appendleft((i, Executed(block.header.height, roots[i])))

    requests = [Request.of(f"bench request {k}".encode()) for k in range(batch_size * blocks)]
    started = time.perf_counter()
    now = 0
    for request in requests:
        carry_out(0, replicas[0].step(ClientRequest(request)))
    while min(delivered) < blocks:
        if not inbox:
            now += 1
            for i in range(n):
                carry_out(i, replicas[i].step(Tick(now)))
            continue
        target, event = inbox.popleft()
        carry_out(target, replicas[target].step(event))  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    return {
        "batch_size": batch_size,
        "blocks": blocks,
        "seconds": round(elapsed, 3),
        "blocks_per_second": round(blocks / elapsed, 1),
        "requests_per_second": round(blocks * batch_size / elapsed, 1),
    }


def bench_sim(seeds: int, validators: int) -> dict[str, float]:
    config = SimConfig(validators=validators, faults=frozenset(FAULT_KINDS))
    started = time.perf_counter()
    bad = sum(not run(seed, config).ok for seed in range(seeds))
    elapsed = time.perf_counter() - started
    return {
        "validators": validators,
        "seeds": seeds,
        "failed_seeds": bad,
        "seeds_per_second": round(seeds / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=256)
    parser.add_argument("--sim-seeds", type=int, default=50)
    args = parser.parse_args()
    core = [
        bench_core(size, max(4, args.blocks if size < 512 else args.blocks // 4))
        for size in (1, 64, 512)
    ]
    sims = [bench_sim(args.sim_seeds, 4), bench_sim(max(1, args.sim_seeds // 2), 7)]
    print(
        json.dumps({"core_4_replicas_real_ed25519": core, "simulator_all_faults": sims}, indent=2)
    )


if __name__ == "__main__":
    main()
