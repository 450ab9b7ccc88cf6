"""Ed25519 speed of PyNaCl (libsodium) against OpenSSL; prints one JSON document.

consensus/ed25519.py signs and verifies with PyNaCl; this measures why.
For each library (PyNaCl/libsodium, and cryptography/OpenSSL called
directly here) it measures, in this one process:

* verifications per second on one core: ``--count`` distinct
  transaction-sized messages (the bytes a transaction's sender signs), spread
  over 16 keys, each verified once, best of ``--repeat`` runs;
* signatures per second on one core, with the key already expanded;
* verifications per second with ``--threads`` threads sharing the same work:
  both libraries release the GIL while they compute, so this shows what a
  node gains by verifying in a thread pool instead of on its event loop.

It also reports the library the hot path uses (``consensus.ed25519.BACKEND``)
and the rate of ``consensus.codec.ed25519_verify``, the function every
caller goes through, so the cost of the delegation shows up as the gap to
``consensus.ed25519.verify``.

Usage: .venv/bin/python scripts/bench_verify.py [--count N] [--repeat N] [--threads N]

``verify_rate(backend, count)`` and ``sign_rate(backend, count)`` are also
imported by scripts/bench.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from consensus import ed25519
from consensus.codec import digest, ed25519_verify, signing_bytes

KEYS = 16
Item = tuple[bytes, bytes, bytes]
OPENSSL = "cryptography"
LIBRARIES = (ed25519.BACKEND, OPENSSL)


def _openssl_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """OpenSSL's verdict alone (without the strict rule: for speed only)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class _OpensslKey:
    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def _verifier(library: str) -> ed25519.VerifyFunction:
    return ed25519.verify if library == ed25519.BACKEND else _openssl_verify


def _messages(count: int) -> list[bytes]:
    """Distinct messages shaped like a transaction's signing bytes (about 230 bytes)."""
    return [
        signing_bytes(
            "tx",
            "provenet-local",
            {
                "chain_id": "provenet-local",
                "sender": digest(b"sender %d" % (index % KEYS)),
                "nonce": index,
                "contract": "diamonds",
                "method": "transfer",
                "args": {"asset_id": f"bench-P{index}a", "to_org": "bw-trader"},
                "expiry_height": None,
            },
        )
        for index in range(count)
    ]


def signed_items(count: int) -> list[Item]:
    """``count`` (public key, message, signature) triples, signed with PyNaCl."""
    keys = [ed25519.key_from_seed(digest(b"bench key %d" % n)) for n in range(KEYS)]
    items = []
    for index, message in enumerate(_messages(count)):
        key = keys[index % KEYS]
        items.append((key.public_key, message, key.sign(message)))
    return items


def _best_rate(run: Callable[[], None], operations: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return operations / best


def _verify_all(verify: ed25519.VerifyFunction, items: Sequence[Item]) -> None:
    for public_key, message, signature in items:
        if not verify(public_key, message, signature):
            raise AssertionError("a valid signature failed to verify")


def verify_rate(
    backend: str, count: int, repeat: int = 3, items: list[Item] | None = None
) -> float:
    """Verifications per second of ``backend`` (a library) on one core, best of ``repeat``."""
    verify = _verifier(backend)
    work = items if items is not None else signed_items(count)
    return _best_rate(lambda: _verify_all(verify, work), len(work), repeat)


def sign_rate(backend: str, count: int, repeat: int = 3) -> float:
    """Signatures per second of ``backend`` on one core (key expanded beforehand)."""
    seed = digest(b"bench signer")
    key = ed25519.key_from_seed(seed) if backend == ed25519.BACKEND else _OpensslKey(seed)
    messages = _messages(count)

    def run() -> None:
        for message in messages:
            key.sign(message)

    return _best_rate(run, count, repeat)


def threaded_verify_rate(backend: str, items: list[Item], threads: int, repeat: int = 3) -> float:
    """Verifications per second when ``threads`` threads split ``items``."""
    verify = _verifier(backend)
    chunks = [items[start::threads] for start in range(threads)]
    with ThreadPoolExecutor(max_workers=threads) as pool:

        def run() -> None:
            for future in [pool.submit(_verify_all, verify, chunk) for chunk in chunks]:
                future.result()

        return _best_rate(run, len(items), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="distinct signatures per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; best counts")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    options = parser.parse_args()
    items = signed_items(options.count)
    verify = {
        backend: round(verify_rate(backend, options.count, options.repeat, items))
        for backend in LIBRARIES
    }
    report: dict[str, object] = {
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "hot_path_backend": ed25519.BACKEND,
        "count": options.count,
        "repeat": options.repeat,
        "verify_per_second_one_core": verify,
        "codec_ed25519_verify_per_second_one_core": round(
            _best_rate(lambda: _verify_all(ed25519_verify, items), len(items), options.repeat)
        ),
        "sign_per_second_one_core": {
            backend: round(sign_rate(backend, options.count, options.repeat))
            for backend in LIBRARIES
        },
        "threads": options.threads,
        "verify_per_second_threads": {
            backend: round(threaded_verify_rate(backend, items, options.threads, options.repeat))
            for backend in LIBRARIES
        },
    }
    report["verify_speedup_pynacl_over_cryptography"] = round(
        verify["pynacl"] / verify["cryptography"], 2
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
