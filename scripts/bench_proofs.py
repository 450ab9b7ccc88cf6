"""State proof size and verification time against the size of the state; prints JSON.

Builds a :class:`~contracts.state.MemoryState` of ``--keys`` keys (values of
``--value-bytes`` bytes), computes its root, then proves ``--samples``
present keys and as many absent ones and reports, for each kind:

* ``proof_bytes``: the canonical msgpack encoding of the proof (median, p99, max);
* ``levels``: internal nodes on the path (median, max);
* ``verify_us``: :func:`~contracts.stateroot.verify_state_proof` (median, p99);
* ``prove_us``: :meth:`MemoryState.prove` (median, p99);

plus the build time (``build_s``: every put, then the first root) and the
peak RSS of the process.

``light_client`` is what a light client checks end to end, with a real
certificate of ``--validators`` Ed25519 keys: a receipt proof (the leaf's
path in a block of ``--block-txs`` receipts plus the :class:`ResultsAnchor`
with one link) and a state proof of a present key with the same anchor,
each as its JSON answer's size and the time of the whole check (anchor:
certificate and results chain; then the Merkle or trie path).  The
certificate check dominates, and it does not depend on the number of keys.
A benchmark, not a test: no pass/fail.

Usage::

    .venv/bin/python scripts/bench_proofs.py --keys 1000
    .venv/bin/python scripts/bench_proofs.py --keys 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

from consensus.blocks import SignedHeader
from consensus.codec import Ed25519Signer, encode
from consensus.merkle import inclusion_proof, verify_inclusion
from consensus.messages import Commit, sign
from consensus.proofs import CommitCertificate
from consensus.quorum import ValidatorSet
from contracts.results import HeightResults, genesis_results, receipt_leaf, receipts_root
from contracts.state import MemoryState
from contracts.stateroot import StateProof, verify_state_proof
from node.sdk.results_proof import ResultsAnchor

CHAIN_ID = "bench-proofs"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summary(values: list[float], digits: int) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits or None),
        "p99": round(_percentile(values, 0.99), digits or None),
        "max": round(max(values), digits or None),
    }


def _measure(state: MemoryState, root: bytes, keys: list[bytes]) -> dict[str, object]:
    sizes: list[float] = []
    levels: list[float] = []
    prove_us: list[float] = []
    verify_us: list[float] = []
    for key in keys:
        value = state.get(key)
        started = time.perf_counter()
        proof = state.prove(key)
        proved = time.perf_counter()
        ok = verify_state_proof(root, key, value, proof)
        verified = time.perf_counter()
        assert ok, f"proof for {key!r} did not verify"
        prove_us.append((proved - started) * 1e6)
        verify_us.append((verified - proved) * 1e6)
        sizes.append(len(encode(proof.to_dict())))
        levels.append(len(proof.levels))
    return {
        "samples": len(keys),
        "proof_bytes": _summary(sizes, 0),
        "levels": {"median": statistics.median(levels), "max": max(levels)},
        "prove_us": _summary(prove_us, 1),
        "verify_us": _summary(verify_us, 1),
    }


def _anchor(results: HeightResults, validators: int) -> tuple[ResultsAnchor, ValidatorSet]:
    """A certificate of ``validators`` real keys over a block carrying ``results``
    one height later (one link)."""
    signers = [Ed25519Signer.from_seed(bytes([n + 1]) * 32) for n in range(validators)]
    validator_set = ValidatorSet(tuple(signer.public_key for signer in signers))
    link = HeightResults(results.height + 1, results.state_root, receipts_root(()), b"")
    carried = HeightResults(
        link.height, link.state_root, link.receipts_root, results.results_root
    ).results_root
    header = SignedHeader(
        CHAIN_ID, results.height + 2, 1, bytes(32), 1, results.height + 1, carried
    )
    commits = tuple(
        sign(Commit(0, header.height, header.batch_digest, n), signer, CHAIN_ID)
        for n, signer in enumerate(signers[: validator_set.quorum])
    )
    anchor = ResultsAnchor(
        results, ((link.state_root, link.receipts_root),), header, CommitCertificate(commits)
    )
    return anchor, validator_set


def _timed_us(check: object, rounds: int) -> dict[str, float]:
    assert callable(check)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        check()
        times.append((time.perf_counter() - started) * 1e6)
    return _summary(times, 1)


def _light_client(
    state: MemoryState, root: bytes, key: bytes, block_txs: int, validators: int
) -> dict[str, object]:
    leaves = [receipt_leaf(bytes([n % 256]) * 32, "ok", None, bytes(32)) for n in range(block_txs)]
    index = block_txs // 2
    path = inclusion_proof(leaves, index)
    previous = genesis_results(bytes(32)).results_root
    results = HeightResults(7, root, receipts_root(leaves), previous)
    anchor, validator_set = _anchor(results, validators)
    receipt_answer = {
        "leaf": leaves[index].hex(),
        "index": index,
        "count": block_txs,
        "path": [digest.hex() for digest in path],
        "anchor": anchor.to_json(),
    }
    proof = state.prove(key)
    value = state.get(key)
    state_answer = {"proof": proof.to_json(), "anchor": anchor.to_json()}

    def check_receipt() -> None:
        verified = ResultsAnchor.from_json(receipt_answer["anchor"]).verify(validator_set, CHAIN_ID)
        assert verify_inclusion(leaves[index], index, block_txs, path, verified.receipts_root)

    def check_state() -> None:
        verified = ResultsAnchor.from_json(state_answer["anchor"]).verify(validator_set, CHAIN_ID)
        assert verify_state_proof(
            verified.state_root, key, value, StateProof.from_json(state_answer["proof"])
        )

    return {
        "validators": validators,
        "block_txs": block_txs,
        "receipt_proof_json_bytes": len(json.dumps(receipt_answer)),
        "receipt_verify_us": _timed_us(check_receipt, 200),
        "state_proof_json_bytes": len(json.dumps(state_answer)),
        "state_verify_us": _timed_us(check_state, 200),
        "anchor_json_bytes": len(json.dumps(anchor.to_json())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keys", type=int, default=1000, help="keys in the state")
    parser.add_argument("--samples", type=int, default=2000, help="keys proved per kind")
    parser.add_argument("--value-bytes", type=int, default=64, help="bytes per value")
    parser.add_argument("--validators", type=int, default=4, help="light client: validators")
    parser.add_argument("--block-txs", type=int, default=100, help="light client: receipts")
    args = parser.parse_args()
    value = b"v" * args.value_bytes
    started = time.perf_counter()
    state = MemoryState()
    for index in range(args.keys):
        state.put(b"key/%d" % index, value)
    root = state.root()
    build_s = time.perf_counter() - started
    step = max(1, args.keys // args.samples)
    present = [b"key/%d" % index for index in range(0, args.keys, step)][: args.samples]
    absent = [b"absent/%d" % index for index in range(args.samples)]
    report = {
        "keys": args.keys,
        "value_bytes": args.value_bytes,
        "build_s": round(build_s, 3),
        "present": _measure(state, root, present),
        "absent": _measure(state, root, absent),
        "light_client": _light_client(
            state, root, present[len(present) // 2], args.block_txs, args.validators
        ),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
