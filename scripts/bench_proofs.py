"""State proof size and verification time against the size of the state; prints JSON.

Builds a :class:`~contracts.state.MemoryState` of ``--keys`` keys (values of
``--value-bytes`` bytes), computes its root, then proves ``--samples``
present keys and as many absent ones and reports, for each kind:

* ``proof_bytes``: the canonical msgpack encoding of the proof (median, p99, max);
* ``levels``: internal nodes on the path (median, max);
* ``verify_us``: :func:`~contracts.stateroot.verify_state_proof` (median, p99);
* ``prove_us``: :meth:`MemoryState.prove` (median, p99);

plus the build time (``build_s``: every put, then the first root) and the
peak RSS of the process.  A benchmark, not a test: no pass/fail.

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

from consensus.codec import encode
from contracts.state import MemoryState
from contracts.stateroot import verify_state_proof


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keys", type=int, default=1000, help="keys in the state")
    parser.add_argument("--samples", type=int, default=2000, help="keys proved per kind")
    parser.add_argument("--value-bytes", type=int, default=64, help="bytes per value")
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
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
