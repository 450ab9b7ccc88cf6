"""The standalone checks observers and the SDK rely on: commit certificates,
derived headers and Merkle inclusion proofs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.blocks import GENESIS_PARENT_HASH, derive_header, verify_commit_certificate
from consensus.codec import Ed25519Signer
from consensus.merkle import inclusion_proof, merkle_root, verify_inclusion
from consensus.messages import Batch, Commit, Request, sign
from consensus.quorum import ValidatorSet

CHAIN = "provenet-test"
SIGNERS = [Ed25519Signer.from_seed(bytes([i + 1]) * 32) for i in range(4)]
VALIDATORS = ValidatorSet(tuple(s.public_key for s in SIGNERS))
BATCH = Batch(5, (Request.of(b"tx-1"), Request.of(b"tx-2")), 1_000, 4, b"r" * 32)
HEADER = derive_header(CHAIN, BATCH, b"p" * 32, 900)


def commit(
    sender: int, view: int = 2, height: int = 5, digest: bytes = BATCH.digest, chain: str = CHAIN
) -> Commit:
    return sign(Commit(view, height, digest, sender), SIGNERS[sender], chain)


def test_quorum_arithmetic() -> None:
    assert (VALIDATORS.n, VALIDATORS.f, VALIDATORS.quorum, VALIDATORS.weak) == (4, 1, 3, 2)
    seven = ValidatorSet(
        tuple(Ed25519Signer.from_seed(bytes([i + 9]) * 32).public_key for i in range(7))
    )
    assert (seven.f, seven.quorum) == (2, 5)
    five = ValidatorSet(
        tuple(Ed25519Signer.from_seed(bytes([i + 20]) * 32).public_key for i in range(5))
    )
    # Two quorums of five must share f + 1 = 2 validators: 2f + 1 = 3 would not.
    assert (five.f, five.quorum) == (1, 4)


def test_a_quorum_of_commits_certifies_the_header() -> None:
    assert verify_commit_certificate(HEADER, [commit(0), commit(1), commit(3)], VALIDATORS)


@pytest.mark.parametrize(
    ("label", "certificate"),
    [
        ("too few", [commit(0), commit(1)]),
        ("repeated signer", [commit(0), commit(0), commit(1)]),
        ("mixed views", [commit(0), commit(1, view=3), commit(2)]),
        ("other height", [commit(0), commit(1), commit(2, height=6)]),
        ("other digest", [commit(0), commit(1), commit(2, digest=b"x" * 32)]),
        ("other chain", [commit(0), commit(1), commit(2, chain="another-chain")]),
        ("forged signature", [commit(0), commit(1), replace(commit(2), signature=b"\x00" * 64)]),
        ("unknown validator", [commit(0), commit(1), replace(commit(2), sender=9)]),
        ("impersonation", [commit(0), commit(1), replace(commit(2), sender=3)]),
    ],
)
def test_a_bad_certificate_is_refused(label: str, certificate: list[Commit]) -> None:
    assert not verify_commit_certificate(HEADER, certificate, VALIDATORS)


def test_a_certificate_does_not_transfer_to_a_tampered_header() -> None:
    certificate = [commit(0), commit(1), commit(2)]
    for field, value in [
        ("request_count", 3),
        ("requests_root", b"z" * 32),
        ("proposer_time_ms", 1_001),
        ("executed_results_root", b"s" * 32),
        ("height", 6),
    ]:
        changed: dict[str, Any] = {field: value}
        assert not verify_commit_certificate(replace(HEADER, **changed), certificate, VALIDATORS), (
            field
        )


def test_a_certificate_checked_against_another_validator_set_fails() -> None:
    others = ValidatorSet(
        tuple(Ed25519Signer.from_seed(bytes([i + 50]) * 32).public_key for i in range(4))
    )
    assert not verify_commit_certificate(HEADER, [commit(0), commit(1), commit(2)], others)


def test_headers_chain_by_derived_previous_hash_and_monotonic_time() -> None:
    first = derive_header(
        CHAIN, Batch(1, (Request.of(b"a"),), 500, 0, b"g" * 32), GENESIS_PARENT_HASH, 0
    )
    null = derive_header(CHAIN, Batch.null(2), first.hash, first.time_ms)
    third = derive_header(
        CHAIN, Batch(3, (Request.of(b"b"),), 400, 1, b"h" * 32), null.hash, null.time_ms
    )
    assert null.prev_block_hash == first.hash and third.prev_block_hash == null.hash
    assert (first.time_ms, null.time_ms, third.time_ms) == (500, 500, 500)
    assert null.batch_digest == Batch.null(2).digest


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=40), st.data())
def test_every_leaf_has_an_inclusion_proof_and_no_other_leaf_fits_it(
    items: list[bytes], data: st.DataObject
) -> None:
    root = merkle_root(items)
    index = data.draw(st.integers(min_value=0, max_value=len(items) - 1))
    proof = inclusion_proof(items, index)
    assert verify_inclusion(items[index], index, len(items), proof, root)
    assert not verify_inclusion(items[index] + b"!", index, len(items), proof, root)
    if len(items) > 1:
        other = (index + 1) % len(items)
        assert (
            not verify_inclusion(items[index], other, len(items), proof, root)
            or items[other] == items[index]
        )
    assert not verify_inclusion(items[index], index, len(items), [*proof, b"x" * 32], root)


def test_merkle_root_matches_rfc6962_shape() -> None:
    from consensus.merkle import leaf_hash, node_hash

    a, b, c = b"a", b"b", b"c"
    assert merkle_root([a]) == leaf_hash(a)
    assert merkle_root([a, b, c]) == node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))
