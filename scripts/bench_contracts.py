"""Benchmark of the contract layer; prints one JSON document.

1. Executed transactions per second for a mixed diamond workload on the
   in-memory state (extract, split, domestic transfer, KP certificate,
   shipment, import, cut, grade, transfer to a retailer, sale), with
   Ed25519 verification and with a verifier that accepts everything (what
   a node that verified at mempool admission could use).  Signing happens
   before timing: it is the clients' work.
2. State-root update cost per block of a fixed number of writes, at 1e3,
   1e4, 1e5 and 1e6 keys: on a MemoryState, the time to apply the writes
   (dict, sorted index and trie path) and to compute the new root; and the
   same writes on a bare MerkleTrie, which isolates the root's own cost.

Usage: .venv/bin/python scripts/bench_contracts.py [--chains N] [--max-keys N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit.workload import MIXED, Cast, build_workload

from consensus.codec import Ed25519Signer, digest
from contracts.genesis import Genesis, GenesisOrg, genesis_state
from contracts.receipt import BlockContext
from contracts.runtime import execute
from contracts.state import MemoryState
from contracts.stateroot import MerkleTrie
from contracts.tx import Transaction

CHAIN_ID = "bench"
ORGS = {
    "kp-bw": ("BW", ("certifier",), ("kp_authority",)),
    "kp-be": ("BE", ("certifier",), ("kp_authority",)),
    "miner": ("BW", ("supplier",), ()),
    "bw-trader": ("BW", ("trader",), ()),
    "cutter": ("BE", ("manufacturer", "trader"), ()),
    "lab": ("BE", ("certifier",), ("grading_lab",)),
    "shop": ("US", ("retailer",), ()),
}
TX_PER_BLOCK = 100


def signer(name: str) -> Ed25519Signer:
    return Ed25519Signer.from_seed(digest(name.encode()))


def genesis() -> Genesis:
    members = tuple(
        GenesisOrg(org_id, org_id, country, roles, (signer(org_id).public_key,), scopes)
        for org_id, (country, roles, scopes) in sorted(ORGS.items())
    )
    return Genesis(CHAIN_ID, members, kp_participants=("BE", "BW", "US"))


# The workload is benchkit.workload's mixed mode, played by this file's
# organisations (the retailer here is "shop") with bare ids (no run tag).
BENCH_CAST = Cast(retailer="shop")


def workload(chains: int) -> list[Transaction]:
    signers = {org_id: signer(org_id) for org_id in ORGS}
    plan = build_workload(signers, CHAIN_ID, mode=MIXED, chains=chains, cast=BENCH_CAST)
    return plan.ordered()


def accept_all(public_key: bytes, message: bytes, signature: bytes) -> bool:
    return True


def run_workload(txs: list[Transaction], verify: bool) -> dict[str, object]:
    state = MemoryState(genesis_state(genesis()))
    started = time.perf_counter()
    ok = 0
    root_seconds = 0.0
    for start in range(0, len(txs), TX_PER_BLOCK):
        block = BlockContext(height=1 + start // TX_PER_BLOCK, time_ms=start, proposer="v0")
        for tx in txs[start : start + TX_PER_BLOCK]:
            receipt = execute(state, tx, block) if verify else execute(state, tx, block, accept_all)
            ok += receipt.ok
        root_started = time.perf_counter()
        state.root()
        root_seconds += time.perf_counter() - root_started
    elapsed = time.perf_counter() - started
    assert ok == len(txs), f"only {ok} of {len(txs)} transactions succeeded"
    return {
        "transactions": len(txs),
        "seconds": round(elapsed, 3),
        "tx_per_second": round(len(txs) / elapsed),
        "state_root_share_percent": round(100 * root_seconds / elapsed, 1),
        "final_keys": len(state),
    }


def _batch(block: int, keys: int, writes_per_block: int) -> list[bytes]:
    """Half updates of existing keys, half inserts of new ones."""
    batch = [
        digest(b"%d" % ((block * 7919 + n * 104_729) % keys)) for n in range(writes_per_block // 2)
    ]
    batch += [digest(b"new-%d-%d" % (block, n)) for n in range(writes_per_block - len(batch))]
    return batch


def root_cost(keys: int, writes_per_block: int, blocks: int) -> dict[str, object]:
    """Per-block cost on a MemoryState (dict + sorted index + trie) and on the trie alone."""
    value = b"v" * 100
    build_started = time.perf_counter()
    state = MemoryState()
    trie = MerkleTrie()
    for index in range(keys):
        key = digest(b"%d" % index)
        state.put(key, value)
        trie.set(key, value)
    state.root()
    trie.root()
    build_seconds = time.perf_counter() - build_started
    put_seconds = root_seconds = trie_seconds = 0.0
    for block in range(blocks):
        batch = _batch(block, keys, writes_per_block)
        started = time.perf_counter()
        for key in batch:
            state.put(key, b"w%d" % block)
        put_seconds += time.perf_counter() - started
        started = time.perf_counter()
        state.root()
        root_seconds += time.perf_counter() - started
        started = time.perf_counter()
        for key in batch:
            trie.set(key, b"w%d" % block)
        trie.root()
        trie_seconds += time.perf_counter() - started
    assert state.root() == trie.root()
    per_block_ms = (put_seconds + root_seconds) * 1000 / blocks
    return {
        "keys": keys,
        "build_seconds": round(build_seconds, 2),
        "writes_per_block": writes_per_block,
        "state_apply_ms_per_block": round(put_seconds * 1000 / blocks, 2),
        "state_root_ms_per_block": round(root_seconds * 1000 / blocks, 2),
        "state_total_ms_per_block": round(per_block_ms, 2),
        "trie_only_ms_per_block": round(trie_seconds * 1000 / blocks, 2),
        "trie_only_us_per_write": round(trie_seconds * 1_000_000 / blocks / writes_per_block, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=300, help="mine-to-shop chains (16 tx each)")
    parser.add_argument("--max-keys", type=int, default=1_000_000)
    parser.add_argument("--writes-per-block", type=int, default=1_000)
    parser.add_argument("--blocks", type=int, default=20)
    options = parser.parse_args()
    txs = workload(options.chains)
    report: dict[str, object] = {
        "python": sys.version.split()[0],
        "mixed_diamond_workload": {
            "with_signature_verification": run_workload(txs, verify=True),
            "without_signature_verification": run_workload(txs, verify=False),
        },
    }
    sizes = [size for size in (1_000, 10_000, 100_000, 1_000_000) if size <= options.max_keys]
    report["state_root_update"] = [
        root_cost(size, options.writes_per_block, options.blocks) for size in sizes
    ]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
